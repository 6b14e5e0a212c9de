"""Shimmer device clock: 24-bit counter unwrapping and drift-aware LSL mapping.

The Shimmer3 stamps every packet with the low 24 bits of a 32768 Hz counter
(rolls over every 512 s). `CounterUnwrapper` turns these into a monotonic tick
count; `ClockMapper` maps device seconds to LSL time (``pylsl.local_clock``)
from arrival times, using the lower envelope of ``arrival - device_time``:
packets are delayed by Bluetooth bursting and scheduling but never arrive
early, so the minimum delay per bin tracks the true offset. A robust line
through those minima over a sliding window gives the crystal drift, and the
lowest detrended minimum of the last seconds anchors the line.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

TICKS_PER_SECOND = 32768
COUNTER_BITS = 24
COUNTER_MODULUS = 1 << COUNTER_BITS


class CounterUnwrapper:
    """Unwrap the 24-bit device counter across batches.

    Notes
    -----
    Consecutive stamps are assumed less than one rollover (512 s) apart; a
    stamp that is smaller than its predecessor counts as one rollover.
    """

    def __init__(self, bits: int = COUNTER_BITS) -> None:
        self._mod = 1 << bits
        self._last: int | None = None

    @property
    def last(self) -> int | None:
        """The last unwrapped value, or ``None`` before the first batch."""
        return self._last

    def reset(self) -> None:
        """Forget the history (e.g. after a reconnect)."""
        self._last = None

    def unwrap(self, raw: ArrayLike) -> NDArray[np.int64]:
        """Return monotonic tick counts for a batch of raw counter values.

        Parameters
        ----------
        raw : array_like of int
            Raw counter values in arrival order.

        Returns
        -------
        numpy.ndarray of int64
            Unwrapped ticks, continuing from the previous batch.
        """
        raw = np.asarray(raw, dtype=np.int64)
        if raw.size == 0:
            return raw
        if self._last is None:
            start = np.array([raw[0]], dtype=np.int64)
            base = int(raw[0])
        else:
            start = np.array([self._last % self._mod], dtype=np.int64)
            base = self._last
        steps = np.diff(np.concatenate((start, raw))) % self._mod
        out = base + np.cumsum(steps)
        self._last = int(out[-1])
        return out


def count_lost(ticks: ArrayLike, period_ticks: int, previous: int | None = None) -> int:
    """Count packets missing from a run of unwrapped ticks.

    Parameters
    ----------
    ticks : array_like of int
        Unwrapped ticks of consecutive received packets.
    period_ticks : int
        Ticks per sample (``32768 / rate``).
    previous : int, optional
        The unwrapped tick of the packet before this batch.

    Returns
    -------
    int
        Number of packets lost (gaps of more than one period, rounded).
    """
    ticks = np.asarray(ticks, dtype=np.int64)
    if previous is not None:
        ticks = np.concatenate(([previous], ticks))
    if ticks.size < 2 or period_ticks <= 0:
        return 0
    gaps = np.rint(np.diff(ticks) / period_ticks).astype(np.int64) - 1
    return int(gaps[gaps > 0].sum())


@dataclass(frozen=True, slots=True)
class ClockFit:
    """The current device → LSL mapping ``lsl = x + y_c + slope * (x - x_c)``.

    ``slope`` comes from a robust least-squares line through the per-bin minimum
    delays over the whole window; ``y_c`` is the lowest detrended delay among the
    most recent bins at ``x_c`` (the newest bin).
    """

    x_c: float
    y_c: float
    slope: float
    n_bins: int
    span_s: float
    residual_s: float

    @property
    def drift_ppm(self) -> float:
        """Device clock drift vs the host in ppm (positive: device runs slow)."""
        return self.slope * 1e6


class ClockMapper:
    """Map device seconds to LSL time with a lower-envelope robust linear fit.

    Parameters
    ----------
    window_s : float
        Length of the sliding window of device time used for the fit.
    bin_s : float
        Width of the bins in which the minimum delay is taken; should span
        several delivery bursts.
    min_bins_for_slope : int
        Below this many bins only an offset is fitted (slope 0).
    max_drift_ppm : float
        Fitted slopes beyond this are clipped (a real crystal stays well below).
    recent_s : float
        The intercept is the lowest detrended delay in this most recent span.

    Notes
    -----
    Times are in seconds: device time is unwrapped ticks / 32768, arrival time
    is ``pylsl.local_clock()`` at receipt. Not thread-safe; call from one thread.
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        bin_s: float = 0.5,
        min_bins_for_slope: int = 8,
        max_drift_ppm: float = 1000.0,
        recent_s: float = 5.0,
    ) -> None:
        self.window_s = float(window_s)
        self.bin_s = float(bin_s)
        self.min_bins_for_slope = int(min_bins_for_slope)
        self.max_slope = float(max_drift_ppm) * 1e-6
        self.recent_s = float(recent_s)
        self._bins: deque[list[float]] = deque()  # [bin index, x, y_min]
        self._fit: ClockFit | None = None

    @property
    def fit(self) -> ClockFit | None:
        """The current fit, or ``None`` before any data."""
        return self._fit

    def reset(self) -> None:
        """Drop all history (e.g. after the device clock restarted)."""
        self._bins.clear()
        self._fit = None

    def update(self, device_s: ArrayLike, arrival: ArrayLike) -> ClockFit | None:
        """Add a batch of (device time, arrival time) pairs and refit.

        Parameters
        ----------
        device_s : array_like of float
            Device time of each sample in seconds, increasing.
        arrival : array_like of float
            LSL time at which each sample was received.

        Returns
        -------
        ClockFit or None
            The updated fit.
        """
        x = np.asarray(device_s, dtype=np.float64)
        if x.size == 0:
            return self._fit
        y = np.asarray(arrival, dtype=np.float64) - x
        idx = np.floor(x / self.bin_s).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        ends = np.r_[starts[1:], x.size]
        for s, e in zip(starts, ends, strict=True):
            j = s + int(np.argmin(y[s:e]))
            b = int(idx[s])
            if self._bins and self._bins[-1][0] == b:
                if y[j] < self._bins[-1][2]:
                    self._bins[-1][1:] = [float(x[j]), float(y[j])]
            elif self._bins and b < self._bins[-1][0]:
                self.reset()  # device time went backwards: new epoch
                self._bins.append([b, float(x[j]), float(y[j])])
            else:
                self._bins.append([b, float(x[j]), float(y[j])])
        newest = self._bins[-1][1]
        while len(self._bins) > 2 and self._bins[0][1] < newest - self.window_s:
            self._bins.popleft()
        self._fit = self._refit()
        return self._fit

    def _refit(self) -> ClockFit:
        pts = np.asarray(self._bins, dtype=np.float64)
        xs, ys = pts[:, 1], pts[:, 2]
        span = float(xs[-1] - xs[0])
        slope, rms, n_used = 0.0, 0.0, len(xs)
        if len(xs) >= self.min_bins_for_slope:
            slope, rms, n_used = self._robust_slope(xs, ys)
        # Intercept: lowest delay among recent bins, detrended with the slope, so
        # the line hugs the lower envelope where new samples are being mapped.
        x0 = float(xs[-1])
        recent = xs >= x0 - self.recent_s
        y0 = float(np.min(ys[recent] - slope * (xs[recent] - x0)))
        return ClockFit(x0, y0, slope, n_used, span, rms)

    def _robust_slope(self, xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, int]:
        """Least squares through the bin minima, rejecting late outliers."""
        keep = np.ones(len(xs), dtype=bool)
        slope = 0.0
        for _ in range(4):
            x_c, y_c = float(xs[keep].mean()), float(ys[keep].mean())
            dx = xs[keep] - x_c
            denom = float(dx @ dx)
            slope = float(dx @ (ys[keep] - y_c)) / denom if denom > 0 else 0.0
            slope = float(np.clip(slope, -self.max_slope, self.max_slope))
            resid = ys - (y_c + slope * (xs - x_c))
            med = float(np.median(resid[keep]))
            mad = float(np.median(np.abs(resid[keep] - med))) + 1e-6
            new_keep = resid <= med + 3.0 * 1.4826 * mad
            if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
                break
            keep = new_keep
        rms = float(np.sqrt(np.mean(resid[keep] ** 2)))
        return slope, rms, int(keep.sum())

    def map(self, device_s: ArrayLike) -> NDArray[np.float64]:
        """Map device seconds to LSL time with the current fit.

        Raises
        ------
        RuntimeError
            If no data has been added yet.
        """
        if self._fit is None:
            raise RuntimeError("ClockMapper.map() called before update()")
        x = np.asarray(device_s, dtype=np.float64)
        f = self._fit
        return x + f.y_c + f.slope * (x - f.x_c)
