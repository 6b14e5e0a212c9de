"""Two-way clock-sync math shared by the phone relay (live) and ``process`` (offline).

A four-timestamp exchange (``t1`` phone send, ``t2`` relay receive, ``t3`` relay
send, ``t4`` phone receive; phone times on the phone's clock, relay times on LSL
``local_clock``) bounds θ = LSL − phone time by causality::

    up   = t2 − t1 = θ + d_up    ≥ θ        down = t3 − t4 = θ − d_down ≤ θ

so θ lies between the *lower envelope* of ``up`` and the *upper envelope* of
``down``, whatever the queues did to the other exchanges. `fit_window` fits both
envelopes with one slope (the drift): the slope comes from the lower convex hull
of the per-second minima of ``up`` and the upper hull of the per-second maxima of
``down`` (the linear-programming estimator of Moon et al.: the hull edge that
spans the window's centre), the offset at the reference time from each envelope's
extreme; θ is their midpoint. The error left is half the difference of the two
directions' minimum one-way delays, which no two-way method can observe.

`fit_offline` is the non-causal version over a whole session: it splits the
exchanges at clock steps and fits a centred window around knots every few
seconds. `PiecewiseMapping` is a continuous piecewise-linear mapping phone → LSL
time given by knots; it evaluates and inverts vectorised (the relay publishes its
live mapping as such knots, so ``process`` can recover each sample's phone time).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: Exchanges with a longer (or negative) round trip are ignored.
MAX_RTT_S = 1.0
#: Width of the bins whose extremes feed the slope fit (s of phone time).
BIN_S = 1.0
#: Quantile of the bin extremes' heights above the hull taken as its noise.
#: Prior standard deviation of a phone's drift (100 ppm).
PRIOR_DRIFT = 50e-6
#: Least envelope noise assumed for the slope's error (s).
MIN_SPREAD_S = 20e-6
SPREAD_QUANTILE = 0.1


@dataclass(frozen=True, slots=True)
class WindowFit:
    """One envelope fit: θ(p) = ``offset`` + ``slope`` · (p − ``ref``).

    ``band`` is half the width the two envelopes leave at ``ref`` (the offset's
    error bound when both minimum one-way delays are equal); ``rtt_min`` the
    best round trip; ``n`` the exchanges used; ``slope_err`` the estimated
    standard error of the slope.
    """

    ref: float
    offset: float
    slope: float
    band: float
    rtt_min: float
    n: int
    slope_err: float

    def theta(self, p: np.ndarray | float) -> np.ndarray:
        """θ at phone time(s) ``p``."""
        return self.offset + self.slope * (np.asarray(p, dtype=np.float64) - self.ref)


def exchange_terms(
    ex: np.ndarray, max_rtt: float = MAX_RTT_S
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x, up, down, keep) of exchanges ``ex`` (n, 4: t1, t2, t3, t4).

    ``x`` is the phone-time midpoint of each exchange; ``keep`` marks the
    plausible ones (finite, 0 ≤ RTT ≤ ``max_rtt``, t3 ≥ t2).
    """
    ex = np.asarray(ex, dtype=np.float64).reshape(-1, 4)
    t1, t2, t3, t4 = ex.T
    with np.errstate(invalid="ignore"):
        rtt = (t4 - t1) - (t3 - t2)
        keep = np.isfinite(ex).all(axis=1) & (rtt >= 0) & (rtt <= max_rtt) & (t3 >= t2)
    return 0.5 * (t1 + t4), t2 - t1, t3 - t4, keep


def _lower_hull_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Slope of the lower-hull edge spanning mean(x), and the points' spread.

    Returns None with fewer than two distinct x. The spread is the median height
    of the points above that edge's line (the noise of the envelope).
    """
    if len(x) < 2 or x[-1] - x[0] <= 0:
        return None
    xs, ys = x.tolist(), y.tolist()  # Python floats: ~10x faster than numpy scalars
    hull: list[int] = []
    for i in range(len(xs)):
        xi, yi = xs[i], ys[i]
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b if it lies on or above the segment a → i
            if (ys[b] - ys[a]) * (xi - xs[a]) >= (yi - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    xm = float(np.mean(x))
    hx = x[hull]
    j = int(np.clip(np.searchsorted(hx, xm) - 1, 0, len(hull) - 2))
    a, b = hull[j], hull[j + 1]
    slope = float((y[b] - y[a]) / (x[b] - x[a]))
    above = y - (y[a] + slope * (x - x[a]))
    return slope, float(np.quantile(above, SPREAD_QUANTILE))


def _bin_extremes(
    x: np.ndarray, y: np.ndarray, lower: bool, width: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per ``width``-second bin of ``x``: the point with the lowest (highest) y."""
    bins = np.floor((x - x.min()) / width).astype(np.int64)
    order = np.lexsort((y if lower else -y, bins))
    b = bins[order]
    first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    pick = order[first]
    return x[pick], y[pick]


def fit_window(
    x: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    ref: float,
    *,
    slope_hint: float = 0.0,
    slope_err_hint: float | None = None,
    min_span: float = 4.0,
    max_slope: float = 1e-3,
    age_sigmas: float = 2.0,
    prior_drift: float = PRIOR_DRIFT,
    prior_slope: float = 0.0,
) -> WindowFit:
    """Fit θ(p) over one window of exchanges (see the module docstring).

    Parameters
    ----------
    x, up, down : ndarray
        Exchange midpoints (phone time), ``t2 − t1`` and ``t3 − t4``.
    ref : float
        Phone time at which the offset is given.
    slope_hint, slope_err_hint : float
        Slope (and its standard error; default the prior's) used when the
        window spans less than ``min_span`` seconds.
    max_slope : float
        The slope is clipped to ± this (1000 ppm).
    prior_drift, prior_slope : float
        Standard deviation and centre of the prior on the slope (s/s).
    age_sigmas : float
        Exchanges far from ``ref`` are penalised by this many slope standard
        errors × their distance, so an uncertain slope cannot carry an old
        extreme to ``ref``.
    """
    order = np.argsort(x, kind="stable")
    x, up, down = x[order], up[order], down[order]
    n = len(x)
    span = float(x[-1] - x[0]) if n else 0.0
    slope, err = float(slope_hint), 0.0
    if span >= min_span:
        ests = []
        for y, lower in ((up, True), (down, False)):
            bx, by = _bin_extremes(x, y, lower, BIN_S)
            got = _lower_hull_slope(bx, by if lower else -by)
            if got is not None:
                s, spread = got
                ests.append((s if lower else -s, spread, bx[-1] - bx[0]))
        if ests:
            # per direction: standard error ~ envelope noise over half the
            # baseline, x3 (calibrated in simulation), noise at least 20 µs
            s = np.array([e[0] for e in ests])
            errs = np.array(
                [3.0 * max(e[1], MIN_SPREAD_S) / max(e[2] / 2, 1e-9) for e in ests]
            )
            w = 1.0 / errs**2
            est = float(np.sum(w * s) / np.sum(w))
            err = float(np.sum(w) ** -0.5)
            if len(ests) == 2:  # directions that disagree: trust neither much
                z = abs(s[0] - s[1]) / float(np.hypot(*errs))
                err *= max(1.0, z / 2)
            # combined with the prior N(0, prior_drift²) on the drift
            wt = 1.0 / err**2 + 1.0 / prior_drift**2
            slope = (est / err**2 + prior_slope / prior_drift**2) / wt
            slope = float(np.clip(slope, -max_slope, max_slope))
            err = float(wt**-0.5)
    else:
        err = prior_drift if slope_err_hint is None else slope_err_hint
    xr = x - ref
    pen = age_sigmas * err * np.abs(xr)
    ru = float(np.min(up - slope * xr + pen))
    rd = float(np.max(down - slope * xr - pen))
    return WindowFit(
        ref=float(ref),
        offset=0.5 * (ru + rd),
        slope=slope,
        band=0.5 * (ru - rd),
        rtt_min=float(np.min(up - down)) if n else math.nan,
        n=n,
        slope_err=err,
    )


@dataclass(slots=True)
class PiecewiseMapping:
    """θ(p) linear between knots: on [p_k, p_{k+1}) θ = θ_k + s_k (p − p_k).

    Before the first knot the first segment is extrapolated, after the last the
    last one. Knots must be sorted by ``p``.
    """

    p: np.ndarray
    theta: np.ndarray
    slope: np.ndarray

    def segment(self, p: np.ndarray) -> np.ndarray:
        """Index of the knot segment of each phone time."""
        k = np.searchsorted(self.p, p, side="right") - 1
        return np.clip(k, 0, len(self.p) - 1)

    def __call__(self, p: np.ndarray | float) -> np.ndarray:
        """Map phone time(s) to LSL time(s)."""
        p = np.asarray(p, dtype=np.float64)
        k = self.segment(p)
        return p + self.theta[k] + self.slope[k] * (p - self.p[k])

    def invert(self, t: np.ndarray, *, ordered: bool = False) -> np.ndarray:
        """Phone times that map to LSL times ``t``.

        Each time is inverted in the segment whose LSL range holds it (the
        mapping is increasing inside a segment); where a clock step left LSL
        ranges overlapping or apart, the later segment wins for overlaps and a
        time in a gap belongs to the segment before it. With ``ordered`` (the
        stamps of one stream in recorded order, whose phone times only grow), a
        time that would come out later than a following one is inverted in the
        segment before: it was stamped before the step's knot.
        """
        t = np.asarray(t, dtype=np.float64)
        start = self.p + self.theta
        k = np.clip(
            np.searchsorted(np.maximum.accumulate(start), t, side="right") - 1,
            0,
            len(self.p) - 1,
        )
        p = (t - self.theta[k] + self.slope[k] * self.p[k]) / (1.0 + self.slope[k])
        if ordered and p.size > 1:
            later_min = np.minimum.accumulate(p[::-1])[::-1]
            bad = p > later_min + 1e-9
            if bad.any():
                kb = np.maximum(k[bad] - 1, 0)
                p[bad] = (t[bad] - self.theta[kb] + self.slope[kb] * self.p[kb]) / (
                    1.0 + self.slope[kb]
                )
        return p


def find_steps(
    x: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    *,
    tolerance: float = 1e-3,
    lookback: int = 10,
) -> list[int]:
    """Indices (in recorded order) where the phone clock stepped.

    The exchanges are cut into 1 s bins in recorded order; after removing a
    robust drift (median of the bin-to-bin slopes), each exchange is compared
    with the band ``[max down, min up]`` of the ``lookback`` bins before its own.
    An exchange outside the band by more than ``tolerance`` is impossible for a
    continuous clock; two of the same sign within 2 s start a step at the first
    of them. Violations within ``lookback`` s after a step belong to it.
    """
    n = len(x)
    if n < 16:
        return []
    order_t = np.arange(n)
    edges = np.flatnonzero(np.diff(np.floor((x - x[0]) / BIN_S)) != 0) + 1
    starts = np.r_[0, edges]
    if len(starts) <= lookback + 1:
        return []
    u = np.minimum.reduceat(up, starts)
    d = np.maximum.reduceat(down, starts)
    xb = x[starts]
    dx = np.diff(xb)
    good = dx > 0.25
    slope = (
        float(np.median(np.diff(0.5 * (u + d))[good] / dx[good])) if good.any() else 0.0
    )
    slope = float(np.clip(slope, -1e-3, 1e-3))
    ub, db = u - slope * xb, d - slope * xb
    win = np.lib.stride_tricks.sliding_window_view
    hi = np.r_[np.full(lookback, np.inf), win(ub, lookback).min(axis=1)[:-1]]
    lo = np.r_[np.full(lookback, -np.inf), win(db, lookback).max(axis=1)[:-1]]
    bin_of = np.searchsorted(starts, order_t, side="right") - 1
    ue, de = up - slope * x, down - slope * x
    sign = np.where(
        ue < lo[bin_of] - tolerance, -1, np.where(de > hi[bin_of] + tolerance, 1, 0)
    )
    flagged = np.flatnonzero(sign)
    steps: list[int] = []
    last_step_x = -np.inf
    for a, b in itertools.pairwise(flagged):
        if x[a] - last_step_x <= lookback or sign[a] != sign[b]:
            continue
        if x[b] - x[a] <= 2.0:
            steps.append(int(a))
            last_step_x = x[a]
    return steps


def fit_offline(
    exchanges: np.ndarray,
    *,
    window: float = 120.0,
    knot_every: float = 5.0,
    age_sigmas: float = 1.0,
    prior_slope: float = 0.0,
    prior_drift: float = PRIOR_DRIFT,
) -> PiecewiseMapping:
    """Non-causal phone → LSL mapping from every exchange of a session.

    Parameters
    ----------
    exchanges : ndarray (n, 4)
        ``t1, t2, t3, t4`` in recorded order.
    window : float
        Length of the centred window fitted around each knot (s).
    knot_every : float
        Knot spacing (s of phone time).
    age_sigmas : float
        See `fit_window`.
    prior_slope, prior_drift : float
        Prior on the slope (e.g. the live mapping's), see `fit_window`.

    Raises
    ------
    ValueError
        With fewer than 2 plausible exchanges.
    """
    x, up, down, keep = exchange_terms(exchanges)
    x, up, down = x[keep], up[keep], down[keep]
    if len(x) < 2:
        raise ValueError("fewer than 2 plausible clock exchanges")
    bounds = [0, *find_steps(x, up, down), len(x)]
    kp, kt, ks = [], [], []
    for j in range(len(bounds) - 1):
        end = bounds[j + 1]
        if end < len(x):
            # the second before a step's first violation may hold exchanges from
            # after it that did not violate: keep them out of either fit
            prev = np.sort(x[bounds[j] : end])
            end = bounds[j] + int(np.searchsorted(prev, x[end - 1] - 1.0))
        sl = slice(bounds[j], max(end, bounds[j] + 2))
        sx, su, sd = x[sl], up[sl], down[sl]
        if len(sx) < 2:
            continue
        lo, hi = float(sx.min()), float(sx.max())
        if j > 0 and kp:
            # boundary: the midpoint between the segments' neighbouring exchanges
            cut = 0.5 * (float(x[bounds[j] - 1]) + float(sx[0]))
            lo = cut
        centres = np.arange(lo, hi + knot_every, knot_every)
        centres[-1] = min(centres[-1], hi) if len(centres) > 1 else centres[-1]
        order = np.argsort(sx, kind="stable")
        xs, us, ds = sx[order], su[order], sd[order]
        thetas = []
        for c in centres:
            a = np.searchsorted(xs, c - window / 2)
            b = np.searchsorted(xs, c + window / 2)
            if b - a < 2:
                a, b = max(0, a - 1), min(len(xs), b + 1)
            f = fit_window(
                xs[a:b], us[a:b], ds[a:b], c, age_sigmas=age_sigmas,
                prior_slope=prior_slope, prior_drift=prior_drift,
            )  # fmt: skip
            thetas.append(f.offset)
        thetas = np.asarray(thetas)
        if len(centres) > 1:
            slopes = np.diff(thetas) / np.diff(centres)
            slopes = np.r_[slopes, slopes[-1]]
        else:
            f = fit_window(
                xs, us, ds, float(centres[0]),
                prior_slope=prior_slope, prior_drift=prior_drift,
            )  # fmt: skip
            slopes = np.array([f.slope])
        kp.extend(centres.tolist())
        kt.extend(thetas.tolist())
        ks.extend(slopes.tolist())
    p = np.asarray(kp)
    order = np.argsort(p, kind="stable")
    return PiecewiseMapping(p[order], np.asarray(kt)[order], np.asarray(ks)[order])
