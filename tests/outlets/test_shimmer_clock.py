"""Pure tests of counter unwrapping and the device → LSL clock fit (simulated time)."""

from __future__ import annotations

import numpy as np
import pytest

from outlets.shimmer.clock import (
    COUNTER_MODULUS,
    ClockMapper,
    CounterUnwrapper,
    count_lost,
)


def test_unwrap_across_batches_and_rollovers():
    ticks = np.arange(COUNTER_MODULUS - 1000, 3 * COUNTER_MODULUS, 256, dtype=np.int64)
    raw = ticks % COUNTER_MODULUS
    uw = CounterUnwrapper()
    parts = [uw.unwrap(chunk) for chunk in np.array_split(raw, 37)]
    out = np.concatenate(parts)
    assert np.array_equal(out - out[0], ticks - ticks[0])
    assert uw.unwrap([]).size == 0
    uw.reset()
    assert uw.last is None


def test_count_lost():
    t = np.array([0, 256, 512, 1280, 1536])  # 2 missing between 512 and 1280
    assert count_lost(t, 256) == 2
    assert count_lost(t[1:], 256, previous=0) == 2
    assert count_lost([5], 256) == 0


def _simulate(hours, drift_ppm, rate=128.0, burst=(0.010, 0.040), seed=1):
    """Device sampling at ``rate`` with a drifting clock, bursty delivery."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate)
    true_t = 1000.0 + np.arange(n) / rate  # host time of sampling
    dev_s = 17.0 + (true_t - 1000.0) * (1 + drift_ppm * 1e-6)  # device seconds
    # bursts: send times every U(10, 40) ms; a sample leaves at the next send
    sends = 1000.0 + np.cumsum(rng.uniform(*burst, size=int(n / rate / 0.01) + 10))
    sent = sends[np.searchsorted(sends, true_t)]
    arrival = sent + 0.0002 + rng.exponential(0.0005, n)  # transport + jitter
    spikes = rng.random(n) < 0.01  # scheduler hiccups
    arrival[spikes] += rng.uniform(0.005, 0.05, spikes.sum())
    return true_t, dev_s, arrival


@pytest.mark.parametrize(
    ("hours", "drift_ppm", "rate", "step"),
    [(0.05, 0.0, 128.0, 6), (0.05, 300.0, 128.0, 6), (2.0, 50.0, 51.2, 51),
     (2.0, -80.0, 51.2, 51)],
)  # fmt: skip
def test_clock_fit_tracks_drift(hours, drift_ppm, rate, step):
    # step: samples per update (the outlet pushes every ~50 ms; hours use 1-s steps)
    true_t, dev_s, arrival = _simulate(hours, drift_ppm, rate=rate)
    cm = ClockMapper(window_s=60.0)
    errors = []
    for i in range(0, dev_s.size, step):
        sl = slice(i, i + step)
        cm.update(dev_s[sl], arrival[sl])
        stamps = np.minimum(cm.map(dev_s[sl]), arrival[sl])
        errors.append(stamps - true_t[sl])
    err = np.concatenate(errors)[int(rate) :]  # skip the first second (warm-up)
    assert np.abs(err).max() < 0.002
    assert np.median(err) == pytest.approx(0.0, abs=0.001)
    if hours > 1:
        assert cm.fit.drift_ppm == pytest.approx(-drift_ppm, abs=20.0)


def test_clock_mapper_reset_and_errors():
    cm = ClockMapper()
    with pytest.raises(RuntimeError):
        cm.map([0.0])
    cm.update([10.0, 10.1], [5.0, 5.1])
    assert cm.map([10.0])[0] == pytest.approx(5.0)
    cm.update([1.0], [6.0])  # device time went backwards: new epoch
    assert cm.map([1.0])[0] == pytest.approx(6.0)
