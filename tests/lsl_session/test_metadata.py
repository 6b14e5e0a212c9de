"""Atomic metadata writes survive SIGKILL at any moment."""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import time

import pytest

from lsl_session.errors import MetadataError
from lsl_session.metadata import read_metadata, update_metadata, write_metadata
from lsl_session.session import create_session_folder


def test_read_missing_and_corrupt(tmp_path):
    with pytest.raises(MetadataError, match="no session metadata"):
        read_metadata(tmp_path)
    (tmp_path / "session_metadata.json").write_text("{not json")
    with pytest.raises(MetadataError, match="unreadable"):
        read_metadata(tmp_path)
    (tmp_path / "session_metadata.json").write_text("[1, 2]")
    with pytest.raises(MetadataError, match="not a session metadata"):
        read_metadata(tmp_path)


def test_required_fields(session_root):
    folder = create_session_folder(session_root, "meta")
    meta = read_metadata(folder)
    for key in (
        "schema_version",
        "session_id",
        "name",
        "start_time",
        "end_time",
        "duration_s",
        "status",
        "devices",
        "files",
        "recording",
        "processing",
        "software",
    ):
        assert key in meta
    assert meta["software"]["liblsl"]
    assert "+" in meta["start_time"] or meta["start_time"].endswith("Z")
    assert "." in meta["start_time"]  # microseconds


def test_failed_change_writes_nothing(session_root):
    folder = create_session_folder(session_root, "meta")
    before = (folder / "session_metadata.json").read_bytes()

    def boom(meta):
        meta["status"] = "bogus"
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        update_metadata(folder, boom)
    assert (folder / "session_metadata.json").read_bytes() == before


def _kill_trials(folder, trials: int) -> None:
    rng = random.Random(99)
    for trial in range(trials):
        # garbage of earlier tests (liblsl inlets) must not be finalised in the
        # forked child, where liblsl's threads do not exist: it would segfault
        gc.collect()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            gc.disable()
            try:
                for i in range(1000):
                    update_metadata(
                        folder, lambda m, i=i: m.update(counter=i, pad="x" * (i % 97))
                    )
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.08))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        meta = json.loads((folder / "session_metadata.json").read_bytes())
        assert meta["session_id"] == folder.name, f"trial {trial}"
        leftovers = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        for tmp in leftovers:  # a killed writer may leave its temp file behind
            tmp.unlink()


def test_sigkill_during_updates_never_corrupts(session_root):
    folder = create_session_folder(session_root, "kill")
    write_metadata(folder, read_metadata(folder))
    _kill_trials(folder, 50)


@pytest.mark.slow
def test_sigkill_during_updates_many_trials(session_root):
    folder = create_session_folder(session_root, "kill")
    _kill_trials(folder, 300)
