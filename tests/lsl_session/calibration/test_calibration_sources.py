"""Capture sources: a phone's recorded frames (videos uploaded into the session,
frame times from the XDF, RGB↔thermal paired by LSL time) and a configured webcam."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from calib_truth import (
    board_texture,
    poses,
    render,
    small_camera,
    thermal_camera,
    to_thermal,
    write_video,
)
from test_calibration_thermal import stream_xml

from lsl_session import load_session
from lsl_session.calibration.board import parse_board
from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfWriter

BOARD = parse_board("chessboard:9x6:25mm")
T0 = 7000.0
HOLD = 3  # frames each pose is held (the first one is "just came into view")
LEAD = 4  # the thermal recording starts this many frames before the RGB one


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _phone_session(root: Path, n_poses: int) -> Path:
    """A recorded session: phone_1's uploaded rgb and thermal videos of a board,
    with their frame streams in the XDF (10 Hz; thermal 4 frames ahead, +7 ms)."""
    tex = board_texture(BOARD)
    rgb_cam, th_cam = small_camera(), thermal_camera()
    ps = poses(n_poses, BOARD, seed=11, rgb=rgb_cam)
    rgb = [render(rgb_cam, BOARD, r, t, tex) for r, t in ps for _ in range(HOLD)]
    th_scene = [render(th_cam, BOARD, *to_thermal(r, t), tex) for r, t in ps]
    blank = np.full((192, 256), 60, np.uint8)
    thermal = [blank] * LEAD + [img for img in th_scene for _ in range(HOLD)]
    folder = create_session_folder(root, "phone_cal")
    dev = folder / "devices" / "phone_1"
    for sub in ("rgb_videos", "thermal_videos"):
        (dev / sub).mkdir(parents=True)
    write_video(dev / "rgb_videos" / "phone_1_rgb_20261207_231000.mp4", rgb, 10.0)
    write_video(
        dev / "thermal_videos" / "phone_1_thermal_20261207_231000.mp4", thermal, 10.0
    )
    n = len(rgb)
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        w.write_stream_header(1, stream_xml(
            "phone_1_rgb_frames", "VideoFrames", "double64",
            [("frame_index", "index", "FrameIndex")], 10.0))  # fmt: skip
        w.write_stream_header(2, stream_xml(
            "phone_1_thermal_frames", "VideoFrames", "double64",
            [("frame_index", "index", "FrameIndex")], 10.0))  # fmt: skip
        w.write_samples(1, T0 + np.arange(n) / 10.0, np.arange(n, dtype=float)[:, None])
        m = len(thermal)
        w.write_samples(2, T0 + (np.arange(m) - LEAD) / 10.0 + 0.007,
                        np.arange(m, dtype=float)[:, None])  # fmt: skip
        w.write_stream_footers()
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(xdf_files=[f"{folder.name}.xdf"])
    meta_path.write_text(json.dumps(meta))
    return folder


def test_phone_recorded_frames_paired_by_lsl_time(tmp_path):
    folder = _phone_session(tmp_path, 9)
    out = _cli("calibrate", str(folder), "--device", "phone_1", "--views", "8")
    assert out.returncode == 0, out.stderr
    assert "calibrating phone_1 (rgb+thermal) from video phone_1_rgb_" in out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]) == folder
    doc = json.loads((folder / "processing/calibration/phone_1.json").read_text())
    assert doc["cameras"]["rgb"]["image_size"] == [640, 480]
    assert doc["cameras"]["thermal"]["image_size"] == [256, 192]
    assert abs(doc["cameras"]["rgb"]["camera_matrix"][0][0] / 520 - 1) < 0.01
    assert doc["cameras"]["thermal"]["rms_px"] <= 0.5
    assert abs(doc["stereo"]["baseline_mm"] - 30) <= 1
    for view in doc["views"]:
        t = view["lsl_time"]
        assert abs(t["thermal"] - t["rgb"] - 0.007) < 1e-6  # paired by time, not index
    # every kept view is the second (still) frame of a held pose
    assert all(v["position"] % HOLD == 1 for v in doc["views"])
    cal = load_session(folder).calibration["phone_1"]
    assert cal.stereo is not None and abs(cal.stereo.baseline_mm - 30) <= 1
    assert len(load_session(folder).streams) == 2


def test_configured_webcam_and_phone_in_a_config(tmp_path):
    tex = board_texture(BOARD)
    cam = small_camera()
    frames = [render(cam, BOARD, r, t, tex) for r, t in poses(6, BOARD, seed=12, rgb=cam)
              for _ in range(2)]  # fmt: skip
    write_video(tmp_path / "cal.mp4", frames, 10.0)
    cfg = tmp_path / "lab.toml"
    cfg.write_text(
        '[session]\nname = "lab"\n\n[[devices]]\nid = "webcam_1"\ntype = "pc_webcam"\n'
        'capabilities = ["rgb_video"]\nfile = "cal.mp4"\n\n[[devices]]\nid = "phone_1"\n'
        'type = "android_phone"\ncapabilities = ["rgb_video"]\ntoken = "t"\n'
    )
    out = _cli("calibrate", "--root", str(tmp_path / "rec"), "--config", str(cfg),
               "--device", "webcam_1", "--views", "5")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "from video cal.mp4" in out.stderr and "kept 5/5 views" in out.stderr
    phone = _cli("calibrate", "--root", str(tmp_path / "rec"), "--config", str(cfg),
                 "--device", "phone_1")  # fmt: skip
    assert phone.returncode == 2 and "its frames come with the upload" in phone.stderr
    none = _cli("calibrate", "--config", str(cfg), "--device", "cam_9")
    assert none.returncode == 2 and "no device 'cam_9'" in none.stderr
