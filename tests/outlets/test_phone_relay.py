"""Relay + simulated phones over real sockets and real LSL outlets (SPEC §10)."""

from __future__ import annotations

import hashlib
import json
import ssl
from collections import defaultdict

import numpy as np
import pylsl
import pytest
from lsl_helpers import wait_until
from phone_client import self_signed as _self_signed

from lsl_session.clocksync import PiecewiseMapping
from lsl_session.session import Session, create_session_folder
from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone.clock import KNOT_FIELDS
from outlets.phone.streams import source_id


def show(message: str) -> None:
    """Print a measured figure (visible with ``pytest -s``)."""
    print(f"\n{message}")  # noqa: T201


class PushLog:
    """Collects (phone time, mapped LSL time) of every pushed batch per device."""

    def __init__(self) -> None:
        self.data: dict[str, list[tuple[np.ndarray, np.ndarray, str]]] = defaultdict(
            list
        )

    def __call__(self, device_id, stream, phone_t, lsl_t) -> None:
        self.data[device_id].append((phone_t.copy(), lsl_t.copy(), stream))

    def errors_ms(self, sim: PhoneSimulator) -> np.ndarray:
        """|mapped − true| in ms for every pushed sample of ``sim``."""
        out = []
        for stream in sim.streams:
            true_t, phone_t, _ = sim.truth(stream)
            batches = [(p, t) for p, t, s in self.data[sim.device_id] if s == stream]
            p = np.concatenate([b[0] for b in batches])
            mapped = np.concatenate([b[1] for b in batches])
            idx = np.searchsorted(phone_t, p)
            assert np.array_equal(phone_t[idx], p)  # exact phone times round-trip
            out.append(np.abs(mapped - true_t[idx]) * 1e3)
        return np.concatenate(out)


def resolve(sid: str, timeout: float = 5.0) -> pylsl.StreamInlet:
    infos = pylsl.resolve_byprop("source_id", sid, timeout=timeout)
    assert infos, f"stream {sid} not found"
    inlet = pylsl.StreamInlet(infos[0], max_buflen=360, recover=True)
    inlet.open_stream(timeout=5)
    return inlet


def pull_all(inlet: pylsl.StreamInlet, quiet: float = 0.2) -> tuple[list, list]:
    """Pull until nothing new arrived for ``quiet`` seconds."""
    values, stamps = [], []
    last = pylsl.local_clock()
    while pylsl.local_clock() - last < quiet:
        v, t = inlet.pull_chunk(timeout=0.0, max_samples=100000)
        if t:
            values += v
            stamps += t
            last = pylsl.local_clock()
        else:
            wait_until(lambda: False, timeout=0.02)
    return values, stamps


@pytest.fixture
def session_dir(session_root):
    return create_session_folder(session_root, "phones")


def run_accuracy(uid: str, seconds: float, dist: str, session_dir=None):
    ids = [f"phone_a_{uid}", f"phone_b_{uid}"]
    log = PushLog()
    with PhoneRelay(tokens={i: "t" for i in ids}, session=session_dir) as relay:
        relay.push_observers.append(log)
        sims = [
            PhoneSimulator(
                "127.0.0.1",
                relay.port,
                ids[0],
                "t",
                clock_offset=3600,
                drift_ppm=50,
                jitter_ms=(1, 30),
                jitter_dist=dist,
                seed=1,
            ),
            PhoneSimulator(
                "127.0.0.1",
                relay.port,
                ids[1],
                "t",
                clock_offset=-3600,
                drift_ppm=-50,
                jitter_ms=(1, 30),
                jitter_dist=dist,
                seed=2,
            ),
        ]
        for sim in sims:
            sim.start()
        assert all(relay.wait_ready(i) for i in ids)
        inlet = resolve(source_id(ids[0], "rgb_frames"))
        wait_until(lambda: False, timeout=seconds)
        for sim in sims:
            sim.stop()
        frames, stamps = pull_all(inlet)
        qualities = {i: relay.sync_quality(i) for i in ids}
    figures = {}
    for sim in sims:
        err = log.errors_ms(sim)
        figures[sim.device_id] = (
            np.percentile(err, 50),
            np.percentile(err, 99),
            err.max(),
            len(err),
        )
    # The real LSL path: frame k of phone a was captured at t0 + k / 30.
    true_t, _, _ = sims[0].truth("rgb_frames")
    k = np.asarray(frames)[:, 0].astype(int)
    lsl_err = np.abs(np.asarray(stamps) - true_t[k]) * 1e3
    return figures, lsl_err, qualities


def report(title: str, figures: dict, lsl_err: np.ndarray) -> None:
    for dev, (p50, p99, mx, n) in figures.items():
        show(f"{title} {dev}: p50 {p50:.3f} ms p99 {p99:.3f} ms max {mx:.3f} ms n={n}")
    show(f"{title} via pylsl inlet: p50 {np.median(lsl_err):.3f} ms")


def test_sync_accuracy_two_phones(uid, session_dir):
    figures, lsl_err, qualities = run_accuracy(uid, 10.0, "wifi", session_dir)
    report("sync 10s wifi-jitter", figures, lsl_err)
    for p50, p99, _, n in figures.values():
        assert n > 2000
        assert p50 <= 0.5
        assert p99 <= 2.0
    assert np.median(lsl_err) <= 0.5
    assert all(q is not None for q in qualities.values())
    assert all(q.n > 100 for q in qualities.values())
    meta = Session.open(session_dir).metadata()
    assert wait_until(
        lambda: all(
            "clock_sync" in Session.open(session_dir).metadata()["devices"].get(d, {})
            for d in figures
        )
    )
    assert set(figures) <= set(meta["devices"])


@pytest.mark.slow
def test_sync_accuracy_two_phones_60s_uniform_jitter(uid):
    figures, lsl_err, _ = run_accuracy(uid, 60.0, "uniform")
    report("sync 60s uniform-jitter", figures, lsl_err)
    for p50, p99, _, _ in figures.values():
        assert p50 <= 0.5
        assert p99 <= 2.0


def test_record_commands_acks_and_uploads_with_resume(uid, session_dir):
    ids = [f"phone_r_{uid}", f"phone_s_{uid}"]
    with PhoneRelay(tokens={i: "t" for i in ids}, session=session_dir) as relay:
        sims = [
            PhoneSimulator(
                "127.0.0.1",
                relay.port,
                ids[0],
                "t",
                jitter_ms=(0, 0),
                upload_chunk=512,
                cut_upload_after=1024,
            ),
            PhoneSimulator("127.0.0.1", relay.port, ids[1], "t", jitter_ms=(0, 0)),
        ]
        for sim in sims:
            sim.start()
        assert all(relay.wait_ready(i) for i in ids)
        acks = relay.start_record()
        assert {a["status"] for a in acks.values()} == {"ok"}
        assert all(s.commands[-1]["session_id"] == session_dir.name for s in sims)
        flash = relay.sync_flash()
        assert set(flash) == set(ids)
        assert relay.marker("block_1")[ids[0]]["status"] == "ok"
        assert {a["status"] for a in relay.stop_record().values()} == {"ok"}
        assert wait_until(lambda: all(len(s.uploads) == 2 for s in sims), timeout=20)
        for sim in sims:
            sim.stop()
    cut = sims[0].uploads[0]
    assert cut["attempts"] >= 2
    assert cut["resumed_from"][0] == 0
    assert cut["resumed_from"][-1] > 0
    session = Session.open(session_dir)
    files = session.metadata()["files"]
    for sim in sims:
        for up in sim.uploads:
            assert up["result"]["type"] == "upload_done", up
            entry = next(
                f for f in files[sim.device_id] if f["file_type"] == up["file_type"]
            )
            folder = {"rgb": "rgb_videos", "thermal": "thermal_videos"}[up["file_type"]]
            path = session_dir / entry["file_path"]
            assert path.parent == session_dir / "devices" / sim.device_id / folder
            assert path.name.startswith(f"{sim.device_id}_{up['file_type']}_")
            assert len(path.stem.split("_")[-2]) == 8
            assert path.suffix == ".mp4"
            assert entry["sha256"] == up["sha256"]
            assert hashlib.sha256(path.read_bytes()).hexdigest() == up["sha256"]
        assert not list((session_dir / "devices" / sim.device_id).rglob("*.part"))
    events = json.loads(session.paths.log.read_text())
    kinds = [e["event"] for e in events]
    assert kinds.count("file_received") == 4
    acks = [e for e in events if e["event"] == "device_ack"]
    assert {(e["device_id"], e["command"]) for e in acks} >= {
        (i, c) for i in ids for c in ("start_record", "stop_record", "sync_flash")
    }


def test_disconnect_detected_and_reconnect_resumes_same_streams(uid, session_dir):
    dev = f"phone_d_{uid}"
    with PhoneRelay(
        tokens={dev: "t"}, session=session_dir, heartbeat_timeout=2.5
    ) as relay:
        sim = PhoneSimulator(
            "127.0.0.1", relay.port, dev, "t", jitter_ms=(1, 5)
        ).start()
        assert relay.wait_ready(dev)
        before = relay.source_ids(dev)
        outlets = relay.devices[dev].outlets
        inlet = resolve(before["rgb_frames"])
        sim.freeze()  # silent cut: no FIN, no data
        t_cut = pylsl.local_clock()
        assert wait_until(
            lambda: any(e["event"] == "device_disconnected" for e in relay.history),
            timeout=6,
        )
        gone = next(e for e in relay.history if e["event"] == "device_disconnected")
        latency = gone["detected_lsl"] - t_cut
        show(
            f"disconnect detected after {latency:.3f} s "
            f"(heartbeat timeout {relay.heartbeat_timeout} s)"
        )
        assert gone["reason"] == "heartbeat_timeout"
        assert relay.heartbeat_timeout <= 3.0
        assert gone["silent_s"] >= relay.heartbeat_timeout
        assert relay.connected() == []
        sim.connect()  # reconnect under the same id
        assert relay.wait_ready(dev)
        assert relay.source_ids(dev) == before
        assert relay.devices[dev].outlets is outlets
        sim.stop()
        total = len(sim.truth("rgb_frames")[0])
        assert wait_until(
            lambda: relay.status()[dev]["samples"].get("rgb_frames") == total
        )
        frames, _ = pull_all(inlet)
        for stream in sim.streams:
            assert relay.status()[dev]["samples"][stream] == len(sim.truth(stream)[0])
    k = np.asarray(frames)[:, 0]
    assert k[-1] == total - 1
    assert np.all(np.diff(k) == 1)  # the same stream continued, nothing lost
    events = json.loads(Session.open(session_dir).paths.log.read_text())
    assert [e["event"] for e in events if e.get("device_id") == dev][:3] == [
        "device_connected",
        "device_disconnected",
        "device_connected",
    ]


def test_tls(uid, tmp_path):
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    dev = f"phone_tls_{uid}"
    with PhoneRelay(tokens={dev: "t"}, ssl_context=ctx) as relay:
        sim = PhoneSimulator(
            "127.0.0.1", relay.port, dev, "t", tls=True, cafile=cert, jitter_ms=(0, 0)
        ).start()
        assert relay.wait_ready(dev)
        assert wait_until(lambda: relay.status()[dev]["samples"].get("gsr", 0) > 50)
        sim.stop()
        plain = PhoneSimulator("127.0.0.1", relay.port, f"{dev}_plain", "t")
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure is right
            plain.connect(timeout=3)


def run_many(uid: str, n: int, seconds: float) -> dict[str, dict[str, tuple[int, int]]]:
    ids = [f"phone_{k}_{uid}" for k in range(n)]
    with PhoneRelay(tokens={i: "t" for i in ids}) as relay:
        sims = [
            PhoneSimulator(
                "127.0.0.1",
                relay.port,
                i,
                "t",
                clock_offset=100.0 * k,
                drift_ppm=(-1) ** k * 40,
                seed=k,
            ).start()
            for k, i in enumerate(ids)
        ]
        assert all(relay.wait_ready(i) for i in ids)
        inlets = {i: resolve(source_id(i, "gsr")) for i in ids}
        wait_until(lambda: False, timeout=seconds)
        for sim in sims:
            sim.stop()

        def done() -> bool:
            st = relay.status()
            return all(
                st[s.device_id]["samples"].get(x) == len(s.truth(x)[0])
                for s in sims
                for x in s.streams
            )

        wait_until(done, timeout=10)
        status = relay.status()
        counts = {
            s.device_id: {
                x: (status[s.device_id]["samples"].get(x, 0), len(s.truth(x)[0]))
                for x in s.streams
            }
            for s in sims
        }
        for i, inlet in inlets.items():
            _, stamps = pull_all(inlet)
            assert np.all(np.diff(stamps) > 0), i
    return counts


def _check_no_loss(counts):
    lost = sum(g - p for dev in counts.values() for p, g in dev.values())
    show(
        f"{len(counts)} phones: samples lost {lost} of "
        f"{sum(g for dev in counts.values() for _, g in dev.values())}"
    )
    for dev, streams in counts.items():
        for stream, (pushed, generated) in streams.items():
            assert pushed == generated, (dev, stream)


def test_eight_phones_lose_no_samples_short(uid):
    _check_no_loss(run_many(uid, 8, 5.0))


@pytest.mark.slow
def test_eight_phones_lose_no_samples_60s(uid):
    _check_no_loss(run_many(uid, 8, 60.0))


# ----------------------------------- queued delays and a clock step, end to end
FIFO = {"delay_ms": (1, 30), "fifo": True}
STALLS = {"stall_rate": 0.5, "stall_ms": (20, 80)}


def _knot_mapping(inlet: pylsl.StreamInlet) -> PiecewiseMapping:
    rows, _ = pull_all(inlet)
    k = np.asarray(rows)
    col = {name: i for i, name in enumerate(KNOT_FIELDS)}
    return PiecewiseMapping(
        k[:, col["phone_time"]], k[:, col["offset_s"]], k[:, col["slope"]]
    )


@pytest.mark.parametrize(
    "seconds", [12.0, pytest.param(60.0, marks=pytest.mark.slow, id="60s")]
)
def test_queued_delays_and_clock_step_end_to_end(uid, seconds):
    """Five phones with deterministic virtual delays, seen by an LSL client."""
    kinds = ["up", "down", "floors", "stall", "step"]
    ids = [f"phone_{k}_{uid}" for k in kinds]
    links = [
        {"up_link": FIFO, "down_link": {"delay_ms": (0, 0)}},
        {"up_link": {"delay_ms": (0, 0)}, "down_link": FIFO},
        {"up_link": {**FIFO, "delay_ms": (3, 30)}, "down_link": FIFO},  # 1 ms bias
        {"up_link": {**FIFO, **STALLS}, "down_link": {**FIFO, **STALLS}},
        {"up_link": FIFO, "down_link": FIFO, "clock_step": (7.0, 0.05)},
    ]
    log = PushLog()
    with PhoneRelay(tokens={i: "t" for i in ids}) as relay:
        relay.push_observers.append(log)
        sims = [
            PhoneSimulator(
                "127.0.0.1", relay.port, dev, "t", clock_offset=(-1) ** k * 3600,
                drift_ppm=(-1) ** k * 50, seed=10 + k, **link,
            ).start()
            for k, (dev, link) in enumerate(zip(ids, links, strict=True))
        ]  # fmt: skip
        assert all(relay.wait_ready(i) for i in ids)
        frames = {i: resolve(source_id(i, "rgb_frames")) for i in ids}
        clocks = {i: resolve(source_id(i, "clock")) for i in ids}
        exchanges = resolve(source_id(ids[0], "clock_exchanges"))
        wait_until(lambda: False, timeout=seconds)
        for sim in sims:
            sim.stop()
        pulled = {i: pull_all(inlet) for i, inlet in frames.items()}
        knots = {i: _knot_mapping(inlet) for i, inlet in clocks.items()}
        ex_rows, _ = pull_all(exchanges)
        steps = [e for e in relay.history if e["event"] == "clock_step"]
    for sim in sims:
        dev = sim.device_id
        true_t, phone_t, _ = sim.truth("rgb_frames")
        rows, stamps = pulled[dev]
        k = np.asarray(rows)[:, 0].astype(int)
        stamps = np.asarray(stamps)
        err = (stamps - true_t[k]) * 1e3  # what an independent client measures
        # the recorded knots are exactly the mapping the stamps were made with
        # (from the first knot this inlet received on)
        seen = phone_t[k] >= knots[dev].p[0]
        assert seen.mean() > 0.5  # the clock inlet may attach a little later
        np.testing.assert_allclose(
            knots[dev](phone_t[k][seen]), stamps[seen], rtol=0, atol=1e-6
        )
        jumps = np.abs(np.diff(err))
        if sim.clock_step is None:
            show(
                f"{dev}: via inlet p50 {np.median(np.abs(err)):.3f} ms "
                f"p99 {np.percentile(np.abs(err), 99):.3f} ms n={len(err)}"
            )
            assert np.percentile(np.abs(err), 99) <= 2.0
            assert jumps.max() <= 1.0  # no visible jump between batches
        else:
            at = sim.clock_step[0]
            (step,) = [s for s in steps if s["device_id"] == dev]
            show(f"{dev}: clock step detected {step['lsl_time'] - at:.3f} s after it")
            assert 0 < step["lsl_time"] - at <= 2.0
            ok = (true_t[k] < at) | (true_t[k] > step["lsl_time"])
            assert np.percentile(np.abs(err[ok]), 99) <= 2.0
    assert len(steps) == 1
    ex = np.asarray(ex_rows)
    assert ex.shape[1] == 5 and len(ex) > 100  # t1, t2, t3, t4, connection
    assert np.all(ex[:, 1] <= ex[:, 2])
