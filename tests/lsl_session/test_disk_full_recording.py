"""Disk full while recording (issue #15, item 8): a real small tmpfs, the CLI as a process.

The disk is filled by another writer while ``lsl-session record`` runs: the command
must end with one message naming the cause, no traceback, the session marked
``error`` and an XDF file that loads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pyxdf
from lsl_helpers import RegularSource, wait_until
from system_tools import missing


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        missing("a tmpfs mount (root/CAP_SYS_ADMIN)", f"run as root: {result.stderr}")


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def test_disk_full_while_recording_ends_cleanly(tmp_path, uid):
    mount = tmp_path / "disk"
    _mount_tmpfs(mount, "64m")  # > the recorder's 50 MB start check
    src = RegularSource(f"full_{uid}", f"full_{uid}", channels=16, srate=1000).start()
    proc = None
    try:
        root = mount / "rec"
        proc = subprocess.Popen(
            [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
             "--name", "full", "--stream", f"source_id='full_{uid}'", "--no-process",
             "--status-interval", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def xdf_has_data() -> bool:
            files = list(root.glob("*/*.xdf")) if root.exists() else []
            return bool(files) and files[0].stat().st_size > 50_000

        assert wait_until(xdf_has_data, timeout=30), proc.stderr
        _fill(mount / "filler.bin")
        out, err = proc.communicate(timeout=60)
    finally:
        src.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        assert proc.returncode == 1, err
        assert "Traceback" not in err, err
        errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1, err
        assert "No space left on device" in errors[0] or "disk almost full" in errors[0]
        (session,) = [p for p in root.iterdir() if not p.name.startswith(".")]
        assert out.strip().splitlines()[-1] == str(session)
        meta = json.loads((session / "session_metadata.json").read_text())
        assert meta["status"] == "error"
        events = json.loads((session / f"{session.name}_log.json").read_text())
        assert events[-1]["event"] == "error"
        assert "No space" in events[-1]["message"] or "disk" in events[-1]["message"]
        assert not list(session.glob(".*reserve*"))
        streams, _ = pyxdf.load_xdf(
            str(session / f"{session.name}.xdf"),
            synchronize_clocks=False,
            dejitter_timestamps=False,
        )
        by_name = {s["info"]["name"][0]: s for s in streams}
        assert len(by_name[f"full_{uid}"]["time_stamps"]) > 100
    finally:
        with contextlib.suppress(OSError):
            (mount / "filler.bin").unlink()
        subprocess.run(["umount", "-l", str(mount)], check=False)
