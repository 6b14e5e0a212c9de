"""The clock estimator in simulated time: offset, drift, jitter, queues, steps."""

from __future__ import annotations

import numpy as np
import pytest

from lsl_session.clocksync import PiecewiseMapping, fit_offline
from outlets.phone.clock import ClockEstimator
from outlets.phone.netsim import Scenario, max_batch_step
from outlets.phone.netsim import simulate as simulate_net


def simulate(
    *,
    duration: float,
    offset: float,
    drift_ppm: float,
    up=(1.0, 30.0),
    down=(1.0, 30.0),
    seed: int = 0,
    interval: float = 1.0,
    burst: int = 16,
    step: float = 0.1,
    dist: str = "uniform",
) -> tuple[np.ndarray, ClockEstimator]:
    """Run the relay's sync schedule in simulated time; return |errors| (ms).

    Samples are mapped every ``step`` seconds with the fit available then, as
    the relay does; samples before the fit is ready are mapped at ready time.
    """
    rng = np.random.default_rng(seed)
    d, t0 = drift_ppm * 1e-6, 5000.0

    def clock(t):
        return (t + offset) * (1 + d)

    def delay(lo_hi):
        lo, hi = (x * 1e-3 for x in lo_hi)
        if dist == "uniform":
            return rng.uniform(lo, hi)
        x = lo + rng.exponential((hi - lo) / 6)
        return min(x, hi)

    sends = list(t0 + np.arange(64) * 0.01)
    t = t0 + 0.64
    while t < t0 + duration:
        t += interval
        sends += list(t + np.arange(burst) * 0.01)
    exchanges = []
    for ts in sends:
        t2 = ts + delay(up)
        t3 = t2 + 50e-6
        arrive = t3 + delay(down)
        exchanges.append((arrive, clock(ts), t2, t3, clock(arrive)))
    exchanges.sort()
    est = ClockEstimator()
    errors, pending, i = [], [], 0
    for now in np.arange(t0, t0 + duration, step):
        while i < len(exchanges) and exchanges[i][0] <= now:
            est.add(*exchanges[i][1:])
            i += 1
        pending.append(now - step + np.arange(10) * step / 10)
        if est.ready:
            for true in pending:
                errors.append(est.map(clock(true)) - true)
            pending = []
    return np.abs(np.concatenate(errors)) * 1e3, est


@pytest.mark.parametrize(
    ("offset", "drift"), [(3600, 50), (-3600, -50), (0.5, 0), (-3600, 50)]
)
def test_offset_and_drift_with_jitter(offset, drift):
    err, est = simulate(
        duration=60, offset=offset, drift_ppm=drift, seed=abs(drift) + 1
    )
    assert np.percentile(err, 50) < 0.5
    assert np.percentile(err, 99) < 2.0
    q = est.quality()
    assert q.drift_ppm == pytest.approx(drift, abs=10)
    assert q.n > 100
    assert q.rtt_min_ms >= 2.0  # two one-way delays of at least 1 ms


def test_hours_of_drift_converge():
    err, est = simulate(
        duration=2 * 3600, offset=3600, drift_ppm=-50, interval=2.0, step=5.0, seed=7
    )
    late = err[len(err) // 10 :]
    assert np.percentile(late, 50) < 0.3
    assert np.percentile(late, 99) < 1.0
    assert est.quality().drift_ppm == pytest.approx(-50, abs=10)


def test_asymmetric_jitter_spread_is_not_a_bias():
    # Same 1 ms floor, very different spreads: the envelopes only see the floors.
    err, _ = simulate(duration=60, offset=100, drift_ppm=20, up=(1, 30), down=(1, 5))
    assert np.percentile(err, 50) < 0.5


def test_asymmetric_floors_bias_by_half_the_difference():
    # Unobservable by any two-way method: (4 ms - 1 ms) / 2 = 1.5 ms.
    err, _ = simulate(
        duration=60, offset=0, drift_ppm=0, up=(4, 10), down=(1, 7), dist="wifi"
    )
    assert np.median(err) == pytest.approx(1.5, abs=0.3)


def test_not_ready_and_unfitted():
    est = ClockEstimator(ready_after=3, ready_span_s=1.0)
    assert not est.ready
    assert est.quality() is None
    with pytest.raises(RuntimeError):
        est.map(1.0)
    for k in range(3):
        est.add(10.0 + k, 20.001 + k, 20.0011 + k, 10.002 + k)
    assert est.ready
    assert float(est.map(10.0)) == pytest.approx(20.0, abs=0.002)


@pytest.mark.parametrize(
    "exchange",
    [
        (1.0, 2.0, 2.0, 0.9),
        (1.0, 2.0, 1.9, 1.5),
        (1.0, 2.0, 2.1, 9.0),
        (np.nan, 2.0, 2.0, 1.1),
    ],
)
def test_implausible_exchanges_are_rejected(exchange):
    est = ClockEstimator()
    assert not est.add(*exchange)
    assert len(est) == 0


def test_clock_jump_resets_the_window():
    est = ClockEstimator(ready_after=8)
    for k in range(50):
        p = 100.0 + k * 0.1
        est.add(p, p + 1000.001, p + 1000.0011, p + 0.002)
    assert float(est.map(105.0)) == pytest.approx(1105.0, abs=1e-3)
    for k in range(5):  # phone clock jumps forward by 10 s
        p = 110.0 + 5.0 + k * 0.1
        est.add(p + 10, p + 1000.001, p + 1000.0011, p + 10.002)
    assert est.resets == 1
    assert float(est.map(125.5)) == pytest.approx(1115.5, abs=2e-3)


# ------------------------------------------------- delay models that happen
# (outlets.phone.netsim: FIFO/head-of-line links, stalls, a clock step; the
# relay's schedule, 100 Hz samples in 100 ms batches on the same link)
LOOP = {"delay_ms": (0.05, 0.05)}
FIFO = {"delay_ms": (1, 30), "fifo": True}
STALLS = {"stall_rate": 0.5, "stall_ms": (20, 80)}
SCENARIOS = {
    "fifo_up_only": Scenario("up", FIFO, LOOP, expected_bias_ms=0.475),
    "fifo_down_only": Scenario("down", LOOP, FIFO, expected_bias_ms=-0.475),
    "fifo_both": Scenario("both", FIFO, FIFO, offset=-3600, drift_ppm=-50),
    "fifo_both_stalls": Scenario("stalls", {**FIFO, **STALLS}, {**FIFO, **STALLS}),
    "fifo_up_stalls": Scenario(
        "up stalls", {**FIFO, **STALLS}, LOOP, expected_bias_ms=0.475
    ),
    "asym_floors": Scenario(
        "floors", {**FIFO, "delay_ms": (3, 30)}, FIFO, expected_bias_ms=1.0
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_live_mapping_under_queued_delays(name):
    sc = SCENARIOS[name]
    res = simulate_net(sc, ClockEstimator, duration=60, seed=3)
    err = np.abs(res.errors) * 1e3
    assert np.percentile(err, 99) <= 2.0 + max(0.0, abs(sc.expected_bias_ms) - 0.5)
    # the bias left is the unobservable half floor difference
    signed = res.errors * 1e3
    assert np.median(signed) == pytest.approx(sc.expected_bias_ms, abs=0.4)
    assert max_batch_step(res) <= 1e-3  # never a visible jump between batches


@pytest.mark.parametrize("name", ["fifo_both", "fifo_both_stalls"])
def test_offline_fit_under_queued_delays(name):
    res = simulate_net(SCENARIOS[name], ClockEstimator, duration=60, seed=4)
    off = np.abs(fit_offline(res.exchanges)(res.phone_t) - res.true_t) * 1e3
    live = np.abs(res.errors) * 1e3
    assert np.percentile(off, 99) <= 0.5
    assert np.percentile(off, 50) < np.percentile(live, 50)


def test_offline_fit_one_direction_is_held_at_the_unobservable_bias():
    sc = SCENARIOS["fifo_up_only"]
    res = simulate_net(sc, ClockEstimator, duration=60, seed=5)
    off = (fit_offline(res.exchanges)(res.phone_t) - res.true_t) * 1e3
    assert np.percentile(np.abs(off - sc.expected_bias_ms), 99) <= 0.2


@pytest.mark.parametrize("step", [0.1, -0.02, 2.0])
def test_clock_step_is_detected_logged_and_refitted(step, caplog):
    sc = Scenario("step", FIFO, FIFO, step_s=step, step_at=30.0)
    with caplog.at_level("WARNING", logger="outlets.phone.clock"):
        res = simulate_net(sc, ClockEstimator, duration=45, seed=6)
    est = res.estimator
    assert est.resets == 1
    assert any("phone clock stepped" in r.message for r in caplog.records)
    assert 0 < res.step_detected_at - sc.step_at <= 2.0
    t = res.true_t - 20000.0
    after = np.abs(res.errors[t > res.step_detected_at]) * 1e3
    assert np.percentile(after, 99) <= 2.0
    before = np.abs(res.errors[t < sc.step_at]) * 1e3
    assert np.percentile(before, 99) <= 2.0
    off = np.abs(fit_offline(res.exchanges)(res.phone_t) - res.true_t) * 1e3
    assert np.percentile(off, 99) <= 0.5


def test_a_lone_impossible_exchange_is_not_a_step():
    est = ClockEstimator(ready_after=8)
    for k in range(200):
        p = 100.0 + k * 0.0625
        est.add(p, p + 1000.001, p + 1000.0011, p + 0.002)
    p = 100.0 + 200 * 0.0625
    est.add(p, p + 999.990, p + 999.9901, p + 0.002)  # up 10 ms below θ: impossible
    for k in range(201, 260):
        p = 100.0 + k * 0.0625
        est.add(p, p + 1000.001, p + 1000.0011, p + 0.002)
    assert est.resets == 0
    assert float(est.map(115.0)) == pytest.approx(1115.0, abs=1e-4)


@pytest.mark.parametrize("step", [0.0, 0.05, -0.05])
def test_published_knots_reproduce_every_mapped_stamp(step):
    sc = Scenario("knots", {**FIFO, **STALLS}, {**FIFO, **STALLS}, step_s=step,
                  step_at=20.0)  # fmt: skip
    res = simulate_net(sc, ClockEstimator, duration=40, seed=7)
    knots = res.estimator.drain_knots(final=True)
    mapping = PiecewiseMapping(
        np.array([k["phone_time"] for k in knots]),
        np.array([k["offset_s"] for k in knots]),
        np.array([k["slope"] for k in knots]),
    )
    mapped = res.true_t + res.errors
    # the knots are the whole story: nothing was re-mapped after the fact
    np.testing.assert_allclose(mapping(res.phone_t), mapped, rtol=0, atol=1e-9)
    # one stream's stamps in order: its phone times only grow (the relay's
    # duplicate filter), which settles stamps made just before a step's knot
    order = np.argsort(res.phone_t, kind="stable")
    back = mapping.invert(mapped[order], ordered=True)
    wrong = np.abs(back - res.phone_t[order]) > 1e-9
    # at a step, the first sample stamped with the old segment can look like the
    # first of the new one (order cannot tell them apart): at most one per step
    assert wrong.sum() <= (1 if step else 0)
    assert all(np.diff([k["phone_time"] for k in knots]) >= 0)
    assert sum(k["step"] for k in knots) == (1 if step else 0)
    assert all(0 < k["uncertainty_s"] == 0.5 * k["rtt_min_s"] for k in knots)
