"""Where calibration frames come from: a folder of images, a video, a live camera,
or a device's recorded videos in the session; and RGB↔thermal pairing by LSL time.

Frame times: a recorded device video gets them from its frame stream in the XDF
(frame k ↔ the sample whose value is k). A folder may hold ``frame_times.csv``
(``name,lsl_time``); a video ``<video>.frame_times.csv`` (``frame,lsl_time``).
A live camera stamps each frame with ``pylsl.local_clock()`` when it is read.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lsl_session.errors import LslSessionError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov")
#: Most images a folder source lists (bounded memory for the listing).
MAX_FOLDER_IMAGES = 100_000


class SourceError(LslSessionError):
    """A frame source that cannot be opened."""


@dataclass(slots=True)
class Frame:
    """One frame of a source.

    Attributes
    ----------
    position : int
        Index in the source (file number or frame number), for resuming.
    image : numpy.ndarray | None
        The image; None when it could not be read (``error`` says why).
    lsl_time : float | None
        LSL time of the frame, when the source knows it.
    label : str
        File name or ``frame N`` (for messages and the event log).
    """

    position: int
    image: np.ndarray | None
    lsl_time: float | None
    label: str
    error: str | None = None


class FrameSource:
    """Base: an ordered, restartable sequence of frames."""

    continuous: bool = False  # consecutive frames of one scene (stillness applies)
    live: bool = False  # frames exist only now (kept ones are saved)
    description: str = ""

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Yield frames from position ``start`` on."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the source."""


def _read_times(path: Path, key: str) -> dict[str, float]:
    if not path.is_file():
        return {}
    out: dict[str, float] = {}
    try:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    out[str(row[key]).strip()] = float(row["lsl_time"])
                except (KeyError, TypeError, ValueError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path.name}: unreadable frame times ({exc})") from None
    return out


class FolderSource(FrameSource):
    """The images of a folder, in name order (in time order when
    ``frame_times.csv`` dates every one of them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        files = []
        for p in sorted(self.folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                files.append(p)
                if len(files) >= MAX_FOLDER_IMAGES:
                    break
        if not files:
            raise SourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.times = _read_times(self.folder / "frame_times.csv", "name")
        if self.times and all(p.name in self.times for p in files):
            files.sort(key=lambda p: (self.times[p.name], p.name))  # time order
        self.files = files
        self.description = f"folder {self.folder.name} ({len(files)} images)"

    def frames(self, start: int = 0) -> Iterator[Frame]:
        for i, path in enumerate(self.files[start:], start):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            err = None if img is not None else f"{path.name}: not a readable image"
            yield Frame(i, img, self.times.get(path.name), path.name, err)


class VideoSource(FrameSource):
    """The frames of a video file; ``realtime`` replays it at its frame rate."""

    continuous = True

    def __init__(
        self, path: Path, *, times: np.ndarray | None = None, realtime: bool = False
    ) -> None:
        self.path = Path(path)
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        cap.release()
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.realtime = realtime
        if times is None:
            side = _read_times(
                self.path.with_name(self.path.name + ".frame_times.csv"), "frame"
            )
            if side:
                n = int(max(float(k) for k in side)) + 1
                times = np.full(n, np.nan)
                for k, t in side.items():
                    times[int(float(k))] = t
        self.times = times
        self.description = f"video {self.path.name}"

    def frames(self, start: int = 0) -> Iterator[Frame]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            if start:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            t_start, i = time.monotonic(), start
            while True:
                ok, img = cap.read()
                if not ok:
                    return
                t = None
                if (
                    self.times is not None
                    and i < len(self.times)
                    and np.isfinite(self.times[i])
                ):
                    t = float(self.times[i])
                yield Frame(i, img, t, f"frame {i}")
                i += 1
                if self.realtime:
                    delay = t_start + (i - start) / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        finally:
            cap.release()


class CameraSource(FrameSource):
    """A live OpenCV camera (``--camera N``), frames stamped with LSL's clock."""

    continuous = True
    live = True

    def __init__(self, index: int, *, max_frames: int | None = None) -> None:
        dev = Path(f"/dev/video{int(index)}")
        if not dev.exists():
            raise SourceError(f"camera {index} not found ({dev} does not exist)")
        self.cap = cv2.VideoCapture(int(index))
        if not self.cap.isOpened():
            raise SourceError(f"cannot open camera {index} with OpenCV")
        self.max_frames = max_frames
        self.description = f"camera {index}"

    def frames(self, start: int = 0) -> Iterator[Frame]:
        import pylsl

        i = start
        while self.max_frames is None or i < start + self.max_frames:
            ok, img = self.cap.read()
            stamp = pylsl.local_clock()
            if not ok:
                raise SourceError(f"{self.description}: no frame (disconnected?)")
            yield Frame(i, img, stamp, f"frame {i}")
            i += 1

    def close(self) -> None:
        self.cap.release()


def open_path(path: Path, *, realtime: bool = False) -> FrameSource:
    """A `FolderSource` or `VideoSource` for ``--from PATH``.

    Raises
    ------
    SourceError
        If the path is neither a folder nor a video.
    """
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path, realtime=realtime)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise SourceError(f"{path}: give the folder that holds the images")
    if not path.exists():
        raise SourceError(f"{path}: no such folder or video")
    raise SourceError(
        f"{path}: not a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})"
    )


def pair_by_time(
    first: FrameSource, second: FrameSource, tolerance_s: float, start: int = 0
) -> Iterator[tuple[Frame, Frame | None]]:
    """Pair each frame of ``first`` with the frame of ``second`` nearest in LSL time.

    Both sources must be in time order. A frame of ``first`` without a partner
    within ``tolerance_s`` (or without a time) comes with None.

    Raises
    ------
    SourceError
        If either source has no frame times at all.
    """
    it2 = iter(second.frames(0))
    prev: Frame | None = None
    cur = next(it2, None)
    seen_time = False
    for f in first.frames(start):
        if f.lsl_time is None:
            yield f, None
            continue
        seen_time = True
        # advance until cur is the first frame at or after f.lsl_time
        while cur is not None and (cur.lsl_time is None or cur.lsl_time < f.lsl_time):
            prev, cur = cur, next(it2, None)
        options = [c for c in (prev, cur) if c is not None and c.lsl_time is not None]
        best = min(options, key=lambda c: abs(c.lsl_time - f.lsl_time), default=None)  # type: ignore[operator]
        if best is not None and abs(best.lsl_time - f.lsl_time) <= tolerance_s:  # type: ignore[operator]
            yield f, best
        else:
            yield f, None
    if not seen_time:
        raise SourceError(
            "stereo pairs are matched by LSL frame times, and the RGB frames have "
            "none (add frame_times.csv, or record the device's frame stream)"
        )
