"""WebcamOutlet: capture (device, file or synthetic) → mp4 + LSL frame-index stream."""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pylsl

from lsl_session import layout
from outlets._base import BaseOutlet, OutletError
from outlets.webcam.synthetic import SyntheticVideo

logger = logging.getLogger(__name__)

FOURCC = "mp4v"
DEFAULT_FPS = 30.0
#: Flash period of the synthetic source created for ``source="synthetic"``.
SYNTHETIC_FLASH_EVERY = 2.0

Source = int | str | Path | SyntheticVideo


def webcam_device_id(index: int) -> str:
    """Return the device id of webcam ``index`` (``webcam_<n>``)."""
    return f"webcam_{int(index)}"


class _Capture:
    """An OpenCV capture (device index or file) with a uniform ``read``."""

    def __init__(self, source: int | Path, fps: float | None) -> None:
        self.paced = not isinstance(source, int)  # files are replayed in real time
        if isinstance(source, int):
            dev = Path(f"/dev/video{source}")
            if sys.platform.startswith("linux") and not dev.exists():
                raise OutletError(
                    f"webcam device {source} not found ({dev} does not exist)"
                )
            self.description = f"device {source}"
        else:
            if not source.is_file():
                raise OutletError(f"video file {str(source)!r} not found")
            self.description = f"file {source.name}"
        self._cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self._cap.isOpened():
            self._cap.release()
            raise OutletError(f"cannot open {self.description} with OpenCV")
        if isinstance(source, int) and fps:
            self._cap.set(cv2.CAP_PROP_FPS, float(fps))
        native = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = float(fps) if fps else (native if 0 < native < 1000 else DEFAULT_FPS)

    def read(self, index: int) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def release(self) -> None:
        self._cap.release()


class _Synthetic:
    """A :class:`SyntheticVideo` behind the capture interface, paced at its fps."""

    paced = True

    def __init__(self, video: SyntheticVideo) -> None:
        self.video = video
        self.fps = video.fps
        self.description = "synthetic"

    def read(self, index: int) -> np.ndarray | None:
        return self.video.frame(index)

    def release(self) -> None:
        pass


class WebcamOutlet(BaseOutlet):
    """Record a camera to mp4 and publish each written frame's index on LSL.

    Parameters
    ----------
    source : int | str | Path | SyntheticVideo
        A device index, a video file, ``"synthetic"`` (a :class:`SyntheticVideo`
        at ``fps`` with a flash every 2 s) or a :class:`SyntheticVideo`.
    fps : float | None
        Frame rate: requested from a device, the replay rate of a file (default:
        the file's rate), the synthetic rate (default 30). Also the stream's
        nominal rate and the mp4's rate.
    out_dir : str | Path | None
        Folder for the mp4; default the session's ``webcam/`` folder.
    index : int
        Webcam number ``n`` (file ``webcam_<n>_YYYYMMDD_HHMMSS.mp4``, stream
        ``webcam_<n>_frames``, source id ``lsl_session/webcam_<n>/frames``).
    session_dir : str | Path | None
        Session folder; on :meth:`stop` the device ``webcam_<n>`` (``pc_webcam``)
        and the mp4 (file type ``video``) are registered in its metadata.
    name : str | None
        Stream name; default ``webcam_<n>_frames``.
    source_id : str | None
        Stream source id; default ``lsl_session/webcam_<n>/frames``.
    max_frames : int | None
        Stop on its own after writing this many frames.
    realtime : bool
        Pace file and synthetic sources at ``fps`` (default). When False they run
        as fast as possible (stamps are still taken when each frame is produced).
    linger : float
        Seconds the LSL outlet stays open at :meth:`stop` when inlets are
        connected, so they receive the last samples.
    wait_consumer : float
        Seconds the worker waits for an inlet before the first frame (an inlet
        only receives samples pushed after it connected); 0 starts at once.

    Raises
    ------
    ValueError
        If an argument is invalid, or neither ``out_dir`` nor ``session_dir`` is
        given, or ``out_dir`` is outside ``session_dir``.

    Notes
    -----
    Frame ``k`` (0-based) of the mp4 is sample ``k`` of the stream: its value is
    ``k`` and its timestamp the LSL time (:func:`pylsl.local_clock`) at which the
    frame was grabbed (device, file) or generated (synthetic). A frame is written
    before its sample is pushed, and every grabbed frame is written. Capture,
    writing and pushing run in one worker thread; a worker error is re-raised by
    :meth:`stop`, which always finalizes the mp4.
    """

    def __init__(
        self,
        source: Source,
        *,
        fps: float | None = None,
        out_dir: str | Path | None = None,
        index: int = 1,
        session_dir: str | Path | None = None,
        name: str | None = None,
        source_id: str | None = None,
        max_frames: int | None = None,
        realtime: bool = True,
        linger: float = 0.2,
        wait_consumer: float = 0.0,
    ) -> None:
        super().__init__()
        if fps is not None and not 0 < fps <= 1000:
            raise ValueError(
                f"The argument 'fps' must be in (0, 1000], {fps!r} is invalid."
            )
        if int(index) < 0:
            raise ValueError(
                f"The argument 'index' must be >= 0, {index!r} is invalid."
            )
        if max_frames is not None and max_frames < 1:
            raise ValueError(
                f"The argument 'max_frames' must be >= 1, {max_frames!r} is invalid."
            )
        if out_dir is None and session_dir is None:
            raise ValueError("Pass 'out_dir' or 'session_dir' to place the video.")
        self._source = source
        self._fps_arg = fps
        self.index = int(index)
        self._session_dir = None if session_dir is None else Path(session_dir)
        if out_dir is not None:
            self._out_dir = Path(out_dir)
        else:
            self._out_dir = layout.SessionPaths(self._session_dir).webcam
        if self._session_dir is not None and not self._out_dir.resolve().is_relative_to(
            self._session_dir.resolve()
        ):
            raise ValueError(
                f"out_dir {str(self._out_dir)!r} must lie inside the session folder "
                f"{str(self._session_dir)!r} to register the video."
            )
        self.name = name or f"{webcam_device_id(self.index)}_frames"
        self.source_id = (
            source_id or f"lsl_session/{webcam_device_id(self.index)}/frames"
        )
        self._max_frames = max_frames
        self._realtime = realtime
        self._linger = linger
        self._wait_consumer = wait_consumer
        self._capture: _Capture | _Synthetic | None = None
        self._writer: cv2.VideoWriter | None = None
        self._outlet: pylsl.StreamOutlet | None = None
        self._size: tuple[int, int] = (0, 0)
        self._first: np.ndarray | None = None
        self._first_stamp: float | None = None
        #: LSL time of frame 0; paced frames follow at ``k / fps`` after it
        self.first_frame_time: float | None = None
        self._lock = threading.Lock()
        self._frames_written = 0
        self._flash_stamps: list[float] = []
        self._file_path: Path | None = None
        self.fps = float(fps) if fps else DEFAULT_FPS

    def _open(self) -> None:
        if self._session_dir is not None:  # fail now, not after the recording
            _import_session().open(self._session_dir).close()
        capture = self._open_capture()
        try:
            frame = capture.read(0)
            if frame is None:
                raise OutletError(f"{capture.description} delivered no frame")
            self._first_stamp = None if capture.paced else pylsl.local_clock()
            self._first = frame
            self.fps = capture.fps
            height, width = frame.shape[:2]
            self._size = (width, height)
            self._out_dir.mkdir(parents=True, exist_ok=True)
            path = _unique_path(
                self._out_dir, layout.webcam_file_name(self.index, datetime.now())
            )
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter.fourcc(*FOURCC), self.fps, self._size
            )
            if not writer.isOpened():
                raise OutletError(f"cannot open {path} for writing ({FOURCC})")
        except BaseException:
            capture.release()
            raise
        self._capture, self._writer, self._file_path = capture, writer, path
        self._outlet = pylsl.StreamOutlet(self._stream_info(capture.description))
        logger.info(
            "Webcam %d: %s -> %s at %.3g fps (stream %r)",
            self.index,
            capture.description,
            path,
            self.fps,
            self.name,
        )

    def _open_capture(self) -> _Capture | _Synthetic:
        source = self._source
        if isinstance(source, SyntheticVideo):
            if self._fps_arg is not None and self._fps_arg != source.fps:
                raise ValueError(
                    f"fps {self._fps_arg!r} differs from the synthetic video's "
                    f"{source.fps!r}"
                )
            return _Synthetic(source)
        if isinstance(source, str) and source == "synthetic":
            return _Synthetic(
                SyntheticVideo(fps=self.fps, flash_every=SYNTHETIC_FLASH_EVERY)
            )
        if isinstance(source, bool) or not isinstance(source, int | str | Path):
            raise ValueError(f"The argument 'source' is invalid: {source!r}.")
        if isinstance(source, int):
            if source < 0:
                raise ValueError(f"Device index must be >= 0, {source} is invalid.")
            return _Capture(source, self._fps_arg)
        return _Capture(Path(source), self._fps_arg)

    def _stream_info(self, description: str) -> pylsl.StreamInfo:
        info = pylsl.StreamInfo(
            self.name, "VideoFrames", 1, self.fps, pylsl.cf_double64, self.source_id
        )
        desc = info.desc()
        channel = desc.append_child("channels").append_child("channel")
        channel.append_child_value("label", "frame_index")
        channel.append_child_value("unit", "count")
        channel.append_child_value("type", "FrameIndex")
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "OpenCV")
        acq.append_child_value("model", description)
        video = desc.append_child("video")
        video.append_child_value(
            "file", self._file_path.name if self._file_path else ""
        )
        video.append_child_value("width", str(self._size[0]))
        video.append_child_value("height", str(self._size[1]))
        video.append_child_value("fps", repr(self.fps))
        video.append_child_value("fourcc", FOURCC)
        return info

    def _run(self) -> None:
        capture, writer, outlet = self._capture, self._writer, self._outlet
        if capture is None or writer is None or outlet is None:  # pragma: no cover
            raise OutletError("worker started before the outlet was opened")
        paced = capture.paced and self._realtime
        if self._wait_consumer > 0:
            deadline = time.monotonic() + self._wait_consumer
            while not outlet.have_consumers() and not self._stop_event.is_set():
                if time.monotonic() >= deadline:
                    logger.warning("Webcam %d: no consumer, starting", self.index)
                    break
                outlet.wait_for_consumers(0.05)
            if not capture.paced:
                self._first = None  # stale after waiting: grab a fresh frame
        t0: float | None = None
        k = 0
        while not self._stop_event.is_set():
            if self._max_frames is not None and k >= self._max_frames:
                break
            if paced and t0 is not None:
                delay = t0 + k / self.fps - pylsl.local_clock()
                if delay > 0 and self._stop_event.wait(delay):
                    break
            if k == 0 and self._first is not None:
                frame, stamp = self._first, self._first_stamp
                self._first = None
            else:
                frame, stamp = capture.read(k), None
            if frame is None:
                logger.info("Webcam %d: end of %s", self.index, capture.description)
                break
            if stamp is None:
                stamp = pylsl.local_clock()
            if t0 is None:
                t0 = stamp
                self.first_frame_time = t0
            if frame.shape[1::-1] != self._size:
                frame = cv2.resize(frame, self._size)
            writer.write(frame)
            outlet.push_sample([float(k)], stamp)
            with self._lock:
                self._frames_written = k + 1
                if isinstance(capture, _Synthetic) and capture.video.is_flash(k):
                    self._flash_stamps.append(stamp)
            k += 1

    def _close(self) -> None:
        if self._capture is not None:
            self._capture.release()
        if self._writer is not None:
            self._writer.release()  # finalizes the mp4
        outlet, self._outlet = self._outlet, None
        if outlet is not None:
            if self._linger > 0 and outlet.have_consumers():
                time.sleep(self._linger)  # no delivery acknowledgement in liblsl
            del outlet
        logger.info(
            "Webcam %d: %d frames written to %s",
            self.index,
            self.frames_written,
            self._file_path,
        )
        if self._session_dir is not None and self._file_path is not None:
            self._register()

    def _register(self) -> None:
        session_cls = _import_session()
        session = session_cls.open(self._session_dir)
        try:
            device_id = webcam_device_id(self.index)
            session.add_device(device_id, "pc_webcam", ["rgb_video"])
            session.add_file(device_id, "video", self._file_path)
        finally:
            session.close()

    # ---------------------------------------------------------------------------

    @property
    def file_path(self) -> Path | None:
        """Path of the mp4 (known once started)."""
        return self._file_path

    @property
    def flash_stamps(self) -> list[float]:
        """LSL stamps of the synthetic flash frames written so far (synthetic only)."""
        with self._lock:
            return list(self._flash_stamps)

    @property
    def frames_written(self) -> int:
        """Number of frames written to the mp4 (= samples pushed)."""
        with self._lock:
            return self._frames_written


def _import_session() -> type:
    try:
        from lsl_session.session import Session
    except ImportError as exc:
        raise OutletError(
            f"cannot register the video in the session: lsl_session.session is "
            f"unavailable ({exc})"
        ) from exc
    return Session


def _unique_path(folder: Path, file_name: str) -> Path:
    """Return ``folder/file_name``, or ``<stem>_2``, ``_3`` … if it exists already."""
    path = folder / file_name
    n = 2
    while path.exists():
        path = folder / f"{Path(file_name).stem}_{n}{Path(file_name).suffix}"
        n += 1
    return path
