"""A study at a time: ``process``/``export --bids`` over a root, local jobs and Dask."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bids_support import errors, make_eeg_session, validate
from test_processing_support import make_session

from lsl_session import batch
from lsl_session.errors import LslSessionError
from lsl_session.session import create_session_folder

_WORKER = re.compile(r"\[(.+?)\]")


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _study(root: Path) -> tuple[list[Path], Path]:
    """Two good sessions (one EEG, one physio-only) and one with a corrupt XDF."""
    good = [make_eeg_session(root, "sub-A_ses-1_task-T")[0],
            make_session(root, name="sub-B_ses-1_task-T", duration=3.0)[0]]  # fmt: skip
    bad = create_session_folder(root, "sub-C_ses-1_task-T")
    (bad / f"{bad.name}.xdf").write_bytes(b"XDF:\x07garbage" * 10)
    return good, bad


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def _processed(folder: Path) -> bool:
    meta = json.loads((folder / "session_metadata.json").read_text())
    runs = meta.get("processing", {}).get("runs", [])
    return any(r["kind"] == "process" and r["status"] == "ok" for r in runs) and any(
        (folder / "processing/synchronized_data").glob("*.parquet")
    )


def test_process_root_with_local_jobs_finishes_the_others_and_counts_failures(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    good, bad = _study(root)
    proc = cli("process", "--root", root, "--jobs", "2", "--no-hand-segmentation")
    assert proc.returncode == 1, proc.stderr  # one session failed
    failed = _lines(proc.stderr, "FAILED")
    assert (
        len(failed) == 1
        and bad.name in failed[0]
        and "no stream could be read" in failed[0]
    )
    ok = _lines(proc.stdout, "ok")
    assert sorted(Path(line.split()[1]).name for line in ok) == sorted(
        g.name for g in good
    )
    assert all(_processed(g) for g in good)
    workers = {_WORKER.search(line).group(1) for line in ok}
    assert all(f"pid {os.getpid()}" not in w for w in workers)  # not in this process
    assert "2 done, 1 failed, 0 skipped" in proc.stdout
    # again: the processed ones are skipped, the failed one is tried again
    proc = cli("process", "--root", root, "--jobs", "2", "--no-hand-segmentation")
    assert proc.returncode == 1
    assert "0 done, 1 failed, 2 skipped" in proc.stdout
    proc = cli("process", *good, "--all", "--no-hand-segmentation")
    assert proc.returncode == 0, proc.stderr
    assert "2 done, 0 failed, 0 skipped" in proc.stdout


def test_process_and_bids_export_on_a_dask_local_cluster(tmp_path):
    from distributed import LocalCluster

    root = tmp_path / "rec"
    root.mkdir()
    good, bad = _study(root)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      protocol="tcp", host="127.0.0.1", dashboard_address=":0") as cluster:  # fmt: skip
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        workers = set(cluster.scheduler.workers)
        assert len(workers) == 2
        proc = cli("process", "--root", root, "--scheduler", address,
                   "--no-hand-segmentation")  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        failed = _lines(proc.stderr, "FAILED")
        assert len(failed) == 1 and bad.name in failed[0]
        ok = _lines(proc.stdout, "ok")
        assert len(ok) == 2
        assert {_WORKER.search(line).group(1) for line in ok} <= workers
        assert all(_processed(g) for g in good)
        ds = tmp_path / "ds"
        proc = cli("export", "--root", root, "--bids", ds, "--scheduler", address)
        assert proc.returncode == 1, proc.stderr
        ok = _lines(proc.stdout, "ok")
        assert len(ok) == 2
        assert {_WORKER.search(line).group(1) for line in ok} <= workers
    assert (ds / "sub-A/ses-1/eeg/sub-A_ses-1_task-T_eeg.vhdr").is_file()
    assert list((ds / "sub-B/ses-1/beh").glob("*_physio.tsv.gz"))
    assert not (ds / "sub-C").exists()
    assert errors(validate(ds)) == []


def test_export_root_with_jobs_builds_one_dataset_and_skips_exported(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    for ses in ("1", "2", "3"):
        make_eeg_session(root, f"sub-P7_ses-{ses}_task-Rest")
    ds = tmp_path / "ds"
    proc = cli("export", "--root", root, "--bids", ds, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "3 done, 0 failed, 0 skipped" in proc.stdout
    assert sorted(p.name for p in (ds / "sub-P7").iterdir()) == [
        "ses-1",
        "ses-2",
        "ses-3",
    ]
    assert (ds / "participants.tsv").read_text().count("sub-P7") == 1
    assert errors(validate(ds)) == []
    proc = cli("export", "--root", root, "--bids", ds)
    assert proc.returncode == 0
    assert "0 done, 0 failed, 3 skipped" in proc.stdout


def test_collect_and_bad_batch_input(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    a = create_session_folder(root, "a")
    b = create_session_folder(root, "b")
    assert batch.collect([a, root], []) == [a, b]  # a folder of sessions, no duplicates
    with pytest.raises(LslSessionError, match="not a session folder"):
        batch.collect([tmp_path / "missing"], [])
    with pytest.raises(LslSessionError, match="no such recordings root"):
        batch.collect([], [tmp_path / "nope"])
    proc = cli("process", "--root", root, "--scheduler", "tcp://127.0.0.1:9")
    assert proc.returncode == 1
    assert "cannot reach the Dask scheduler" in proc.stderr
    assert "Traceback" not in proc.stderr
    result = batch.run_task(batch.Task("process", str(tmp_path / "missing")))
    assert result["ok"] is False and "no such session folder" in result["error"]


CRASHER = """
import os

class Crash:
    name = "crash"

    def run(self, context):
        if "crash" in context.paths.session_id:
            os._exit(3)  # the worker process dies, as on a segfault or OOM kill
        return {}
"""


def test_a_session_that_kills_its_worker_fails_alone(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "lsl_session_crash_plugin.py").write_text(CRASHER)
    dist = site / "lsl_session_crash_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lsl-session-crash-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[lsl_session.processors]\ncrash = lsl_session_crash_plugin:Crash\n"
    )
    root = tmp_path / "rec"
    root.mkdir()
    good = [make_session(root, name=f"ok{k}", duration=2.0)[0] for k in range(2)]
    crash = make_session(root, name="crash", duration=2.0)[0]
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "process", "--root", str(root),
         "--jobs", "2", "--no-hand-segmentation"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    failed = _lines(proc.stderr, "FAILED")
    assert len(failed) == 1 and crash.name in failed[0] and "died" in failed[0]
    ok = _lines(proc.stdout, "ok")
    assert sorted(Path(line.split()[1]).name for line in ok) == sorted(
        g.name for g in good
    )


def test_several_paths_with_an_xdf_file_import_it_and_process_both(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    session = make_session(root, name="named", duration=2.0)[0]
    xdf = tmp_path / "sub-X_task-Y_run-001_eeg.xdf"
    xdf.write_bytes((session / f"{session.name}.xdf").read_bytes())
    proc = cli("process", session, xdf, "--root", root, "--no-hand-segmentation")
    assert proc.returncode == 0, proc.stderr
    assert "2 done, 0 failed, 0 skipped" in proc.stdout
    imported = [p for p in root.iterdir() if p != session and p.is_dir()]
    assert len(imported) == 1 and _processed(imported[0])
    assert _processed(session)
