"""Session videos: where they are, their frame stream, frame → LSL time, frames.

Shared by hand segmentation and the sync check (both read the session videos).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lsl_session.processing.model import SyncedStream

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov")

_STAMP = re.compile(r"_\d{8}_\d{6}(?:_\d+)?$")


def video_prefix(path: Path | str) -> str:
    """Return a video's device prefix: ``webcam_1_20250731_143022.mp4`` → ``webcam_1``."""
    return _STAMP.sub("", Path(path).stem)


def frame_stream_name(path: Path | str) -> str:
    """Return the frame stream of a video (``phone_1_rgb_…mp4`` → ``phone_1_rgb_frames``)."""
    return f"{video_prefix(path)}_frames"


def frame_times(stream: SyncedStream | None, n_frames: int) -> np.ndarray:
    """Map frame indices to LSL times through a frame-index stream.

    Parameters
    ----------
    stream : SyncedStream | None
        Stream whose first channel holds the frame index of each sample.
    n_frames : int
        Number of frames in the video.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` LSL times; NaN for frames no sample refers to. When several
        samples carry the same index the first one wins.
    """
    out = np.full(n_frames, np.nan)
    if stream is None or len(stream.time_stamps) == 0 or stream.is_string:
        return out
    values = np.asarray(stream.time_series, dtype=float).reshape(
        len(stream.time_stamps), -1
    )
    idx = values[:, 0]
    ok = np.isfinite(idx) & (idx >= 0) & (idx < n_frames) & (idx == np.round(idx))
    idx_ok = idx[ok].astype(np.int64)[::-1]  # reversed: the first sample is set last
    out[idx_ok] = np.asarray(stream.time_stamps, dtype=float)[ok][::-1]
    return out


def frame_coverage(lsl: np.ndarray) -> tuple[int, int, int]:
    """Frames without an LSL time: ``(before, after, inside)`` the recorded span.

    ``before``/``after``: frames the camera captured before the first or after the
    last frame its stream recorded (the video runs while the recording starts and
    stops: expected). ``inside``: frames between two recorded ones that no sample
    refers to (lost frame samples: a problem). A video with no recorded frame at
    all counts every frame as ``inside``.
    """
    valid = np.isfinite(lsl)
    if not valid.any():
        return 0, 0, len(lsl)
    idx = np.flatnonzero(valid)
    before, after = int(idx[0]), int(len(lsl) - 1 - idx[-1])
    return before, after, int(len(lsl) - valid.sum()) - before - after


def find_videos(root: Path) -> list[Path]:
    """Return the session videos hand segmentation looks at, sorted.

    Parameters
    ----------
    root : pathlib.Path
        Session folder.

    Returns
    -------
    list of pathlib.Path
        Videos in ``webcam/`` and ``devices/*/rgb_videos/``.
    """
    folders = [root / "webcam", *sorted((root / "devices").glob("*/rgb_videos"))]
    return [
        p
        for folder in folders
        if folder.is_dir()
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
    ]


def iter_frames(path: Path | str) -> Iterator[np.ndarray]:
    """Yield the BGR frames of a video.

    Raises
    ------
    OSError
        If OpenCV cannot open the file.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {str(path)!r}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()
