"""WebcamOutlet and the ``webcam`` command with real OpenCV and pylsl."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pylsl
import pytest
from click.testing import CliRunner
from lsl_helpers import wait_until

from lsl_session.errors import DeviceError
from outlets.webcam import OutletError, WebcamOutlet
from outlets.webcam.cli import webcam
from outlets.webcam.synthetic import SyntheticVideo

NAME_RE = re.compile(r"^webcam_(\d+)_\d{8}_\d{6}\.mp4$")


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _inlet(source_id: str, *, recover: bool = False) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"stream {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=recover)
    inlet.open_stream(10.0)
    return inlet


class _Collector:
    def __init__(self, inlet: pylsl.StreamInlet) -> None:
        self.inlet = inlet
        self.values: list[float] = []
        self.stamps: list[float] = []

    def pull(self) -> int:
        chunk, ts = self.inlet.pull_chunk(timeout=0.0)
        self.values.extend(s[0] for s in chunk)
        self.stamps.extend(ts)
        return len(self.values)


def _record(outlet: WebcamOutlet, timeout: float = 30) -> _Collector:
    """Run ``outlet`` (made with wait_consumer) to its end; return what arrived."""
    outlet.start()
    collector = _Collector(_inlet(outlet.source_id))
    assert outlet.wait(timeout)
    assert wait_until(lambda: collector.pull() >= outlet.frames_written, timeout=10)
    outlet.stop()
    return collector


def test_synthetic_frames_match_stream(uid, tmp_path):
    video = SyntheticVideo(fps=60, flash_every=0.25, seed=2)
    outlet = WebcamOutlet(
        video,
        out_dir=tmp_path,
        index=3,
        source_id=f"test/{uid}",
        max_frames=90,
        wait_consumer=10,
    )
    outlet.start()
    inlet = _inlet(outlet.source_id)
    info = inlet.info(5.0)
    assert info.name() == "webcam_3_frames"
    assert info.type() == "VideoFrames"
    assert info.channel_count() == 1
    assert info.nominal_srate() == 60
    assert info.desc().child("channels").child("channel").child_value("label") == (
        "frame_index"
    )
    assert info.desc().child("video").child_value("file") == outlet.file_path.name
    collector = _Collector(inlet)
    assert outlet.wait(30)
    assert wait_until(lambda: collector.pull() >= outlet.frames_written, timeout=10)
    outlet.stop()
    outlet.stop()  # twice is fine

    assert NAME_RE.match(outlet.file_path.name).group(1) == "3"
    frames = _read_video(outlet.file_path)
    assert outlet.frames_written == 90
    assert len(frames) == len(collector.values) == 90
    assert collector.values == [float(k) for k in range(90)]
    assert all(b > a for a, b in itertools.pairwise(collector.stamps))

    # the flashes the generator reports are the bright frames of the mp4
    stamp_to_index = {
        s: int(v) for s, v in zip(collector.stamps, collector.values, strict=True)
    }
    flash_idx = sorted(
        stamp_to_index[min(stamp_to_index, key=lambda s, f=f: abs(s - f))]
        for f in outlet.flash_stamps
    )
    assert flash_idx == video.flash_indices(90) == [15, 30, 45, 60, 75]
    bright = [k for k, f in enumerate(frames) if f.mean() > 200]
    assert bright == flash_idx
    del inlet


def test_default_identity(tmp_path):
    outlet = WebcamOutlet("synthetic", out_dir=tmp_path, fps=50, max_frames=5)
    assert outlet.name == "webcam_1_frames"
    assert outlet.source_id == "lsl_session/webcam_1/frames"
    with outlet:
        assert outlet.wait(10)
    assert outlet.fps == 50
    assert len(_read_video(outlet.file_path)) == 5


def test_file_source_replays_every_frame(uid, tmp_path):
    src = tmp_path / "src"
    first = WebcamOutlet(
        SyntheticVideo(160, 120, fps=100, flash_every=0.1),
        out_dir=src,
        source_id=f"a/{uid}",
        max_frames=40,
        realtime=False,
    )
    with first:
        assert first.wait(20)
    replay = WebcamOutlet(
        first.file_path,
        out_dir=tmp_path / "replay",
        index=2,
        source_id=f"b/{uid}",
        realtime=False,
        wait_consumer=10,
    )
    collector = _record(replay)
    assert replay.fps == 100  # taken from the file
    assert replay.frames_written == 40
    assert len(_read_video(replay.file_path)) == len(collector.values) == 40
    assert replay.flash_stamps == []  # only synthetic sources know their flashes


def test_session_registration(uid, tmp_path):
    from lsl_session.session import Session, create_session_folder

    folder = create_session_folder(tmp_path, "cam")
    outlet = WebcamOutlet(
        "synthetic", session_dir=folder, fps=100, source_id=f"s/{uid}", max_frames=10
    )
    with outlet:
        assert outlet.wait(10)
    assert outlet.file_path.parent == folder / "webcam"
    meta = Session.open(folder).metadata()
    assert meta["devices"]["webcam_1"]["device_type"] == "pc_webcam"
    assert meta["devices"]["webcam_1"]["capabilities"] == ["rgb_video"]
    (entry,) = meta["files"]["webcam_1"]
    assert entry["file_type"] == "video"
    assert entry["file_path"] == f"webcam/{outlet.file_path.name}"


def test_missing_session_module_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lsl_session.session", None)
    outlet = WebcamOutlet("synthetic", session_dir=tmp_path, max_frames=1)
    with pytest.raises(OutletError, match=r"lsl_session\.session"):
        outlet.start()


def test_errors(tmp_path):
    with pytest.raises(DeviceError, match="not found"):
        WebcamOutlet(tmp_path / "missing.mp4", out_dir=tmp_path).start()
    with pytest.raises(DeviceError, match="device 57"):
        WebcamOutlet(57, out_dir=tmp_path).start()
    with pytest.raises(ValueError, match="out_dir"):
        WebcamOutlet("synthetic")
    with pytest.raises(ValueError, match="inside the session"):
        WebcamOutlet("synthetic", out_dir=tmp_path / "a", session_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="fps"):
        WebcamOutlet("synthetic", out_dir=tmp_path, fps=0)
    with pytest.raises(ValueError, match="source"):
        WebcamOutlet(1.5, out_dir=tmp_path).start()  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_two_outlets_same_second_do_not_overwrite(tmp_path):
    paths = []
    for _ in range(2):
        with WebcamOutlet(
            "synthetic", out_dir=tmp_path, fps=100, max_frames=2, realtime=False
        ) as outlet:
            assert outlet.wait(10)
        paths.append(outlet.file_path)
    assert paths[0] != paths[1]
    assert all(p.exists() for p in paths)


@pytest.mark.parametrize(
    "args",
    [[], ["--synthetic", "--device", "0"], ["--file", "x.mp4", "--synthetic"]],
)
def test_cli_needs_exactly_one_source(args):
    result = CliRunner().invoke(webcam, args)
    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_cli_missing_file_is_one_line(tmp_path):
    result = CliRunner().invoke(webcam, ["--file", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [f"Error: video file '{tmp_path / 'nope.mp4'}' not found"]


def test_cli_synthetic_duration(tmp_path):
    result = CliRunner().invoke(
        webcam,
        ["--synthetic", "--fps", "50", "--out", str(tmp_path), "--duration", "0.3"],
    )
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path.parent == tmp_path
    assert NAME_RE.match(path.name)
    assert len(_read_video(path)) > 0


def test_cli_sigterm_finalizes_mp4(uid, tmp_path):
    index = int(uid[:7], 16)  # unique stream per test run
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "outlets.webcam.cli", "--synthetic"),
            *("--fps", "60", "--out", str(tmp_path), "--index", str(index)),
            *("--wait-consumer", "20"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while True:
            line = proc.stderr.readline()
            assert line, "webcam CLI exited before becoming ready"
            if line.startswith("ready:"):
                break
        # recover=True: the samples buffered in the inlet survive the outlet's exit
        inlet = _inlet(f"lsl_session/webcam_{index}/frames", recover=True)
        collector = _Collector(inlet)
        assert wait_until(lambda: collector.pull() >= 10, timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        path = Path(out.strip().splitlines()[-1])
        n_frames = int(re.search(r"(\d+) frames", err).group(1))
        assert wait_until(lambda: collector.pull() >= n_frames, timeout=5)
        assert len(_read_video(path)) == n_frames == len(collector.values)
        del inlet
    finally:
        if proc.poll() is None:  # pragma: no cover - failure path
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_long_synthetic_run_keeps_every_frame(uid, tmp_path):
    outlet = WebcamOutlet(
        SyntheticVideo(640, 480, fps=30, flash_every=2.0),
        out_dir=tmp_path,
        source_id=f"long/{uid}",
        max_frames=30 * 60,
        wait_consumer=10,
    )
    collector = _record(outlet, timeout=180)
    frames = _read_video(outlet.file_path)
    assert len(frames) == len(collector.values) == 30 * 60
    assert json.dumps(collector.values[:3]) == "[0.0, 1.0, 2.0]"
