"""Processing outputs others can read (#31): folder modes and an empty sync check.

``lsl-session process`` runs as a subprocess on a recorded session without sync
pulses: every output folder is 0755 under umask 022 (not mkdtemp's 0700), and
``sync_check.csv`` has its header row, so pandas reads it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_processing_support import stream_xml

from lsl_session.processing.sync_check import csv_columns
from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfWriter


def _plain_session(root):
    """One EEG stream of noise: nothing carries a sync pulse."""
    folder = create_session_folder(root, "plain")
    xml = stream_xml("eeg", "EEG", "float32", [("C1", "microvolts", "EEG")], 100,
                     source_id="eeg1")  # fmt: skip
    stamps = 100.0 + np.arange(500) / 100.0
    data = np.random.default_rng(0).normal(0, 1, (500, 1)).astype(np.float32)
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        w.write_stream_header(1, xml)
        w.write_samples(1, stamps, data)
        w.write_stream_footers()
    return folder


def test_process_outputs_are_readable_and_empty_sync_check_has_a_header(tmp_path):
    folder = _plain_session(tmp_path / "rec")
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "process", str(folder)],
        capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.umask(0o022),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p for p in (folder / "processing").rglob("*") if p.is_dir()]
    folders += [folder / "processing"]
    modes = {
        p.relative_to(folder).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
        for p in folders
    }
    assert len(modes) >= 3, modes
    assert set(modes.values()) == {"0o755"}, modes
    csv = folder / "processing" / "sync_check" / "sync_check.csv"
    table = pd.read_csv(csv)
    assert list(table.columns) == csv_columns()
    assert len(table) == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "metadata",
    ['{"status": 5, "devices": []}', "nope{", "[]",
     '{"devices": {"phone_1": {"files": [{"path": 3}]}}, "files": 7}'],
)  # fmt: skip
def test_recover_and_info_with_device_symlinks_and_corrupt_metadata(tmp_path, metadata):
    """Round-2 L1: a link in devices/ and corrupt metadata gave a traceback."""
    import hashlib

    new = _cli("new", "--root", str(tmp_path / "rec"), "--name", "links")
    assert new.returncode == 0, new.stderr
    folder = Path(new.stdout.strip().splitlines()[-1])
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.csv").write_text("a,b\n1,2\n")
    (outside / "sub" / "phone_1_gsr_20250101_000000.csv").write_text("x\n")
    digest = hashlib.sha256((outside / "secret.csv").read_bytes()).hexdigest()
    (folder / "devices" / "phone_1").symlink_to(
        outside / "sub", target_is_directory=True
    )
    (folder / "devices" / "x.csv").symlink_to(outside / "secret.csv")
    (folder / "session_metadata.json").write_text(metadata)
    seen = ""
    for command in ("info", "recover", "info"):
        proc = _cli(command, str(folder))
        seen += proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        if proc.returncode == 1:
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
            assert len(errors) == 1, proc.stderr[-2000:]
    assert "devices/phone_1 is a symbolic link; not followed" in seen
    assert "devices/x.csv is a symbolic link; not followed" in seen
    assert hashlib.sha256((outside / "secret.csv").read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in outside.rglob("*")) == [
        "phone_1_gsr_20250101_000000.csv", "secret.csv", "sub",
    ]  # fmt: skip
