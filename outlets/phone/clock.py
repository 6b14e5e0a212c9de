"""Phone clock → LSL clock mapping from NTP-style four-timestamp exchanges (pure).

One exchange: the phone sends at ``t1`` (phone clock), the relay receives at
``t2`` and replies at ``t3`` (LSL ``local_clock``), the phone receives at ``t4``.
With θ(p) = LSL − phone at phone time p, the two one-way delays give

    up   = t2 − t1 = θ + d_up      ≥ θ + d_min_up
    down = t3 − t4 = θ − d_down    ≤ θ − d_min_down

so θ lies between the *lower envelope* of ``up`` and the *upper envelope* of
``down``. The estimator fits both envelopes with a shared slope (clock drift) over
a sliding window and takes their midpoint. Using each direction's envelope rather
than the midpoint of single low-RTT exchanges makes the estimate insensitive to
jitter (only the fastest packets of each direction matter, and they need not be in
the same exchange); the remaining error is half the difference of the two minimum
one-way delays, which no two-way method can observe.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncQuality:
    """Quality of the current phone → LSL fit (times in the stated units).

    Attributes
    ----------
    n : int
        Exchanges in the window.
    span_s : float
        Phone-time span of the window.
    offset_s : float
        LSL − phone time at the newest exchange.
    drift_ppm : float
        Phone clock rate relative to LSL, in parts per million (+ = phone fast).
    rtt_min_ms, rtt_median_ms : float
        Round-trip times (excluding the relay's turnaround).
    residual_ms : float
        RMS of the low-RTT exchange midpoints around the fit.
    uncertainty_ms : float
        Half the width of the band the envelopes allow (bound of the offset error
        when the minimum one-way delays are symmetric).
    resets : int
        Clock jumps detected (each resets the window).
    """

    n: int
    span_s: float
    offset_s: float
    drift_ppm: float
    rtt_min_ms: float
    rtt_median_ms: float
    residual_ms: float
    uncertainty_ms: float
    resets: int

    def as_dict(self) -> dict[str, float | int]:
        """Return the fields as a JSON-ready dict (rounded)."""
        return {
            k: (round(v, 6) if isinstance(v, float) else v)
            for k, v in asdict(self).items()
        }


class ClockEstimator:
    """Drift-aware phone → LSL mapping from four-timestamp exchanges.

    Parameters
    ----------
    window_s : float
        Phone-time length of the sliding window of exchanges.
    max_points : int
        Most exchanges kept.
    min_slope_span_s : float
        Below this window span the slope is not fitted (the previous slope, or 0,
        is used): a short window cannot tell drift from jitter.
    ready_after : int
        Exchanges needed before `ready` is true.
    max_rtt_s : float
        Exchanges with a longer (or negative) round trip are discarded.
    max_drift_ppm : float
        Fitted drift is clipped to ± this value.
    jump_tolerance_s : float
        A new exchange further than this (plus half its RTT) from the fit counts
        as a clock jump; three in a row reset the window.

    Notes
    -----
    Pure and single-threaded: the caller serialises `add` and `map`. All times are
    float seconds: phone times in the phone's clock, relay times in LSL
    ``local_clock``.
    """

    def __init__(
        self,
        *,
        window_s: float = 120.0,
        max_points: int = 2048,
        min_slope_span_s: float = 2.0,
        ready_after: int = 48,
        max_rtt_s: float = 1.0,
        max_drift_ppm: float = 1000.0,
        jump_tolerance_s: float = 0.02,
        prior_drift_ppm: float = 50.0,
    ) -> None:
        self.prior_drift = float(prior_drift_ppm) * 1e-6
        self.window_s = float(window_s)
        self.min_slope_span_s = float(min_slope_span_s)
        self.ready_after = int(ready_after)
        self.max_rtt_s = float(max_rtt_s)
        self.max_slope = float(max_drift_ppm) * 1e-6
        self.jump_tolerance_s = float(jump_tolerance_s)
        self._x: deque[float] = deque(maxlen=max_points)
        self._up: deque[float] = deque(maxlen=max_points)
        self._down: deque[float] = deque(maxlen=max_points)
        self._a = 0.0  # θ at x_ref
        self._b = 0.0  # dθ/dp
        self._x_ref = 0.0
        self._dirty = False
        self._fitted = False
        self._jumps: list[tuple[float, float, float]] = []
        self.resets = 0
        self.rejected = 0
        self._quality: SyncQuality | None = None

    #: Age penalty = this many slope standard deviations × age.
    BOUND_SIGMAS = 2.0

    def __len__(self) -> int:
        return len(self._x)

    # ----------------------------------------------------------------- input
    def add(self, t1: float, t2: float, t3: float, t4: float) -> bool:
        """Add one exchange; return False if it was rejected as implausible."""
        rtt = (t4 - t1) - (t3 - t2)
        if not all(map(math.isfinite, (t1, t2, t3, t4))) or not (
            0.0 <= rtt <= self.max_rtt_s and t3 >= t2
        ):
            self.rejected += 1
            return False
        x, up, down = 0.5 * (t1 + t4), t2 - t1, t3 - t4
        if self._fitted and len(self._x) >= self.ready_after:
            pred = self._a + self._b * (x - self._x_ref)
            if abs(0.5 * (up + down) - pred) > 0.5 * rtt + self.jump_tolerance_s:
                self._jumps.append((x, up, down))
                if len(self._jumps) < 3:
                    return True
                logger.warning(
                    "phone clock jumped by %.3f s; resetting the fit",
                    0.5 * (up + down) - pred,
                )
                self.reset(keep=self._jumps)
                self.resets += 1
                return True
            self._jumps.clear()
        if self._x and x < self._x[-1] - self.window_s:
            self.rejected += 1
            return False
        self._x.append(x)
        self._up.append(up)
        self._down.append(down)
        while self._x and self._x[0] < x - self.window_s:
            self._x.popleft()
            self._up.popleft()
            self._down.popleft()
        self._dirty = True
        return True

    def reset(self, keep: list[tuple[float, float, float]] | None = None) -> None:
        """Forget every exchange (e.g. the phone rebooted); keep ``keep`` if given."""
        for d in (self._x, self._up, self._down):
            d.clear()
        self._jumps = []
        self._fitted = False
        self._quality = None
        self._b = 0.0
        for x, up, down in keep or ():
            self._x.append(x)
            self._up.append(up)
            self._down.append(down)
        self._dirty = bool(self._x)

    # ---------------------------------------------------------------- output
    @property
    def ready(self) -> bool:
        """Whether enough exchanges were seen to map samples."""
        return len(self._x) >= self.ready_after

    def map(self, phone_times: np.ndarray | float) -> np.ndarray:
        """Map phone times to LSL times with the current fit (vectorised).

        Raises
        ------
        RuntimeError
            If no exchange was added yet.
        """
        self._refit()
        if not self._fitted:
            raise RuntimeError("no clock exchanges yet")
        p = np.asarray(phone_times, dtype=np.float64)
        return p + (self._a + self._b * (p - self._x_ref))

    def quality(self) -> SyncQuality | None:
        """Return the quality of the current fit, or None before any exchange."""
        self._refit()
        return self._quality

    # ------------------------------------------------------------------- fit
    def _refit(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        x = np.fromiter(self._x, dtype=np.float64)
        up = np.fromiter(self._up, dtype=np.float64)
        down = np.fromiter(self._down, dtype=np.float64)
        n = len(x)
        if n == 0:
            return
        x_ref = x[-1]
        xr = x - x_ref
        rtt = up - down
        mid = 0.5 * (up + down)
        span = float(xr.max() - xr.min())
        low = rtt <= np.quantile(rtt, 0.5)
        b, sigma = 0.0, self.prior_drift
        if span >= self.min_slope_span_s and n >= 8:
            for _ in range(2):
                est, err = _block_slope(xr, up, down, b, span)
            # Combine with the prior N(0, prior²) on the drift.
            w = 1.0 / err**2 + 1.0 / self.prior_drift**2
            b = float(np.clip(est / err**2 / w, -self.max_slope, self.max_slope))
            sigma = float(w**-0.5)
        self._b = b
        phi = self.BOUND_SIGMAS * sigma
        age = -xr
        ru = float(np.min(up - b * xr + phi * age))
        rd = float(np.max(down - b * xr - phi * age))
        a = 0.5 * (ru + rd)
        self._a, self._b, self._x_ref, self._fitted = float(a), float(b), x_ref, True
        res = mid[low] - (a + b * xr[low])
        self._quality = SyncQuality(
            n=n,
            span_s=span,
            offset_s=float(a),
            drift_ppm=float((1.0 / (1.0 + b) - 1.0) * 1e6),
            rtt_min_ms=float(rtt.min() * 1e3),
            rtt_median_ms=float(np.median(rtt) * 1e3),
            residual_ms=float(np.sqrt(np.mean(res**2)) * 1e3),
            uncertainty_ms=float(0.5 * (ru - rd) * 1e3),
            resets=self.resets,
        )


def _block_slope(
    x: np.ndarray, up: np.ndarray, down: np.ndarray, b0: float, span: float
) -> tuple[float, float]:
    """Estimate the slope from the envelope extremes of the first and last third.

    Returns (slope, standard error). The error is estimated from the gap between
    the best and fifth-best point of each block (the scale of the envelope
    noise) divided by the baseline.
    """
    lo, hi = x.min(), x.max()
    first = x <= lo + span / 3
    last = x >= hi - span / 3
    slopes, noise, base = [], [], []
    for y in (up - b0 * x, -(down - b0 * x)):
        ends = []
        for sel in (first, last):
            ys, xs = y[sel], x[sel]
            if len(ys) < 2:
                return b0, 1.0
            k = min(5, len(ys))
            best = np.argpartition(ys, k - 1)[:k]
            i = best[np.argmin(ys[best])]
            ends.append((xs[i], ys[i]))
            # Mean gap between the k best points ~ the scale of the min's noise.
            noise.append(float(ys[best].max() - ys[i]) / (k - 1))
        (x1, y1), (x3, y3) = ends
        dx = max(float(x3 - x1), span / 3)
        slopes.append((y3 - y1) / dx)
        base.append(dx)
    slope = b0 + 0.5 * (slopes[0] - slopes[1])
    err = max(float(np.mean(noise)) / min(base), 1e-7)
    return float(slope), err
