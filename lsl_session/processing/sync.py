"""pyxdf's clock synchronisation and dejitter as pure functions on arrays.

The pylsl#67 truncation guard, clock-reset segmentation, the robust (Huber, ADMM)
clock-offset fit and the per-segment linear dejitter; applied in this order they
reproduce ``pyxdf.load_xdf`` with sync and dejitter on and its default thresholds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
#: Repeated warnings per stream before they are only counted.
_MAX_WARNINGS = 5

_EPS = np.finfo(float).eps


# ----------------------------------------------------------------- pure stages
def _last_offset_anomalous(times: np.ndarray, values: np.ndarray) -> bool:
    """Whether the last clock offset is an outlier (≥ 3 offsets; pyxdf's test)."""
    if len(times) < 3:
        return False
    intervals = np.diff(times)
    median_interval = np.median(intervals[:-1])
    last = abs(intervals[-1])
    if median_interval > 0:
        ratio = last / median_interval
    else:
        ratio = np.inf if last > 0 else 1.0
    centre = np.median(values[:-1])
    mad = np.median(np.abs(values[:-1] - centre))
    zscore = abs(values[-1] - centre) / (1.4826 * mad) if mad > _EPS else 0.0
    return bool(ratio > 10.0 or zscore > 10.0)


def truncate_corrupted_offsets(
    n_samples: int, footer_count: int | None, times: np.ndarray, values: np.ndarray
) -> tuple[int, int]:
    """Apply the pylsl#67 / liblsl#246 guard.

    Returns
    -------
    keep_samples, keep_offsets : int
        How many samples and clock offsets to keep: everything, unless the stream
        has more samples than its footer's ``sample_count`` *and* the last offset
        is anomalous; then the extra samples and the last offset are dropped.
    """
    if footer_count is None or n_samples <= footer_count:
        return n_samples, len(times)
    if not _last_offset_anomalous(times, values):
        return n_samples, len(times)
    logger.warning(
        "dropping %d sample(s) beyond the footer count and the last clock offset "
        "(pylsl#67)",
        n_samples - footer_count,
    )
    return footer_count, len(times) - 1


def _glitches(diff: np.ndarray, stds: float, secs: float) -> np.ndarray:
    shifted = diff - np.median(diff)
    mad = np.median(np.abs(shifted)) + _EPS
    return (np.abs(shifted / mad) > stds) & (np.abs(shifted) > secs)


def _ranges(breaks: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs between ``breaks`` (bool, length n−1)."""
    at = np.flatnonzero(breaks)
    starts = np.concatenate(([0], at + 1))
    ends = np.concatenate((at, [len(breaks)]))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def detect_clock_resets(
    times: np.ndarray,
    values: np.ndarray,
    *,
    time_stds: float = 5,
    time_seconds: float = 5,
    value_stds: float = 10,
    value_seconds: float = 1,
) -> list[tuple[int, int]]:
    """Split clock offsets at clock resets; return inclusive index ranges.

    A reset lies between offsets i and i+1 if the collection time goes backwards,
    or if both the time interval and the value step deviate from their medians by
    more than the thresholds (in MAD units and in seconds).
    """
    dt, dv = np.diff(times), np.diff(values)
    resets = (dt < 0) | (
        _glitches(dt, time_stds, time_seconds)
        & _glitches(dv, value_stds, value_seconds)
    )
    return _ranges(resets)


def robust_fit(
    times: np.ndarray,
    values: np.ndarray,
    *,
    winsor: float = 1e-4,
    rho: float = 1.0,
    iters: int = 1000,
) -> tuple[float, float]:
    """Fit ``value ≈ a + b·time`` with a Huber loss (threshold ``winsor`` s).

    Solved by ADMM (Boyd et al.) in units of ``winsor`` with the time column
    shifted to start at 0 for conditioning, as pyxdf does.

    Raises
    ------
    numpy.linalg.LinAlgError
        If the times are degenerate (all equal).
    """
    t = np.asarray(times, dtype=float) / winsor
    shift = t.min()
    t = t - shift
    y = np.asarray(values, dtype=float) / winsor
    design = np.column_stack((np.ones_like(t), t))
    lower = np.linalg.cholesky(design.T @ design)
    upper = lower.T
    aty = design.T @ y
    kappa = 1.0 + 1.0 / rho
    z = np.zeros_like(y)
    u = z
    x = np.zeros(2)
    for _ in range(iters):
        # two triangular solves with the Cholesky factor (an explicit inverse
        # loses ~1e-7 s of intercept to cancellation with the time shift)
        x = np.linalg.solve(upper, np.linalg.solve(lower, aty + design.T @ (z - u)))
        d = design @ x - y + u
        shrunk = np.sign(d) * np.maximum(np.abs(d) - kappa, 0.0)
        z_next = (rho * d + shrunk) / (1.0 + rho)
        u_next = d - z_next
        # an exact fixed point (bit for bit): every further iteration would
        # return this very x, so stopping here gives pyxdf's 1000-iteration
        # result (typically after ~50 iterations)
        if z_next.tobytes() == z.tobytes() and u_next.tobytes() == u.tobytes():
            break
        z, u = z_next, u_next
    intercept = (x[0] - x[1] * shift) * winsor
    return float(intercept), float(x[1])


@dataclass(frozen=True, slots=True)
class ClockFit:
    """The offset model of one clock-offset range: ``offset = a + b·t``."""

    first: int
    last: int
    intercept: float
    slope: float
    ok: bool = True


def fit_clock_offsets(
    times: np.ndarray,
    values: np.ndarray,
    *,
    handle_resets: bool = True,
    winsor: float = 1e-4,
    **reset_thresholds: float,
) -> list[ClockFit]:
    """Fit every clock-offset range (ranges split at resets)."""
    if len(times) > 1 and handle_resets:
        ranges = detect_clock_resets(times, values, **reset_thresholds)
    else:
        ranges = [(0, len(times) - 1)]
    fits = []
    for first, last in ranges:
        if first == last:
            fits.append(ClockFit(first, last, float(values[first]), 0.0))
            continue
        try:
            a, b = robust_fit(
                times[first : last + 1], values[first : last + 1], winsor=winsor
            )
            fits.append(ClockFit(first, last, a, b))
        except np.linalg.LinAlgError:
            unusable = sum(not f.ok for f in fits)
            if unusable < _MAX_WARNINGS:  # a damaged file can hold thousands
                logger.warning(
                    "clock offsets %d..%d cannot be used for sync", first, last
                )
            fits.append(ClockFit(first, last, 0.0, 0.0, ok=False))
    if sum(not f.ok for f in fits) > _MAX_WARNINGS:
        logger.warning(
            "%d clock-offset ranges in all cannot be used for sync",
            sum(not f.ok for f in fits),
        )
    return fits


def apply_clock_sync(
    stamps: np.ndarray, times: np.ndarray, fits: list[ClockFit]
) -> list[tuple[int, int]]:
    """Map ``stamps`` (in place) onto the recorder's clock; return clock segments.

    With several ranges, stamps (assumed increasing) switch to the next range at
    the first stamp closer to the next range's first offset time than to the
    current range's last one.
    """
    n = len(stamps)
    if len(fits) == 1:
        stamps += fits[0].intercept + fits[0].slope * stamps
        return [(0, n - 1)]
    segments, start, empty = [], 0, 0
    for fit in fits:
        if fit.last + 1 < len(times):
            rest = stamps[start:]
            closer = np.abs(rest - times[fit.last]) < np.abs(rest - times[fit.last + 1])
            stop = start + (len(closer) if closer.all() else int(np.argmin(closer)))
        else:
            stop = n
        if stop == start:
            empty += 1
            if empty <= _MAX_WARNINGS:  # a damaged file can hold thousands
                logger.warning(
                    "no samples in clock offsets %d..%d", fit.first, fit.last
                )
            continue
        segments.append((start, stop - 1))
        part = stamps[start:stop]
        part += fit.intercept + fit.slope * part
        start = stop
    if empty > _MAX_WARNINGS:
        logger.warning("%d clock-offset ranges in all hold no samples", empty)
    return segments


def dejitter(
    stamps: np.ndarray,
    srate: float,
    *,
    threshold_seconds: float = 1.0,
    threshold_samples: float = 500,
) -> tuple[list[tuple[int, int]], float]:
    """Replace ``stamps`` (in place) by a least-squares line per segment.

    Segments break where ``|Δt| > max(threshold_seconds, threshold_samples/srate)``.

    Returns
    -------
    segments : list of (int, int)
        Inclusive index ranges.
    effective_srate : float
        Σ(n_seg − 1) / Σ duration_seg (0 if no segment has two samples).
    """
    n = len(stamps)
    if n == 0:
        return [], 0.0
    limit = max(threshold_seconds, threshold_samples / srate)
    segments = _ranges(np.abs(np.diff(stamps)) > limit)
    for first, last in segments:
        m = last - first + 1
        if m < 3:
            continue  # a line through one or two points reproduces them
        seg = stamps[first : last + 1]
        base = seg[0]
        y = seg - base
        y_mean = y.mean()
        x = np.arange(m, dtype=float)
        x -= (m - 1) / 2.0
        slope = float(np.dot(x, y - y_mean)) / (m * (m * m - 1.0) / 12.0)
        x *= slope
        x += y_mean
        x += base
        seg[:] = x
    starts = np.array([s for s, _ in segments])
    ends = np.array([e for _, e in segments])
    counts = ends - starts + 1
    if not np.any(counts > 1):
        return segments, 0.0
    duration = float(np.sum(stamps[ends] - stamps[starts]))
    if not duration > 0:  # identical (or damaged) stamps: no measurable rate
        return segments, 0.0
    return segments, float(np.sum(counts - 1)) / duration


def can_drop_samples(info: dict[str, Any]) -> bool:
    """``desc/synchronization/can_drop_samples`` is ``true`` (no dejitter then)."""
    desc = info.get("desc")
    try:
        sync = desc["synchronization"][0]
        return str(sync["can_drop_samples"][0]).lower() == "true"
    except (KeyError, IndexError, TypeError):
        return False
