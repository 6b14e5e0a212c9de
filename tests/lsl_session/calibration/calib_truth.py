"""Rendered ground truth for calibration tests: boards seen by known cameras.

A pixel's ray is undistorted once per camera (``cv2.undistortPointsIter``), then
for each pose it is intersected with the board plane (a homography) and the
board texture is sampled with ``cv2.remap``. The texture is drawn at
``TEXTURE_PX_PER_MM`` and low-passed so that sampling it sparsely does not alias.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lsl_session.calibration.board import BoardSpec

TEXTURE_PX_PER_MM = 4.0


@dataclass(slots=True)
class TrueCamera:
    """A camera with known intrinsics and distortion (mm units for extrinsics)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    inverted: bool = False  # thermal: the heated black squares look bright
    blur_sigma: float = 0.0
    noise: float = 0.0
    _rays: np.ndarray | None = field(default=None, repr=False)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def rays(self) -> np.ndarray:
        """``(h, w, 2)`` undistorted normalised coordinates of every pixel centre."""
        if self._rays is None:
            u, v = np.meshgrid(
                np.arange(self.width, dtype=np.float64),
                np.arange(self.height, dtype=np.float64),
            )
            pts = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
            und = cv2.undistortPoints(
                pts, self.matrix, np.array(self.dist), None, None, None,
                (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10),
            )  # fmt: skip
            self._rays = und.reshape(self.height, self.width, 2)
        return self._rays


def board_texture(board: BoardSpec) -> tuple[np.ndarray, float, float]:
    """The board's printed image (white margin of one square), and its origin.

    Returns
    -------
    texture, ox, oy
        uint8 image; ``(ox, oy)`` is the texture position (px) of board point (0, 0).
    """
    s = board.square_mm * TEXTURE_PX_PER_MM
    if board.kind == "charuco":
        cb = board.charuco_board()
        w = round((board.cols + 2) * s)
        h = round((board.rows + 2) * s)
        img = cb.generateImage((w, h), marginSize=round(s))
        # OpenCV's charuco object points start at the board's outer corner
        ox, oy = s, s
    else:
        nx, ny = board.cols + 1, board.rows + 1  # squares
        w, h = round((nx + 2) * s), round((ny + 2) * s)
        img = np.full((h, w), 255, np.uint8)
        for j in range(ny):
            for i in range(nx):
                if (i + j) % 2 == 0:
                    x0, y0 = round((i + 1) * s), round((j + 1) * s)
                    img[y0 : y0 + round(s), x0 : x0 + round(s)] = 0
        # inner corner (0, 0) is the corner of square (0, 0)/(1, 1)
        ox, oy = 2 * s, 2 * s
    return img, ox, oy


def look_at_pose(
    distance_mm: float, tilt_x_deg: float, tilt_y_deg: float, roll_deg: float,
    shift_mm: tuple[float, float], board: BoardSpec,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A board pose (rvec, tvec in mm) with its centre ``distance_mm`` ahead."""
    w, h = board.extent_mm()
    rot = (
        cv2.Rodrigues(np.radians([tilt_x_deg, 0, 0]))[0]
        @ cv2.Rodrigues(np.radians([0, tilt_y_deg, 0]))[0]
        @ cv2.Rodrigues(np.radians([0, 0, roll_deg]))[0]
    )
    centre = np.array([w / 2, h / 2, 0.0])
    t = np.array([shift_mm[0], shift_mm[1], distance_mm]) - rot @ centre
    return cv2.Rodrigues(rot)[0].ravel(), t


def render(
    cam: TrueCamera, board: BoardSpec, rvec: np.ndarray, tvec: np.ndarray,
    texture: tuple[np.ndarray, float, float] | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:  # fmt: skip
    """Render the board at pose (rvec, tvec) [mm] as a grey uint8 image."""
    tex, ox, oy = texture or board_texture(board)
    rot = cv2.Rodrigues(np.asarray(rvec, float))[0]
    hmat = np.column_stack([rot[:, 0], rot[:, 1], np.asarray(tvec, float)])
    inv = np.linalg.inv(hmat)
    rays = cam.rays()
    x, y = rays[..., 0], rays[..., 1]
    bx = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]
    by = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]
    bw = inv[2, 0] * x + inv[2, 1] * y + inv[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = (bx / bw * TEXTURE_PX_PER_MM + ox - 0.5).astype(np.float32)
        my = (by / bw * TEXTURE_PX_PER_MM + oy - 0.5).astype(np.float32)
    behind = bw <= 0
    mx[behind] = -1e6
    # low-pass the texture at the sampling step (px of texture per image px)
    step = float(np.nanmedian(np.abs(np.diff(mx[::16, ::16], axis=1)))) / 16
    sigma = max(0.0, 0.5 * step)
    src = cv2.GaussianBlur(tex, (0, 0), sigma) if sigma > 0.3 else tex
    img = cv2.remap(
        src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=200,
    ).astype(np.float32)  # fmt: skip
    if cam.inverted:
        img = 255.0 - img
        img = 40 + img * 0.6  # lower contrast, like a warm board on a room
    if cam.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cam.blur_sigma)
    if cam.noise > 0:
        rng = rng or np.random.default_rng(0)
        img = img + rng.normal(0, cam.noise, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def project(cam: TrueCamera, board: BoardSpec, rvec, tvec) -> np.ndarray:
    """True image positions of the board's corners."""
    pts, _ = cv2.projectPoints(
        board.object_points(), np.asarray(rvec, float), np.asarray(tvec, float),
        cam.matrix, np.array(cam.dist),
    )  # fmt: skip
    return pts.reshape(-1, 2)


@functools.cache
def rgb_camera() -> TrueCamera:
    """The seed's RGB camera (fx = fy = 1000, cx = 960, cy = 540, k1 = 0.1, k2 = -0.2)."""
    return TrueCamera(1920, 1080, 1000.0, 1000.0, 960.0, 540.0, (0.1, -0.2, 0, 0, 0))


@functools.cache
def thermal_camera() -> TrueCamera:
    """A 256x192 thermal camera 30 mm beside the RGB one (inverted, blurred, noisy)."""
    return TrueCamera(
        256, 192, 230.0, 230.0, 128.0, 96.0, (-0.05, 0.0, 0, 0, 0),
        inverted=True, blur_sigma=0.8, noise=1.0,
    )  # fmt: skip


@functools.cache
def small_camera() -> TrueCamera:
    """A 640x480 webcam (fast renders for capture and resume tests)."""
    return TrueCamera(640, 480, 520.0, 520.0, 320.0, 240.0, (0.05, -0.1, 0, 0, 0))


THERMAL_OFFSET_MM = np.array([30.0, 0.0, 0.0])  # thermal centre in RGB coordinates


def poses(n: int, board: BoardSpec, seed: int = 1, near: float = 420.0,
          far: float = 650.0, rgb: TrueCamera | None = None,
          ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """``n`` varied poses that keep the whole board inside both cameras' views."""
    rng = np.random.default_rng(seed)
    rgb, th = rgb or rgb_camera(), thermal_camera()
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(out) < n:
        d = rng.uniform(near, far)
        pose = look_at_pose(
            d, rng.uniform(-40, 40), rng.uniform(-40, 40), rng.uniform(-25, 25),
            (30 + rng.uniform(-0.2, 0.2) * d, rng.uniform(-0.15, 0.15) * d), board,
        )  # fmt: skip
        ok = True
        for cam, (r, t) in ((rgb, pose), (th, to_thermal(*pose))):
            pts = project(cam, board, r, t)
            margin = 0.04 * cam.width
            ok &= bool(
                np.all(pts > margin) and np.all(pts[:, 0] < cam.width - margin)
                and np.all(pts[:, 1] < cam.height - margin)
            )  # fmt: skip
        if ok:
            out.append(pose)
    return out


def to_thermal(rvec, tvec) -> tuple[np.ndarray, np.ndarray]:
    """The same board pose in the thermal camera's frame (no rotation between them)."""
    return np.asarray(rvec, float), np.asarray(tvec, float) - THERMAL_OFFSET_MM


def write_images(folder: Path, images: list[np.ndarray], prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / f"{prefix}_{i:03d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def write_video(path: Path, images: list[np.ndarray], fps: float) -> Path:
    """An mp4 (mp4v) of grey frames."""
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for img in images:
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img)
    writer.release()
    return path


def write_times(folder: Path, names: list[str], times: list[float]) -> None:
    """``frame_times.csv`` (name, lsl_time) for a folder source."""
    rows = "".join(f"{n},{t!r}\n" for n, t in zip(names, times, strict=True))
    (folder / "frame_times.csv").write_text("name,lsl_time\n" + rows)
