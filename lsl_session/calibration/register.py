"""Thermal frames registered to the RGB view, from a device's stereo calibration.

Two cameras a baseline apart see a scene with parallax, so one thermal pixel maps
to one RGB pixel only for a chosen depth. Registration assumes the scene lies on
the plane ``Z = depth_mm`` in front of the RGB camera (default 600 mm, hands at
arm's length): each RGB pixel's ray is undistorted, cut with that plane, moved
into the thermal camera (``R``, ``T``) and projected with the thermal intrinsics
and distortion. The error for a point at depth ``Z`` is about
``fx_rgb · baseline · |1/Z − 1/depth|`` RGB pixels (30 mm baseline, fx 1000,
Z = 500 mm for 600 mm assumed: 10 px).

Thermal values: the grey level (luminance) of the thermal video, and °C when the
thermal frame stream carries each frame's ``temp_min``/``temp_max`` (the phone
protocol's channels): ``min + grey / 255 · (max − min)``, exact for a grey video
scaled linearly per frame, approximate for a colour palette.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from lsl_session.calibration.result import CameraCalibration, DeviceCalibration

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

#: Plane depth (mm) assumed when registering thermal frames to the RGB view.
DEFAULT_DEPTH_MM = 600.0


def _scaled_matrix(cam: CameraCalibration, size: tuple[int, int]) -> np.ndarray:
    """The camera matrix for frames of ``size`` (a video smaller than the calibration)."""
    sx, sy = size[0] / cam.image_size[0], size[1] / cam.image_size[1]
    k = cam.camera_matrix.copy()
    k[0] *= sx
    k[1] *= sy
    return k


def registration_maps(
    cal: DeviceCalibration, rgb_size: tuple[int, int], thermal_size: tuple[int, int],
    depth_mm: float = DEFAULT_DEPTH_MM,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``cv2.remap`` maps taking a thermal frame into the RGB view.

    Parameters
    ----------
    cal : DeviceCalibration
        With a ``stereo`` part (RGB → thermal).
    rgb_size, thermal_size : tuple of int
        ``(width, height)`` of the RGB and thermal frames (they may differ from
        the calibration's sizes; the intrinsics are scaled).
    depth_mm : float
        Depth of the assumed scene plane in front of the RGB camera.

    Returns
    -------
    map_x, map_y : numpy.ndarray
        float32 ``(rgb_h, rgb_w)`` thermal pixel coordinates of every RGB pixel.
    """
    if cal.stereo is None:
        raise ValueError(f"{cal.device} has no stereo calibration")
    rgb = cal.cameras[cal.stereo.from_camera]
    th = cal.cameras[cal.stereo.to_camera]
    w, h = rgb_size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    rays = cv2.undistortPoints(
        pix, _scaled_matrix(rgb, rgb_size), rgb.distortion, None, None, None,
        (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-8),
    ).reshape(-1, 2)  # fmt: skip
    pts = np.column_stack([rays * depth_mm, np.full(len(rays), depth_mm)])
    rvec = cv2.Rodrigues(cal.stereo.R)[0]
    proj, _ = cv2.projectPoints(
        pts, rvec, cal.stereo.T, _scaled_matrix(th, thermal_size), th.distortion
    )
    proj = proj.reshape(h, w, 2).astype(np.float32)
    return proj[..., 0].copy(), proj[..., 1].copy()


def thermal_grey(frame: np.ndarray) -> np.ndarray:
    """A thermal frame's grey level (luminance of a palette), float32."""
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return frame.astype(np.float32)


def register_frame(
    frame: np.ndarray, maps: tuple[np.ndarray, np.ndarray], *, fill: float = np.nan
) -> np.ndarray:
    """Warp one thermal frame into the RGB view (``fill`` outside the thermal view)."""
    src = frame.astype(np.float32) if np.isnan(fill) else frame
    return cv2.remap(
        src, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill if not np.isnan(fill) else np.nan,
    )  # fmt: skip


@dataclass(slots=True)
class FrameIndex:
    """A video's frame → LSL time (and per-frame °C range) from its frame stream."""

    times: np.ndarray  # (n_frames,) NaN without a sample
    t_min: np.ndarray | None = None
    t_max: np.ndarray | None = None

    @classmethod
    def from_stream(cls, stream: SyncedStream | None, n_frames: int) -> FrameIndex:
        """Read the frame stream (first channel: frame index; then min, max, …)."""
        from lsl_session.processing.video import frame_times

        times = frame_times(stream, n_frames)
        if stream is None or stream.is_string or stream.channel_count < 3:
            return cls(times)
        labels = [str(x).lower() for x in stream.channel_labels]
        if "temp_min" not in labels or "temp_max" not in labels:
            return cls(times)
        values = np.asarray(stream.time_series, float).reshape(
            len(stream.time_stamps), -1
        )
        t_min, t_max = np.full(n_frames, np.nan), np.full(n_frames, np.nan)
        idx = values[:, 0]
        ok = np.isfinite(idx) & (idx >= 0) & (idx < n_frames) & (idx == np.round(idx))
        k = idx[ok].astype(np.int64)[::-1]
        t_min[k] = values[ok, labels.index("temp_min")][::-1]
        t_max[k] = values[ok, labels.index("temp_max")][::-1]
        return cls(times, t_min, t_max)

    def nearest(self, lsl_time: float, tolerance_s: float) -> int | None:
        """The frame nearest ``lsl_time`` within ``tolerance_s``, else None."""
        if not np.isfinite(lsl_time) or not np.isfinite(self.times).any():
            return None
        diff = np.abs(self.times - lsl_time)
        k = int(np.nanargmin(diff))
        return k if diff[k] <= tolerance_s else None

    def celsius(self, k: int, grey: np.ndarray) -> np.ndarray | None:
        """°C of grey levels of frame ``k``, when its range is known."""
        if self.t_min is None or self.t_max is None or not np.isfinite(self.t_min[k]):
            return None
        return self.t_min[k] + grey / 255.0 * (self.t_max[k] - self.t_min[k])


class SequentialFrames:
    """Random-ish access to a video read forwards (frames asked in rising order)."""

    def __init__(self, path: Path) -> None:
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise OSError(f"cannot open video {str(path)!r}")
        self.n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.size = (
            int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 25.0)
        self._pos = 0
        self._last: tuple[int, np.ndarray] | None = None

    def get(self, k: int) -> np.ndarray | None:
        """Frame ``k`` (None past the end); going back re-opens by seeking."""
        if self._last is not None and self._last[0] == k:
            return self._last[1]
        if k < self._pos:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, k)
            self._pos = k
        frame = None
        while self._pos <= k:
            ok, frame = self.cap.read()
            if not ok:
                return None
            self._pos += 1
        if frame is not None:
            self._last = (k, frame)
        return frame

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame from the start."""
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self._pos = 0
        while True:
            ok, frame = self.cap.read()
            if not ok:
                return
            self._pos += 1
            yield frame

    def close(self) -> None:
        """Release the video."""
        self.cap.release()
