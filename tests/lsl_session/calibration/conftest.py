"""Rendered calibration views shared by the calibration tests (rendered once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from calib_truth import (
    board_texture,
    poses,
    render,
    rgb_camera,
    thermal_camera,
    to_thermal,
    write_images,
    write_times,
)

from lsl_session.calibration.board import BoardSpec, parse_board

#: Views rendered for the default (fast) suite.
N_VIEWS = 14


@dataclass
class StereoViews:
    board: BoardSpec
    rgb: list[np.ndarray]
    thermal: list[np.ndarray]
    poses: list[tuple[np.ndarray, np.ndarray]]
    rgb_dir: Path
    thermal_dir: Path


def render_stereo(board: BoardSpec, n: int, folder: Path, seed: int = 1) -> StereoViews:
    tex = board_texture(board)
    rgb, th = rgb_camera(), thermal_camera()
    ps = poses(n, board, seed=seed)
    rng = np.random.default_rng(seed)
    rgb_imgs = [render(rgb, board, r, t, tex) for r, t in ps]
    th_imgs = [render(th, board, *to_thermal(r, t), tex, rng=rng) for r, t in ps]
    rgb_paths = write_images(folder / "rgb", rgb_imgs, "rgb")
    th_paths = write_images(folder / "thermal", th_imgs, "th")
    # LSL frame times: RGB every 0.5 s, thermal 4 ms later (a 25 Hz camera's jitter),
    # plus thermal frames in between that belong to no RGB frame
    t_rgb = [1000.0 + 0.5 * i for i in range(n)]
    write_times(folder / "rgb", [p.name for p in rgb_paths], t_rgb)
    write_times(
        folder / "thermal", [p.name for p in th_paths], [t + 0.004 for t in t_rgb]
    )
    return StereoViews(board, rgb_imgs, th_imgs, ps, folder / "rgb", folder / "thermal")


@pytest.fixture(scope="session")
def stereo_views(tmp_path_factory) -> StereoViews:
    """14 poses of the seed's 9x6 / 25 mm board, seen by the RGB and thermal cameras."""
    board = parse_board("chessboard:9x6:25mm")
    return render_stereo(board, N_VIEWS, tmp_path_factory.mktemp("stereo"))
