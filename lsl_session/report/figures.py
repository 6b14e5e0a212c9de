"""Matplotlib figures of the session report, each returned as PNG bytes.

Every figure is downsampled before plotting (at most `MAX_POINTS` per line) and
covers at most `MAX_STREAMS` streams, so the report's cost and size stay bounded
whatever the recording's length. Every figure is drawn with mathtext and TeX off
(`plain_text`): stream names, types, labels and event names come from peers, and
``x_$\\foo{x}$`` must be shown as typed, never parsed.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

#: Points per plotted line, streams per figure, channels per stream.
MAX_POINTS = 1500
MAX_STREAMS = 24
MAX_CHANNELS = 4


_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Text is never parsed: no mathtext (``$…$``), no TeX, whatever matplotlibrc says.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(draw: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a figure function with `PLAIN_TEXT` (labels created while drawing too)."""

    @functools.wraps(draw)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _stride(n: int) -> slice:
    return slice(None, None, max(1, n // MAX_POINTS))


@plain_text
def overview(streams: list[Any], t0: float) -> bytes:
    """One panel per stream: first channels (numeric) or marker ticks (strings)."""
    shown = streams[:MAX_STREAMS]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(10, 1.3 * len(shown) + 0.5), sharex=True, squeeze=False
    )
    for ax, s in zip(axes[:, 0], shown, strict=True):
        t = np.asarray(s.time_stamps) - t0
        if s.is_string or not len(t):
            ax.eventplot(t, lineoffsets=0.5, linelengths=0.8, colors="C3")
            ax.set_yticks([])
        else:
            sl = _stride(len(t))
            values = np.asarray(s.time_series)[sl, :MAX_CHANNELS].astype(np.float64)
            for k in range(values.shape[1]):
                col = values[:, k]
                spread = (
                    np.nanmax(col) - np.nanmin(col) if np.isfinite(col).any() else 0
                )
                norm = (col - np.nanmin(col)) / spread if spread else col * 0
                ax.plot(t[sl], norm + k, lw=0.6)
            ax.set_yticks([])
        ax.set_ylabel(s.name[:28], rotation=0, ha="right", fontsize=8)
    axes[-1, 0].set_xlabel("time since session start (s)")
    fig.suptitle("Streams (first channels, each scaled to its range)")
    return _png(fig)


@plain_text
def rates(streams: list[Any]) -> bytes:
    """Effective rate relative to nominal, with the gap count, per regular stream."""
    regular = [s for s in streams if s.nominal_srate > 0][:MAX_STREAMS]
    fig, ax = plt.subplots(figsize=(10, 0.35 * max(len(regular), 1) + 1))
    names = [s.name[:32] for s in regular]
    ratio = [
        (s.effective_srate / s.nominal_srate - 1) * 100 if s.nominal_srate else 0
        for s in regular
    ]
    ax.barh(names, ratio, color=["C3" if abs(r) > 5 else "C0" for r in ratio])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("effective rate − nominal (%)")
    ax.set_title("Effective vs nominal rate (red: off by > 5 %)")
    ax.invert_yaxis()
    return _png(fig)


@plain_text
def clock_offsets(streams: list[Any]) -> bytes | None:
    """Clock offsets over time, the fitted line and the residuals, per stream."""
    with_offsets = [s for s in streams if len(s.clock_times)][:MAX_STREAMS]
    if not with_offsets:
        return None
    fig, axes = plt.subplots(
        len(with_offsets), 2, figsize=(10, 1.5 * len(with_offsets) + 0.5), squeeze=False
    )
    for (ax, rax), s in zip(axes, with_offsets, strict=True):
        times = np.asarray(s.clock_times)
        values = np.asarray(s.clock_values)
        model = np.full_like(values, np.nan)
        for fit in s.fit.get("ranges", []):
            sl = slice(fit["first"], fit["last"] + 1)
            model[sl] = fit["intercept"] + fit["slope"] * times[sl]
        rel = times - times[0]
        ax.plot(rel, values * 1e3, ".", ms=3)
        ax.plot(rel, model * 1e3, "-", lw=1, color="C1")
        ax.set_ylabel(s.name[:24], rotation=0, ha="right", fontsize=8)
        rax.plot(rel, (values - model) * 1e3, ".", ms=3, color="C2")
        rax.axhline(0, color="k", lw=0.5)
    axes[0, 0].set_title("clock offset (ms) and fitted line")
    axes[0, 1].set_title("residual (ms)")
    axes[-1, 0].set_xlabel("seconds since first offset")
    axes[-1, 1].set_xlabel("seconds since first offset")
    return _png(fig)


@plain_text
def sync_errors(sync_report: dict[str, Any]) -> bytes | None:
    """Per-stream alignment error of every matched sync pulse, with one sample period."""
    rows = [r for r in sync_report.get("streams", []) if r.get("pulses")][:MAX_STREAMS]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.2))
    for k, row in enumerate(rows):
        errors = [p[2] for p in row["pulses"]]
        ax.plot(
            errors,
            [k] * len(errors),
            "o",
            ms=4,
            color="C0" if row.get("within_one_sample") else "C3",
        )
        period = row.get("sample_period_ms")
        if period:
            ax.plot([-period, period], [k, k], "|", ms=12, color="0.5")
    ax.set_yticks(range(len(rows)), [r["stream"][:32] for r in rows])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("pulse time − reference (ms); grey ticks: ± one sample period")
    ax.set_title("Sync check: alignment error against the sync pulses")
    ax.invert_yaxis()
    return _png(fig)


@plain_text
def timeline(events: list[dict[str, Any]], t0: float) -> bytes | None:
    """The session's events over time, one row per event type."""
    timed = [e for e in events if isinstance(e.get("lsl_time"), int | float)]
    if not timed:
        return None
    kinds = sorted({str(e.get("event")) for e in timed})[:MAX_STREAMS]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(kinds) + 1.2))
    for k, kind in enumerate(kinds):
        t = [e["lsl_time"] - t0 for e in timed if str(e.get("event")) == kind]
        ax.plot(t, [k] * len(t), "|", ms=10)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("time since session start (s)")
    ax.set_title("Event timeline")
    ax.invert_yaxis()
    return _png(fig)
