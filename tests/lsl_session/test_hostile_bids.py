"""BIDS re-export never writes through a symlink planted in the dataset (#31).

The CLI runs as a subprocess; the files the links point to (outside the dataset)
keep their sha256, and each refusal is one line naming the link, exit code 1.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bids_support import make_eeg_session


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("bidslinks")
    folder, _ = make_eeg_session(base / "rec", "sub-P01_ses-S1_task-Rest_run-1")
    ds = base / "ds"
    proc = cli("export", folder, "--bids", ds, "--line-freq", "50")
    assert proc.returncode == 0, proc.stderr
    return folder, ds


def _plant(ds: Path, outside: Path, which: str) -> None:
    eeg = ds / "sub-P01" / "ses-S1" / "eeg"
    if which == "datatype folder":  # the recording's eeg/ → a folder outside
        shutil.copytree(eeg, outside / "eeg")
        shutil.rmtree(eeg)
        eeg.symlink_to(outside / "eeg", target_is_directory=True)
    elif which == "data file":
        target = next(p for p in eeg.iterdir() if p.name.endswith("_eeg.vhdr"))
        shutil.copy(target, outside / "victim.vhdr")
        target.unlink()
        target.symlink_to(outside / "victim.vhdr")
    elif which == "participants.tsv":
        shutil.copy(ds / "participants.tsv", outside / "victim.tsv")
        (ds / "participants.tsv").unlink()
        (ds / "participants.tsv").symlink_to(outside / "victim.tsv")
    elif which == "scans temp file":
        scans = ds / "sub-P01" / "ses-S1" / ".sub-P01_ses-S1_scans.tsv.tmp"
        (outside / "victim.txt").write_text("keep me")
        scans.symlink_to(outside / "victim.txt")
    elif which == "sourcedata":
        shutil.copytree(ds / "sourcedata", outside / "src")
        shutil.rmtree(ds / "sourcedata")
        (ds / "sourcedata").symlink_to(outside / "src", target_is_directory=True)
    elif which == "dangling README":
        (ds / "README").unlink()
        (ds / "README").symlink_to(outside / "created-through-link")


@pytest.mark.parametrize(
    "which",
    ["datatype folder", "data file", "participants.tsv", "scans temp file",
     "sourcedata", "dangling README"],
)  # fmt: skip
def test_reexport_refuses_planted_symlinks(exported, tmp_path, which):
    folder, original = exported
    ds = tmp_path / "ds"
    shutil.copytree(original, ds, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    _plant(ds, outside, which)
    before = _digest(outside)
    proc = cli("export", folder, "--bids", ds, "--line-freq", "50")
    assert proc.returncode == 1, proc.stderr[-2000:]
    # the batch's one line per failed session names the link
    errors = [line for line in proc.stderr.splitlines() if "symbolic link" in line]
    assert len(errors) == 1 and "refusing to write through it" in errors[0]
    assert "Traceback" not in proc.stderr
    assert _digest(outside) == before
    assert not (outside / "created-through-link").exists()


def test_bids_run_must_be_ascii_digits(exported, tmp_path):
    folder, _ = exported
    proc = cli("export", folder, "--bids", tmp_path / "ds", "--run", "²")
    assert proc.returncode == 1
    assert "--run must be a non-negative integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ds").exists()
