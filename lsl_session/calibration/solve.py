"""Solving: intrinsics per camera (``calibrateCamera``), then RGB↔thermal extrinsics
(``stereoCalibrate`` with the intrinsics fixed), dropping outlier views.

The default lens model is *radtan* (k1, k2, p1, p2; k3 fixed at 0), Kalibr's
default for ordinary lenses; ``k3`` frees the third radial term, ``rational``
adds OpenCV's rational model (k4–k6) for wide-angle lenses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lsl_session.calibration.board import BoardSpec
from lsl_session.errors import LslSessionError

MODELS: dict[str, int] = {
    "radtan": cv2.CALIB_FIX_K3,
    "k3": 0,
    "rational": cv2.CALIB_RATIONAL_MODEL,
}
#: A view is an outlier when its error exceeds both this many times the median …
OUTLIER_FACTOR = 3.0
#: … and this many pixels.
OUTLIER_MIN_PX = 0.5
#: Fewest views a camera can be solved from.
MIN_VIEWS = 4
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


class CalibrationError(LslSessionError):
    """The views cannot be solved (too few, degenerate)."""


@dataclass(slots=True)
class Observation:
    """One camera's detected corners in one view."""

    corners: np.ndarray  # (n, 2) float32
    ids: np.ndarray  # (n,) int32 indices into board.object_points()


@dataclass(slots=True)
class DroppedView:
    """A view left out of the solution, with the reason."""

    view_id: str
    reason: str
    error_px: float | None = None


@dataclass(slots=True)
class CameraSolution:
    """Intrinsics of one camera.

    Attributes
    ----------
    camera_matrix : numpy.ndarray
        3x3 ``K``.
    distortion : numpy.ndarray
        OpenCV order (k1, k2, p1, p2, k3[, k4, k5, k6]).
    rms_px : float
        RMS reprojection error over every corner of the kept views.
    view_errors : dict
        View id → RMS reprojection error of that view (px).
    image_size : tuple of int
        ``(width, height)``.
    dropped : list of DroppedView
    poses : dict
        View id → (rvec, tvec) of the board (mm), for the stereo step.
    """

    camera_matrix: np.ndarray
    distortion: np.ndarray
    rms_px: float
    view_errors: dict[str, float]
    image_size: tuple[int, int]
    model: str
    dropped: list[DroppedView] = field(default_factory=list)
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(slots=True)
class StereoSolution:
    """Pose of the second camera (thermal) relative to the first (RGB).

    A point ``X`` in RGB camera coordinates (mm) is ``R @ X + T`` in thermal ones.
    """

    R: np.ndarray
    T: np.ndarray
    baseline_mm: float
    rms_px: float
    view_errors: dict[str, float]
    dropped: list[DroppedView] = field(default_factory=list)


def _arrays(board: BoardSpec, obs: Observation) -> tuple[np.ndarray, np.ndarray]:
    obj = board.object_points()[obs.ids]
    return obj.reshape(-1, 1, 3), np.asarray(obs.corners, np.float32).reshape(-1, 1, 2)


def _view_rms(obj, img, rvec, tvec, k, d) -> float:
    proj, _ = cv2.projectPoints(obj, rvec, tvec, k, d)
    return float(np.sqrt(np.mean(np.sum((proj - img) ** 2, axis=2))))


def _outliers(errors: dict[str, float]) -> dict[str, float]:
    med = float(np.median(list(errors.values())))
    limit = max(OUTLIER_FACTOR * med, OUTLIER_MIN_PX)
    return {k: e for k, e in errors.items() if e > limit}


def calibrate_camera(
    board: BoardSpec, views: dict[str, Observation], image_size: tuple[int, int],
    *, model: str = "radtan",
) -> CameraSolution:  # fmt: skip
    """Solve one camera's intrinsics, dropping outlier views (at most 3 rounds).

    Raises
    ------
    CalibrationError
        With fewer than `MIN_VIEWS` usable views, or when OpenCV fails.
    """
    if model not in MODELS:
        raise CalibrationError(
            f"unknown lens model {model!r}; known: {', '.join(MODELS)}"
        )
    kept = {k: v for k, v in views.items() if len(v.ids) >= 6}
    dropped = [
        DroppedView(k, f"only {len(v.ids)} corners")
        for k, v in views.items()
        if k not in kept
    ]
    for _ in range(4):
        if len(kept) < MIN_VIEWS:
            raise CalibrationError(
                f"{len(kept)} usable views, at least {MIN_VIEWS} are needed"
            )
        ids = list(kept)
        pairs = [_arrays(board, kept[i]) for i in ids]
        objs, imgs = [p[0] for p in pairs], [p[1] for p in pairs]
        try:
            rms, k, d, rvecs, tvecs = cv2.calibrateCamera(
                objs, imgs, image_size, None, None, flags=MODELS[model],
                criteria=_CRITERIA,
            )  # fmt: skip
        except cv2.error as exc:
            raise CalibrationError(f"OpenCV could not calibrate: {exc.err}") from None
        errors = {
            i: _view_rms(o, m, r, t, k, d)
            for i, o, m, r, t in zip(ids, objs, imgs, rvecs, tvecs, strict=True)
        }
        bad = _outliers(errors) if len(kept) > MIN_VIEWS else {}
        if not bad:
            break
        med = float(np.median(list(errors.values())))
        for i, e in bad.items():
            dropped.append(
                DroppedView(
                    i, f"outlier: reprojection error {e:.2f} px > "
                    f"max({OUTLIER_FACTOR:g} x median {med:.2f} px, {OUTLIER_MIN_PX} px)",
                    e,
                )
            )  # fmt: skip
            del kept[i]
    return CameraSolution(
        camera_matrix=k, distortion=d.ravel(), rms_px=float(rms), view_errors=errors,
        image_size=tuple(image_size), model=model, dropped=dropped,
        poses={i: (r.ravel(), t.ravel()) for i, r, t in zip(ids, rvecs, tvecs, strict=True)},
    )  # fmt: skip


def _common(a: Observation, b: Observation) -> tuple[Observation, Observation]:
    shared, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
    return (
        Observation(a.corners[ia], shared), Observation(b.corners[ib], shared)
    )  # fmt: skip


def calibrate_stereo(
    board: BoardSpec, first: CameraSolution, second: CameraSolution,
    views: dict[str, tuple[Observation, Observation]],
) -> StereoSolution:  # fmt: skip
    """Solve R, T between two calibrated cameras from views both saw.

    Only views kept by both cameras' intrinsic solutions are used; views whose
    stereo error is an outlier are dropped (reason recorded).
    """
    kept = {
        k: _common(*v) for k, v in views.items()
        if k in first.view_errors and k in second.view_errors
    }  # fmt: skip
    kept = {k: v for k, v in kept.items() if len(v[0].ids) >= 6}
    dropped: list[DroppedView] = []
    for _ in range(4):
        if len(kept) < 3:
            raise CalibrationError(
                f"{len(kept)} views seen by both cameras, at least 3 are needed"
            )
        ids = list(kept)
        objs, img1, img2 = [], [], []
        for i in ids:
            o, m1 = _arrays(board, kept[i][0])
            _, m2 = _arrays(board, kept[i][1])
            objs.append(o)
            img1.append(m1)
            img2.append(m2)
        try:
            out = cv2.stereoCalibrateExtended(
                objs, img1, img2, first.camera_matrix, first.distortion,
                second.camera_matrix, second.distortion, first.image_size,
                np.eye(3), np.zeros((3, 1)), flags=cv2.CALIB_FIX_INTRINSIC,
                criteria=_CRITERIA,
            )  # fmt: skip
        except cv2.error as exc:
            raise CalibrationError(
                f"OpenCV stereo calibration failed: {exc.err}"
            ) from None
        rms, r, t, per_view = out[0], out[5], out[6], np.asarray(out[11])
        errors = {
            i: float(np.sqrt((per_view[n, 0] ** 2 + per_view[n, 1] ** 2) / 2))
            for n, i in enumerate(ids)
        }
        bad = _outliers(errors) if len(kept) > 3 else {}
        if not bad:
            break
        for i, e in bad.items():
            dropped.append(DroppedView(i, f"stereo outlier: {e:.2f} px", e))
            del kept[i]
    t = np.asarray(t, float).ravel()
    return StereoSolution(
        R=np.asarray(r, float), T=t, baseline_mm=float(np.linalg.norm(t)),
        rms_px=float(rms), view_errors=errors, dropped=dropped,
    )  # fmt: skip
