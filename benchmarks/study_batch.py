"""A study at a time: ``process`` and ``export --bids`` over a root, 1 vs N workers, Dask.

Generates ``--sessions`` session folders (default 4), each with an EEG stream
(``--channels`` float32 channels at 500 Hz for ``--seconds``), a 128 Hz GSR stream and
a marker stream, then times as subprocesses (the way a lab runs them):

* ``lsl-session process --root R --all --no-hand-segmentation --jobs 1`` and ``--jobs N``,
* ``lsl-session export --root R --bids D --jobs 1`` and ``--jobs N``,
* with ``--dask``, both again on a ``dask.distributed.LocalCluster`` of N worker processes.

Run: python benchmarks/study_batch.py [--sessions 4] [--seconds 120] [--channels 32]
     [--jobs 2] [--dask] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTION = "## A study at a time (batch processing and BIDS export)"
NOTE = (
    "Read with care: the load average exceeded the core count (a shared machine), so "
    "these numbers show the cost of the batch machinery, not the speedup idle cores give."
)


def _xml(
    name: str, stype: str, fmt: str, labels: list[tuple[str, str]], srate: float
) -> str:
    chans = "".join(f"<channel><label>{lb}</label><unit>{u}</unit><type>{stype}</type></channel>"
                    for lb, u in labels)  # fmt: skip
    return (f'<?xml version="1.0"?><info><name>{name}</name><type>{stype}</type>'
            f"<channel_count>{len(labels)}</channel_count><nominal_srate>{srate}</nominal_srate>"
            f"<channel_format>{fmt}</channel_format><source_id>bench_{name}</source_id>"
            f"<desc><channels>{chans}</channels></desc></info>")  # fmt: skip


def make_study(root: Path, sessions: int, seconds: float, nch: int) -> int:
    """Write the sessions; return the total sample-data bytes."""
    from lsl_session.session import create_session_folder
    from lsl_session.xdf import XdfWriter

    rng = np.random.default_rng(0)
    total = 0
    for k in range(sessions):
        folder = create_session_folder(root, f"sub-S{k + 1}_ses-1_task-bench")
        eeg = rng.normal(0, 20, (int(seconds * 500), nch)).astype(np.float32)
        gsr = (5 + rng.normal(0, 0.1, (int(seconds * 128), 1))).astype(np.float32)
        te = 1000.0 + np.arange(len(eeg)) / 500.0
        tg = 1000.0 + np.arange(len(gsr)) / 128.0
        tm = 1000.0 + np.arange(1.0, seconds, 2.0)
        with XdfWriter(folder / f"{folder.name}.xdf") as w:
            w.write_stream_header(1, _xml("EEG", "EEG", "float32",
                                          [(f"C{c}", "microvolts") for c in range(nch)], 500))  # fmt: skip
            w.write_stream_header(
                2, _xml("GSR", "GSR", "float32", [("gsr", "microsiemens")], 128)
            )
            w.write_stream_header(
                3, _xml("Markers", "Markers", "string", [("m", "")], 0)
            )
            for a in range(0, len(eeg), 5000):
                w.write_samples(1, te[a : a + 5000], eeg[a : a + 5000])
            w.write_samples(2, tg, gsr)
            w.write_samples(3, tm, [[f"m{i}"] for i in range(len(tm))])
            for t in np.arange(1000.0, 1000.0 + seconds, 5.0):
                for sid in (1, 2, 3):
                    w.write_clock_offset(sid, float(t), 0.0)
            w.write_stream_footers()
        meta_path = folder / "session_metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["recording"].update(xdf_files=[f"{folder.name}.xdf"], start_lsl_time=1000.0,
                                 start_time="2025-01-01T10:00:00+00:00")  # fmt: skip
        meta_path.write_text(json.dumps(meta))
        total += eeg.nbytes + gsr.nbytes + 8 * (len(te) + len(tg))
    return total


def timed(*args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lsl_session", *args],
                          capture_output=True, text=True)  # fmt: skip
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="study_batch_"))
    try:
        root = work / "rec"
        size = make_study(root, opts.sessions, opts.seconds, opts.channels)
        rows = []
        proc = ["process", "--root", str(root), "--all", "--no-hand-segmentation"]
        for jobs in (1, opts.jobs):
            rows.append((f"`process --root R --all --jobs {jobs}`",
                         timed(*proc, "--jobs", str(jobs))))  # fmt: skip
        for jobs in (1, opts.jobs):
            ds = work / f"bids{jobs}"
            rows.append((f"`export --root R --bids D --jobs {jobs}`",
                         timed("export", "--root", str(root), "--bids", str(ds),
                               "--jobs", str(jobs))))  # fmt: skip
        if opts.dask:
            from distributed import LocalCluster

            with LocalCluster(n_workers=opts.jobs, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=":0") as cluster:  # fmt: skip
                addr = cluster.scheduler_address
                rows.append((f"`process … --scheduler` (LocalCluster, {opts.jobs} workers)",
                             timed(*proc, "--scheduler", addr)))  # fmt: skip
                rows.append((f"`export … --scheduler` (LocalCluster, {opts.jobs} workers)",
                             timed("export", "--root", str(root), "--bids",
                                   str(work / "bidsd"), "--scheduler", addr)))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    text = [SECTION, "",
            f"Study: {opts.sessions} sessions × (EEG {opts.channels} ch float32 at 500 Hz + "
            f"GSR 128 Hz + markers) × {opts.seconds:g} s; sample data {size / 1e6:.0f} MB.", "",
            "| command | wall time | per session |", "|---|---|---|"]  # fmt: skip
    text += [f"| {name} | {t:.1f} s | {t / opts.sessions:.1f} s |" for name, t in rows]
    if load > os.cpu_count():
        text += ["", NOTE]
    cmd = "python benchmarks/study_batch.py " + " ".join(
        a for a in sys.argv[1:] if a != "--write-docs")  # fmt: skip
    text += ["", f"Command: `{cmd.strip()}`  ",
             f"Machine: {platform.system()} {platform.release()} {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}; "
             f"1-min load average at the end {load:.1f} (a shared machine).", ""]  # fmt: skip
    out = "\n".join(text)
    print(out)
    if opts.write_docs:
        docs = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        body = docs.read_text()
        pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
        body = pattern.sub(out.rstrip("\n"), body) if pattern.search(body) else (
            body.rstrip("\n") + "\n\n" + out)  # fmt: skip
        docs.write_text(body)


if __name__ == "__main__":
    main()
