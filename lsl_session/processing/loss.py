"""Missing samples and measured rate of a regular stream, from its recorded stamps.

Counted on the stamps *before* dejittering: the dejitter line (as pyxdf's) is
fitted across gaps shorter than ``max(1 s, 500 samples)`` and would spread the
samples over them. An interval longer than 1.5 periods of the stream's measured
rate (its median interval) is a gap; the samples it lacks are counted over a
window of `JITTER_WINDOW` samples on both sides, so one late chunk followed by
an early one (stamping jitter) is not a loss, while clock drift never is.
"""

from __future__ import annotations

import numpy as np

#: Samples on each side of a gap over which stamping jitter is compensated.
JITTER_WINDOW = 8


def measured_rate(stamps: np.ndarray) -> float:
    """A regular stream's rate from its median stamp interval (0 if unknown)."""
    t = np.asarray(stamps, dtype=np.float64)
    if t.size < 3:
        return 0.0
    step = float(np.median(np.diff(t)))
    return 1.0 / step if step > 0 else 0.0


def missing_in_stamps(stamps: np.ndarray, rate: float) -> int:
    """Samples missing from stamps expected every ``1 / rate`` s (see module).

    Parameters
    ----------
    stamps : numpy.ndarray
        Recorded stamps in order (s).
    rate : float
        The stream's measured rate (Hz); 0 or less: nothing is counted.
    """
    t = np.asarray(stamps, dtype=np.float64)
    n = t.size
    if rate <= 0 or n < 2:
        return 0
    steps = np.diff(t) * rate
    gaps = np.flatnonzero(steps > 1.5)
    if gaps.size == 0:
        return 0
    lo = np.maximum(gaps - JITTER_WINDOW, 0)
    hi = np.minimum(gaps + 1 + JITTER_WINDOW, n - 1)
    # windows of nearby gaps overlap: count each union of windows once
    starts = np.flatnonzero(np.concatenate(([True], lo[1:] > hi[:-1])))
    lo, hi = lo[starts], np.maximum.reduceat(hi, starts)
    lacking = np.round((t[hi] - t[lo]) * rate) - (hi - lo)
    return int(np.maximum(lacking, 0).sum())
