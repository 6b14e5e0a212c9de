"""Registered thermal values for processing: the ``thermal_registration`` processor
(``process --register-thermal``) and each hand's thermal mean (hand segmentation).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lsl_session.calibration.recorded import device_videos
from lsl_session.calibration.register import (
    DEFAULT_DEPTH_MM,
    FrameIndex,
    SequentialFrames,
    register_frame,
    registration_maps,
    thermal_grey,
)
from lsl_session.calibration.result import DeviceCalibration, load_calibrations
from lsl_session.fsutil import atomic_write_bytes
from lsl_session.processing.model import ProcessingContext
from lsl_session.processing.video import frame_stream_name

logger = logging.getLogger(__name__)

#: Largest LSL time gap between an RGB frame and the thermal frame used for it.
DEFAULT_TOLERANCE_S = 0.04


def device_of_video(root: Path, video: Path) -> str | None:
    """The device a session video belongs to (``devices/<id>/…`` or ``webcam/<id>_…``)."""
    from lsl_session.processing.video import video_prefix

    parts = video.relative_to(root).parts
    if len(parts) >= 3 and parts[0] == "devices":
        return parts[1]
    if parts and parts[0] == "webcam":
        return video_prefix(video)
    return None


def _calibrations(root: Path) -> dict[str, DeviceCalibration]:
    from lsl_session.errors import LslSessionError
    from lsl_session.metadata import read_metadata

    try:
        meta = read_metadata(root)
    except LslSessionError:
        meta = {}
    return {
        d: c for d, c in load_calibrations(root, meta).items() if c.stereo is not None
    }


def _video_size(path: Path) -> tuple[int, int, int]:
    cap = cv2.VideoCapture(str(path))
    try:
        return (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
        )
    finally:
        cap.release()


def _n_for(stream: Any, count: int) -> int:
    if stream is None or stream.is_string or not len(stream.time_stamps):
        return count
    idx = np.asarray(stream.time_series, float).reshape(len(stream.time_stamps), -1)[
        :, 0
    ]
    idx = idx[np.isfinite(idx)]
    return max(count, int(idx.max()) + 1 if len(idx) else 0)


class HandThermal:
    """Registered thermal grey (and °C) for the frames of one RGB video.

    Calling it with an RGB frame index (hand segmentation asks only for frames
    with hands; ``frames_with_thermal`` counts those that got one) gives
    ``(grey, celsius)`` images in the RGB view (NaN outside the thermal view; ``celsius`` None without a °C range), or
    None when no thermal frame lies within the tolerance of that frame's LSL time.
    """

    def __init__(
        self, cal: DeviceCalibration, rgb_times: np.ndarray, rgb_size: tuple[int, int],
        thermal_video: Path, thermal_index: FrameIndex, *, depth_mm: float,
        tolerance_s: float,
    ) -> None:  # fmt: skip
        self.video = SequentialFrames(thermal_video)
        self.maps = registration_maps(cal, rgb_size, self.video.size, depth_mm)
        self.rgb_times = rgb_times
        self.index = thermal_index
        self.tolerance_s = tolerance_s
        self.device = cal.device
        self.thermal_video = thermal_video
        self.depth_mm = depth_mm
        self.frames_with_thermal = 0

    def __call__(self, k: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        if k >= len(self.rgb_times):
            return None
        j = self.index.nearest(float(self.rgb_times[k]), self.tolerance_s)
        frame = None if j is None else self.video.get(j)
        if frame is None:
            return None
        grey = register_frame(thermal_grey(frame), self.maps)
        self.frames_with_thermal += 1
        return grey, self.index.celsius(j, grey)  # type: ignore[arg-type]

    def close(self) -> None:
        """Release the thermal video."""
        self.video.close()


def hand_thermal_for(context: ProcessingContext, video: Path) -> HandThermal | None:
    """A `HandThermal` for an RGB video whose device has a stereo calibration."""
    root = context.paths.root
    device = device_of_video(root, video)
    if device is None:
        return None
    cal = _calibrations(root).get(device)
    thermal = device_videos(root, device, "thermal") if cal is not None else []
    if cal is None or not thermal:
        return None
    w, h, count = _video_size(video)
    rgb_stream = context.stream(frame_stream_name(video))
    from lsl_session.processing.video import frame_times

    rgb_times = frame_times(rgb_stream, _n_for(rgb_stream, count))
    th_stream = context.stream(frame_stream_name(thermal[-1]))
    _, _, th_count = _video_size(thermal[-1])
    index = FrameIndex.from_stream(th_stream, _n_for(th_stream, th_count))
    opts = context.options
    return HandThermal(
        cal, rgb_times, (w, h), thermal[-1], index,
        depth_mm=float(opts.get("register_depth_mm", DEFAULT_DEPTH_MM)),
        tolerance_s=float(opts.get("thermal_tolerance_s", DEFAULT_TOLERANCE_S)),
    )  # fmt: skip


class ThermalRegistrationProcessor:
    """Processor ``thermal_registration``: thermal videos warped into the RGB view.

    For every device with an RGB↔thermal calibration, each thermal video becomes
    ``processing/thermal_registration/<stem>_registered.mp4`` at the RGB video's
    size (frame k = thermal frame k, so the thermal frame stream still dates it),
    plus ``<stem>_registered.csv``: ``thermal_frame, lsl_time, rgb_frame`` (the RGB
    frame nearest in LSL time within the tolerance, empty otherwise).
    Options: ``register_depth_mm`` (600), ``thermal_tolerance_s`` (0.04).
    """

    name = "thermal_registration"

    def run(self, context: ProcessingContext) -> dict[str, Any]:
        """Register every thermal video of every stereo-calibrated device."""
        root = context.paths.root
        out_dir = Path(context.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        depth = float(context.options.get("register_depth_mm", DEFAULT_DEPTH_MM))
        tol = float(context.options.get("thermal_tolerance_s", DEFAULT_TOLERANCE_S))
        videos: list[dict[str, Any]] = []
        cals = _calibrations(root)
        for device, cal in sorted(cals.items()):
            rgb_videos = device_videos(root, device, "rgb")
            rgb_index = None
            if rgb_videos:
                w, h, count = _video_size(rgb_videos[-1])
                rgb_size = (w, h)
                stream = context.stream(frame_stream_name(rgb_videos[-1]))
                rgb_index = FrameIndex.from_stream(stream, _n_for(stream, count))
            else:
                rgb_size = cal.cameras[cal.stereo.from_camera].image_size  # type: ignore[union-attr]
            for tv in device_videos(root, device, "thermal"):
                videos.append(
                    self._one(
                        context, cal, tv, rgb_size, rgb_index, depth, tol, out_dir
                    )
                )
        if not cals:
            logger.warning(
                "thermal registration: no RGB↔thermal calibration in the session"
            )
        return {"depth_mm": depth, "devices": sorted(cals), "videos": videos}

    @staticmethod
    def _one(
        context: ProcessingContext, cal: DeviceCalibration, tv: Path,
        rgb_size: tuple[int, int], rgb_index: FrameIndex | None, depth: float,
        tol: float, out_dir: Path,
    ) -> dict[str, Any]:  # fmt: skip
        root = context.paths.root
        video = SequentialFrames(tv)
        stream = context.stream(frame_stream_name(tv))
        index = FrameIndex.from_stream(stream, _n_for(stream, video.n))
        maps = registration_maps(cal, rgb_size, video.size, depth)
        inside = (
            (maps[0] >= 0) & (maps[0] <= video.size[0] - 1)
            & (maps[1] >= 0) & (maps[1] <= video.size[1] - 1)
        )  # fmt: skip
        path = out_dir / f"{tv.stem}_registered.mp4"
        fps = video.fps if 0 < video.fps < 1000 else 25.0
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, rgb_size
        )
        rows = io.StringIO()
        table = csv.writer(rows, lineterminator="\n")
        table.writerow(["thermal_frame", "lsl_time", "rgb_frame"])
        n = 0
        try:
            for n, frame in enumerate(video.frames(), 1):
                warped = cv2.remap(
                    frame, maps[0], maps[1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0,
                )  # fmt: skip
                writer.write(
                    warped
                    if warped.ndim == 3
                    else cv2.cvtColor(warped, cv2.COLOR_GRAY2BGR)
                )
                k = n - 1
                t = index.times[k] if k < len(index.times) else np.nan
                near = (
                    rgb_index.nearest(float(t), tol) if rgb_index is not None else None
                )
                table.writerow([k, "" if not np.isfinite(t) else repr(float(t)),
                                "" if near is None else near])  # fmt: skip
        finally:
            writer.release()
            video.close()
        csv_path = out_dir / f"{tv.stem}_registered.csv"
        atomic_write_bytes(csv_path, rows.getvalue().encode())
        rel = path.relative_to(out_dir).as_posix()
        logger.info("registered %s to the RGB view (%d frames)", tv.name, n)
        return {
            "device": cal.device, "thermal_video": tv.relative_to(root).as_posix(),
            "registered": f"processing/thermal_registration/{rel}",
            "csv": f"processing/thermal_registration/{csv_path.name}",
            "n_frames": n, "size": list(rgb_size),
            "rgb_area_covered": round(float(inside.mean()), 4),
        }  # fmt: skip
