"""``lsl-session calibrate`` as a subprocess: stereo from folders, refusals, the
result file, metadata, events, ``load_session(...).calibration``, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from calib_truth import board_texture, look_at_pose, render, rgb_camera

from lsl_session import load_session


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _events(session: Path) -> list[dict]:
    return json.loads((session / f"{session.name}_log.json").read_text())


def _folders(stereo_views, tmp_path: Path) -> tuple[Path, Path]:
    rgb = tmp_path / "rgb"
    th = tmp_path / "thermal"
    shutil.copytree(stereo_views.rgb_dir, rgb)
    shutil.copytree(stereo_views.thermal_dir, th)
    board = stereo_views.board
    # two frames to refuse: nothing on the board's side of the room, half a board
    rng = np.random.default_rng(5)
    noise = cv2.GaussianBlur(
        rng.integers(0, 255, (1080, 1920), dtype=np.uint8), (0, 0), 3
    )
    cv2.imwrite(str(rgb / "rgb_000a.png"), noise)
    half = render(rgb_camera(), board, *look_at_pose(600, 0, 0, 0, (0, 330), board),
                  board_texture(board))  # fmt: skip
    cv2.imwrite(str(rgb / "rgb_000b.png"), half)
    times = (rgb / "frame_times.csv").read_text().splitlines()
    times += ["rgb_000a.png,1000.1", "rgb_000b.png,1000.2"]
    (rgb / "frame_times.csv").write_text("\n".join(times) + "\n")
    return rgb, th


def test_stereo_calibration_from_folders(stereo_views, tmp_path):
    rgb, th = _folders(stereo_views, tmp_path)
    root = tmp_path / "rec"
    out = run_cli("calibrate", "--root", str(root), "--device", "rig", "--from", str(rgb),
                  "--thermal-from", str(th), "--views", "10")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    err = out.stderr
    assert "refused rgb_000a.png: rgb: no 9x6 chessboard found" in err
    assert (
        "refused rgb_000b.png: rgb: only part of the board is visible (27 corners found"
        in err
    )
    assert "kept 10/10 views" in err and "coverage rgb" in err
    assert any(set(line.strip()) <= {"#", ".", " "} and "#" in line
               for line in err.splitlines())  # the coverage map  # fmt: skip
    session = Path(out.stdout.strip().splitlines()[-1])
    assert session.parent == root and session.name.startswith("calibration_run_")

    doc = json.loads((session / "processing/calibration/rig.json").read_text())
    cam = doc["cameras"]["rgb"]
    assert cam["image_size"] == [1920, 1080]
    assert abs(cam["camera_matrix"][0][0] / 1000 - 1) <= 0.005
    assert abs(cam["camera_matrix"][1][1] / 1000 - 1) <= 0.005
    assert len(cam["distortion"]) == 5 and cam["rms_px"] <= 0.3
    assert len(cam["per_view_error_px"]) == 10
    assert doc["cameras"]["thermal"]["image_size"] == [256, 192]
    assert doc["cameras"]["thermal"]["rms_px"] <= 0.5
    assert doc["board"]["spec"] == "chessboard:9x6:25mm"
    assert abs(doc["stereo"]["baseline_mm"] - 30) <= 1
    assert len(doc["stereo"]["R"]) == 3 and len(doc["stereo"]["T_mm"]) == 3
    first = doc["views"][0]
    assert abs(first["lsl_time"]["thermal"] - first["lsl_time"]["rgb"] - 0.004) < 1e-9
    assert 0 < first["quality_score"] <= 1

    meta = json.loads((session / "session_metadata.json").read_text())
    ref = meta["calibration"]["rig"]
    assert ref["file"] == "processing/calibration/rig.json"
    assert ref["status"] == "solved" and ref["views"] == 10
    assert meta["devices"]["rig"]["capabilities"] == ["rgb_video", "thermal_video"]
    captures = [e for e in _events(session) if e["event"] == "calibration_capture"]
    assert [e["view_id"] for e in captures] == [f"view_{i:03d}" for i in range(1, 11)]
    assert captures[-1]["completed_points"] == 10 and captures[-1]["total_points"] == 10

    state = json.loads((session / "processing/calibration/rig.state.json").read_text())
    assert state["progress_tracking"]["completed_points"] == 10
    assert state["progress_tracking"]["refused"] == {"no_board": 1, "partial": 1}

    data = load_session(session)
    cal = data.calibration["rig"]
    assert np.allclose(cal.cameras["rgb"].camera_matrix, cam["camera_matrix"])
    assert abs(cal.stereo.baseline_mm - 30) <= 1
    assert data.streams == []  # a calibration-only session, no recording


def test_rerun_after_success_keeps_the_result(stereo_views, tmp_path):
    rgb = stereo_views.rgb_dir
    root = tmp_path / "rec"
    args = ("calibrate", "--root", str(root), "--device", "cam", "--from", str(rgb),
            "--views", "6")  # fmt: skip
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    session = Path(first.stdout.strip().splitlines()[-1])
    # a solved calibration is not "unfinished": the same command starts a new session
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert Path(second.stdout.strip().splitlines()[-1]) != session
    # in the same session, it re-solves from the kept views without adding any
    again = run_cli("calibrate", str(session), "--device", "cam", "--from", str(rgb),
                    "--views", "6", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    lines = again.stdout.strip().splitlines()
    assert len(lines) == 2 and Path(lines[1]) == session
    assert json.loads(lines[0])["cameras"]["rgb"]["views_used"] == 6
    captures = [e for e in _events(session) if e["event"] == "calibration_capture"]
    assert len(captures) == 6


def test_bad_input_is_one_line_without_traceback(tmp_path):
    cases = [
        (["--from", str(tmp_path), "--board", "chessboard:9x6"], "board"),
        (["--from", str(tmp_path / "missing")], "no such folder or video"),
        (["--from", str(tmp_path)], "no images"),
        (["--from", str(tmp_path), "--device", "../x"], "device id"),
    ]
    for extra, words in cases:
        args = ["calibrate", "--root", str(tmp_path / "rec"), "--device", "cam", *extra]
        out = run_cli(*args)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr
        lines = [x for x in out.stderr.splitlines() if x.startswith("Error")]
        assert len(lines) == 1 and words in lines[0], out.stderr


def test_too_few_views_fails_and_keeps_the_state(stereo_views, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for p in sorted(stereo_views.rgb_dir.glob("*.png"))[:3]:
        shutil.copy(p, folder / p.name)
    out = run_cli("calibrate", "--root", str(tmp_path / "rec"), "--device", "cam",
                  "--from", str(folder), "--views", "8")  # fmt: skip
    assert out.returncode == 1
    assert "only 3 views kept for cam (at least 4 needed" in out.stderr
    (session,) = (tmp_path / "rec").iterdir()
    state = json.loads((session / "processing/calibration/cam.state.json").read_text())
    assert state["progress_tracking"]["completed_points"] == 3
    assert not (session / "processing/calibration/cam.json").exists()
    # the same session with another board: refused, the kept views untouched
    other = run_cli("calibrate", str(session), "--device", "cam", "--from", str(folder),
                    "--board", "chessboard:7x5:30mm")  # fmt: skip
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "has a calibration with board chessboard:9x6:25mm" in other.stderr
    assert "--fresh" in other.stderr
    state = json.loads((session / "processing/calibration/cam.state.json").read_text())
    assert state["progress_tracking"]["completed_points"] == 3


def test_missing_camera_is_one_line(tmp_path):
    out = run_cli("calibrate", "--root", str(tmp_path / "rec"), "--device", "cam",
                  "--camera", "63")  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "Error: camera 63 not found (/dev/video63 does not exist)" in out.stderr


def test_calibration_folder_symlinked_out_is_refused(stereo_views, tmp_path):
    from lsl_session.session import create_session_folder

    folder = create_session_folder(tmp_path / "rec", "cal")
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "processing" / "calibration").symlink_to(outside)
    out = run_cli("calibrate", str(folder), "--device", "cam", "--from",
                  str(stereo_views.rgb_dir), "--views", "4")  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "symbolic link" in out.stderr
    assert list(outside.iterdir()) == []


def _wobble(img: np.ndarray, amp: float = 4.0, period: float = 120.0) -> np.ndarray:
    """A wavy print: corners moved off any projective model by a few pixels."""
    h, w = img.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    du = amp * np.sin(v / period * 2 * np.pi)
    dv = amp * np.sin(u / period * 2 * np.pi)
    return cv2.remap(img, u + du, v + dv, cv2.INTER_LINEAR)


def test_outlier_view_dropped_with_reason_in_the_result(stereo_views, tmp_path):
    folder = tmp_path / "shots"
    shutil.copytree(stereo_views.rgb_dir, folder)
    (folder / "frame_times.csv").unlink()
    cv2.imwrite(str(folder / "rgb_004.png"), _wobble(stereo_views.rgb[4]))
    out = run_cli("calibrate", "--root", str(tmp_path / "rec"), "--device", "cam",
                  "--from", str(folder), "--views", "9")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "dropped view_005: outlier: reprojection error" in out.stdout
    session = Path(out.stdout.strip().splitlines()[-1])
    doc = json.loads((session / "processing/calibration/cam.json").read_text())
    cam = doc["cameras"]["rgb"]
    (dropped,) = cam["dropped_views"]
    assert dropped["view_id"] == "view_005" and dropped["error_px"] > 1
    assert "view_005" not in cam["per_view_error_px"] and cam["views_used"] == 8
    assert cam["rms_px"] <= 0.3
    by_id = {v["view_id"]: v for v in doc["views"]}
    assert by_id["view_005"]["source"] == "rgb_004.png"
    assert (
        by_id["view_005"]["used"] is False
        and by_id["view_005"]["quality_score"] is None
    )


def test_process_a_calibration_only_session(stereo_views, tmp_path):
    """A session holding only a calibration processes cleanly (no recording, no
    report), and its calibration still loads."""
    out = run_cli("calibrate", "--root", str(tmp_path / "rec"), "--device", "cam",
                  "--from", str(stereo_views.rgb_dir), "--views", "5")  # fmt: skip
    assert out.returncode == 0, out.stderr
    session = Path(out.stdout.strip().splitlines()[-1])
    proc = run_cli("process", str(session))
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stdout and "warning" not in proc.stderr
    assert load_session(session).calibration["cam"].cameras["rgb"].rms_px <= 0.3
