"""Sync-pulse detection and matching: pure functions on arrays (see `sync_check`).

`detect_steps` finds steps in a GSR-like signal (median filtered first difference
against ``k`` robust standard deviations, onset refined on the raw samples),
`detect_flashes` finds flash frames in a brightness series, `sync_marker_pulses`
picks the ``sync…`` markers of a string stream with their pulse ids
(``sync_pulse 7``, ``sync_flash 7`` → 7; `pulse_id`) and `match_pulses` pairs
detected and reference pulses one-to-one by time.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

_MAD_TO_SIGMA = 1.4826
#: Default ±window (s) within which a detected pulse matches a reference pulse.
DEFAULT_WINDOW = 0.5


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred running median with edge padding (``width`` made odd)."""
    half = max(int(width), 1) // 2
    if half == 0 or x.size == 0:
        return x.copy()
    padded = np.pad(x, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), 1)


def _robust_sigma(d: np.ndarray) -> float:
    """1.4826 · MAD, falling back to the mean absolute deviation when MAD is 0."""
    if d.size == 0:
        return 0.0
    dev = np.abs(d - np.median(d))
    sigma = _MAD_TO_SIGMA * float(np.median(dev))
    return sigma if sigma > 0 else float(np.mean(dev))


def detect_steps(
    times: np.ndarray,
    values: np.ndarray,
    *,
    k: float = 8.0,
    polarity: str = "both",
    min_interval: float = 1.0,
    min_step: float = 0.0,
    width: int = 5,
) -> np.ndarray:
    """Find the onset samples of steps in a noisy, drifting signal.

    Parameters
    ----------
    times : numpy.ndarray
        ``(n,)`` sample times in seconds, increasing.
    values : numpy.ndarray
        ``(n,)`` signal; NaN samples are ignored.
    k : float
        Threshold in robust standard deviations of the filtered difference.
    polarity : str
        ``"rising"``, ``"falling"`` or ``"both"``.
    min_interval : float
        Edges closer than this (s) to the previous accepted onset are dropped, so
        a rectangular pulse counts once.
    min_step : float
        Absolute lower bound on the step size, in signal units.
    width : int
        Median filter width in samples (odd; shorter spikes are ignored).

    Returns
    -------
    numpy.ndarray
        Indices into ``times``/``values`` of the first sample of each step.
    """
    if polarity not in ("rising", "falling", "both"):
        raise ValueError(
            f"polarity must be rising, falling or both, {polarity!r} is invalid."
        )
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = np.flatnonzero(np.isfinite(values) & np.isfinite(times))
    x = values[keep]
    if x.size < 3:
        return np.zeros(0, np.int64)
    d = np.diff(_running_median(x, width))
    # Noise scale from the raw difference: the filtered one underestimates it.
    thr = max(k * _robust_sigma(np.diff(x)), min_step, np.finfo(float).tiny)
    score = d - np.median(d)
    score = {"rising": score, "falling": -score, "both": np.abs(score)}[polarity]
    cand = np.flatnonzero(score > thr)
    if cand.size == 0:
        return np.zeros(0, np.int64)
    # One candidate per run of consecutive samples: the largest difference.
    runs = np.split(cand, np.flatnonzero(np.diff(cand) > 1) + 1)
    peaks = [int(r[np.argmax(score[r])]) for r in runs]
    half = max(int(width), 3)
    onsets: list[int] = []
    last = -np.inf
    t = times[keep]
    for i in peaks:  # a step between x[i] and x[i + 1]
        j = _refine_onset(x, i, half)
        if t[j] - last < min_interval:
            continue
        onsets.append(j)
        last = t[j]
    return keep[np.array(onsets, np.int64)]


def _refine_onset(x: np.ndarray, i: int, half: int) -> int:
    """First sample after ``i - half`` past the midpoint of the step at ``i``."""
    pre = np.median(x[max(0, i - half + 1) : i + 1])
    post = np.median(x[i + 1 : i + 1 + half])
    mid, sign = (pre + post) / 2, np.sign(post - pre) or 1.0
    lo, hi = max(1, i - half + 1), min(x.size, i + 1 + half)
    past = sign * (x[lo:hi] - mid) > 0
    crossing = np.flatnonzero(past & ~(sign * (x[lo - 1 : hi - 1] - mid) > 0))
    if crossing.size == 0:
        return i + 1
    return int(lo + crossing[np.argmin(np.abs(lo + crossing - (i + 1)))])


def detect_flashes(
    brightness: np.ndarray,
    *,
    k: float = 8.0,
    min_jump: float = 30.0,
    baseline: int = 61,
) -> np.ndarray:
    """Find the first frame of each flash in a per-frame brightness series.

    Parameters
    ----------
    brightness : numpy.ndarray
        ``(n,)`` mean grey level per frame (0-255).
    k : float
        Threshold in robust standard deviations of brightness minus baseline.
    min_jump : float
        Absolute lower bound of a flash above the baseline, in grey levels.
    baseline : int
        Running-median window (frames) for the baseline; flashes must be shorter
        than half of it.

    Returns
    -------
    numpy.ndarray
        Indices of the frames where a flash begins.
    """
    b = np.asarray(brightness, dtype=float)
    if b.size == 0:
        return np.zeros(0, np.int64)
    excess = b - _running_median(b, baseline)
    thr = max(k * _robust_sigma(excess), min_jump)
    bright = excess > thr
    return np.flatnonzero(bright & ~np.concatenate(([False], bright[:-1])))


#: ``sync``, ``sync_pulse``, ``sync_flash`` … then the pulse id: ``sync_pulse 7``.
_PULSE_ID = re.compile(r"^sync(?:_[a-z]+)?[ _#:=-]*(\d{1,12})$", re.IGNORECASE)
#: The id of a pulse without one (a device's own, unidentified pulse).
ANONYMOUS = -1


def pulse_id(label: str) -> int:
    """Return the pulse id of a sync label (`ANONYMOUS` when it carries none).

    ``sync_pulse 7``, ``sync_flash 7``, ``sync_7`` → 7; ``sync_pulse`` → -1.
    """
    m = _PULSE_ID.match(label.strip())
    return int(m.group(1)) if m else ANONYMOUS


def sync_marker_pulses(stream: SyncedStream) -> tuple[np.ndarray, np.ndarray]:
    """Return the stamps and pulse ids of the markers whose label starts with ``sync``.

    Returns
    -------
    times, ids : numpy.ndarray
        Stamps (s) and ids (int64, `ANONYMOUS` for a label without an id).
    """
    if not stream.is_string:
        return np.zeros(0), np.zeros(0, np.int64)
    labels = [
        str(s[0] if isinstance(s, list | tuple) and s else s)
        for s in stream.time_series
    ]
    hit = np.array([lb.lower().startswith("sync") for lb in labels], bool)
    if not hit.size:
        return np.zeros(0), np.zeros(0, np.int64)
    ids = np.array(
        [pulse_id(lb) for lb, h in zip(labels, hit, strict=True) if h], np.int64
    )
    return np.asarray(stream.time_stamps, dtype=float)[hit], ids


def sync_marker_times(stream: SyncedStream) -> np.ndarray:
    """Return the time stamps of the markers whose label starts with ``sync``."""
    return sync_marker_pulses(stream)[0]


def match_pulses(
    detected: np.ndarray, reference: np.ndarray, *, window: float = DEFAULT_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Match detected to reference pulses one-to-one, nearest first.

    Parameters
    ----------
    detected, reference : numpy.ndarray
        Pulse times (s).
    window : float
        Largest accepted ``|detected - reference|`` (s).

    Returns
    -------
    det_idx, ref_idx : numpy.ndarray
        Indices of matched pairs, sorted by reference time.
    """
    det = np.asarray(detected, float)
    ref = np.asarray(reference, float)
    if det.size == 0 or ref.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dist = np.abs(det[:, None] - ref[None, :])
    pairs = np.argwhere(dist <= window)
    pairs = pairs[np.argsort(dist[pairs[:, 0], pairs[:, 1]], kind="stable")]
    used_d, used_r, out = set(), set(), []
    for i, j in pairs:
        if i not in used_d and j not in used_r:
            used_d.add(i)
            used_r.add(j)
            out.append((i, j))
    out.sort(key=lambda p: p[1])
    arr = np.array(out, np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]
