"""Persistence and resume (issue #30 item 3): ``kill -9`` mid-calibration, then
the same command resumes with the views already kept; plus the live-capture
rules (still, not blurred, not a near-duplicate) on a video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from calib_truth import (
    board_texture,
    look_at_pose,
    project,
    render,
    small_camera,
    write_video,
)

from lsl_session.calibration.board import parse_board
from lsl_session.calibration.detect import Detection, Refusal
from lsl_session.calibration.select import SelectorConfig, ViewSelector

BOARD = parse_board("chessboard:9x6:25mm")


def _poses(n: int, seed: int = 2) -> list:
    rng = np.random.default_rng(seed)
    cam, out = small_camera(), []
    while len(out) < n:
        d = rng.uniform(380, 520)
        pose = look_at_pose(d, rng.uniform(-35, 35), rng.uniform(-35, 35),
                            rng.uniform(-20, 20),
                            (rng.uniform(-0.2, 0.2) * d, rng.uniform(-0.15, 0.15) * d),
                            BOARD)  # fmt: skip
        pts = project(cam, BOARD, *pose)
        if (
            pts.min() > 20
            and pts[:, 0].max() < cam.width - 20
            and pts[:, 1].max() < cam.height - 20
        ):
            out.append(pose)
    return out


def _held_video(path: Path, n_poses: int, hold: int, fps: float) -> Path:
    """Each pose held for ``hold`` frames, with a frame half-way between poses."""
    cam, tex = small_camera(), board_texture(BOARD)
    ps = _poses(n_poses)
    frames = []
    for i, (r, t) in enumerate(ps):
        img = render(cam, BOARD, r, t, tex)
        frames += [img] * hold
        if i + 1 < len(ps):
            r2, t2 = ps[i + 1]
            frames.append(render(cam, BOARD, (r + r2) / 2, (t + t2) / 2, tex))
    return write_video(path, frames, fps)


def _state(session_root: Path) -> dict | None:
    found = list(session_root.glob("*/processing/calibration/cam.state.json"))
    if not found:
        return None
    try:
        return json.loads(found[0].read_text())
    except ValueError:  # never expected: the writes are atomic
        raise AssertionError("torn state file") from None


def test_kill_9_mid_calibration_then_the_same_command_resumes(tmp_path):
    video = _held_video(tmp_path / "cal.mp4", n_poses=12, hold=4, fps=8.0)
    root = tmp_path / "rec"
    cmd = [sys.executable, "-m", "lsl_session", "calibrate", "--root", str(root),
           "--device", "cam", "--from", str(video), "--views", "10", "--realtime"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        kept_before = 0
        while time.monotonic() < deadline and proc.poll() is None:
            state = _state(root)
            if state and state["progress_tracking"]["completed_points"] >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    state = _state(root)
    before = state["progress_tracking"]["captured_images"]
    kept_before = len(before)
    assert 3 <= kept_before < 10
    (session,) = root.iterdir()
    meta = json.loads((session / "session_metadata.json").read_text())
    assert meta["calibration"]["cam"]["status"] == "capturing"

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert f"resuming the unfinished calibration of cam in {session}" in again.stderr
    assert f"resumed with {kept_before} views already kept" in again.stderr
    assert Path(again.stdout.strip().splitlines()[-1]) == session
    after = _state(root)["progress_tracking"]["captured_images"]
    assert len(after) == 10
    assert after[:kept_before] == before  # the same views, untouched
    positions = [v["position"] for v in after]
    assert positions == sorted(set(positions))  # no frame kept twice
    doc = json.loads((session / "processing/calibration/cam.json").read_text())
    assert (
        doc["cameras"]["rgb"]["views_used"]
        + len(doc["cameras"]["rgb"]["dropped_views"])
        == 10
    )
    assert abs(doc["cameras"]["rgb"]["camera_matrix"][0][0] / 520 - 1) < 0.01
    log = json.loads((session / f"{session.name}_log.json").read_text())
    ids = [e["view_id"] for e in log if e["event"] == "calibration_capture"]
    assert sorted(ids) == [f"view_{i:03d}" for i in range(1, 11)]  # one event per view


def test_video_keeps_only_still_sharp_new_views(tmp_path):
    """Frames of a held pose: the first is 'just came into view', the second is
    kept, the others are near-duplicates; the half-way frame is moving."""
    cam, tex = small_camera(), board_texture(BOARD)
    (r1, t1), (r2, t2) = _poses(2, seed=4)
    a, b = render(cam, BOARD, r1, t1, tex), render(cam, BOARD, r2, t2, tex)
    mid = render(cam, BOARD, (r1 + r2) / 2, (t1 + t2) / 2, tex)
    sel = ViewSelector(BOARD, SelectorConfig())
    got = [sel.check("rgb", img, continuous=True) for img in (a, a)]
    assert isinstance(got[0], Refusal) and got[0].code == "moving"
    assert isinstance(got[1], Detection)
    assert sel.duplicate_of(got[1]) is None
    sel.keep("view_001", got[1])
    dup = sel.check("rgb", a, continuous=True)
    assert isinstance(dup, Detection)
    refusal = sel.duplicate_of(dup)
    assert refusal is not None and refusal.code == "duplicate"
    assert "near-duplicate of view_001" in refusal.reason
    moving = sel.check("rgb", mid, continuous=True)
    assert isinstance(moving, Refusal) and moving.code == "moving"
    assert "px since the last frame" in moving.reason
    sel.check("rgb", b, continuous=True)
    still = sel.check("rgb", b, continuous=True)
    assert isinstance(still, Detection) and sel.duplicate_of(still) is None
    # the same frame blurred (a shaking hand) is refused
    blurred = cv2.GaussianBlur(b, (0, 0), 2.5)
    sel.check("rgb", blurred, continuous=True)
    got = sel.check("rgb", blurred, continuous=True)
    assert isinstance(got, Refusal) and got.code == "blurred", got
    assert "blurred: board edges" in got.reason
    # a folder image (not continuous) needs no stillness
    fresh = ViewSelector(BOARD, SelectorConfig())
    assert isinstance(fresh.check("rgb", a, continuous=False), Detection)


def test_live_views_are_saved_with_the_state(tmp_path):
    """A live source's kept frames exist nowhere else: they are saved as PNG."""
    from lsl_session.calibration.run import CalibrationRun, RunOptions
    from lsl_session.calibration.sources import VideoSource
    from lsl_session.session import Session, create_session_folder

    class LiveVideo(VideoSource):
        live = True

    video = _held_video(tmp_path / "live.mp4", n_poses=5, hold=2, fps=10.0)
    session = Session(create_session_folder(tmp_path / "rec", "live"))
    run = CalibrationRun(session, "cam", BOARD, ["rgb"], LiveVideo(video),
                         options=RunOptions(wanted=4))  # fmt: skip
    assert run.capture() == 4
    doc = run.solve()
    session.close()
    state = json.loads(
        (session.root / "processing/calibration/cam.state.json").read_text()
    )
    for view in state["progress_tracking"]["captured_images"]:
        image = view["cameras"]["rgb"]["image"]
        assert image == f"processing/calibration/cam/{view['image_id']}_rgb.png"
        saved = cv2.imread(str(session.root / image), cv2.IMREAD_GRAYSCALE)
        assert saved.shape == (480, 640)
    assert doc["cameras"]["rgb"]["views_used"] == 4
