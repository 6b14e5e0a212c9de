"""Sync check: detect sync pulses in every stream and report the alignment error.

Pulse detection (pure functions, tested on synthetic arrays):

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
(default ``StimulusMarkers``; a numeric or video stream works too). Without it
the reference is `consensus_reference`: the median over streams of each pulse.
Each detected pulse is matched one-to-one to the nearest reference pulse within
``±sync_window`` s (default 0.5). The error is ``detected - reference``.

Outputs in ``processing/sync_check/``: ``sync_check.json`` (the report returned by
`SyncCheckProcessor.run`, with the matched pulses per stream) and
``sync_check.csv`` (one row per stream: ``stream, device, kind, n_reference,
n_detected, n_matched, offset_ms, median_error_ms, p95_error_ms, max_error_ms,
sample_period_ms, within_one_sample, note``). ``offset_ms`` is the median signed
error; the other ``*_error_ms`` are absolute. ``within_one_sample`` is true when
at least one pulse matched and the largest absolute error is at most one sample
period (one frame for video; 1 ms for irregular streams such as markers).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from lsl_session.processing.hands import (
    VIDEO_SUFFIXES,
    frame_times,
    iter_frames,
    video_prefix,
)

if TYPE_CHECKING:
    from lsl_session.processing.model import ProcessingContext, SyncedStream

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE = "StimulusMarkers"
DEFAULT_WINDOW = 0.5
IRREGULAR_TOLERANCE = 1e-3
_MAD_TO_SIGMA = 1.4826
_DEVICE_SUFFIXES = ("_rgb_frames", "_thermal_frames", "_frames", "_gsr", "_events")


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


def sync_marker_times(stream: SyncedStream) -> np.ndarray:
    """Return the time stamps of the markers whose label starts with ``sync``."""
    if not stream.is_string:
        return np.zeros(0)
    labels = [
        s[0] if isinstance(s, list | tuple) and s else s for s in stream.time_series
    ]
    hit = np.array([str(lb).lower().startswith("sync") for lb in labels], bool)
    return np.asarray(stream.time_stamps, dtype=float)[hit] if hit.size else np.zeros(0)


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


def consensus_reference(
    pulses: list[np.ndarray], *, window: float = DEFAULT_WINDOW, min_streams: int = 2
) -> np.ndarray:
    """Build a reference from several streams: the median time of each pulse.

    Parameters
    ----------
    pulses : list of numpy.ndarray
        Detected pulse times of each stream.
    window : float
        Pulses of different streams closer than this belong to one event.
    min_streams : int
        Smallest number of streams an event needs (capped at ``len(pulses)``).

    Returns
    -------
    numpy.ndarray
        Sorted reference times.
    """
    times = np.concatenate([np.asarray(p, float) for p in pulses] or [np.zeros(0)])
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(pulses)] or [[]])
    if times.size == 0:
        return np.zeros(0)
    order = np.argsort(times, kind="stable")
    times, owner = times[order], owner[order]
    groups = np.split(
        np.arange(times.size), np.flatnonzero(np.diff(times) > window) + 1
    )
    need = max(1, min(min_streams, len(pulses)))
    out = []
    for g in groups:
        _, first = np.unique(owner[g], return_index=True)  # one pulse per stream
        if first.size >= need:
            out.append(float(np.median(times[g][first])))
    return np.array(out)


def sample_period(stream: SyncedStream) -> float | None:
    """Return a stream's sample period in seconds (None for irregular streams)."""
    for rate in (stream.effective_srate, stream.nominal_srate):
        if rate and rate > 0:
            return 1.0 / float(rate)
    ts = np.asarray(stream.time_stamps, float)
    if ts.size > 2 and not stream.is_string:
        return float(np.median(np.diff(ts)))
    return None


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
) -> tuple[str, np.ndarray, str] | None:
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
    tuple or None
        ``(kind, pulse LSL times, note)`` with kind ``"markers"``, ``"steps"`` or
        ``"video"``; None if the stream carries no kind of pulse we know.
    """
    if stream.is_string:
        t = sync_marker_times(stream)
        return ("markers", t, "") if t.size else None
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
        return (
            "steps",
            (ts[prev] + ts[idx]) / 2,
            "onset = midpoint of the step's samples",
        )
    if stream.type.lower() == "videoframes":
        video = find_video(root, stream.name)
        if video is None:
            return "video", np.zeros(0), "video not found"
        brightness = video_brightness(video)
        onsets = detect_flashes(brightness)
        t = frame_times(stream, brightness.size)[onsets]
        note = "" if np.isfinite(t).all() else "flash frames without LSL time dropped"
        return "video", t[np.isfinite(t)], note
    return None


def alignment_row(
    name: str,
    kind: str,
    detected: np.ndarray,
    reference: np.ndarray,
    period: float | None,
    *,
    window: float = DEFAULT_WINDOW,
    t0: float = 0.0,
) -> dict[str, Any]:
    """Match one stream's pulses to the reference and summarise the errors.

    Returns
    -------
    dict
        One report row (see the module docstring) plus ``pulses``: matched
        ``[reference time since t0 (s), detected time since t0 (s), error (ms)]``.
    """
    di, ri = match_pulses(detected, reference, window=window)
    err = detected[di] - reference[ri]
    abs_ms = np.abs(err) * 1e3
    tol = period if period is not None else IRREGULAR_TOLERANCE

    def stat(v: float) -> float | None:
        return round(float(v), 3) if err.size else None

    return {
        "stream": name,
        "device": device_of(name),
        "kind": kind,
        "n_reference": int(reference.size),
        "n_detected": int(detected.size),
        "n_matched": int(err.size),
        "offset_ms": stat(np.median(err) * 1e3 if err.size else 0),
        "median_error_ms": stat(np.median(abs_ms) if err.size else 0),
        "p95_error_ms": stat(np.percentile(abs_ms, 95) if err.size else 0),
        "max_error_ms": stat(abs_ms.max() if err.size else 0),
        "sample_period_ms": None if period is None else round(period * 1e3, 3),
        "within_one_sample": bool(err.size and np.abs(err).max() <= tol + 1e-9),
        "note": "",
        "pulses": [
            [round(r - t0, 6), round(d - t0, 6), round(e * 1e3, 3)]
            for r, d, e in zip(reference[ri], detected[di], err, strict=True)
        ],
    }


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
        found: dict[str, tuple[str, np.ndarray, str, float | None]] = {}
        for stream in context.streams:
            pulses = stream_pulses(stream, root, opts)
            if pulses is not None:
                found[stream.name] = (*pulses, sample_period(stream))
        if ref_name in found and found[ref_name][1].size:
            reference, source = found.pop(ref_name)[1], ref_name
        else:
            if opts.get("sync_reference"):
                logger.warning(
                    "Sync reference %r has no pulses: using consensus", ref_name
                )
            found.pop(ref_name, None)
            reference = consensus_reference(
                [v[1] for v in found.values()], window=window
            )
            source = "consensus"
        rows = []
        for name, (kind, times, note, period) in found.items():
            row = alignment_row(
                name, kind, times, reference, period, window=window, t0=context.t0
            )
            row["note"] = note
            rows.append(row)
        report = {
            "reference": {"stream": source, "n_pulses": int(reference.size)},
            "window_s": window,
            "streams": rows,
        }
        out = Path(context.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "sync_check.json", json.dumps(report, indent=2))
        table = pd.DataFrame(
            [{k: v for k, v in r.items() if k != "pulses"} for r in rows]
        )
        _write_atomic(out / "sync_check.csv", table.to_csv(index=False))
        logger.info(
            "Sync check: %d streams against %s (%d pulses)",
            len(rows),
            source,
            reference.size,
        )
        return report


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
