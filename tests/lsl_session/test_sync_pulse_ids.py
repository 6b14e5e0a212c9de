"""Identified sync pulses: each stream is held only to the pulses it was sent or saw.

The realistic lab of issue #24: markers ``sync_pulse k`` every 4 s, phones
pulsing every 5 s on their own clocks (anonymous ``sync_pulse`` events and GSR
steps), a Shimmer with its own unrelated pulse train. None of them shares a
pulse with the markers: ``not checked (no shared pulses)``, never ``NO``. When
the lab flashes the phones (``sync_flash k``), they are checked by id, and a
stream delayed by 30 ms is caught while the others are not.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsl_session.layout import SessionPaths
from lsl_session.processing.model import ProcessingContext, SyncedStream
from lsl_session.processing.pulse_sets import NOT_SHARED
from lsl_session.processing.pulses import pulse_id
from lsl_session.processing.sync_check import SyncCheckProcessor
from lsl_session.report.verdict import session_verdict

T0 = 1000.0
RATE = 128.0
DURATION = 30.0
LAB = T0 + 4.0 * np.arange(1, 8)  # markers every 4 s: 4 … 28 s
OWN = T0 + 2.3 + 5.0 * np.arange(0, 6)  # a phone's own pulses every 5 s


def _stream(name, stype, stamps, series, *, srate=0.0, string=False):
    n_ch = 1 if string else np.asarray(series).reshape(len(stamps), -1).shape[1]
    return SyncedStream(
        stream_id=abs(hash(name)) % 1000,
        name=name,
        type=stype,
        source_id=f"test/{name}",
        channel_format="string" if string else "double64",
        channel_count=n_ch,
        nominal_srate=srate,
        effective_srate=srate,
        time_stamps=np.asarray(stamps, float),
        time_series=series if string else np.asarray(series, float),
        channel_labels=["gsr"] * n_ch,
        channel_units=["uS"] * n_ch,
        channel_types=["GSR"] * n_ch,
    )


def markers(name, times, labels):
    order = np.argsort(times, kind="stable")
    return _stream(
        name,
        "Markers",
        np.asarray(times)[order],
        [[labels[i]] for i in order],
        string=True,
    )


def gsr(name, onsets, *, seed, delay=0.0):
    """128 Hz GSR with +5 µS, 250 ms steps at ``onsets``, stamped ``delay`` late."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(int(DURATION * RATE)) / RATE
    x = 2.0 + 0.3 * np.sin(0.3 * (t - T0)) + rng.normal(0, 0.01, t.size)
    for on in onsets:
        x[(t >= on) & (t < on + 0.25)] += 5.0
    return _stream(name, "GSR", t + delay, x[:, None], srate=RATE)


def run(session_root, streams):
    root = session_root / "S_20251208_000000"
    root.mkdir(exist_ok=True)
    context = ProcessingContext(
        paths=SessionPaths(root),
        streams=streams,
        output_dir=root / "processing" / "sync_check",
        t0=T0,
    )
    report = SyncCheckProcessor().run(context)
    return report, {r["stream"]: r for r in report["streams"]}


def reference():
    return markers(
        "StimulusMarkers", LAB, [f"sync_pulse {k}" for k in range(1, LAB.size + 1)]
    )


def test_pulse_ids_from_labels():
    assert pulse_id("sync_pulse 7") == 7
    assert pulse_id("sync_flash 12") == 12
    assert pulse_id("sync_7") == 7
    assert pulse_id("sync_pulse") == -1
    assert pulse_id("sync") == -1
    assert pulse_id("sync_pulse seven") == -1


def test_realistic_lab_unrelated_pulse_trains_are_not_checked(session_root):
    """Markers every 4 s, phones and a Shimmer pulsing every 5 s on their own."""
    streams = [reference()]
    for n, shift in ((1, 0.0), (2, 1.1)):
        own = OWN + shift
        streams.append(markers(f"phone_{n}_events", own, ["sync_pulse"] * own.size))
        streams.append(gsr(f"phone_{n}_gsr", own, seed=n))
    streams.append(gsr("shimmer_A1", OWN + 0.4, seed=9))  # no events stream
    report, rows = run(session_root, streams)
    assert report["reference"]["identified"] is True
    assert set(rows) == {
        "phone_1_events", "phone_1_gsr", "phone_2_events", "phone_2_gsr",
        "shimmer_A1",
    }  # fmt: skip
    for name, row in rows.items():
        assert row["aligned"] == NOT_SHARED, (name, row)
        assert row["checked"] is False
        assert row["n_matched"] == 0
    verdict = session_verdict(streams, report)
    assert verdict.n_checked == 0
    assert "no stream shares sync pulses with the reference" in verdict.line
    assert f"{len(rows)} not sync-checked" in verdict.line
    assert any(n.startswith(NOT_SHARED) and "shimmer_A1" in n for n in verdict.notes)


def flashed_lab(delays=None):
    """Phones flashed by the lab (``sync_flash k``) besides their own pulses."""
    delays = delays or {}
    streams = [reference()]
    rng = np.random.default_rng(5)
    for n in (1, 2):
        err = rng.uniform(-0.4e-3, 0.4e-3, LAB.size)  # the live mapping's error
        flash = LAB + err
        own = OWN + 0.6 * n
        times = np.concatenate([flash, own])
        labels = [f"sync_flash {k}" for k in range(1, LAB.size + 1)]
        labels += ["sync_pulse"] * own.size
        name = f"phone_{n}_events"
        events = markers(name, times + delays.get(name, 0.0), labels)
        streams.append(events)
        streams.append(
            gsr(
                f"phone_{n}_gsr",
                np.concatenate([flash, own]),
                seed=n,
                delay=delays.get(f"phone_{n}_gsr", 0.0),
            )
        )
    streams.append(gsr("shimmer_A1", LAB, seed=9, delay=delays.get("shimmer_A1", 0)))
    return streams


def test_flashed_phones_are_checked_by_id(session_root):
    streams = flashed_lab()
    report, rows = run(session_root, streams)
    for name, row in rows.items():
        assert row["aligned"] == "yes", (name, row)
        assert row["checked"] is True
    assert rows["phone_1_events"]["matched_by"] == "id"
    assert rows["phone_1_events"]["n_matched"] == LAB.size
    assert rows["shimmer_A1"]["matched_by"] == "time"
    # the phone's own pulses are set aside: no pulse is matched twice or wrongly
    assert rows["phone_1_gsr"]["n_matched"] >= LAB.size - 2
    verdict = session_verdict(streams, report)
    assert f"{len(rows)}/{len(rows)} sync-checked streams aligned" in verdict.line


@pytest.mark.parametrize("delayed", ["phone_1_gsr", "phone_2_events", "shimmer_A1"])
def test_a_stream_delayed_by_30_ms_is_caught_and_only_it(session_root, delayed):
    report, rows = run(session_root, flashed_lab({delayed: 0.030}))
    assert rows[delayed]["aligned"] == "NO"
    assert rows[delayed]["offset_ms"] == pytest.approx(30.0, abs=4.0)
    for name, row in rows.items():
        if name != delayed:
            assert row["aligned"] == "yes", (name, row)
    streams = flashed_lab({delayed: 0.030})
    verdict = session_verdict(streams, report)
    n = len(rows)
    assert f"{n - 1}/{n} sync-checked streams aligned" in verdict.line
    assert any(v.startswith(f"{delayed}: NOT aligned") for v in verdict.notes)


def test_a_phone_not_flashed_is_not_checked_while_the_others_are(session_root):
    streams = flashed_lab()
    own = OWN + 0.6 * 2
    streams = [s for s in streams if not s.name.startswith("phone_2")]
    streams.append(markers("phone_2_events", own, ["sync_pulse"] * own.size))
    streams.append(gsr("phone_2_gsr", own, seed=2))
    report, rows = run(session_root, streams)
    assert rows["phone_2_gsr"]["aligned"] == NOT_SHARED
    assert rows["phone_2_events"]["aligned"] == NOT_SHARED
    assert rows["phone_1_gsr"]["aligned"] == "yes"
    verdict = session_verdict(streams, report)
    assert "3/3 sync-checked streams aligned" in verdict.line
