"""Network delay models for the phone link, and a simulated-time relay session.

`Link` is one direction of the phone ⇄ relay path. Each message gets a base delay
(uniform over a range, or "wifi": the floor plus an exponential tail); on top:

- ``fifo``: in-order delivery, as TCP does: a message never arrives before the one
  sent before it (head-of-line blocking), so a slow message delays the next ones;
- stalls: at random times (Poisson, ``stall_rate`` per second) the link delivers
  nothing for ``stall_ms`` (Wi-Fi retransmissions, power save); whatever would
  arrive during a stall arrives at its end, in order.

`simulate` runs the relay's clock estimator in simulated time with the sync
schedule, sample batches and heartbeats of a phone sharing one FIFO link per
direction, an optional phone clock step, and returns every mapped sample's error.
It is used by ``benchmarks/phone_sync_accuracy.py`` and the estimator's tests; the
phone simulator uses `Link` for its (virtual) delays.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class Link:
    """One direction of a network path (see the module docstring).

    Parameters
    ----------
    delay_ms : tuple of float
        ``(lo, hi)`` base one-way delay in ms.
    dist : {"uniform", "wifi"}
        Uniform over ``[lo, hi]``, or ``lo`` plus an exponential tail with mean a
        sixth of the range, redrawn above ``hi``.
    fifo : bool
        Deliver in order (TCP): arrival ≥ the previous message's arrival.
    stall_rate : float
        Stalls per second (0: none).
    stall_ms : tuple of float
        Range of a stall's length in ms.
    seed : int | None
        Random seed.

    Notes
    -----
    `delay` must be called in order of send time (it keeps the queue state).
    """

    def __init__(
        self,
        delay_ms: tuple[float, float] = (1.0, 30.0),
        *,
        dist: str = "uniform",
        fifo: bool = False,
        stall_rate: float = 0.0,
        stall_ms: tuple[float, float] = (20.0, 80.0),
        seed: int | None = None,
    ) -> None:
        if dist not in ("uniform", "wifi"):
            raise ValueError(f"dist must be 'uniform' or 'wifi', got {dist!r}")
        self.lo, self.hi = (float(v) * 1e-3 for v in delay_ms)
        if self.hi < self.lo:
            raise ValueError(f"delay range {delay_ms} is empty")
        self.dist, self.fifo = dist, bool(fifo)
        self.stall_rate = float(stall_rate)
        self.stall_len = tuple(float(v) * 1e-3 for v in stall_ms)
        self._rng = np.random.default_rng(seed)
        self._last = -np.inf
        self._stalls: list[tuple[float, float]] = []
        self._stall_clock: float | None = None

    def _base(self) -> float:
        lo, hi = self.lo, self.hi
        if hi <= lo:
            return lo
        if self.dist == "uniform":
            return float(self._rng.uniform(lo, hi))
        while True:
            d = lo + float(self._rng.exponential((hi - lo) / 6))
            if d <= hi:
                return d

    def _stall_end(self, t: float) -> float:
        """End of the stall covering ``t`` (or ``t`` if none)."""
        if self.stall_rate <= 0:
            return t
        if self._stall_clock is None:
            self._stall_clock = t
        while self._stall_clock <= t:
            start = self._stall_clock + float(
                self._rng.exponential(1 / self.stall_rate)
            )
            length = float(self._rng.uniform(*self.stall_len))
            self._stalls.append((start, start + length))
            self._stall_clock = start + length
        while self._stalls and self._stalls[0][1] < t - 10.0:
            self._stalls.pop(0)
        for a, b in self._stalls:
            if a <= t < b:
                return b
        return t

    def delay(self, t: float) -> float:
        """One-way delay of a message sent at ``t`` (seconds)."""
        arrival = self._stall_end(t + self._base())
        if self.fifo:
            arrival = max(arrival, self._last + 20e-6)
        self._last = max(self._last, arrival)
        return arrival - t


@dataclass
class Scenario:
    """A delay model for both directions plus clock parameters."""

    name: str
    up: dict = field(default_factory=dict)  # Link kwargs for phone → relay
    down: dict = field(default_factory=dict)  # Link kwargs for relay → phone
    offset: float = 3600.0
    drift_ppm: float = 50.0
    step_s: float = 0.0  # phone clock step (s) at ``step_at`` s into the run
    step_at: float = 40.0
    #: Unobservable bias: half the difference of the minimum one-way delays (ms).
    expected_bias_ms: float = 0.0


@dataclass
class SimResult:
    """What `simulate` measured (times in seconds unless stated)."""

    true_t: np.ndarray  # true LSL time of every mapped sample, in push order
    errors: np.ndarray  # mapped − true
    batch: np.ndarray  # batch number of every sample
    exchanges: np.ndarray  # (n, 4) every completed exchange t1, t2, t3, t4
    phone_t: np.ndarray  # phone time of every mapped sample
    estimator: object
    step_detected_at: float | None = None  # true time the step was re-fitted


def simulate(
    scenario: Scenario,
    make_estimator: Callable[[], object],
    *,
    duration: float = 120.0,
    seed: int = 0,
    schedule: dict | None = None,
    rate: float = 100.0,
    batch_s: float = 0.1,
    turnaround: float = 50e-6,
) -> SimResult:
    """Run one phone session in simulated time (see the module docstring).

    The phone stamps ``t1`` when it queues a request (before the link delay, as an
    app with its own send queue does) and ``t4`` when the reply arrives; the relay
    stamps ``t2``/``t3`` on arrival/reply. Samples are generated at ``rate`` and
    sent every ``batch_s`` on the same up link; the relay maps each batch with
    the estimator's mapping when it arrives (held until ``ready``).
    """
    from outlets.phone.relay import SYNC_SCHEDULE

    sched = dict(SYNC_SCHEDULE, **(schedule or {}))
    rng = np.random.default_rng(seed)
    up = Link(**{"seed": int(rng.integers(1 << 31)), **scenario.up})
    down = Link(**{"seed": int(rng.integers(1 << 31)), **scenario.down})
    d, t0 = scenario.drift_ppm * 1e-6, 20000.0
    step_t = t0 + scenario.step_at

    def clock(t):
        stepped = np.where(np.asarray(t) >= step_t, scenario.step_s, 0.0)
        return (np.asarray(t) + scenario.offset) * (1 + d) + stepped

    est = make_estimator()
    events: list[tuple[float, int, str, tuple]] = []
    order = iter(range(1 << 62))

    def at(t: float, kind: str, *data) -> None:
        heapq.heappush(events, (t, next(order), kind, data))

    # phone sends, in time order: sync requests and sample batches
    spacing = float(sched["spacing_ms"]) * 1e-3
    first = float(sched.get("initial_spacing_ms", sched["spacing_ms"])) * 1e-3
    for k in range(int(sched["initial_burst"])):
        at(t0 + k * first, "send_req")
    t = t0 + int(sched["initial_burst"]) * first
    while t < t0 + duration:
        t += float(sched["interval_s"])
        for k in range(int(sched["burst"])):
            at(t + k * spacing, "send_req")
    n_per = round(batch_s * rate)
    for k in range(1, int(duration / batch_s)):
        at(t0 + k * batch_s, "send_batch", k)
    pending: list[tuple[int, np.ndarray]] = []
    out_true, out_err, out_batch, out_phone = [], [], [], []
    exchanges = []
    resets0 = getattr(est, "resets", 0)
    detected = None
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "send_req":
            at(now + up.delay(now), "relay_req", float(clock(now)))
        elif kind == "relay_req":
            t2 = now
            t3 = now + turnaround
            at(t3 + down.delay(t3), "phone_resp", data[0], t2, t3)
        elif kind == "phone_resp":
            t1, t2, t3 = data
            t4 = float(clock(now))
            send = now + 20e-6
            at(send + up.delay(send), "relay_done", t1, t2, t3, t4)
        elif kind == "relay_done":
            exchanges.append(data)
            est.add(*data)
            if detected is None and getattr(est, "resets", 0) > resets0:
                detected = now
        elif kind == "send_batch":
            k = data[0]
            true = t0 + (k - 1) * batch_s + np.arange(n_per) / rate
            at(now + up.delay(now), "relay_batch", k, true)
        elif kind == "relay_batch":
            pending.append(data)
            if est.ready:
                for k, true in pending:
                    p = clock(true)
                    mapped = est.map(p)
                    out_true.append(true)
                    out_phone.append(p)
                    out_err.append(mapped - true)
                    out_batch.append(np.full(len(true), k))
                pending = []
    cat = np.concatenate
    return SimResult(
        true_t=cat(out_true),
        errors=cat(out_err),
        batch=cat(out_batch),
        exchanges=np.asarray(exchanges, dtype=np.float64),
        phone_t=cat(out_phone),
        estimator=est,
        step_detected_at=None if detected is None else detected - t0,
    )


def max_batch_step(
    result: SimResult, exclude: tuple[float, float] | None = None
) -> float:
    """Largest change of the mapping error between consecutive batches (s).

    ``exclude`` is a (start, end) range of true times (s since the run start of
    ``t0``) left out, e.g. around a detected clock step.
    """
    err, batch, true = result.errors, result.batch, result.true_t
    last = np.flatnonzero(np.diff(batch) != 0)
    jumps = np.abs(err[last + 1] - err[last])
    if exclude is not None:
        t = true[last + 1] - 20000.0
        jumps = jumps[(t < exclude[0]) | (t > exclude[1])]
    return float(jumps.max()) if jumps.size else 0.0
