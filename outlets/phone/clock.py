"""Live phone clock → LSL clock mapping from four-timestamp exchanges (pure).

The envelope fit itself is `lsl_session.clocksync.fit_window` (shared with the
offline re-mapping of ``process``): over a sliding window, θ = LSL − phone time
lies between the lower envelope of ``up = t2 − t1`` and the upper envelope of
``down = t3 − t4``, whatever queueing did to the other exchanges, so only the
fastest exchange of each direction matters (LSL's ``time_correction`` keeps its
minimum-RTT probe for the same reason).

On top of the fit this module adds what a live mapping needs:

- **clock steps**: by causality ``up ≥ θ ≥ down`` for every exchange, so an
  exchange whose ``[down, up]`` misses the current band by more than 1 ms is
  impossible for a continuous clock. Two such violations of the same sign within
  2 s are a step: it is logged, the window restarts at the first violation and
  the mapping follows at once. A lone violation is dropped.
- **slewing**: the published mapping is a continuous piecewise-linear function
  of phone time (`lsl_session.clocksync.PiecewiseMapping`). A new knot is placed
  at or after every phone time already mapped, so no sample is ever re-mapped;
  its slope moves the mapping toward the latest fit at most ``max_slew`` (2 ms
  per second), so consecutive batches never see a jump (except at a step).
  Every knot is kept in `knots` for the ``<device>_clock`` stream.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from lsl_session.clocksync import MAX_RTT_S, PiecewiseMapping, WindowFit, fit_window

logger = logging.getLogger(__name__)

#: Knots kept for live mapping (at 4 per second: the last ~2 minutes).
LIVE_KNOTS = 512

#: Channels of a knot record (the ``<device>_clock`` stream), in order.
KNOT_FIELDS = (
    "phone_time",
    "offset_s",
    "slope",
    "fit_offset_s",
    "fit_slope",
    "slope_err",
    "uncertainty_s",
    "band_s",
    "exchanges_used",
    "rtt_min_s",
    "resets",
    "step",
)


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
        LSL − phone time of the fit at the newest exchange.
    drift_ppm : float
        Phone clock rate relative to LSL, in parts per million (+ = phone fast).
    rtt_min_ms, rtt_median_ms : float
        Round-trip times (excluding the relay's turnaround).
    residual_ms : float
        RMS of the low-RTT exchange midpoints around the fit.
    uncertainty_ms : float
        Half the best round trip in the window: the classical bound of the
        offset error (the envelopes are usually much tighter, see ``band_ms``).
    band_ms : float
        Half the width of the band the two envelopes leave.
    resets : int
        Clock steps detected (each restarts the window).
    """

    n: int
    span_s: float
    offset_s: float
    drift_ppm: float
    rtt_min_ms: float
    rtt_median_ms: float
    residual_ms: float
    uncertainty_ms: float
    band_ms: float
    resets: int

    def as_dict(self) -> dict[str, float | int]:
        """Return the fields as a JSON-ready dict (rounded)."""
        return {
            k: (round(v, 6) if isinstance(v, float) else v)
            for k, v in asdict(self).items()
        }


class ClockEstimator:
    """Drift-aware, slewed phone → LSL mapping from four-timestamp exchanges.

    Parameters
    ----------
    window_s : float
        Phone-time length of the sliding window of exchanges.
    max_points : int
        Most exchanges kept.
    ready_after : int
        Exchanges needed before `ready` is true (with at least ``ready_span_s``
        of phone time, or twice as many).
    ready_span_s : float
        Phone-time span the window must also cover before `ready` (or hold twice
        the exchanges needed).
    after_step : int
        Exchanges needed after a clock step (samples are held meanwhile, so
        they get the new fit rather than one from a handful of exchanges).
    max_rtt_s : float
        Exchanges with a longer (or negative) round trip are discarded.
    step_tolerance_s : float
        How far an exchange may miss the band before it counts as a violation.
    max_slew : float
        Rate at which the published mapping moves toward the fit (s per s).
    knot_interval_s : float
        Least phone time between two knots.

    Notes
    -----
    Pure and single-threaded: the caller serialises `add` and `map`.
    """

    def __init__(
        self,
        *,
        window_s: float = 120.0,
        max_points: int = 2400,
        ready_after: int = 32,
        max_rtt_s: float = MAX_RTT_S,
        step_tolerance_s: float = 1e-3,
        max_slew: float = 2e-3,
        knot_interval_s: float = 0.25,
        after_step: int = 24,
        ready_span_s: float = 3.0,
        max_knots: int = 100_000,
    ) -> None:
        self.window_s = float(window_s)
        self.ready_after = int(ready_after)
        self.max_rtt_s = float(max_rtt_s)
        self.step_tolerance_s = float(step_tolerance_s)
        self.max_slew = float(max_slew)
        self.knot_interval_s = float(knot_interval_s)
        self.after_step = int(after_step)
        self.ready_span_s = float(ready_span_s)
        self._x: deque[float] = deque(maxlen=max_points)
        self._up: deque[float] = deque(maxlen=max_points)
        self._down: deque[float] = deque(maxlen=max_points)
        self._fit: WindowFit | None = None
        self._dirty = False
        self._slope = 0.0
        self._slope_err: float | None = None
        self._need = self.ready_after
        self._suspect: list[tuple[float, float, float]] = []
        self._before_suspect = -math.inf
        self._suspect_sign = 0
        self._step_pending = False
        # the last knots of the published mapping; the first `_emitted` of them
        # are final and were also put in `knots`
        self._live: list[dict[str, float]] = []
        self._emitted = 0
        self._knotted: WindowFit | None = None
        self._last_knot_p = -math.inf
        self._p_hi = -math.inf
        self._mapping: PiecewiseMapping | None = None
        #: Every knot as a dict of `KNOT_FIELDS` (bounded by ``max_knots``).
        self.knots: deque[dict[str, float]] = deque(maxlen=max_knots)
        self.resets = 0
        self.rejected = 0

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
        if self._x and x < self._x[-1] - self.window_s:
            self.rejected += 1
            return False
        sign = self._violation(x, up, down)
        if self._suspect and x - self._suspect[0][0] > 2.0:
            self._suspect, self._suspect_sign = [], 0  # a lone violation: dropped
        if sign:
            if self._suspect and sign == self._suspect_sign:
                self._suspect.append((x, up, down))
                self._clock_step()
                return True
            self._suspect, self._suspect_sign = [(x, up, down)], sign
            self._before_suspect = self._x[-1] if self._x else -math.inf
            return True
        if self._suspect:
            self._suspect.append((x, up, down))
        self._append(x, up, down)
        return True

    def _append(self, x: float, up: float, down: float) -> None:
        self._x.append(x)
        self._up.append(up)
        self._down.append(down)
        while self._x and self._x[0] < x - self.window_s:
            self._x.popleft()
            self._up.popleft()
            self._down.popleft()
        self._dirty = True

    def _violation(self, x: float, up: float, down: float) -> int:
        """-1: θ fell (phone clock stepped forward), +1: θ rose, 0: consistent."""
        if self._dirty and (self._fit is None or x - self._fit.ref > 1.0):
            self._refit()  # else the fit of up to 1 s ago will do
        f = self._fit
        if f is None or len(self._x) < self._need:
            return 0
        theta = float(f.theta(x))
        tol = self.step_tolerance_s + 2 * f.slope_err * abs(x - f.ref)
        if up < theta - f.band - tol:
            return -1
        if down > theta + f.band + tol:
            return 1
        return 0

    def _clock_step(self) -> None:
        keep = self._suspect
        jump = 0.5 * (keep[-1][1] + keep[-1][2]) - float(self._fit.theta(keep[-1][0]))
        logger.warning(
            "phone clock stepped by %+.1f ms; re-fitting from the new exchanges",
            -jump * 1e3,
        )
        self.resets += 1
        self.reset(keep=keep)
        self._need = self.after_step
        self._step_pending = True

    def reset(self, keep: list[tuple[float, float, float]] | None = None) -> None:
        """Forget every exchange (e.g. the phone rebooted); keep ``keep`` if given.

        The drift estimate is kept (a clock step does not change the rate).
        """
        for d in (self._x, self._up, self._down):
            d.clear()
        self._suspect, self._suspect_sign = [], 0
        self._fit = None
        for x, up, down in keep or ():
            self._append(x, up, down)
        self._dirty = bool(self._x)

    # ---------------------------------------------------------------- output
    @property
    def ready(self) -> bool:
        """Whether enough exchanges over a long enough span were seen to map samples.

        Before that the relay holds the phone's samples: a fit from the first
        second of a queued link can be a few ms off.
        """
        n = len(self._x)
        if n < self._need:
            return False
        return n >= 2 * self._need or self._x[-1] - self._x[0] >= self.ready_span_s

    def map(self, phone_times: np.ndarray | float) -> np.ndarray:
        """Map phone times to LSL times with the published mapping (vectorised).

        Raises
        ------
        RuntimeError
            If no exchange was added yet.
        """
        f = self._fit
        if (
            f is None
            or self._step_pending
            or self._x[-1] - f.ref >= self.knot_interval_s
        ):
            self._refit()  # at most one fit per knot interval
        if self._fit is None and not self._live:
            raise RuntimeError("no clock exchanges yet")
        p = np.asarray(phone_times, dtype=np.float64)
        self._update_knots()
        out = self._mapping(p)
        if p.size:
            self._p_hi = max(self._p_hi, float(np.max(p)))
            self._commit()
        return out

    def drain_knots(self, final: bool = False) -> list[dict[str, float]]:
        """Return the final knots added since the last call, and forget them.

        With ``final`` (the connection ends) the pending ones count as final.
        """
        if final:
            self._p_hi = math.inf
            self._commit()
        out = list(self.knots)
        self.knots.clear()
        return out

    def mapping(self) -> PiecewiseMapping | None:
        """The published mapping (every knot so far), or None before any."""
        return self._mapping

    def quality(self) -> SyncQuality | None:
        """Return the quality of the current fit, or None before any exchange."""
        self._refit()
        f = self._fit
        if f is None:
            return None
        x = np.fromiter(self._x, dtype=np.float64)
        up = np.fromiter(self._up, dtype=np.float64)
        down = np.fromiter(self._down, dtype=np.float64)
        rtt = up - down
        low = rtt <= np.quantile(rtt, 0.5)
        res = 0.5 * (up + down)[low] - f.theta(x[low])
        return SyncQuality(
            n=len(x),
            span_s=float(x.max() - x.min()),
            offset_s=f.offset,
            drift_ppm=float((1.0 / (1.0 + f.slope) - 1.0) * 1e6),
            rtt_min_ms=float(rtt.min() * 1e3),
            rtt_median_ms=float(np.median(rtt) * 1e3),
            residual_ms=float(np.sqrt(np.mean(res**2)) * 1e3),
            uncertainty_ms=float(0.5 * rtt.min() * 1e3),
            band_ms=float(f.band * 1e3),
            resets=self.resets,
        )

    # ------------------------------------------------------------------- fit
    def _refit(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if not self._x:
            return
        x = np.fromiter(self._x, dtype=np.float64)
        up = np.fromiter(self._up, dtype=np.float64)
        down = np.fromiter(self._down, dtype=np.float64)
        self._fit = fit_window(
            x,
            up,
            down,
            float(x[-1]),
            slope_hint=self._slope,
            slope_err_hint=self._slope_err,
        )
        self._slope = self._fit.slope
        if self._fit.slope_err:
            self._slope_err = self._fit.slope_err

    def _update_knots(self) -> None:
        """Extend the published mapping toward the current fit.

        A knot goes at ``p_n`` ≥ every phone time mapped so far (so no sample
        is ever re-mapped). Away from a step the mapping slews: from ``p_n`` it
        moves toward the fit at ``max_slew`` and, where it meets it, a second
        knot continues with the fit's slope. Knots beyond ``p_n`` that no sample
        used yet are replaced.
        """
        f = self._fit
        if f is None or f is self._knotted:
            return
        step = self._step_pending and bool(self._live)
        # strictly after every mapped time: at a step the knot is a discontinuity
        p_n = max(math.nextafter(self._p_hi, math.inf), self._before_suspect)
        if not step:
            p_n = max(p_n, f.ref)
        if self._live and not step:
            if p_n - self._last_knot_p < self.knot_interval_s:
                return
        self._knotted = f
        self._step_pending = False
        while self._live and self._live[-1]["phone_time"] > p_n:
            self._live.pop()  # never used: p_n >= every mapped phone time
        target = float(f.theta(p_n))
        new = []
        if self._live and not step:
            k = self._live[-1]
            theta_n = k["offset_s"] + k["slope"] * (p_n - k["phone_time"])
            err = target - theta_n
            dt = abs(err) / self.max_slew
            if dt > 1e-3:
                new.append((p_n, theta_n, f.slope + math.copysign(self.max_slew, err)))
                new.append((p_n + dt, float(f.theta(p_n + dt)), f.slope))
            else:
                new.append((p_n, target, f.slope))
        else:
            new.append((p_n, target, f.slope))
        for i, (p, theta, slope) in enumerate(new):
            self._live.append(
                {
                    "phone_time": p,
                    "offset_s": theta,
                    "slope": slope,
                    "fit_offset_s": float(f.theta(p)),
                    "fit_slope": f.slope,
                    "slope_err": f.slope_err,
                    "uncertainty_s": 0.5 * f.rtt_min,
                    "band_s": f.band,
                    "exchanges_used": float(f.n),
                    "rtt_min_s": f.rtt_min,
                    "resets": float(self.resets),
                    "step": float(step and i == 0),
                }
            )
        self._last_knot_p = p_n
        live = self._live
        self._mapping = PiecewiseMapping(
            np.array([k["phone_time"] for k in live]),
            np.array([k["offset_s"] for k in live]),
            np.array([k["slope"] for k in live]),
        )

    def _commit(self) -> None:
        """Move knots no later change can touch (≤ every mapped time) to `knots`."""
        live = self._live
        while (
            self._emitted < len(live)
            and live[self._emitted]["phone_time"] <= self._p_hi
        ):
            self.knots.append(live[self._emitted])
            self._emitted += 1
        extra = self._emitted - LIVE_KNOTS
        if extra > 0:
            del live[:extra]
            self._emitted -= extra
