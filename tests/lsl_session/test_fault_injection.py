"""SIGKILL a recording child at random moments, then recover (SPEC §7, §9).

Every trial: a child process creates a session with `SessionManager`, records
two outlets of this process (unique source_ids), stops after a random time and
ends the session. The parent kills it with SIGKILL at a random moment aimed at
one phase (creation, start, recording, stop, end, or anywhere), then runs
`recover_root` and checks: the session ends ``recovered`` (or ``completed`` when
it got that far), every XDF loads in pyxdf with a footer on every stream, no
pushed sample older than 1 s before the kill (or the stop) is missing, the event
log is valid JSON, and recovery deleted no file.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest
import pyxdf

from lsl_session.catalog import session_folders
from lsl_session.layout import LOCK_FILE, RESERVE_FILE
from lsl_session.metadata import read_metadata
from lsl_session.recovery import recover_root, recover_session

CHILD = Path(__file__).with_name("_record_child.py")
PHASES = ["anywhere", "creating", "starting", "recording", "stopping", "ending"]
MAX_LOSS_S = 1.0


class Pusher:
    """Two outlets (200 Hz float32 ×4 and 20 Hz string markers) with known stamps."""

    def __init__(self, uid: str) -> None:
        self.source_ids = {"data": f"fi-{uid}-data", "markers": f"fi-{uid}-markers"}
        self.outlets = {
            "data": pylsl.StreamOutlet(
                pylsl.StreamInfo(
                    f"fi_{uid}_data",
                    "EEG",
                    4,
                    200,
                    pylsl.cf_float32,
                    self.source_ids["data"],
                )
            ),
            "markers": pylsl.StreamOutlet(
                pylsl.StreamInfo(
                    f"fi_{uid}_markers",
                    "Markers",
                    1,
                    0,
                    pylsl.cf_string,
                    self.source_ids["markers"],
                )
            ),
        }
        self.stamps: dict[str, list[float]] = {"data": [], "markers": []}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k, last_marker = 0, 0.0
        while not self._stop.wait(0.01):
            now = pylsl.local_clock()
            stamps = [now - 0.005, now]
            self.outlets["data"].push_chunk(
                np.full((2, 4), k, dtype=np.float32), stamps
            )
            with self._lock:
                self.stamps["data"].extend(stamps)
            if now - last_marker >= 0.05:
                self.outlets["markers"].push_sample([f"m{k}"], now)
                with self._lock:
                    self.stamps["markers"].append(now)
                last_marker = now
            k += 1

    def pushed(self, kind: str) -> np.ndarray:
        with self._lock:
            return np.array(self.stamps[kind])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.outlets.clear()


@pytest.fixture(scope="module")
def pusher():
    import uuid

    p = Pusher(uuid.uuid4().hex[:10])
    yield p
    p.close()


def _run_child(root: Path, pusher: Pusher, rng: random.Random, target: str, log: Path):
    stop_after = rng.uniform(0.2, 1.8)
    cmd = [sys.executable, str(CHILD), "--root", str(root),
           "--stop-after", f"{stop_after:.3f}"]  # fmt: skip
    for sid in pusher.source_ids.values():
        cmd += ["--stream", f"source_id='{sid}'"]
    phases: dict[str, float] = {}
    seen = threading.Condition()
    with open(log, "wb") as err:  # liblsl chatter; kept for debugging
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)

    def read() -> None:
        for line in proc.stdout:
            name, stamp = line.split()
            with seen:
                phases[name] = float(stamp)
                seen.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if target == "anywhere":
        time.sleep(rng.uniform(0.0, stop_after + 0.6))  # boot … end
    else:
        with seen:
            assert seen.wait_for(lambda: target in phases, timeout=20), phases
        # measured on 2 cores: create ~10 ms, start ~0.1-0.2 s, stop ~0.16 s,
        # end ~5 ms; aim inside each window
        delay = {"creating": 0.015, "starting": 0.15, "recording": stop_after,
                 "stopping": 0.18, "ending": 0.006}[target]  # fmt: skip
        time.sleep(rng.uniform(0.0, delay))
    t_kill = pylsl.local_clock()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reader.join(5)
    return phases, t_kill, stop_after


def _check_streams(path: Path, pusher: Pusher, phases: dict, t_kill: float) -> dict:
    streams, _ = pyxdf.load_xdf(str(path))
    for s in streams:
        assert "footer" in s, f"{path.name}: stream {s['info']['name']} has no footer"
    raw, _ = pyxdf.load_xdf(
        str(path), synchronize_clocks=False, dejitter_timestamps=False
    )
    by_source = {s["info"]["source_id"][0]: s for s in raw}
    bound = min(t_kill, phases.get("stopping", np.inf))
    loss = {}
    for kind, sid in pusher.source_ids.items():
        pushed = pusher.pushed(kind)
        got = by_source[sid]["time_stamps"] if sid in by_source else np.zeros(0)
        lower = min(got[0] if len(got) else np.inf, phases.get("recording", np.inf))
        want = pushed[(pushed >= lower) & (pushed <= bound - MAX_LOSS_S)]
        missing = np.setdiff1d(want, got)
        assert not len(missing), (
            f"{kind}: {len(missing)} samples older than {MAX_LOSS_S}s before the "
            f"kill are missing (first {missing[:3]})"
        )
        if "recording" in phases:
            before = pushed[(pushed >= phases["recording"]) & (pushed <= bound)]
            last = (
                got[got <= bound][-1] if len(got[got <= bound]) else phases["recording"]
            )
            loss[kind] = max(0.0, float(before[-1] - last)) if len(before) else 0.0
    return loss


def run_trials(n: int, tmp_path: Path, pusher: Pusher, seed: int) -> dict:
    rng = random.Random(seed)
    summary = {"trials": 0, "phase_killed": {}, "max_loss_s": {}, "statuses": {}}
    for k in range(n):
        target = PHASES[k % len(PHASES)]
        root = tmp_path / f"trial{k:02d}"
        root.mkdir()
        log = tmp_path / f"trial{k:02d}.stderr"
        phases, t_kill, _stop_after = _run_child(root, pusher, rng, target, log)
        last_phase = max(phases, key=phases.get) if phases else "boot"
        summary["phase_killed"][last_phase] = (
            summary["phase_killed"].get(last_phase, 0) + 1
        )
        helpers = (LOCK_FILE, RESERVE_FILE)  # no data: recover removes them
        before = {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and p.name not in helpers
        }
        ctx = f"trial {k} (seed {seed}, target {target}, phases {sorted(phases, key=phases.get)})"
        recover_root(root)
        after = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
        assert before <= after, ctx
        assert not {p for p in after if p.name in helpers}, ctx
        for folder in session_folders(root):
            meta = read_metadata(folder)
            status = meta["status"]
            summary["statuses"][status] = summary["statuses"].get(status, 0) + 1
            assert status in ("recovered", "completed"), ctx
            if status == "completed":
                assert "ending" in phases, ctx
            events = json.loads((folder / f"{folder.name}_log.json").read_bytes())
            assert isinstance(events, list), ctx
            if status == "recovered":
                assert events[-1]["event"] == "recovered", ctx
            for xdf in sorted(folder.glob("*.xdf")):
                loss = _check_streams(xdf, pusher, phases, t_kill)
                for kind, value in loss.items():
                    old = summary["max_loss_s"].get(kind, 0.0)
                    summary["max_loss_s"][kind] = max(old, value)
            assert recover_session(folder).nothing_to_do, ctx
        summary["trials"] += 1
    return summary


def _report(summary: dict, record_property) -> None:
    """Attach the figures to the test report (and to $LSL_SESSION_FI_REPORT)."""
    record_property("fault_injection", json.dumps(summary))
    target = os.environ.get("LSL_SESSION_FI_REPORT")
    if target:
        Path(target).write_text(json.dumps(summary, indent=2))
    for kind, loss in summary["max_loss_s"].items():
        assert loss < MAX_LOSS_S, (kind, summary)


def test_sigkill_trials_short(tmp_path, pusher, caplog, record_property):
    caplog.set_level(logging.ERROR)
    seed = int(os.environ.get("LSL_SESSION_FI_SEED", "1234"))
    summary = run_trials(6, tmp_path, pusher, seed)
    _report(summary, record_property)


@pytest.mark.slow
def test_sigkill_trials_50(tmp_path, pusher, caplog, record_property):
    caplog.set_level(logging.ERROR)
    seed = int(os.environ.get("LSL_SESSION_FI_SEED", "98765"))
    summary = run_trials(50, tmp_path, pusher, seed)
    _report(summary, record_property)
    assert summary["trials"] == 50
    # the kills landed inside start and inside stop at least once
    assert summary["phase_killed"].get("starting", 0) >= 1, summary
    assert summary["phase_killed"].get("stopping", 0) >= 1, summary
