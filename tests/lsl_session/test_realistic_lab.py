"""Issue #24's realistic lab, as a new user runs it: no false alarm, no false reassurance.

``lsl-session record --config`` with real markers every 4 s (``sync_every_s = 4``),
the Shimmer emulator on its pty, a webcam from a video file; three phones on a
*separate* relay process, each a phone-sim process pulsing every 5 s on its own
clock: two declare their GSR rate (64 Hz, 51.2 Hz), one (an older app) samples GSR
at 64 Hz and its camera at 15 fps without declaring them.
The phones share no pulse with the markers: ``not checked (no shared pulses)``,
never ``NO``. Nothing is lost; the older app's 64 Hz GSR is a rate, not a loss.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import pyxdf

from outlets.shimmer import ShimmerEmulator
from outlets.webcam import SyntheticVideo

CLI = [sys.executable, "-m", "lsl_session"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if text in proc.stderr.readline():
            return
    raise AssertionError(f"no {text!r} from {proc.args[3:6]}")


def _still_video(path: Path, seconds: float = 12.0) -> Path:
    video = SyntheticVideo(width=64, height=64, fps=30.0)  # no flash in it
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0,
                             (video.width, video.height))  # fmt: skip
    for frame in video.frames(int(seconds * 30)):
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def emulator():
    emu = ShimmerEmulator(rate=128.0, clock_offset=5.0, drift_ppm=30.0, seed=4).start()
    yield emu
    emu.close()


def test_realistic_lab_has_no_false_no_and_no_false_loss(tmp_path, uid, emulator):
    phones = {
        f"ra{uid}": ["--rate", "gsr=64"],
        f"rb{uid}": ["--rate", "gsr=51.2"],
        f"rc{uid}": [
            "--rate",
            "gsr=64",
            "--rate",
            "rgb_frames=15",
            "--undeclared-rates",
        ],
    }
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(dict.fromkeys(phones, "tok")))
    port = _free_port()
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nname = "real"\nroot = "rec"\n\n'
        "[record]\nwait_s = 30\n"
        f"streams = [\"contains(source_id, '{uid}')\"]\n\n"
        '[markers]\nname = "StimulusMarkers"\nsync_every_s = 4\n\n'
        f'[[devices]]\nid = "shimmer_{uid}"\ntype = "shimmer_gsr"\n'
        f'port = "{emulator.port}"\nrequired = true\n\n'
        f'[[devices]]\nid = "webcam_5"\ntype = "pc_webcam"\nindex = 5\n'
        f'file = "{_still_video(tmp_path / "lab.mp4")}"\n'
    )
    relay = subprocess.Popen(
        [*CLI, "outlet", "phone-relay", "--host", "127.0.0.1", "--port", str(port),
         "--tokens", str(tokens)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sims: list[subprocess.Popen] = []
    try:
        _wait_line(relay, "listening")
        for k, (device, extra) in enumerate(phones.items()):
            sims.append(subprocess.Popen(
                [*CLI, "outlet", "phone-sim", "--relay", f"127.0.0.1:{port}",
                 "--device-id", device, "--token", "tok", "--jitter-ms", "5",
                 "--clock-offset", str((-1) ** k * 3600), "--drift-ppm", "30",
                 *extra],
                stderr=subprocess.PIPE, text=True,
            ))  # fmt: skip
        for sim in sims:
            _wait_line(sim, "connected")
        time.sleep(4.0)  # the relay's first clock fits: the phones stream
        record = subprocess.run(
            [*CLI, "record", "--config", str(config), "--duration", "14"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
    finally:
        for proc in (*sims, relay):
            proc.terminate()
            proc.wait(30)
    assert record.returncode == 0, record.stderr[-4000:]
    folder = Path(record.stdout.strip().splitlines()[-1])
    sync = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    assert sync["reference"]["identified"] is True
    assert sync["reference"]["n_pulses"] >= 2
    rows = {r["stream"]: r for r in sync["streams"]}
    assert not [n for n, r in rows.items() if r["aligned"] == "NO"], rows
    for device in phones:
        for stream in ("gsr", "events"):
            row = rows[f"{device}_{stream}"]
            assert row["aligned"] == "not checked (no shared pulses)", row
    saved = json.loads((folder / "processing" / "verdict.json").read_text())
    line, notes = saved["verdict"], saved["notes"]
    assert " 0 samples lost" in line, (line, notes)
    assert "NOT aligned" not in " ".join(notes)
    assert f"rc{uid}_gsr: rate 64.0 of 128 Hz nominal" in " ".join(notes), notes
    assert not any(n.startswith((f"ra{uid}_gsr:", f"rb{uid}_gsr:")) for n in notes)
    # the older app's camera at 15 of 30 fps: a rate, its frame index has no gap
    assert f"rc{uid}_rgb_frames: rate 15.0 of 30 Hz nominal" in " ".join(notes)
    assert "2 below nominal rate" in line
    assert f"no stream shares sync pulses with the reference, {len(rows)} not" in line
    # the declared rates are the streams' nominal rates in the XDF
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    nominal = {s["info"]["name"][0]: float(s["info"]["nominal_srate"][0])
               for s in streams}  # fmt: skip
    assert nominal[f"ra{uid}_gsr"] == 64.0
    assert nominal[f"rb{uid}_gsr"] == pytest.approx(51.2)
    assert nominal[f"rc{uid}_gsr"] == 128.0
