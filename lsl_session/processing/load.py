"""XDF → synchronized streams with pyxdf's semantics (SPEC §8 "Load and sync").

Reading is two passes per file: a header pass (:func:`lsl_session.xdf.load_raw`
with ``headers_only``) sizes one preallocated array per stream, then a sample pass
decodes every Samples chunk straight into it. All parts of a split recording are
concatenated per stream by ``(name, source_id)``. The stages after reading are pure
functions on arrays and reproduce ``pyxdf.load_xdf`` (sync + dejitter on, default
thresholds): the pylsl#67 truncation guard, clock-reset segmentation, the robust
(Huber, ADMM) clock-offset fit and the per-segment linear dejitter.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.errors import LslSessionError
from lsl_session.limits import BoundedList
from lsl_session.processing.buffers import populated
from lsl_session.processing.loss import measured_rate, missing_in_stamps
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.read_pass import read_samples as _read_samples
from lsl_session.processing.sync import (
    ClockFit,
    apply_clock_sync,
    can_drop_samples,
    dejitter,
    detect_clock_resets,
    fit_clock_offsets,
    robust_fit,
    truncate_corrupted_offsets,
)
from lsl_session.xdf import load_raw
from lsl_session.xdf._format import (
    DTYPES,
    XdfFormatError,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LoadResult",
    "apply_clock_sync",
    "dejitter",
    "detect_clock_resets",
    "fit_clock_offsets",
    "load_xdf_files",
    "robust_fit",
    "truncate_corrupted_offsets",
]


# ---------------------------------------------------------------- reading
@dataclass(slots=True)
class _Part:
    path: Path
    stream_id: int
    footer: dict[str, Any] | None
    times: np.ndarray
    values: np.ndarray


@dataclass(slots=True)
class _Plan:
    """One output stream: header info, parts and the preallocated arrays."""

    stream_id: int
    info: dict[str, Any]
    capacity: int
    parts: list[_Part] = field(default_factory=list)
    stamps: np.ndarray | None = None
    series: Any = None
    filled: int = 0
    clock_times: list[np.ndarray] = field(default_factory=list)
    clock_values: list[np.ndarray] = field(default_factory=list)

    @property
    def fmt(self) -> str:
        return self.info.get("channel_format") or ""

    def allocate(self) -> None:
        self.stamps = populated((self.capacity,), np.float64)
        nch = self.info.get("channel_count") or 0
        if self.fmt == "string":
            self.series = []
        else:
            self.series = populated((self.capacity, nch), DTYPES[self.fmt])


@dataclass(slots=True)
class LoadResult:
    """Streams of a session's XDF files, plus what went wrong while reading."""

    streams: list[SyncedStream]
    headers: list[dict[str, Any]]
    problems: list[str]
    files: list[str]


def _key(info: dict[str, Any], path: Path, sid: int) -> tuple[Any, ...]:
    if info.get("source_id"):
        return (info.get("name"), info.get("source_id"))
    return (info.get("name"), None, str(path), sid)


def _plan_files(paths: list[Path], problems: list[str]):
    plans: dict[tuple[Any, ...], _Plan] = {}
    per_file: list[tuple[Path, dict[int, _Plan], Any]] = []
    headers = []
    for path in paths:
        try:
            xdf = load_raw(path, headers_only=True)
        except (XdfFormatError, OSError) as err:
            problems.append(f"{path.name}: {err}")
            continue
        headers.append(xdf.header)
        problems.extend(f"{path.name}: {p}" for p in xdf.problems if "footer" not in p)
        by_sid = {}
        for sid, raw in xdf.streams.items():
            fmt = raw.channel_format
            if fmt not in DTYPES and fmt != "string":
                problems.append(f"{path.name}: stream {sid} skipped (format {fmt!r})")
                continue
            plan = plans.setdefault(_key(raw.info, path, sid), _Plan(sid, raw.info, 0))
            plan.capacity += raw.sample_count
            plan.parts.append(
                _Part(path, sid, raw.footer, raw.clock_times, raw.clock_values)
            )
            by_sid[sid] = plan
        per_file.append((path, by_sid, xdf))
    return plans, per_file, headers


def _synced(plan: _Plan, options: dict[str, Any]) -> SyncedStream:
    info = plan.info
    n = plan.filled
    stamps = plan.stamps[:n] if plan.stamps is not None else np.zeros(0)
    series = plan.series
    if plan.fmt != "string":
        series = series[:n] if n else np.zeros((0, info.get("channel_count") or 0))
    times = np.concatenate(plan.clock_times) if plan.clock_times else np.zeros(0)
    values = np.concatenate(plan.clock_values) if plan.clock_values else np.zeros(0)
    fits: list[ClockFit] = []
    clock_segments: list[tuple[int, int]] = []
    raw = stamps.copy() if relay_mapped(info) else None
    regular = float(info.get("nominal_srate") or 0.0) > 0
    stamp_rate = measured_rate(stamps) if regular else 0.0
    stamp_lost = missing_in_stamps(stamps, stamp_rate) if regular else 0
    srate_info = float(info.get("nominal_srate") or 0.0)
    recorded = (raw if raw is not None else stamps.copy()) if srate_info > 0 else None
    if n and len(times):
        fits = fit_clock_offsets(times, values, winsor=options.get("winsor", 1e-4))
        clock_segments = apply_clock_sync(stamps, times, fits)
    srate = float(info.get("nominal_srate") or 0.0)
    effective = 0.0
    if n and srate == 0:
        segments = [(0, n - 1)]
    elif n and can_drop_samples(info):
        segments = [(0, n - 1)]
        duration = stamps[-1] - stamps[0] if n > 1 else 0.0
        effective = (n - 1) / duration if duration > 0 else 0.0
    else:
        segments, effective = dejitter(stamps, srate) if n else ([], 0.0)
    labels, units, types = _channels(info)
    lost, measured = (None, None) if srate <= 0 else (stamp_lost, stamp_rate)
    report = {
        "ranges": [
            {
                "first": f.first,
                "last": f.last,
                "intercept": f.intercept,
                "slope": f.slope,
                "ok": f.ok,
            }
            for f in fits
        ],
    }
    if fits:
        model = np.empty_like(values)
        for f in fits:
            sl = slice(f.first, f.last + 1)
            model[sl] = f.intercept + f.slope * times[sl]
        resid = values - model
        report["residual_abs_median_s"] = float(np.median(np.abs(resid)))
        report["residual_abs_max_s"] = float(np.max(np.abs(resid)))
        report["residual_std_s"] = float(np.std(resid))
    report["clock_resets"] = max(0, len(fits) - 1)
    return SyncedStream(
        stream_id=plan.stream_id,
        name=info.get("name") or f"stream_{plan.stream_id}",
        type=info.get("type") or "",
        source_id=info.get("source_id") or "",
        channel_format=plan.fmt,
        channel_count=info.get("channel_count") or 0,
        nominal_srate=srate,
        effective_srate=float(effective),
        time_stamps=stamps,
        time_series=series,
        channel_labels=labels,
        channel_units=units,
        channel_types=types,
        info=info,
        footer=plan.parts[-1].footer if plan.parts else None,
        clock_times=times,
        clock_values=values,
        segments=segments,
        clock_segments=clock_segments,
        fit=report,
        raw_time_stamps=raw,
        stamp_lost=lost,
        measured_srate=measured,
        recorded_time_stamps=recorded,
    )


def relay_mapped(info: dict[str, Any]) -> bool:
    """Whether a stream's stamps were mapped from a phone clock by the relay."""
    try:
        method = info["desc"]["synchronization"][0]["method"][0]
    except (KeyError, IndexError, TypeError):
        return False
    return method == "ntp4-envelope"


def _channels(info: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    nch = info.get("channel_count") or 0
    try:
        chans = info["desc"]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        chans = []
    labels, units, types = [], [], []
    for k in range(nch):
        ch = chans[k] if k < len(chans) and isinstance(chans[k], dict) else {}

        def text(key: str, ch: dict = ch) -> str:
            value = ch.get(key, [None])
            return (value[0] if value else None) or ""

        labels.append(text("label") or f"ch{k + 1}")
        units.append(text("unit"))
        types.append(text("type"))
    return labels, units, types


def load_xdf_files(
    paths: list[Path | str] | Path | str, *, winsor: float = 1e-4
) -> LoadResult:
    """Load, synchronize and dejitter one XDF file or all parts of a recording.

    Parameters
    ----------
    paths : path or list of paths
        XDF files in recording order (``<id>.xdf``, ``<id>_part002.xdf``, …).
        Streams are concatenated across files by ``(name, source_id)``.
    winsor : float
        Huber threshold of the clock-offset fit, in seconds.

    Returns
    -------
    LoadResult
        Streams in order of first appearance; ``problems`` lists unreadable files,
        skipped chunks and streams.

    Raises
    ------
    LslSessionError
        If no file could be read at all, or no stream was found and something
        went wrong while reading (a valid file without streams loads empty).
    """
    files = [
        Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)
    ]
    problems: list[str] = BoundedList()
    plans, per_file, headers = _plan_files(files, problems)
    if not per_file:
        raise LslSessionError(
            "no readable XDF file: " + "; ".join(problems or [str(f) for f in files])
        )
    for plan in plans.values():
        plan.allocate()
    for path, by_sid, _ in per_file:
        bases = {sid: p.filled for sid, p in by_sid.items()}
        try:
            counts = _read_samples(path, by_sid, problems)
        except (OSError, XdfFormatError) as err:
            problems.append(f"{path.name}: {err}")
            continue
        for sid, plan in by_sid.items():
            part = next(p for p in plan.parts if p.path == path and p.stream_id == sid)
            footer_count = (part.footer or {}).get("sample_count")
            keep, keep_off = truncate_corrupted_offsets(
                counts[sid], footer_count, part.times, part.values
            )
            if keep < counts[sid]:
                problems.append(f"{path.name}: stream {sid}: pylsl#67 tail truncated")
                plan.filled = bases[sid] + keep
                if plan.fmt == "string":
                    del plan.series[plan.filled :]
            plan.clock_times.append(part.times[:keep_off])
            plan.clock_values.append(part.values[:keep_off])
    if not plans and problems:
        raise LslSessionError(f"no stream could be read: {problems[0]}")
    options = {"winsor": winsor}
    streams = [_synced(plan, options) for plan in plans.values()]
    return LoadResult(streams, headers, problems.closed(), [str(f) for f in files])
