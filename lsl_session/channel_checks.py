"""Flat and clipped channels: the two checks the report and the live dashboard share.

- **Flat**: a channel whose finite values never change (zero variance) over at least
  `MIN_SAMPLES` samples — an unplugged electrode, a sensor that stopped, a constant
  placeholder.
- **Clipped**: a channel stuck at its extreme: the highest (or lowest) value occurs
  in at least `CLIP_FRACTION` of the samples (and `CLIP_MIN_SAMPLES`), more than
  `CLIP_DOMINANCE` times as often as the next value below (above) it, among at least
  `CLIP_MIN_LEVELS` distinct values. Saturation piles every sample beyond the range
  onto one value; noise, quantisation and a two-level sync step do not (a step has
  too few levels, noisy levels have neighbours as frequent).

Both look at values only (no units or declared ranges: LSL rarely carries them).
Pure numpy; a loop over channels, never over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Stream types (lower case) the pipeline publishes for its own bookkeeping (a
#: phone's clock mapping and clock exchanges): never checked, never drawn as data.
INTERNAL_TYPES = frozenset({"clockmapping", "clockexchanges"})
#: Samples a channel needs before it can be called flat or clipped.
MIN_SAMPLES = 10
#: Clipped: the extreme value holds at least this fraction of the samples …
CLIP_FRACTION = 0.005
CLIP_MIN_SAMPLES = 3
#: … this many times the count of the next value, …
CLIP_DOMINANCE = 3.0
#: … among at least this many distinct values.
CLIP_MIN_LEVELS = 5
#: Samples per channel examined (evenly strided beyond): bounds the cost.
MAX_SAMPLES = 200_000


@dataclass(frozen=True, slots=True)
class ChannelFlag:
    """One flagged channel: ``kind`` is ``flat`` or ``clipped``; ``value`` the level."""

    channel: int
    kind: str
    value: float
    fraction: float

    def text(self, label: str, unit: str = "") -> str:
        """A short phrase for a user: ``Fz: flat at 0 µV``."""
        unit = f" {unit}" if unit else ""
        if self.kind == "flat":
            return f"{label}: flat at {self.value:.6g}{unit}"
        return (
            f"{label}: clipped at {self.value:.6g}{unit} "
            f"({self.fraction * 100:.1f} % of samples)"
        )


def _clip_side(levels: np.ndarray, counts: np.ndarray, n: int, top: bool) -> bool:
    k, nxt = (-1, -2) if top else (0, 1)
    need = max(CLIP_MIN_SAMPLES, CLIP_FRACTION * n)
    return bool(counts[k] >= need and counts[k] > CLIP_DOMINANCE * counts[nxt])


def channel_flags(values: np.ndarray) -> list[ChannelFlag]:
    """Flat and clipped channels of ``values`` (samples × channels).

    Parameters
    ----------
    values : numpy.ndarray
        Numeric samples, one column per channel; NaN (gaps) is ignored.

    Returns
    -------
    list of ChannelFlag
        At most one flag per channel, in channel order.
    """
    data = np.asarray(values)
    if data.ndim == 1:
        data = data[:, None]
    if len(data) > MAX_SAMPLES:  # strided before the float64 copy: never the whole
        data = data[:: -(-len(data) // MAX_SAMPLES)]
    data = data.astype(np.float64)
    out: list[ChannelFlag] = []
    for k in range(data.shape[1]):
        col = data[:, k]
        col = col[np.isfinite(col)]
        n = len(col)
        if n < MIN_SAMPLES:
            continue
        lo, hi = float(col.min()), float(col.max())
        if lo == hi:
            out.append(ChannelFlag(k, "flat", hi, 1.0))
            continue
        levels, counts = np.unique(col, return_counts=True)
        if len(levels) < CLIP_MIN_LEVELS:
            continue
        for top in (True, False):
            if _clip_side(levels, counts, n, top):
                i = -1 if top else 0
                out.append(
                    ChannelFlag(k, "clipped", float(levels[i]), float(counts[i]) / n)
                )
                break
    return out


#: Rows per block of `finite_range` (bounds its temporary copies).
RANGE_BLOCK_ROWS = 65_536


def finite_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: the smallest and largest finite value, and whether there is one.

    One pass in row blocks of `RANGE_BLOCK_ROWS` (never a float64 copy of the
    whole array); NaN and ±inf are ignored.

    Returns
    -------
    (mins, maxs, present) : tuple of numpy.ndarray
        float64 arrays (one entry per channel; ±inf where ``present`` is False) and
        the boolean ``present``.
    """
    data = np.asarray(values)
    if data.ndim == 1:
        data = data[:, None]
    nch = data.shape[1] if data.ndim == 2 else 0
    mins, maxs = np.full(nch, np.inf), np.full(nch, -np.inf)
    present = np.zeros(nch, dtype=bool)
    for start in range(0, len(data), RANGE_BLOCK_ROWS):
        block = data[start : start + RANGE_BLOCK_ROWS].astype(np.float64)
        finite = np.isfinite(block)
        present |= finite.any(axis=0)
        np.minimum(mins, np.where(finite, block, np.inf).min(axis=0), out=mins)
        np.maximum(maxs, np.where(finite, block, -np.inf).max(axis=0), out=maxs)
    return mins, maxs, present
