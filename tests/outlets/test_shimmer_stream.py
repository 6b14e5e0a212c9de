"""End-to-end: emulator on a pty → real pyserial + pyshimmer → ShimmerOutlet → LSL."""

from __future__ import annotations

import logging

import numpy as np
import pylsl
import pytest
from lsl_helpers import wait_until

from outlets.shimmer import ShimmerEmulator, ShimmerOutlet
from outlets.shimmer.clock import COUNTER_MODULUS, TICKS_PER_SECOND
from outlets.shimmer.outlet import CHANNELS

logger = logging.getLogger(__name__)
WARMUP_S = 1.0  # stamps of the first second are excluded (clock fit warm-up)


def _run(uid, rate, duration, *, with_inlet=False):
    """Stream ``duration`` s; return (truth, ticks, stamps, data, inlet_result)."""
    chunks = []
    offset = 3.25  # device clock reading (s) at emulator start, on top of the counter
    emu = ShimmerEmulator(
        rate,
        clock_offset=offset,
        drift_ppm=40.0,
        # roll the 24-bit counter over ~1.5 s after the emulator starts
        start_counter=COUNTER_MODULUS - int((1.5 + offset) * TICKS_PER_SECOND),
        burst_ms=(10.0, 40.0),
        sync_pulse_times=(1.5, 3.0),
        seed=7,
    ).start()
    out = ShimmerOutlet(
        emu.port, device_id=uid, rate=rate, on_chunk=lambda *a: chunks.append(a)
    )
    inlet_result = None
    try:
        out.start()
        if with_inlet:
            inlet_result = _read_inlet(out, duration)
        assert wait_until(
            lambda: emu.packets_sent >= rate * duration, timeout=duration + 15
        )
    finally:
        out.stop()
        emu.close()
    ticks, stamps, data = (np.concatenate(x) for x in zip(*chunks, strict=True))
    return emu, out, ticks, stamps, data, inlet_result


def _read_inlet(out, duration):
    found = pylsl.resolve_byprop("source_id", out.source_id, timeout=10.0)
    assert len(found) == 1
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    info = inlet.info(timeout=5.0)
    inlet.open_stream(timeout=5.0)
    got_t = []
    wait_until(
        lambda: (
            got_t.append(inlet.pull_chunk(timeout=0.0)[1]) or sum(map(len, got_t)) > 100
        ),
        timeout=duration,
    )
    inlet.close_stream()
    return info, np.concatenate([np.asarray(t) for t in got_t])


def _match(emu, ticks):
    """Index of each received packet in the emulator's ground truth."""
    truth = emu.truth()
    counters = truth["counter"].astype(np.int64)
    j0 = int(np.flatnonzero(counters == ticks[0] % COUNTER_MODULUS)[0])
    absolute = ticks - ticks[0] + truth["ticks"][j0].astype(np.int64)
    idx = np.searchsorted(truth["ticks"], absolute)
    assert np.array_equal(truth["ticks"][idx], absolute)
    return truth, idx


def _check(emu, out, ticks, stamps, data, rate):
    truth, idx = _match(emu, ticks)
    n_sent = truth["lsl_time"].size
    received = np.unique(idx).size / n_sent
    assert received >= 0.999, f"{received:.4%} of {n_sent} packets"
    assert out.stats.lost == 0
    # the counter rolled over and was unwrapped
    assert (np.diff(truth["counter"]) < 0).sum() == 1
    assert (np.diff(ticks) == round(TICKS_PER_SECOND / rate)).all()
    # conversion vs ground truth
    gsr_err = np.abs(data[:, 0] / truth["gsr_us"][idx] - 1)
    kohm_err = np.abs(data[:, 1] / truth["gsr_kohm"][idx] - 1)
    assert gsr_err.max() <= 1e-3
    assert kohm_err.max() <= 1e-3
    assert np.unique(truth["gsr_range"]).size >= 2  # auto-ranging happened
    assert np.abs(data[:, 2] - truth["ppg_mv"][idx]).max() <= 0.5
    acc = np.column_stack([truth[f"accel_{a}"][idx] for a in "xyz"])
    assert np.abs(data[:, 3:6] - acc).max() <= 0.5 / 83 + 1e-4
    # LSL stamps vs the true sampling times
    t_true = truth["lsl_time"][idx]
    err = stamps - t_true
    steady = t_true >= t_true[0] + WARMUP_S
    p50, p99, mx = np.percentile(np.abs(err[steady]), [50, 99, 100])
    logger.info(
        "rate=%g received=%.4f%% (%d) gsr_err=%.4f%% stamp |err| p50=%.3f p99=%.3f "
        "max=%.3f ms (warm-up max %.3f ms) drift fit %.1f ppm",
        rate, 100 * received, n_sent, 100 * gsr_err.max(), 1e3 * p50, 1e3 * p99,
        1e3 * mx, 1e3 * np.abs(err[~steady]).max(), out.clock.fit.drift_ppm,
    )  # fmt: skip
    assert mx <= 0.002
    assert np.all(np.diff(stamps) > 0)
    # sync pulses: rising GSR steps land on the true pulse times
    edges = np.flatnonzero(np.diff(data[:, 0]) > 1.0) + 1
    pulses = emu.sync_pulse_lsl_times()
    assert edges.size == pulses.size == 2
    assert np.abs(stamps[edges] - pulses).max() <= 0.002


@pytest.mark.parametrize(
    ("rate", "duration"),
    [
        (128.0, 4.0),
        (512.0, 4.0),
        pytest.param(128.0, 20.0, marks=pytest.mark.slow),
        pytest.param(512.0, 20.0, marks=pytest.mark.slow),
    ],
)
def test_stream_packets_conversion_and_stamps(uid, rate, duration):
    emu, out, ticks, stamps, data, _ = _run(uid, rate, duration)
    _check(emu, out, ticks, stamps, data, rate)


def test_stream_metadata_through_inlet(uid):
    _, _, _, stamps, _, (info, inlet_t) = _run(uid, 128.0, 2.0, with_inlet=True)
    assert info.name() == f"shimmer_{uid}"
    assert info.type() == "GSR"
    assert info.source_id() == f"lsl_session/shimmer_{uid}"
    assert info.nominal_srate() == 128.0
    assert info.channel_count() == 6
    assert info.channel_format() == pylsl.cf_float32
    ch = info.desc().child("channels").child("channel")
    got = []
    while not ch.empty():
        got.append(
            (ch.child_value("label"), ch.child_value("unit"), ch.child_value("type"))
        )
        ch = ch.next_sibling()
    assert tuple(got) == CHANNELS
    # a reader mapping the lowercased type onto MNE's types (mne-lsl, mnextend)
    # gets one gsr channel (conductance, siemens) and the kΩ channel as misc
    from mne.io import get_channel_type_constants

    mne_types = set(get_channel_type_constants())
    mapped = {lbl: t.lower() if t.lower() in mne_types else "misc" for lbl, _, t in got}
    assert [lbl for lbl, t in mapped.items() if t == "gsr"] == ["gsr_conductance"]
    assert dict((lbl, u) for lbl, u, _ in got)["gsr_conductance"] == "microsiemens"
    assert mapped["gsr_resistance"] == "misc"
    acq = info.desc().child("acquisition")
    assert acq.child_value("manufacturer") == "Shimmer"
    assert acq.child_value("model") == "Shimmer3 GSR+"
    # the inlet sees exactly the device-clock stamps that were pushed
    assert inlet_t.size > 100
    assert np.isin(np.round(inlet_t, 9), np.round(stamps, 9)).all()


def test_stamps_of_a_burst_clamped_to_its_arrival_stay_strictly_increasing():
    from outlets.shimmer.outlet import MIN_STAMP_STEP, strictly_increasing

    # a burst of five packets all clamped to one arrival time, after a pushed stamp
    out = strictly_increasing(np.array([10.0, 10.0, 10.0, 9.0, 10.5]), after=10.0)
    assert np.all(np.diff(out) >= MIN_STAMP_STEP * 0.999)
    assert out[0] > 10.0 and out[-1] == pytest.approx(10.5 + 5 * MIN_STAMP_STEP)
    # stamps already increasing (by more than the step) are left as they are
    regular = 100.0 + np.arange(512) / 512
    assert np.allclose(strictly_increasing(regular, 0.0), regular, rtol=0, atol=1e-9)
