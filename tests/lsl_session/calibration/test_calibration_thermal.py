"""Calibration used, not just stored (issue #30 item 5): ``process
--register-thermal`` warps thermal frames into the RGB view, and hand
segmentation gains each hand's thermal mean when a calibration exists.

The scene is rendered: a plane 600 mm in front of the RGB camera with a warm
hand-coloured patch moving across it, seen by the 640x480 RGB camera and a
256x192 thermal camera 30 mm beside it. The thermal recording starts two frames
before the RGB one, so only pairing by LSL time puts the patch in the right place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from calib_truth import (
    TEXTURE_PX_PER_MM,
    THERMAL_OFFSET_MM,
    TrueCamera,
    render,
    small_camera,
    write_video,
)

from lsl_session.calibration.board import parse_board
from lsl_session.processing.hands import skin_mask
from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfWriter


def stream_xml(name: str, stype: str, fmt: str, channels: list, srate: float) -> str:
    chans = "".join(
        f"<channel><label>{lbl}</label><unit>{unit}</unit><type>{ctype}</type></channel>"
        for lbl, unit, ctype in channels
    )
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{stype}</type>'
        f"<channel_count>{len(channels)}</channel_count>"
        f"<nominal_srate>{srate}</nominal_srate><channel_format>{fmt}</channel_format>"
        f"<source_id>test/{name}</source_id><hostname>h</hostname>"
        f"<desc><channels>{chans}</channels></desc></info>"
    )


DEPTH = 600.0
N = 10
T0 = 5000.0
SKIN_BGR = (110, 150, 215)
PLANE_MM = (900, 700)
HOT, COLD = 230, 50
T_MIN, T_MAX = 20.0, 36.0


def _thermal_cam() -> TrueCamera:
    return TrueCamera(
        256, 192, 230.0, 230.0, 128.0, 96.0, (-0.05, 0, 0, 0, 0), blur_sigma=0.8
    )


def _texture(k: int, colour: bool) -> tuple[np.ndarray, float, float]:
    w, h = (round(v * TEXTURE_PX_PER_MM) for v in PLANE_MM)
    tex = np.full((h, w, 3) if colour else (h, w), 128 if colour else COLD, np.uint8)
    cx = w / 2 + (-150 + 300 * k / (N - 1)) * TEXTURE_PX_PER_MM
    x0, x1 = round(cx - 45 * TEXTURE_PX_PER_MM), round(cx + 45 * TEXTURE_PX_PER_MM)
    y0, y1 = (
        round(h / 2 - 60 * TEXTURE_PX_PER_MM),
        round(h / 2 + 60 * TEXTURE_PX_PER_MM),
    )
    tex[y0:y1, x0:x1] = SKIN_BGR if colour else HOT
    return tex, w / 2, h / 2


def _calibration_doc(rgb: TrueCamera, th: TrueCamera) -> dict:
    def cam(c: TrueCamera) -> dict:
        return {"image_size": [c.width, c.height], "camera_matrix": c.matrix.tolist(),
                "distortion": list(c.dist), "rms_px": 0.05}  # fmt: skip

    return {
        "schema_version": 1, "device": "phone_1", "created": "2026-12-07T00:00:00+00:00",
        "board": parse_board("chessboard:9x6:25mm").to_dict(), "model": "radtan",
        "cameras": {"rgb": cam(rgb), "thermal": cam(th)},
        "stereo": {"from": "rgb", "to": "thermal", "R": np.eye(3).tolist(),
                   "T_mm": (-THERMAL_OFFSET_MM).tolist(), "baseline_mm": 30.0,
                   "rms_px": 0.05},
        "views": [],
    }  # fmt: skip


def _session(root: Path) -> Path:
    rgb, th = small_camera(), _thermal_cam()
    pose = (np.zeros(3), np.array([0.0, 0.0, DEPTH]))
    board = parse_board("chessboard:9x6:25mm")  # only for render's signature
    rgb_frames, th_frames = [], []
    for k in range(N + 2):  # thermal frame j shows the scene of RGB frame j - 2
        if k < N:
            img = render(rgb, board, *pose, _texture(k, True))
            rgb_frames.append(img)
        th_pose = (pose[0], pose[1] - THERMAL_OFFSET_MM)
        th_frames.append(render(th, board, *th_pose, _texture(max(k - 2, 0), False)))
    folder = create_session_folder(root, "thermal")
    dev = folder / "devices" / "phone_1"
    (dev / "rgb_videos").mkdir(parents=True)
    (dev / "thermal_videos").mkdir(parents=True)
    write_video(
        dev / "rgb_videos" / "phone_1_rgb_20261207_230000.mp4", rgb_frames, 10.0
    )
    write_video(
        dev / "thermal_videos" / "phone_1_thermal_20261207_230000.mp4", th_frames, 10.0
    )
    t_rgb = T0 + np.arange(N) / 10.0
    t_th = T0 + (np.arange(N + 2) - 2) / 10.0 + 0.005
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        w.write_stream_header(1, stream_xml(
            "phone_1_rgb_frames", "VideoFrames", "double64",
            [("frame_index", "index", "FrameIndex")], 10.0))  # fmt: skip
        w.write_stream_header(2, stream_xml(
            "phone_1_thermal_frames", "VideoFrames", "double64",
            [("frame_index", "index", "FrameIndex"), ("temp_min", "degC", "Temperature"),
             ("temp_max", "degC", "Temperature"), ("temp_mean", "degC", "Temperature")],
            10.0))  # fmt: skip
        w.write_samples(1, t_rgb, np.arange(N, dtype=float)[:, None])
        rows = np.column_stack([np.arange(N + 2), np.full(N + 2, T_MIN),
                                np.full(N + 2, T_MAX), np.full(N + 2, 25.0)])  # fmt: skip
        w.write_samples(2, t_th, rows.astype(float))
        w.write_stream_footers()
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(xdf_files=[f"{folder.name}.xdf"])
    meta_path.write_text(json.dumps(meta))
    cal = folder / "processing" / "calibration"
    cal.mkdir(parents=True)
    (cal / "phone_1.json").write_text(json.dumps(_calibration_doc(rgb, th)))
    return folder


def _process(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", "process", str(folder), *extra],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


HANDS_CSV = "processing/hand_segmentation/phone_1_rgb_20261207_230000_hands.csv"


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def _registered_iou(folder: Path) -> float:
    """Smallest IoU of the RGB skin patch and the registered warm patch."""
    reg = (
        folder
        / "processing/thermal_registration/phone_1_thermal_20261207_230000_registered.mp4"
    )
    thermal = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in _frames(reg)]
    rgb = _frames(next((folder / "devices/phone_1/rgb_videos").iterdir()))
    ious = []
    for k, frame in enumerate(rgb):
        hand = skin_mask(frame) > 0
        hot = thermal[k + 2] > (HOT + COLD) / 2
        ious.append(float((hand & hot).sum() / max((hand | hot).sum(), 1)))
    return min(ious)


def test_register_thermal_and_hand_thermal_means(tmp_path):
    folder = _session(tmp_path)
    out = _process(folder, "--register-thermal")
    assert out.returncode == 0, out.stderr
    assert "thermal_registration" in out.stdout

    reg = folder / "processing" / "thermal_registration"
    registered = _frames(reg / "phone_1_thermal_20261207_230000_registered.mp4")
    assert len(registered) == N + 2 and registered[0].shape == (480, 640, 3)
    table = pd.read_csv(reg / "phone_1_thermal_20261207_230000_registered.csv")
    assert table["rgb_frame"].isna().sum() == 2  # thermal frames 0, 1: before the RGB
    assert table["rgb_frame"].dropna().astype(int).tolist() == list(range(N))
    # registered thermal frame j lines up with RGB frame j - 2
    assert _registered_iou(folder) > 0.8

    hands = pd.read_csv(folder / HANDS_CSV)
    assert (hands["n_hands"] == 1).all()
    assert hands["hand0_thermal_mean"].between(HOT - 25, HOT + 5).all(), hands[
        "hand0_thermal_mean"
    ]
    hot_c = T_MIN + HOT / 255 * (T_MAX - T_MIN)
    assert np.allclose(hands["hand0_thermal_mean_c"], hot_c, atol=2.0)
    assert hands["hand1_thermal_mean"].isna().all()  # no second hand
    meta = json.loads((folder / "session_metadata.json").read_text())
    steps = meta["processing"]["runs"][-1]["steps"]
    assert steps["thermal_registration"]["status"] == "ok"
    report = steps["hand_segmentation"]["report"]["result"]["videos"][0]["thermal"]
    assert report["device"] == "phone_1" and report["frames_with_thermal"] == N


def test_wrong_depth_or_no_calibration_show(tmp_path):
    """The figures can fail: registered for a wrong depth, the patches part; without
    a calibration there is no registration and no thermal column."""
    folder = _session(tmp_path)
    out = _process(folder, "--register-thermal", "--register-depth", "150")
    assert out.returncode == 0, out.stderr
    assert _registered_iou(folder) < 0.5
    hands = pd.read_csv(folder / HANDS_CSV)
    assert hands["hand0_thermal_mean"].mean() < HOT - 60  # off the warm patch
    shutil.rmtree(folder / "processing/calibration")
    out = _process(folder, "--register-thermal")
    assert out.returncode == 0, out.stderr
    assert "hand0_thermal_mean" not in pd.read_csv(folder / HANDS_CSV).columns
    meta = json.loads((folder / "session_metadata.json").read_text())
    result = meta["processing"]["runs"][-1]["steps"]["thermal_registration"]["report"]
    assert result["result"]["videos"] == [] and result["outputs"] == []
