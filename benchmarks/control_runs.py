"""Multi-run remote control: reply latencies and run-to-run gaps of ``record --control-port``.

Starts ``lsl-session record --control-port 0`` (processing on) and one outlet
(8 ch x 500 Hz, sample index as value), then drives N runs as a PsychoPy script
does (filename, start, a block of B seconds, stop, the next run at once) over a
raw socket, and reports per run: the ``start``/``stop`` reply latency, samples
recorded, the samples lost between runs (pushed between the last sample of run
k and the first of run k+1, minus the true gap), and whether run k+1 recorded
while run k was still being processed.

Usage (from a clone, after ``pip install -e ".[dev]"``)::

    python benchmarks/control_runs.py --runs 3 --block 3
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pylsl
import pyxdf


def _outlet(stop: threading.Event, srate: float = 500.0) -> None:
    info = pylsl.StreamInfo("BenchEEG", "EEG", 8, srate, "float32", "bench-ctl-eeg")
    outlet = pylsl.StreamOutlet(info)
    t0, sent = pylsl.local_clock(), 0
    while not stop.is_set():
        n = int((pylsl.local_clock() - t0) * srate) - sent
        if n > 0:
            idx = np.arange(sent, sent + n)
            outlet.push_chunk(
                np.repeat(idx[:, None], 8, axis=1).astype(np.float32),
                t0 + idx / srate,
            )
            sent += n
        time.sleep(0.01)


def _send(sock: socket.socket, line: str) -> float:
    started = time.perf_counter()
    sock.sendall(line.encode() + b"\n")
    assert sock.recv(2) == b"OK"
    return time.perf_counter() - started


def _status(sock: socket.socket) -> dict:
    sock.sendall(b"status\n")
    buf = b""
    while not buf.endswith(b"\n"):
        buf += sock.recv(65536)
    return json.loads(buf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--block", type=float, default=3.0, help="seconds per run")
    args = parser.parse_args()
    stop = threading.Event()
    threading.Thread(target=_outlet, args=(stop,), daemon=True).start()
    root = Path(tempfile.mkdtemp(prefix="control_runs_"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--control-port", "0", "--stream", "source_id='bench-ctl-eeg'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stderr.readline()
    while "remote control on" not in line:
        line = proc.stderr.readline()
    sock = socket.create_connection(("127.0.0.1", int(line.rsplit(":", 1)[1])))
    rows = []
    for run in range(1, args.runs + 1):
        _send(sock, f"filename {{participant:P01}} {{task:bench}} {{run:{run}}}")
        start_s = _send(sock, "start")
        processing = _status(sock)["processing"]  # the previous run's, if any
        time.sleep(args.block)
        stop_s = _send(sock, "stop")
        rows.append({"run": run, "start_s": start_s, "stop_s": stop_s,
                     "previous_still_processing": bool(processing)})  # fmt: skip
    sock.sendall(b"quit\n")
    out, _ = proc.communicate(timeout=300)
    stop.set()
    folders = [Path(p) for p in out.splitlines()]
    last_value = None
    for row, folder in zip(rows, folders, strict=True):
        streams, _ = pyxdf.load_xdf(
            str(folder / f"{folder.name}.xdf"),
            synchronize_clocks=False,
            dejitter_timestamps=False,
        )
        (eeg,) = [s for s in streams if s["info"]["name"][0] == "BenchEEG"]
        values = eeg["time_series"][:, 0]
        row["samples"] = len(values)
        row["contiguous"] = bool(np.all(np.diff(values) == 1))
        row["gap_samples_before"] = (
            None if last_value is None else int(values[0] - last_value - 1)
        )
        last_value = values[-1]
        events = json.loads((folder / f"{folder.name}_log.json").read_text())
        times = {e["event"]: e["timestamp"] for e in events}
        row["processing_s"] = (
            datetime.fromisoformat(times["processing_end"])
            - datetime.fromisoformat(times["processing_start"])
        ).total_seconds()
    print(f"{'run':>3} {'start ms':>9} {'stop ms':>8} {'samples':>8} {'contig':>6} "
          f"{'gap smp':>8} {'prev proc':>9} {'proc s':>7}")  # fmt: skip
    for r in rows:
        gap = "-" if r["gap_samples_before"] is None else r["gap_samples_before"]
        print(f"{r['run']:>3} {r['start_s'] * 1e3:9.1f} {r['stop_s'] * 1e3:8.1f} "
              f"{r['samples']:>8} {r['contiguous']!s:>6} {gap!s:>8} "
              f"{r['previous_still_processing']!s:>9} {r['processing_s']:7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
