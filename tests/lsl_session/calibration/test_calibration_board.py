"""Board specs (`--board`) and detection refusals on rendered images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from calib_truth import (
    board_texture,
    look_at_pose,
    project,
    render,
    rgb_camera,
    small_camera,
)

from lsl_session.calibration.board import BoardSpecError, parse_board
from lsl_session.calibration.detect import Detection, Refusal, detect_board


def test_parse_chessboard_is_the_seed_pattern():
    board = parse_board("chessboard:9x6:25mm")
    assert (board.kind, board.cols, board.rows, board.square_mm) == (
        "chessboard",
        9,
        6,
        25.0,
    )
    assert board.n_corners == 54
    assert board.to_dict()["current_pattern"] == "STEREO_CHECKERBOARD"
    pts = board.object_points()
    assert pts.shape == (54, 3)
    assert pts[-1].tolist() == [200.0, 125.0, 0.0]  # 8 x 25 mm, 5 x 25 mm
    assert parse_board(board.spec()) == board


def test_parse_charuco_with_default_dictionary():
    board = parse_board("charuco:7x5:30mm:22mm")
    assert board.dictionary == "DICT_5X5_100"
    assert board.n_corners == 24
    assert parse_board(board.spec()) == board


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("chessboard:9x6", "expected"),
        ("chessboard:9-6:25mm", "COLSxROWS"),
        ("chessboard:9x6:25", "size like 25mm"),
        ("chessboard:2x6:25mm", "3 to 60"),
        ("charuco:7x5:30mm:40mm", "smaller than squares"),
        ("charuco:7x5:30mm:22mm:DICT_NOPE", "unknown ArUco dictionary"),
        ("charuco:20x20:30mm:22mm:DICT_4X4_50", "do not fit"),
        ("circles:4x11:20mm", "not understood"),
    ],
)
def test_bad_board_specs_are_one_line_errors(spec, words):
    with pytest.raises(BoardSpecError, match=words) as err:
        parse_board(spec)
    assert "\n" not in str(err.value)


def _seen(cam, board, pose):
    return render(cam, board, *pose, board_texture(board))


def test_corners_are_found_to_a_small_fraction_of_a_pixel():
    board = parse_board("chessboard:9x6:25mm")
    cam = rgb_camera()
    pose = look_at_pose(600, 20, -15, 10, (50, -30), board)
    found = detect_board(_seen(cam, board, pose), board)
    assert isinstance(found, Detection)
    err = np.linalg.norm(found.corners - project(cam, board, *pose), axis=1)
    assert err.max() < 0.2
    assert found.edge_width_px < 3.0


def test_inverted_board_is_found_and_flagged():
    board = parse_board("chessboard:9x6:25mm")
    cam = small_camera()
    pose = look_at_pose(450, 10, 10, 5, (0, 0), board)
    img = 255 - _seen(cam, board, pose)
    found = detect_board(img, board)
    assert isinstance(found, Detection) and found.inverted
    err = np.linalg.norm(found.corners - project(cam, board, *pose), axis=1)
    assert err.max() < 0.3


def test_no_board_is_refused_with_a_reason():
    board = parse_board("chessboard:9x6:25mm")
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (480, 640), dtype=np.uint8), (0, 0), 3)
    got = detect_board(img, board)
    assert isinstance(got, Refusal) and got.code == "no_board"
    assert "no 9x6 chessboard found" in got.reason


def test_half_a_board_is_refused_as_partial():
    board = parse_board("chessboard:9x6:25mm")
    cam = rgb_camera()
    # board pushed down: half its corners are below the image
    pose = look_at_pose(600, 0, 0, 0, (0, 330), board)
    inside = project(cam, board, *pose)[:, 1] < cam.height
    assert 0.5 <= inside.mean() < 0.7  # the row at the edge is cut too
    got = detect_board(_seen(cam, board, pose), board)
    assert isinstance(got, Refusal) and got.code == "partial", got
    assert "27 corners found, 54 needed" in got.reason
    assert "move it fully inside" in got.reason


def test_charuco_corners_and_partial_refusal():
    board = parse_board("charuco:7x5:30mm:22mm")
    cam = small_camera()
    pose = look_at_pose(500, 15, -10, 5, (0, 0), board)
    found = detect_board(_seen(cam, board, pose), board)
    assert isinstance(found, Detection) and len(found.ids) == board.n_corners
    truth = project(cam, board, *pose)[found.ids]
    assert np.linalg.norm(found.corners - truth, axis=1).max() < 0.3
    half = look_at_pose(500, 0, 0, 0, (290, 0), board)  # half off the right edge
    got = detect_board(_seen(cam, board, half), board)
    assert isinstance(got, Refusal) and got.code == "partial", got
    assert f"of {board.n_corners} corners found" in got.reason
