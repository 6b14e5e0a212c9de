"""Accuracy on rendered truth (issue #30 item 4): the seed's RGB camera
(fx = fy = 1000, cx = 960, cy = 540, k1 = 0.1, k2 = -0.2) and a 256x192 thermal
camera (inverted contrast, blur, noise) 30 mm beside it."""

from __future__ import annotations

import numpy as np
import pytest
from calib_truth import THERMAL_OFFSET_MM, rgb_camera, thermal_camera
from conftest import render_stereo

from lsl_session.calibration.board import parse_board
from lsl_session.calibration.detect import Detection, detect_board
from lsl_session.calibration.solve import (
    CalibrationError,
    Observation,
    calibrate_camera,
    calibrate_stereo,
)


def _solve(views):
    board = views.board
    rgb, th, pairs = {}, {}, {}
    for i, (a, b) in enumerate(zip(views.rgb, views.thermal, strict=True)):
        da, db = detect_board(a, board), detect_board(b, board)
        assert isinstance(da, Detection), da
        assert isinstance(db, Detection), db
        assert db.inverted  # the heated board: black squares look bright
        rgb[f"v{i}"] = Observation(da.corners, da.ids)
        th[f"v{i}"] = Observation(db.corners, db.ids)
        pairs[f"v{i}"] = (rgb[f"v{i}"], th[f"v{i}"])
    s_rgb = calibrate_camera(board, rgb, (1920, 1080))
    s_th = calibrate_camera(board, th, (256, 192))
    return s_rgb, s_th, calibrate_stereo(board, s_rgb, s_th, pairs)


def _check(s_rgb, s_th, stereo):
    truth = rgb_camera()
    k = s_rgb.camera_matrix
    assert s_rgb.rms_px <= 0.3
    assert abs(k[0, 0] / truth.fx - 1) <= 0.005
    assert abs(k[1, 1] / truth.fy - 1) <= 0.005
    assert abs(k[0, 2] - truth.cx) < 3 and abs(k[1, 2] - truth.cy) < 3
    assert abs(s_rgb.distortion[0] - 0.1) < 0.01
    assert abs(s_rgb.distortion[1] + 0.2) < 0.03
    assert s_th.rms_px <= 0.5
    assert abs(s_th.camera_matrix[0, 0] / thermal_camera().fx - 1) < 0.02
    assert abs(stereo.baseline_mm - 30.0) <= 1.0
    # thermal = RGB shifted by +30 mm in x: X_th = X_rgb - offset, so T = -offset
    assert np.allclose(stereo.T, -THERMAL_OFFSET_MM, atol=1.5)
    assert np.allclose(stereo.R, np.eye(3), atol=0.01)
    # a rare thermal view with a misplaced corner may be dropped as an outlier
    n = len(s_rgb.view_errors) + len(s_rgb.dropped)
    assert len(s_rgb.dropped) + len(s_th.dropped) <= max(1, n // 10)


def test_rgb_thermal_accuracy_on_rendered_truth(stereo_views):
    s_rgb, s_th, stereo = _solve(stereo_views)
    _check(s_rgb, s_th, stereo)


@pytest.mark.slow
def test_rgb_thermal_accuracy_on_40_views(tmp_path):
    views = render_stereo(parse_board("chessboard:9x6:25mm"), 40, tmp_path, seed=7)
    _check(*_solve(views))


def test_a_view_off_the_model_is_dropped_with_its_reason(stereo_views):
    board = stereo_views.board
    views = {}
    for i, img in enumerate(stereo_views.rgb[:10]):
        d = detect_board(img, board)
        views[f"v{i}"] = Observation(d.corners, d.ids)
    bad = views["v3"]
    rng = np.random.default_rng(3)
    views["v3"] = Observation(
        bad.corners + rng.normal(0, 2.0, bad.corners.shape), bad.ids
    )
    sol = calibrate_camera(board, views, (1920, 1080))
    assert [d.view_id for d in sol.dropped] == ["v3"]
    assert sol.dropped[0].reason.startswith("outlier: reprojection error")
    assert sol.dropped[0].error_px > 1.0
    assert "v3" not in sol.view_errors and sol.rms_px <= 0.3
    # the same views without the corruption drop nothing
    views["v3"] = bad
    assert calibrate_camera(board, views, (1920, 1080)).dropped == []


def test_too_few_views_is_a_clear_error(stereo_views):
    board = stereo_views.board
    d = detect_board(stereo_views.rgb[0], board)
    with pytest.raises(CalibrationError, match="1 usable views, at least 4"):
        calibrate_camera(board, {"v0": Observation(d.corners, d.ids)}, (1920, 1080))
