"""Finding a board in one image: corners, a refusal reason, a sharpness figure.

Detection runs on a copy scaled to at most `DETECT_MAX_SIDE` pixels (fast, and
robust to noise), then the corners are refined on the full image with
``cornerSubPix``. Both polarities are tried, so a heated board seen by a thermal
camera (black squares bright) is found like a printed one seen in colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lsl_session.calibration.board import BoardSpec

#: Longest side of the image copy the board is searched in.
DETECT_MAX_SIDE = 1024
#: Smaller images (thermal cameras) are enlarged to this side before searching.
DETECT_MIN_SIDE = 512
_SUBPIX = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-3)


@dataclass(frozen=True, slots=True)
class Detection:
    """A board found in an image.

    Attributes
    ----------
    corners : numpy.ndarray
        ``(n, 2)`` float32 image positions (pixels, full resolution).
    ids : numpy.ndarray
        ``(n,)`` int32 index of each corner in ``BoardSpec.object_points()``.
    image_size : tuple of int
        ``(width, height)``.
    edge_width_px : float
        Median width of the board's black/white edges (about 2.5 σ of the blur);
        a sharp image gives 1–2 px, a blurred one more.
    inverted : bool
        The board was found with inverted contrast (a heated board in thermal).
    """

    corners: np.ndarray
    ids: np.ndarray
    image_size: tuple[int, int]
    edge_width_px: float
    inverted: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an image or frame was not kept.

    Attributes
    ----------
    code : str
        ``no_board``, ``partial``, ``blurred``, ``moving``, ``duplicate``,
        ``unreadable``, ``size`` or ``outlier``.
    reason : str
        One line for the user.
    """

    code: str
    reason: str


def to_gray(image: np.ndarray) -> np.ndarray:
    """A uint8 grey copy of a grey, BGR or BGRA image (16-bit is scaled down)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def edge_width(gray: np.ndarray, corners: np.ndarray, spacing: float) -> float:
    """Median edge width (px) around the corners: contrast / steepest gradient.

    For a step blurred by a Gaussian of σ the ratio is σ·√(2π) ≈ 2.5 σ.
    """
    r = int(np.clip(spacing * 0.35, 2, 20))
    h, w = gray.shape
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = cv2.magnitude(gx, gy)
    widths = []
    for x, y in np.round(corners).astype(int)[:: max(1, len(corners) // 24)]:
        x0, x1, y0, y1 = (
            max(x - r, 0),
            min(x + r + 1, w),
            max(y - r, 0),
            min(y + r + 1, h),
        )
        patch = gray[y0:y1, x0:x1]
        if patch.size < 9:
            continue
        lo, hi = np.percentile(patch, (5, 95))
        peak = float(np.percentile(mag[y0:y1, x0:x1], 99))
        if peak > 0 and hi - lo > 10:
            widths.append((hi - lo) / peak)
    return float(np.median(widths)) if widths else float("inf")


def _spacing(corners: np.ndarray) -> float:
    d = np.linalg.norm(np.diff(corners, axis=0), axis=1)
    return float(np.median(d)) if len(d) else 10.0


def _canonical(corners: np.ndarray, board: BoardSpec) -> np.ndarray:
    """Reverse a chessboard's corner order if it runs right-to-left.

    A chessboard with an even side looks the same turned by 180°, so OpenCV may
    return either order; the canonical one has the first→last corner vector
    pointing right (then down), the same in every camera of a rig.
    """
    v = corners[-1] - corners[0]
    if v[0] < 0 or (abs(v[0]) < 1e-6 and v[1] < 0):
        return corners[::-1].copy()
    return corners


def _scaled(gray: np.ndarray) -> tuple[np.ndarray, float]:
    side = max(gray.shape)
    scale = 1.0
    if side > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / side
    elif side < DETECT_MIN_SIDE:
        scale = DETECT_MIN_SIDE / side
    if scale == 1.0:
        return gray, 1.0
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interp), scale


def _find_chessboard(
    small: np.ndarray, board: BoardSpec
) -> tuple[np.ndarray | None, bool]:
    flags = (
        cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        | cv2.CALIB_CB_FAST_CHECK
    )  # fmt: skip
    for inverted, img in ((False, small), (True, 255 - small)):
        found, corners = cv2.findChessboardCorners(img, (board.cols, board.rows), flags)
        if found:
            return corners.reshape(-1, 2), inverted
    return None, False


def saddle_contrast(gray: np.ndarray, corners: np.ndarray) -> float:
    """Median contrast of the chessboard saddles at ``corners`` (grey levels).

    Around a true chessboard corner the two diagonal quadrants share a colour and
    the other two the opposite one; the score is the median difference between
    those pairs, sampled at 0.3 of the corner spacing along the grid's own axes.
    Blob patterns in noise or texture that a permissive detector takes for a
    grid score low.
    """
    pts = np.asarray(corners, np.float32).reshape(-1, 2)
    if len(pts) < 4:
        return 0.0
    d = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(d, np.inf)
    nn = np.argmin(d, axis=1)
    u = pts[nn] - pts
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-6)
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    r = 0.3 * d[np.arange(len(pts)), nn][:, None]
    img = gray.astype(np.float32)

    def sample(offset: np.ndarray) -> np.ndarray:
        q = (pts + offset).reshape(-1, 1, 2)
        vals = cv2.remap(img, q[..., 0], q[..., 1], cv2.INTER_LINEAR)
        return vals.ravel()

    a, b = sample(r * (u + v)), sample(-r * (u + v))
    c, e = sample(r * (u - v)), sample(-r * (u - v))
    score = np.abs((a + b) - (c + e)) / 2 - (np.abs(a - b) + np.abs(c - e)) / 2
    return float(np.median(score))


#: Least saddle contrast (grey levels) of a partly visible board.
PARTIAL_MIN_CONTRAST = 40.0


def _partial_count(small: np.ndarray) -> int:
    """Corners of a chessboard of at least 3 x 3 corners in the image (0: none).

    OpenCV's SB detector also finds "grids" in noise and texture; a grid counts
    only when its saddles have real chessboard contrast (`saddle_contrast`).
    """
    flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_LARGER
    best = 0
    for img in (small, 255 - small):
        found, corners = cv2.findChessboardCornersSB(img, (3, 3), flags=flags)
        if found and saddle_contrast(small, corners) >= PARTIAL_MIN_CONTRAST:
            best = max(best, len(corners))
    return best


def detect_chessboard(gray: np.ndarray, board: BoardSpec) -> Detection | Refusal:
    """Find every inner corner of a chessboard, or say why not."""
    small, scale = _scaled(gray)
    found, inverted = _find_chessboard(small, board)
    if found is None:
        seen = _partial_count(small)
        if seen:
            return Refusal(
                "partial",
                f"only part of the board is visible ({seen} corners found, "
                f"{board.n_corners} needed for the {board.cols}x{board.rows} "
                "chessboard): move it fully inside the image",
            )
        return Refusal(
            "no_board",
            f"no {board.cols}x{board.rows} chessboard found (check the board size "
            "and the lighting)",
        )
    corners = (found / scale).astype(np.float32)
    spacing = _spacing(corners)
    win = int(np.clip(spacing * 0.3, 2, 11))
    src = 255 - gray if inverted else gray
    refined = cv2.cornerSubPix(
        src, corners.reshape(-1, 1, 2), (win, win), (-1, -1), _SUBPIX
    )
    corners = _canonical(refined.reshape(-1, 2), board)
    h, w = gray.shape
    return Detection(
        corners=corners.astype(np.float32),
        ids=np.arange(board.n_corners, dtype=np.int32),
        image_size=(w, h),
        edge_width_px=edge_width(gray, corners, spacing),
        inverted=inverted,
    )


def detect_charuco(
    gray: np.ndarray, board: BoardSpec, min_fraction: float
) -> Detection | Refusal:
    """Find a ChArUco board's corners (ids from its markers), or say why not."""
    params = cv2.aruco.DetectorParameters()
    params.detectInvertedMarker = True
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.CharucoDetector(
        board.charuco_board(), cv2.aruco.CharucoParameters(), params
    )
    small, scale = _scaled(gray)
    best: tuple[np.ndarray, np.ndarray, bool] | None = None
    for inverted, img in ((False, small), (True, 255 - small)):
        corners, ids, _, _ = detector.detectBoard(img)
        if ids is not None and (best is None or len(ids) > len(best[1])):
            best = (corners.reshape(-1, 2), ids.ravel(), inverted)
    if best is None or len(best[1]) < 4:
        return Refusal("no_board", f"no {board.cols}x{board.rows} ChArUco board found")
    corners, ids, inverted = best
    need = int(np.ceil(min_fraction * board.n_corners))
    if len(ids) < need:
        return Refusal(
            "partial",
            f"only part of the board is visible ({len(ids)} of {board.n_corners} "
            f"corners found, {need} needed): move it fully inside the image",
        )
    corners = (corners / scale).astype(np.float32)
    spacing = _spacing(corners)
    if scale != 1.0:
        # refine at full resolution, in a window that stays clear of the markers
        margin = (board.square_mm - float(board.marker_mm or 0)) / (2 * board.square_mm)
        win = int(np.clip(spacing * margin * 0.8, 2, 11))
        src = 255 - gray if inverted else gray
        corners = cv2.cornerSubPix(
            src, corners.reshape(-1, 1, 2), (win, win), (-1, -1), _SUBPIX
        )
    order = np.argsort(ids)
    h, w = gray.shape
    pts = corners.reshape(-1, 2)[order]
    return Detection(
        corners=pts.astype(np.float32), ids=ids[order].astype(np.int32),
        image_size=(w, h), edge_width_px=edge_width(gray, pts, spacing),
        inverted=inverted,
    )  # fmt: skip


def detect_board(
    image: np.ndarray, board: BoardSpec, *, min_fraction: float = 0.75
) -> Detection | Refusal:
    """Find ``board`` in ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        Grey or BGR image, any size.
    board : BoardSpec
    min_fraction : float
        ChArUco: fewest corners kept, as a fraction of all (a chessboard is
        always found whole or not at all).

    Returns
    -------
    Detection | Refusal
    """
    gray = to_gray(image)
    if gray.ndim != 2 or min(gray.shape) < 16:
        return Refusal("unreadable", f"image too small ({gray.shape[::-1]})")
    if board.kind == "charuco":
        return detect_charuco(gray, board, min_fraction)
    return detect_chessboard(gray, board)
