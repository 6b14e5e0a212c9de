"""Per-stream figures of the report: every channel with its name, unit and y scale.

A numeric stream is drawn as small multiples, one panel per channel, in pages of
`CHANNELS_PER_FIGURE` (the report shows each page in its own ``<details>``: a
selector without scripts). Gaps (an interval longer than `GAP_PERIODS` sample
periods) are NaN breaks, never a straight line across. A marker stream is its
ticks with their labels (at most `MAX_LABELS`, evenly chosen). Text comes from
peers: drawn with `figures.plain_text` (no mathtext, no TeX).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from lsl_session.report.figures import MAX_POINTS, _png, plain_text

#: Channels per figure (a page of the channel selector).
CHANNELS_PER_FIGURE = 8
#: Channels of one stream drawn at most (pages beyond are not made).
MAX_CHANNELS = 64
#: An interval longer than this many sample periods is a gap (drawn as a break).
GAP_PERIODS = 2.0
#: Marker labels written on a marker figure.
MAX_LABELS = 60


def with_breaks(
    t: np.ndarray, v: np.ndarray, period: float
) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN row after every gap longer than `GAP_PERIODS` × ``period``.

    Parameters
    ----------
    t : numpy.ndarray
        Time stamps (n,).
    v : numpy.ndarray
        Values (n, channels).
    period : float
        Seconds between plotted samples (after downsampling).
    """
    if len(t) < 2 or period <= 0:
        return t, v
    gaps = np.flatnonzero(np.diff(t) > GAP_PERIODS * period)
    if not gaps.size:
        return t, v
    t_out = np.insert(t, gaps + 1, np.nan)
    v_out = np.insert(v.astype(np.float64), gaps + 1, np.nan, axis=0)
    return t_out, v_out


def _period(t: np.ndarray, nominal: float, stride: int) -> float:
    if nominal > 0:
        return stride / nominal
    steps = np.diff(t)
    return float(np.median(steps)) if steps.size else 0.0


@plain_text
def channels(stream: Any, t0: float, picks: list[int]) -> bytes:
    """Small multiples of ``picks`` (channel indices) of a numeric stream."""
    t = np.asarray(stream.time_stamps, dtype=np.float64) - t0
    stride = max(1, len(t) // MAX_POINTS)
    values = np.asarray(stream.time_series)[::stride][:, picks].astype(np.float64)
    t = t[::stride]
    t, values = with_breaks(t, values, _period(t, stream.nominal_srate, stride))
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 1.1 * len(picks) + 0.6),
                             sharex=True, squeeze=False)  # fmt: skip
    for row, (ax, k) in enumerate(zip(axes[:, 0], picks, strict=True)):
        label = stream.channel_labels[k] if k < len(stream.channel_labels) else ""
        unit = stream.channel_units[k] if k < len(stream.channel_units) else ""
        ax.plot(t, values[:, row], lw=0.7, color=f"C{row % 10}")
        ax.set_ylabel(f"{label or f'ch{k + 1}'}\n({unit or 'no unit'})"[:40],
                      rotation=0, ha="right", va="center", fontsize=8)  # fmt: skip
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, lw=0.3, alpha=0.5)
    axes[-1, 0].set_xlabel("time since session start (s)")
    return _png(fig)


@plain_text
def markers(stream: Any, t0: float) -> bytes:
    """A marker stream's ticks, labelled (at most `MAX_LABELS` labels)."""
    t = np.asarray(stream.time_stamps, dtype=np.float64) - t0
    labels = ["/".join(map(str, row)) for row in stream.time_series]
    fig, ax = plt.subplots(figsize=(10, 1.8))
    ax.eventplot(t, lineoffsets=0.2, linelengths=0.4, colors="C3")
    chosen = np.unique(np.linspace(0, len(t) - 1, min(len(t), MAX_LABELS)).astype(int))
    for i in chosen if len(t) else []:
        ax.text(t[i], 0.45, labels[i][:24], rotation=60, fontsize=7, ha="left",
                va="bottom")  # fmt: skip
    ax.set_ylim(0, 1.6)
    ax.set_yticks([])
    ax.set_xlabel("time since session start (s)")
    return _png(fig)


def timeline_rows(events: list[dict[str, Any]]) -> list[str]:
    """The timeline's rows: the events' streams, in order of appearance (≤ 24)."""
    return list(dict.fromkeys(str(e.get("stream") or "events") for e in events))[:24]


@plain_text
def timeline(events: list[dict[str, Any]], t0: float) -> bytes | None:
    """Every event over time: one row per stream, each tick with its description."""
    timed = [e for e in events if isinstance(e.get("lsl_time"), int | float)]
    if not timed:
        return None
    rows = timeline_rows(timed)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.4))
    for k, row in enumerate(rows):
        mine = [e for e in timed if str(e.get("stream") or "events") == row]
        t = np.array([e["lsl_time"] - t0 for e in mine])
        ax.plot(t, np.full(len(t), k), "|", ms=12, color=f"C{k % 10}")
        chosen = np.unique(np.linspace(0, len(t) - 1, min(len(t), MAX_LABELS // 2)))
        for i in chosen.astype(int):
            text = str(mine[i].get("description") or mine[i].get("value") or "")
            ax.text(t[i], k - 0.18, text[:20], fontsize=6, rotation=30, ha="left")
    ax.set_yticks(range(len(rows)), [r[:32] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.8)
    ax.set_xlabel("time since session start (s)")
    ax.set_title("Event timeline (one row per stream)")
    return _png(fig)
