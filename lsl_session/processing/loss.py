"""Missing samples and measured rate of a regular stream, from its recorded stamps.

Counted on the stamps *before* dejittering: the dejitter line (as pyxdf's) is
fitted across gaps shorter than ``max(1 s, 500 samples)`` and would spread the
samples over them. An interval longer than 1.5 periods of the stream's measured
rate (its median interval) is a candidate gap. Each stamp's offset from its
place on the grid of that rate (``t * rate - index``, in periods) is constant
while nothing is lost and steps up by k when k samples are missing; stamping
jitter (a chunk pushed with ``local_clock()``: late one chunk, early the next)
moves single offsets but not their median. So a candidate gap counts the
difference between the median offset of the `window` samples after it and of
those before it, rounded: a late chunk is not a loss, a dropout is, and clock
drift never is (the windows are short).
"""

from __future__ import annotations

import numpy as np

#: Seconds of samples on each side of a candidate gap whose median offset is
#: compared, at least `MIN_WINDOW` and at most `MAX_WINDOW` samples.
WINDOW_S = 0.5
MIN_WINDOW = 16
MAX_WINDOW = 2048
#: A median step of at least this many periods is a loss (rounded from there).
STEP_MIN = 0.75
#: The window-mean step below which a candidate is not looked at further.
SCREEN_MIN = 0.4
#: Candidate gaps evaluated per batch (bounds the window matrix to ~16 MiB).
_BATCH = 1024


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
    gaps = np.flatnonzero(np.diff(t) * rate > 1.5)
    if gaps.size == 0:
        return 0
    offset = (t - t[0]) * rate - np.arange(n)
    window = int(min(MAX_WINDOW, max(MIN_WINDOW, rate * WINDOW_S)))
    back = np.arange(-window + 1, 1)  # the gap's sample and those before it
    ahead = np.arange(1, window + 1)  # the samples after it

    def steps(g: np.ndarray, fix: np.ndarray, cum: np.ndarray) -> np.ndarray:
        """Median offset after minus before each gap, less the steps counted."""
        out = np.empty(g.size)
        for k in range(0, g.size, _BATCH):
            gg = g[k : k + _BATCH, None]
            idx_b = np.clip(gg + back, 0, n - 1)
            idx_a = np.clip(gg + ahead, 0, n - 1)
            # a sample after a counted gap is corrected by the steps counted before it
            b = offset[idx_b] - cum[np.searchsorted(fix, idx_b, side="left")]
            a = offset[idx_a] - cum[np.searchsorted(fix, idx_a, side="left")]
            out[k : k + _BATCH] = np.median(a, axis=1) - np.median(b, axis=1)
        return out

    # a cheap screen first (window means from a cumulative sum, all gaps at
    # once): a stream with stamping jitter has a candidate at every few chunks
    csum = np.concatenate(([0.0], np.cumsum(offset)))
    b0, b1 = np.maximum(gaps - window + 1, 0), gaps + 1
    a0, a1 = gaps + 1, np.minimum(gaps + 1 + window, n)
    mean_step = (csum[a1] - csum[a0]) / (a1 - a0) - (csum[b1] - csum[b0]) / (b1 - b0)
    gaps = gaps[mean_step >= SCREEN_MIN]
    if gaps.size == 0:
        return 0
    none = np.zeros(1)
    # jitter moves a median by well under 3/4 of a period; only larger steps count
    candidates = gaps[steps(gaps, np.empty(0, np.int64), none) >= STEP_MIN]
    fixed: list[int] = []
    cum = [0.0]
    for g in candidates:  # in order: a step counted once, not by every neighbour
        step = steps(np.array([g]), np.array(fixed, np.int64), np.array(cum))[0]
        k = np.floor(step + 1.0 - STEP_MIN)
        if k > 0:
            fixed.append(int(g) + 1)
            cum.append(cum[-1] + k)
    return int(cum[-1])
