"""Sync check: detect sync pulses in every stream and report the alignment error.

Pulse detection (pure functions in `lsl_session.processing.pulses`):

- numeric GSR-like streams (type ``GSR`` or a name ending in ``_gsr``; first
  channel): `detect_steps`, steps in the signal. The signal is median filtered,
  its first difference is compared with ``k`` robust standard deviations
  (1.4826 · MAD) of the raw first difference, and the onset is refined on the raw samples to the first sample
  past the midpoint between the levels before and after the step. A rectangular
  pulse gives one onset: edges closer than ``min_interval`` to an accepted onset
  are dropped.
- video frame streams (type ``VideoFrames``, ``<prefix>_frames``): `detect_flashes`
  on the mean brightness of the video ``<prefix>_YYYYMMDD_HHMMSS.*`` found in
  ``webcam/`` or ``devices/*/*_videos/``; the first frame of each flash is mapped
  to LSL time through the frame stream (frame k ↔ the sample whose value is k).
- marker streams: `sync_marker_times`, markers whose label starts with ``sync``.

The reference is the ``sync…`` markers of ``context.options["sync_reference"]``
(default ``StimulusMarkers``; a numeric or video stream works too, matched by
time). Every lab pulse carries an id (``sync_pulse 7``; phones send back
``sync_flash 7``), and each stream is held only to the pulses it was sent or
could observe (`lsl_session.processing.pulse_sets`): marker streams by id,
signals by time within ``±sync_window`` s (default 0.5). A stream sharing no
pulse with the reference is ``not checked (no shared pulses)`` and counts
neither as aligned nor as not aligned. Without reference pulses nothing is
checked (there is no consensus of unrelated pulse trains). The error is
``detected - reference``.

A regularly sampled stream is held only to the reference pulses it could have
seen: those at least ``SPAN_GUARD_SAMPLES`` sample periods inside its first and
last time stamps (a step or flash needs samples on both sides). Pulses outside
are counted in ``n_reference_outside`` (e.g. a pulse in the last instant before
the stop, which the markers caught but the batched device data did not).
Irregular streams (markers) are held to every reference pulse.

Outputs in ``processing/sync_check/``: ``sync_check.json`` (the report returned by
`SyncCheckProcessor.run`, with the matched pulses per stream, and
``phone_clocks``: per phone whether its stamps use the relay's live mapping or
the whole-session re-mapping, the live mapping's evidence from its
``<device>_clock`` stream and how far the re-mapping moved the stamps; see
`lsl_session.processing.phone_remap.phone_clock_section`) and
``sync_check.csv`` (one row per stream: ``stream, device, kind, n_reference,
n_reference_outside, n_detected, n_matched, offset_ms, median_error_ms, p95_error_ms, max_error_ms,
sample_period_ms, within_one_sample, checked, aligned, matched_by, note``;
``aligned`` is ``yes``, ``NO`` or the reason it was not checked). ``offset_ms`` is the median signed
error; the other ``*_error_ms`` are absolute. ``within_one_sample`` is true when
at least one pulse matched and the largest absolute error is at most one sample
period (one frame for video; 1 ms for irregular streams such as markers, 2 ms
for markers stamped on a phone's clock, whose live mapping is held to p99 ≤ 2 ms;
the row's ``tolerance_ms`` says which applied).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from lsl_session.fsutil import atomic_write_bytes
from lsl_session.processing.phone_remap import phone_clock_section
from lsl_session.processing.pulse_sets import Held, StreamPulses, held_pulses
from lsl_session.processing.pulses import (
    DEFAULT_WINDOW,
    detect_flashes,
    detect_steps,
    match_pulses,
    sync_marker_pulses,
    sync_marker_times,
)
from lsl_session.processing.video import (
    VIDEO_SUFFIXES,
    frame_times,
    iter_frames,
    video_prefix,
)

if TYPE_CHECKING:
    from lsl_session.processing.model import ProcessingContext, SyncedStream

logger = logging.getLogger(__name__)

__all__ = [
    "SyncCheckProcessor",
    "detect_flashes",
    "detect_steps",
    "device_of",
    "match_pulses",
    "stream_pulses",
    "sync_marker_times",
]

DEFAULT_REFERENCE = "StimulusMarkers"
IRREGULAR_TOLERANCE = 1e-3
#: Markers stamped on a phone's clock carry its mapping error: they are held to
#: the relay's live-mapping accuracy (p99 ≤ 2 ms, docs/phone-protocol.md §10b).
PHONE_MARKER_TOLERANCE = 2e-3
#: A pulse closer than this many sample periods to a stream's first or last
#: stamp cannot be detected in it (the step detector's median filter width).
SPAN_GUARD_SAMPLES = 5
_DEVICE_SUFFIXES = ("_rgb_frames", "_thermal_frames", "_frames", "_gsr", "_events")


def sample_period(stream: SyncedStream) -> float | None:
    """Return a stream's sample period in seconds (None for irregular streams)."""
    for rate in (stream.effective_srate, stream.nominal_srate):
        if rate and rate > 0:
            return 1.0 / float(rate)
    ts = np.asarray(stream.time_stamps, float)
    if ts.size > 2 and not stream.is_string:
        return float(np.median(np.diff(ts)))
    return None


def observable_span(
    stream: SyncedStream, period: float | None
) -> tuple[float, float] | None:
    """Return the time range in which a stream can show a pulse (None: any time).

    Irregular streams (``period`` None) and streams with fewer than two stamps
    have no span: every reference pulse counts for them.
    """
    ts = np.asarray(stream.time_stamps, float)
    if period is None or ts.size < 2:
        return None
    guard = SPAN_GUARD_SAMPLES * period
    return float(ts[0] + guard), float(ts[-1] - guard)


def device_of(stream_name: str) -> str:
    """Return the device part of a stream name (``phone_1_gsr`` → ``phone_1``)."""
    for suffix in _DEVICE_SUFFIXES:
        if stream_name.endswith(suffix) and len(stream_name) > len(suffix):
            return stream_name[: -len(suffix)]
    return stream_name


def find_video(root: Path, frame_stream: str) -> Path | None:
    """Return the video of a frame stream (``<prefix>_frames``), or None."""
    if not frame_stream.endswith("_frames"):
        return None
    prefix = frame_stream[: -len("_frames")]
    folders = [root / "webcam", *sorted((root / "devices").glob("*/*_videos"))]
    hits = [
        p
        for f in folders
        if f.is_dir()
        for p in sorted(f.iterdir())
        if p.suffix.lower() in VIDEO_SUFFIXES and video_prefix(p) == prefix
    ]
    if len(hits) > 1:
        logger.warning("Several videos for %s, using %s", frame_stream, hits[0].name)
    return hits[0] if hits else None


def video_brightness(path: Path | str) -> np.ndarray:
    """Return the mean grey level of every frame of a video."""
    return np.array(
        [cv2.mean(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))[0] for f in iter_frames(path)]
    )


def stream_pulses(
    stream: SyncedStream, root: Path, options: dict[str, Any]
) -> StreamPulses | None:
    """Detect the sync pulses of one stream.

    Parameters
    ----------
    stream : SyncedStream
        The stream.
    root : pathlib.Path
        Session folder (videos are looked up there).
    options : dict
        ``sync_k``, ``sync_polarity``, ``sync_min_interval``, ``sync_step_streams``.

    Returns
    -------
    StreamPulses or None
        Kind ``"markers"`` (with the pulse ids of the labels), ``"steps"`` or
        ``"video"``, pulse LSL times, note, sample period and observable span;
        None if the stream carries no kind of pulse we know.
    """
    period = sample_period(stream)
    span = observable_span(stream, period)
    if stream.is_string:
        t, ids = sync_marker_pulses(stream)
        if not t.size:
            return None
        return StreamPulses(stream.name, "markers", t, ids, "", period, span)
    ts = np.asarray(stream.time_stamps, float)
    is_step = (
        stream.type.lower() == "gsr"
        or stream.name.endswith("_gsr")
        or stream.name in options.get("sync_step_streams", ())
    )
    if is_step:
        values = np.asarray(stream.time_series, float).reshape(ts.size, -1)
        idx = detect_steps(
            ts,
            values[:, 0] if values.size else np.zeros(0),
            k=float(options.get("sync_k", 8.0)),
            polarity=str(options.get("sync_polarity", "both")),
            min_interval=float(options.get("sync_min_interval", 1.0)),
        )
        # a step between samples i-1 and i happened somewhere in that interval:
        # its midpoint halves the worst-case sampling error (period/2, not period)
        idx = np.asarray(idx, dtype=int)
        prev = np.maximum(idx - 1, 0)
        t = (ts[prev] + ts[idx]) / 2
        note = "onset = midpoint of the step's samples"
        return StreamPulses(stream.name, "steps", t, _anonymous(t), note, period, span)
    if stream.type.lower() == "videoframes":
        video = find_video(root, stream.name)
        if video is None:
            none = np.zeros(0)
            return StreamPulses(
                stream.name, "video", none, _anonymous(none), "video not found",
                period, span,
            )  # fmt: skip
        brightness = video_brightness(video)
        onsets = detect_flashes(brightness)
        t = frame_times(stream, brightness.size)[onsets]
        note = "" if np.isfinite(t).all() else "flash frames without LSL time dropped"
        t = t[np.isfinite(t)]
        return StreamPulses(stream.name, "video", t, _anonymous(t), note, period, span)
    return None


def _anonymous(times: np.ndarray) -> np.ndarray:
    """Ids of pulses that carry none (signals: a step or a flash has no id)."""
    return np.full(times.size, -1, np.int64)


def alignment_row(
    name: str,
    kind: str,
    detected: np.ndarray,
    reference: np.ndarray,
    period: float | None,
    *,
    window: float = DEFAULT_WINDOW,
    t0: float = 0.0,
    n_outside: int = 0,
    tolerance: float | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Match one stream's pulses to the reference and summarise the errors.

    ``tolerance`` (s) replaces `IRREGULAR_TOLERANCE` for an irregular stream.
    ``pairs`` (detected, reference indices) are pulses matched by id; without
    them pulses are matched by time within ``window``. ``reason`` marks a
    stream that is not checked (``aligned`` says why; nothing is matched).

    Returns
    -------
    dict
        One report row (see the module docstring) plus ``pulses``: matched
        ``[reference time since t0 (s), detected time since t0 (s), error (ms)]``.
    """
    if reason is not None:
        di = ri = np.zeros(0, np.int64)
    elif pairs is not None:
        di, ri = pairs
    else:
        di, ri = match_pulses(detected, reference, window=window)
    err = detected[di] - reference[ri]
    aligned = bool(
        err.size
        and np.abs(err).max()
        <= (period if period is not None else (tolerance or IRREGULAR_TOLERANCE)) + 1e-9
    )
    abs_ms = np.abs(err) * 1e3
    tol = period if period is not None else (tolerance or IRREGULAR_TOLERANCE)

    def stat(v: float) -> float | None:
        return round(float(v), 3) if err.size else None

    return {
        "stream": name,
        "device": device_of(name),
        "kind": kind,
        "n_reference": 0 if reason else int(reference.size),
        "n_reference_outside": n_outside,
        "n_detected": int(detected.size),
        "n_matched": int(err.size),
        "offset_ms": stat(np.median(err) * 1e3 if err.size else 0),
        "median_error_ms": stat(np.median(abs_ms) if err.size else 0),
        "p95_error_ms": stat(np.percentile(abs_ms, 95) if err.size else 0),
        "max_error_ms": stat(abs_ms.max() if err.size else 0),
        "sample_period_ms": None if period is None else round(period * 1e3, 3),
        "within_one_sample": aligned,
        "tolerance_ms": round(tol * 1e3, 3),
        "checked": reason is None,
        "aligned": reason or ("yes" if aligned else "NO"),
        "matched_by": "id" if pairs is not None else "time",
        "note": "",
        "pulses": [
            [round(r - t0, 6), round(d - t0, 6), round(e * 1e3, 3)]
            for r, d, e in zip(reference[ri], detected[di], err, strict=True)
        ],
    }


def csv_columns() -> list[str]:
    """The columns of ``sync_check.csv``, in order (the header is written with no rows)."""
    empty = np.empty(0)
    return [k for k in alignment_row("", "", empty, empty, None) if k != "pulses"]


class SyncCheckProcessor:
    """Processor ``sync_check``: per-stream sync-pulse alignment against a reference.

    See the module docstring for detection, matching, options and outputs.
    """

    name = "sync_check"

    def run(self, context: ProcessingContext) -> dict[str, Any]:
        """Detect pulses, match them to the reference, write JSON and CSV.

        Parameters
        ----------
        context : ProcessingContext
            Session, synced streams, output folder, ``t0`` and options
            (``sync_reference``, ``sync_window`` and those of `stream_pulses`).

        Returns
        -------
        dict
            ``{"reference": {"stream", "n_pulses"}, "window_s", "streams": [row, ...]}``
            with one row per stream that carries pulses (see `alignment_row`).
        """
        opts = context.options
        window = float(opts.get("sync_window", DEFAULT_WINDOW))
        ref_name = opts.get("sync_reference") or DEFAULT_REFERENCE
        root = context.paths.root
        found: dict[str, StreamPulses] = {}
        for stream in context.streams:
            pulses = stream_pulses(stream, root, opts)
            if pulses is not None:
                found[stream.name] = pulses
        ref = found.pop(ref_name, None)
        if ref is None or not ref.times.size:
            # a recording without the lab's marker stream (anyone's own streams)
            # has nothing to check: the verdict says so; a reference that was
            # recorded but sent no pulse is worth a warning
            recorded = any(s.name == ref_name for s in context.streams)
            (logger.warning if recorded else logger.info)(
                "Sync check: the reference %r %s",
                ref_name,
                "has no pulses" if recorded else "was not recorded",
            )
            ref_times, ref_ids = np.zeros(0), np.zeros(0, np.int64)
        else:
            ref_times, ref_ids = ref.times, ref.ids
        events = {device_of(n): p for n, p in found.items() if n.endswith("_events")}
        clocks = phone_clock_section(context.streams)
        on_phone_clock = {n for c in clocks.values() for n in c["streams"]}
        rows = []
        for name, p in found.items():
            companion = events.get(device_of(name)) if p.kind != "markers" else None
            held: Held = held_pulses(p, ref_times, ref_ids, companion, window)
            row = alignment_row(
                name,
                p.kind,
                held.detected,
                held.reference,
                p.period,
                window=window,
                t0=context.t0,
                n_outside=held.n_outside,
                tolerance=PHONE_MARKER_TOLERANCE if name in on_phone_clock else None,
                pairs=held.pairs,
                reason=held.reason,
            )
            row["n_detected"] = int(p.times.size)
            row["note"] = p.note
            rows.append(row)
        source = ref_name
        report = {
            "reference": {
                "stream": source,
                "n_pulses": int(ref_times.size),
                "identified": bool(np.any(ref_ids >= 0)),
            },
            "window_s": window,
            "streams": rows,
            "phone_clocks": clocks,
        }
        out = Path(context.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "sync_check.json", json.dumps(report, indent=2))
        table = pd.DataFrame(
            [{k: v for k, v in r.items() if k != "pulses"} for r in rows],
            columns=csv_columns(),  # the header also when no stream has pulses
        )
        _write_atomic(out / "sync_check.csv", table.to_csv(index=False))
        logger.info(
            "Sync check: %d streams against %s (%d pulses)",
            len(rows),
            source,
            ref_times.size,
        )
        return report


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
