"""The simulated phone's signals: sample values per stream and sync-pulse flags."""

from __future__ import annotations

import numpy as np


def pulse_flags(
    onsets: np.ndarray, true_t: np.ndarray, length: float, stream: str, rate: float
) -> np.ndarray:
    """Which samples fall inside a sync pulse.

    A frame's stamp is the middle of its exposure, so a flash lights the frame
    whose exposure window ``[t - T/2, t + T/2)`` contains the onset.
    """
    if not len(onsets) or not len(true_t):
        return np.zeros(len(true_t), dtype=bool)
    t = true_t + 0.5 / rate if stream.endswith("_frames") else true_t
    idx = np.searchsorted(onsets, t, side="right") - 1
    return (idx >= 0) & (t < onsets[np.maximum(idx, 0)] + length)


def signal_values(
    stream: str, k: np.ndarray, elapsed: np.ndarray, pulse: np.ndarray
) -> np.ndarray:
    """Sample values of ``stream`` for sample indices ``k``.

    Parameters
    ----------
    stream : str
        A phone stream name (``motion``, ``gsr``, ``rgb_frames``, ``thermal_frames``).
    k : ndarray of int
        Sample indices since the phone started.
    elapsed : ndarray of float
        True seconds since the phone started, one per sample.
    pulse : ndarray of bool
        Which samples lie inside a sync pulse (a GSR step, a bright thermal frame).
    """
    ph = 2 * np.pi * elapsed
    if stream == "motion":
        return np.column_stack(
            [
                0.2 * np.sin(ph),
                0.2 * np.cos(ph),
                9.81 + 0.05 * np.sin(3 * ph),
                0.1 * np.sin(0.5 * ph),
                0.1 * np.cos(0.5 * ph),
                0.02 * np.sin(ph),
            ]
        )
    if stream == "gsr":
        return (2.0 + 0.3 * np.sin(0.1 * ph) + 5.0 * pulse)[:, None]
    if stream == "rgb_frames":
        return k[:, None].astype(np.float64)
    base = 30.0 + 0.5 * np.sin(0.2 * ph)
    return np.column_stack([k, base - 5, base + 5 + 10.0 * pulse, base])
