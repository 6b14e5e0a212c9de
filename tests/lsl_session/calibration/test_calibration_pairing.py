"""Pairing RGB and thermal frames by LSL time (folder sources with frame_times.csv)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lsl_session.calibration.sources import FolderSource, SourceError, pair_by_time


def _folder(path: Path, times: dict[str, float] | None) -> FolderSource:
    path.mkdir()
    for name in sorted(times or {"a.png": 0, "b.png": 0, "c.png": 0}):
        cv2.imwrite(str(path / name), np.zeros((8, 8), np.uint8))
    if times is not None:
        rows = "".join(f"{n},{t}\n" for n, t in times.items())
        (path / "frame_times.csv").write_text("name,lsl_time\n" + rows)
    return FolderSource(path)


def test_pairs_nearest_in_time_within_tolerance(tmp_path):
    # names out of time order on purpose: z.png is the earliest RGB frame
    rgb = _folder(tmp_path / "rgb", {"z.png": 10.00, "a.png": 10.10, "m.png": 10.20,
                                     "b.png": 10.30})  # fmt: skip
    th = _folder(tmp_path / "th", {"t0.png": 9.99, "t1.png": 10.08, "t2.png": 10.121,
                                   "t3.png": 10.26})  # fmt: skip
    pairs = [(f.label, None if g is None else g.label)
             for f, g in pair_by_time(rgb, th, 0.02)]  # fmt: skip
    assert pairs == [("z.png", "t0.png"), ("a.png", "t1.png"), ("m.png", None),
                     ("b.png", None)]  # fmt: skip
    # a wider tolerance pairs the last two with their nearest frame (t3 for both)
    pairs = [(f.label, g.label if g else None) for f, g in pair_by_time(rgb, th, 0.1)]
    assert pairs[2:] == [("m.png", "t3.png"), ("b.png", "t3.png")]


def test_stereo_without_frame_times_is_refused(tmp_path):
    rgb, th = _folder(tmp_path / "rgb", None), _folder(tmp_path / "th", None)
    with pytest.raises(SourceError, match="matched by LSL frame times"):
        list(pair_by_time(rgb, th, 0.02))


def test_coverage_map_counts_the_cells_corners_reached():
    from lsl_session.calibration.select import Coverage

    cov = Coverage((800, 600))  # 8 x 6 cells of 100 px
    assert cov.fraction == 0 and cov.lines() == ["........"] * 6
    cov.add(np.array([[10, 10], [50, 90], [799, 599]]))  # top-left cell, bottom-right
    assert cov.fraction == 2 / 48
    lines = cov.lines()
    assert lines[0] == "#......." and lines[5] == ".......#"
    cov.add(np.array([[150.0, 250.0]]))
    assert cov.lines()[2][1] == "#" and cov.fraction == 3 / 48
