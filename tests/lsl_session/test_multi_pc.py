"""Devices on another computer, for real: network namespaces made by the test.

Each test builds a bridge and one namespace per host (``tests/netlab.py``,
private addresses that exist only inside them), runs ``lsl-session record
--config`` in the recorder's namespace and ``lsl-session agent`` in the camera
host's, and reads the session back: the agent's webcam file (sha256), its
stream in the XDF (pyxdf), the clock offsets the recorder measured across the
link (the namespaces share one kernel clock, so the true offset is 0) and the
event log. The slow test cuts the camera host's cable for 5 s during the
recording and again during the file's delivery.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import netlab
from system_tools import missing


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    """Network namespaces need root and iproute2: not run locally, failed in CI."""
    why = netlab.available()
    if why is not None:
        missing(why, "run as root with iproute2 (apt-get install -y iproute2)")


CLI = [sys.executable, "-m", "lsl_session"]
TOKEN = "test-lab-secret-0123456789"
#: The issue's bound on the clock-offset error across hosts (seconds).
OFFSET_P99 = 0.2e-3


def _env(tmp_path: Path) -> dict[str, str]:
    # liblsl re-measures the clock offset every 1 s (default 2 s), so a short
    # recording has enough measurements for a percentile
    cfg = tmp_path / "lsl_api.cfg"
    cfg.write_text("[tuning]\nTimeUpdateInterval = 1.0\n")
    return dict(os.environ, LSLAPICFG=str(cfg), PYTHONUNBUFFERED="1")


def _config(tmp_path: Path, lab: netlab.Lab, uid: str, **extra: object) -> Path:
    rec = lab.hosts["rec"]
    agents = "".join(f"{k} = {v}\n" for k, v in extra.items())
    path = tmp_path / "lab.toml"
    path.write_text(
        f"""
[session]
name = "multi"
[record]
duration_s = {extra.pop("duration_s", 10)}
wait_s = 30
upload_timeout_s = 90
process = false
clock_offset_every_s = 0.5
[markers]
name = "Mk_{uid}"
sync_every_s = 1
[agents]
recorder = "{rec.address}"
token = "{TOKEN}"
port = 9100
heartbeat_timeout_s = 2
{agents.replace("duration_s", "#")}
[[devices]]
id = "webcam_7"
type = "pc_webcam"
capabilities = ["rgb_video"]
simulate = true
fps = 30
host = "cam"
required = true
"""
    )
    return path


def _agent(lab: netlab.Lab, config: Path, root: Path, env: dict, log: Path):
    cam = lab.hosts["cam"]
    return subprocess.Popen(
        [*cam.prefix(), *CLI, "agent", "--config", str(config), "--host", "cam",
         "--root", str(root), "--once"],
        env=env, stderr=log.open("w"), stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _record(lab: netlab.Lab, config: Path, root: Path, env: dict, log: Path):
    rec = lab.hosts["rec"]
    return subprocess.Popen(
        [*rec.prefix(), *CLI, "record", "--config", str(config), "--root", str(root)],
        env=env, stderr=log.open("w"), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return out or ""


def _events(folder: Path) -> list[dict]:
    return json.loads(next(folder.glob("*_log.json")).read_text())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_session(folder: Path, agent_root: Path) -> dict:
    """The agent's file arrived whole and registered; its stream and offsets."""
    meta = json.loads((folder / "session_metadata.json").read_text())
    entry = meta["files"]["webcam_7"][0]
    arrived = folder / entry["file_path"]
    assert entry["file_path"].startswith("webcam/webcam_7_")
    (local,) = agent_root.glob(f"{folder.name}/*/webcam/*.mp4")
    assert _sha(arrived) == _sha(local) == entry["sha256"]
    assert arrived.stat().st_size == local.stat().st_size > 100_000
    assert not any((folder / ".incoming").glob("*")), "a part file was left"
    streams, _ = pyxdf.load_xdf(
        str(next(folder.glob("*.xdf"))), synchronize_clocks=False
    )
    (cam,) = [s for s in streams if s["info"]["name"][0] == "webcam_7_frames"]
    return {"meta": meta, "stream": cam, "events": _events(folder)}


def _offset_p99(stream: dict) -> tuple[int, float]:
    offsets = np.asarray(stream["clock_values"], dtype=float)
    return len(offsets), float(np.percentile(np.abs(offsets), 99))


def test_jitter_5ms(tmp_path, uid):
    """5 ± 3 ms of jitter on the camera host's cable (needs the kernel's netem)."""
    env = _env(tmp_path)
    with netlab.lab("rec", "cam") as lab:
        why = lab.hosts["cam"].netem("delay 5ms 3ms")
        if why is not None:
            pytest.skip(f"no netem in this kernel ({why}): the jitter test did not run")
        config = _config(tmp_path, lab, uid)
        agent = _agent(lab, config, tmp_path / "agent", env, tmp_path / "agent.log")
        rec = _record(lab, config, tmp_path / "rec", env, tmp_path / "rec.log")
        out = _finish(rec)
        agent.wait(timeout=60)
    assert rec.returncode == 0, (tmp_path / "rec.log").read_text()[-3000:]
    got = _check_session(Path(out.strip().splitlines()[-1]), tmp_path / "agent")
    n, p99 = _offset_p99(got["stream"])
    sys.stderr.write(f"offsets with 5 ± 3 ms jitter: n={n} p99={p99 * 1e3:.3f} ms\n")
    assert n >= 10 and p99 < 5e-3  # min-RTT probes keep it under the jitter


def test_agent_devices_land_in_the_session(tmp_path, uid):
    """Recorder in one namespace, agent (synthetic webcam) in another."""
    env = _env(tmp_path)
    with netlab.lab("rec", "cam") as lab:
        config = _config(tmp_path, lab, uid)
        agent = _agent(lab, config, tmp_path / "agent", env, tmp_path / "agent.log")
        rec = _record(lab, config, tmp_path / "rec", env, tmp_path / "rec.log")
        out = _finish(rec)
        agent.wait(timeout=60)
    log = (tmp_path / "rec.log").read_text()
    assert rec.returncode == 0, log[-3000:]
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text()[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    got = _check_session(folder, tmp_path / "agent")
    cam = got["stream"]
    # the agent's stream carries the recorder host's rig identity
    (rig,) = [ln.split()[1] for ln in log.splitlines() if ln.startswith("rig ")]
    assert cam["info"]["source_id"][0] == f"lsl_session/{rig}/webcam_7/frames"
    # ~10 s at 30 fps, seen across the link
    assert len(cam["time_stamps"]) > 200
    offsets = np.asarray(cam["clock_values"], dtype=float)
    assert len(offsets) >= 10
    p99 = float(np.percentile(np.abs(offsets), 99))
    sys.stderr.write(
        f"cross-host clock offsets: n={len(offsets)} p99={p99 * 1e3:.4f} ms\n"
    )
    assert p99 <= OFFSET_P99
    events = got["events"]
    kinds = [(e["event"], e.get("host")) for e in events]
    assert ("agent_connected", "cam") in kinds
    assert ("device_started", "cam") in kinds
    assert ("device_stopped", "cam") in kinds
    received = [e for e in events if e["event"] == "file_received"]
    assert [e["host"] for e in received] == ["cam"]
    assert received[0]["sha256"] == got["meta"]["files"]["webcam_7"][0]["sha256"]


@pytest.mark.slow
def test_cut_cable_during_recording_and_delivery(tmp_path, uid):
    """5 s without a cable while recording, 5 s more while the video is sent."""
    env = _env(tmp_path)
    with netlab.lab("rec", "cam") as lab:
        cam = lab.hosts["cam"]
        # a slow cable for the delivery, so the second cut falls inside it
        config = _config(
            tmp_path, lab, uid, duration_s=20, max_rate_mb_s=0.5, stall_timeout_s=2
        )
        agent = _agent(lab, config, tmp_path / "agent", env, tmp_path / "agent.log")
        rec = _record(lab, config, tmp_path / "rec", env, tmp_path / "rec.log")
        root = tmp_path / "rec"
        assert _wait_for(
            lambda: "recording into" in (tmp_path / "rec.log").read_text(), 90
        )
        time.sleep(3)
        cut1 = time.monotonic()
        cam.link(up=False)
        time.sleep(5)
        cam.link(up=True)
        back1 = time.monotonic()
        parts = lambda: list(root.glob("*/.incoming/*.part"))  # noqa: E731
        assert _wait_for(lambda: any(p.stat().st_size > 0 for p in parts()), 120)
        cam.link(up=False)
        time.sleep(5)
        cam.link(up=True)
        out = _finish(rec)
        agent.wait(timeout=120)
    log = (tmp_path / "rec.log").read_text()
    assert rec.returncode == 0, log[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    got = _check_session(folder, tmp_path / "agent")
    events = got["events"]
    kinds = [e["event"] for e in events]
    # the hub saw the agent go and come back (the same process: no restart)
    assert "agent_disconnected" in kinds
    again = [e for e in events if e["event"] == "agent_connected"][1:]
    assert again and not any(e["restart"] for e in again)
    # and its webcam as dropped and back, like a local device
    drops = [(e["event"], e.get("device_id")) for e in events]
    assert ("device_disconnected", "webcam_7") in drops
    assert ("device_connected", "webcam_7") in drops
    # the stream resumed after the first cut: stamps well after it came back
    stamps = np.asarray(got["stream"]["time_stamps"])
    assert stamps[-1] - stamps[0] > 15
    gaps = np.diff(stamps)
    assert gaps.max() < 8.0, "the stream did not resume after the cut"
    sys.stderr.write(
        f"cut {back1 - cut1:.1f} s; largest stamp gap {gaps.max():.2f} s\n"
    )
    (received,) = [e for e in events if e["event"] == "file_received"]
    assert received["resumed_from"] > 0, "the delivery did not resume after the cut"


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_missing_required_agent_is_named(tmp_path, uid):
    """No agent came: the recorder waits wait_s, names host and device, exits 2."""
    env = _env(tmp_path)
    with netlab.lab("rec", "cam") as lab:
        config = _config(tmp_path, lab, uid, duration_s=2)
        text = config.read_text().replace("wait_s = 30", "wait_s = 3")
        text = text.replace("upload_timeout_s = 90", "upload_timeout_s = 2")
        config.write_text(text)
        rec = _record(lab, config, tmp_path / "rec", env, tmp_path / "rec.log")
        out = _finish(rec)
    log = (tmp_path / "rec.log").read_text()
    assert rec.returncode == 2, log[-3000:]
    assert "required device(s) not streaming after 3 s: cam, webcam_7" in log
    assert "agent cam: files not delivered within 2 s" in log
    events = _events(Path(out.strip().splitlines()[-1]))
    assert any("cam, webcam_7" in str(e.get("message")) for e in events)


@pytest.mark.slow
def test_restarted_agent_rejoins(tmp_path, uid):
    """The agent is killed mid-recording and started again: it rejoins."""
    env = _env(tmp_path)
    with netlab.lab("rec", "cam") as lab:
        config = _config(tmp_path, lab, uid, duration_s=20)
        agent = _agent(lab, config, tmp_path / "agent", env, tmp_path / "agent1.log")
        rec = _record(lab, config, tmp_path / "rec", env, tmp_path / "rec.log")
        assert _wait_for(
            lambda: "recording into" in (tmp_path / "rec.log").read_text(), 90
        )
        time.sleep(3)
        agent.kill()
        agent.wait()
        time.sleep(2)
        agent = _agent(lab, config, tmp_path / "agent", env, tmp_path / "agent2.log")
        out = _finish(rec)
        agent.wait(timeout=60)
    assert rec.returncode == 0, (tmp_path / "rec.log").read_text()[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    events = _events(folder)
    joins = [e for e in events if e["event"] == "agent_connected"]
    assert [e["restart"] for e in joins] == [False, True]
    starts = [e for e in events if e["event"] == "device_started"]
    assert [bool(e.get("restart")) for e in starts] == [False, True]
    # the restarted webcam continues the same XDF stream
    streams, _ = pyxdf.load_xdf(
        str(next(folder.glob("*.xdf"))), synchronize_clocks=False
    )
    (cam,) = [s for s in streams if s["info"]["name"][0] == "webcam_7_frames"]
    stamps = np.asarray(cam["time_stamps"])
    assert stamps[-1] - stamps[0] > 14
    # the second run's video arrived whole (the killed one was never finalised)
    meta = json.loads((folder / "session_metadata.json").read_text())
    (entry,) = meta["files"]["webcam_7"]
    assert _sha(folder / entry["file_path"]) == entry["sha256"]
