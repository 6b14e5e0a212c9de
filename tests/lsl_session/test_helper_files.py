"""A finished session holds no helper files: not after a normal end, not after
``recover`` of a session killed while recording (``.session.lock``,
``.lsl_session_reserve``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lsl_helpers import RegularSource, wait_until

from lsl_session.fsutil import locked, remove_lock
from lsl_session.layout import LOCK_FILE, RESERVE_FILE
from lsl_session.manager import SessionManager
from lsl_session.metadata import read_metadata

CHILD = Path(__file__).with_name("_record_child.py")


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_normal_end_leaves_no_helper_files(session_root, uid):
    src = RegularSource(f"H_{uid}", f"h_{uid}", channels=2, srate=100).start()
    manager = SessionManager(session_root)
    try:
        manager.create_session("helpers")
        folder = manager.session_dir
        manager.start_recording([f"source_id='h_{uid}'"])
        assert (folder / RESERVE_FILE).exists()  # while recording: room for the end
        assert wait_until(
            lambda: manager.recorder.status()["streams"][0]["samples"] > 20
        )
        manager.stop_recording()
        manager.end_session(process=False)
    finally:
        manager.close()
        src.stop()
    assert read_metadata(folder)["status"] == "completed"
    assert _hidden(folder) == []
    proc = subprocess.run(  # processing it again leaves none either
        [sys.executable, "-m", "lsl_session", "process", str(folder),
         "--no-hand-segmentation"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _hidden(folder) == []


def test_recover_after_a_kill_while_recording_leaves_no_helper_files(session_root, uid):
    src = RegularSource(f"K_{uid}", f"k_{uid}", channels=2, srate=100).start()
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "--root", str(session_root), "--stream",
         f"source_id='k_{uid}'", "--stop-after", "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while "recording" not in child.stdout.readline():
            assert child.poll() is None
        folder = next(session_root.iterdir())
        assert wait_until(lambda: (folder / f"{folder.name}.xdf").stat().st_size > 4096)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
        src.stop()
    assert RESERVE_FILE in _hidden(folder) and LOCK_FILE in _hidden(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "recover", "--root", str(session_root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_metadata(folder)["status"] == "recovered"
    assert _hidden(folder) == []


def test_a_waiting_locker_survives_the_lock_file_removal(tmp_path):
    """Removal keeps the lock exclusive: a waiter locks the new file, not the gone one."""
    import select

    lock = tmp_path / LOCK_FILE
    read, write = os.pipe()
    code = (
        "import os, time\n"
        "from lsl_session.fsutil import locked\n"
        f"with locked({str(lock)!r}):\n"
        f"    os.write({write}, b'x')\n"
        "    time.sleep(0.5)\n"
        f"    os.write({write}, b'y')\n"
    )
    with locked(lock):
        other = subprocess.Popen([sys.executable, "-c", code], pass_fds=(write,))
        threading.Event().wait(1.5)  # the other process is blocked on the lock
        os.unlink(lock)  # what remove_lock does while holding it
    assert os.read(read, 1) == b"x"  # the waiter went on, holding a new lock file
    assert lock.exists()
    with locked(lock):  # exclusive: we get it only once the waiter is done
        assert select.select([read], [], [], 0)[0]
        assert os.read(read, 1) == b"y"
    assert other.wait(30) == 0
    remove_lock(lock)
    assert not lock.exists()


@pytest.fixture
def session_root(tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    return root


def test_recover_root_tidies_a_finished_session_whose_owner_died(session_root):
    """Killed right after the end (status completed, lock not yet removed):
    `recover --root` removes the helper files; a live owner's are left alone."""
    child = (
        "import os, sys; from lsl_session.manager import SessionManager;"
        "m = SessionManager(sys.argv[1]); m.create_session('tidy');"
        "m.end_session(process=False); print(m.session_dir); sys.stdout.flush();"
        "os._exit(0)"  # no release: the owner is gone, the lock stays
    )
    made = subprocess.run(
        [sys.executable, "-c", child, str(session_root)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    folder = Path(made.stdout.strip())
    (folder / LOCK_FILE).touch()  # as a crash between the end and the release leaves
    assert read_metadata(folder)["status"] in ("completed", "empty")
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "recover", "--root", str(session_root)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _hidden(folder) == []
