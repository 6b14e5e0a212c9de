"""The README's three-run script against LabRecorder's engine and against ours (issue #25).

One process pushes three streams: ``BenchEEG`` (8 ch x 500 Hz, value = sample
index), ``BenchMarkers`` (``seq N`` every 50 ms, plus ``block_start runK`` right
after each ``start`` and ``block_end runK`` right before each ``stop``) and
``BenchLate`` (4 ch x 200 Hz whose data arrives ``--lag`` s late, a buffering
Wi-Fi device). ``labrecorder-controller`` (which never reads ``OK``) drives three
runs of ``--block`` s: filename, start, block, stop — against

- ``lr``: LabRecorder's recording engine (the ``labrecorder`` wheel) behind an
  RCS that does what the GUI does (``benchmarks/_labrecorder_rcs.py``);
- ``ours``: ``lsl-session record --control-port``.

Per run, with S/E the LSL times the client sent ``start``/``stop``:

- ``start→first``: first EEG stamp in the file minus S (ms);
- ``markers lost``: markers stamped in [S, E) missing from the run's file;
- ``misfiled``: markers in the run's file stamped outside [S, E);
- ``tail lost``: per stream, the time between the last sample in the file and
  E that was pushed but not recorded (ms).

Usage (from a clone with the dev extras)::

    python benchmarks/run_cuts_vs_labrecorder.py [--block 3] [--lag 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pylsl
import pyxdf
from _anchors import loadavg, machine

HERE = Path(__file__).resolve().parent
#: reply latencies (s) of the waiting client's last drive, by command
REPLIES: dict[str, list[float]] = {}
EEG_RATE, LATE_RATE = 500.0, 200.0


class Source:
    """A regular stream (value = index) whose samples are pushed ``lag`` s late."""

    def __init__(self, name: str, channels: int, srate: float, lag: float) -> None:
        info = pylsl.StreamInfo(name, "EEG", channels, srate, "float32", name.lower())
        self.outlet = pylsl.StreamOutlet(info)
        self.srate, self.lag, self.channels = srate, lag, channels
        self.stamps: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0, sent = pylsl.local_clock(), 0
        while not self._stop.wait(0.01):
            n = int((pylsl.local_clock() - t0 - self.lag) * self.srate) - sent
            if n > 0:
                idx = np.arange(sent, sent + n)
                data = np.repeat(idx[:, None], self.channels, 1).astype(np.float32)
                ts = t0 + idx / self.srate
                self.outlet.push_chunk(data, ts)
                self.stamps.append(ts)
                sent += n

    def stop(self) -> np.ndarray:
        self._stop.set()
        self._thread.join()
        return np.concatenate(self.stamps)


class Markers:
    """``seq N`` every 50 ms plus labels on request; every (label, stamp) kept."""

    def __init__(self) -> None:
        info = pylsl.StreamInfo("BenchMarkers", "Markers", 1, 0, "string", "benchmk")
        self.outlet = pylsl.StreamOutlet(info)
        self.sent: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def push(self, label: str) -> None:
        with self._lock:
            ts = pylsl.local_clock()
            self.outlet.push_sample([label], ts)
            self.sent.append((label, ts))

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.05):
            self.push(f"seq {n}")
            n += 1

    def stop(self) -> list[tuple[str, float]]:
        self._stop.set()
        self._thread.join()
        return self.sent


class RawClient:
    """A plain socket that waits for each ``OK`` (as a careful script does)."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.replies: list[tuple[bytes, float]] = []

    def send(self, data: bytes) -> None:
        t = time.perf_counter()
        self.s.sendall(data)
        got = b""
        while len(got) < 2:
            chunk = self.s.recv(2 - len(got))
            if not chunk:
                raise ConnectionError("server closed the connection")
            got += chunk
        self.replies.append((data.split()[0], time.perf_counter() - t))

    def filename(self, **fields) -> None:
        self.send(
            (
                "filename " + " ".join(f"{{{k}:{v}}}" for k, v in fields.items()) + "\n"
            ).encode()
        )

    def start(self) -> None:
        self.send(b"start\n")

    def stop(self) -> None:
        self.send(b"stop\n")


def _drive(
    port: int, markers: Markers, block: float, client: str
) -> list[tuple[float, float]]:
    """The README's script; returns the (start, stop) send times per run."""
    from labrecorder_controller import labrecrcs

    rcs = labrecrcs(ip="127.0.0.1", port=port) if client == "lrc" else RawClient(port)
    times = []
    for run in (1, 2, 3):
        rcs.filename(participant="P01", session="S01", task="bench", run=run)
        started = pylsl.local_clock()
        rcs.start()
        markers.push(f"block_start run{run}")
        time.sleep(block)
        markers.push(f"block_end run{run}")
        stopped = pylsl.local_clock()
        rcs.stop()
        times.append((started, stopped))
    for kind, took in getattr(rcs, "replies", []):
        REPLIES.setdefault(kind.decode(), []).append(took)
    time.sleep(8.0)  # the last stop's footers (LabRecorder: destructor, ≤ 5 s)
    with contextlib.suppress(OSError):
        rcs.s.sendall(b"quit\n")
    rcs.s.close()
    return times


def _run_lr(
    root: Path, markers: Markers, block: float, client: str
) -> tuple[list, list[Path]]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_labrecorder_rcs.py"), str(root)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    port = int(proc.stdout.readline().split()[1])
    times = _drive(port, markers, block, client)
    proc.wait(timeout=60)
    return times, [root / f"run-{i:03d}.xdf" for i in (1, 2, 3)]


def _run_ours(
    root: Path, markers: Markers, block: float, client: str
) -> tuple[list, list[Path]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--control-port", "0", "--no-process",
         "--stream", "starts-with(name, 'Bench')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stderr.readline()
    while "remote control on" not in line:
        line = proc.stderr.readline()
    port = int(line.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as probe:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the streams are open between runs
            probe.sendall(b"status\n")
            buf = b""
            while not buf.endswith(b"\n"):
                buf += probe.recv(65536)
            if len(json.loads(buf)["open_streams"]) == 3:
                break
            time.sleep(0.2)
    times = _drive(port, markers, block, client)
    out, _ = proc.communicate(timeout=120)
    folders = [Path(p) for p in out.splitlines()]
    return times, [f / f"{f.name}.xdf" for f in folders]


def _analyse(times, files, sent, pushed) -> list[dict]:
    labels = np.array([lab for lab, _ in sent])
    stamps = np.array([ts for _, ts in sent])
    rows = []
    for run, ((start, stop), path) in enumerate(zip(times, files, strict=True), 1):
        streams, _ = pyxdf.load_xdf(
            str(path), synchronize_clocks=False, dejitter_timestamps=False
        )
        by = {s["info"]["name"][0]: s for s in streams}
        got = {row[0] for row in by["BenchMarkers"]["time_series"]}
        got_ts = by["BenchMarkers"]["time_stamps"]
        window = (stamps >= start) & (stamps < stop)
        lost = int(sum(lab not in got for lab in labels[window]))
        misfiled = int(np.count_nonzero((got_ts < start) | (got_ts >= stop)))
        eeg = by["BenchEEG"]["time_stamps"]
        row = {
            "run": run,
            "first_ms": (eeg[0] - start) * 1e3 if len(eeg) else None,
            "lost": lost,
            "misfiled": misfiled,
            "expected": int(window.sum()),
        }
        for name, key in (("BenchEEG", "tail_eeg_ms"), ("BenchLate", "tail_late_ms")):
            ts = by[name]["time_stamps"]
            all_ts = pushed[name]
            last = ts[-1] if len(ts) else start
            tail = all_ts[(all_ts > last) & (all_ts < stop)]
            row[key] = len(tail) / (EEG_RATE if name == "BenchEEG" else LATE_RATE) * 1e3
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=float, default=3.0)
    parser.add_argument("--lag", type=float, default=1.0)
    parser.add_argument("--only", choices=("lr", "ours"), default=None)
    parser.add_argument(
        "--client", choices=("lrc", "raw"), nargs="+", default=["lrc", "raw"],
        help="lrc: labrecorder-controller (never reads OK); raw: waits for each OK",
    )  # fmt: skip
    args = parser.parse_args()
    results = {}
    for client, which in itertools.product(args.client, ("lr", "ours")):
        if args.only and which != args.only:
            continue
        eeg = Source("BenchEEG", 8, EEG_RATE, 0.0)
        late = Source("BenchLate", 4, LATE_RATE, args.lag)
        markers = Markers()
        time.sleep(1.0)
        root = Path(tempfile.mkdtemp(prefix=f"run_cuts_{which}_"))
        run = _run_lr if which == "lr" else _run_ours
        times, files = run(root, markers, args.block, client)
        time.sleep(args.lag + 0.5)  # what the late stream owes is pushed
        sent = markers.stop()
        pushed = {"BenchEEG": eeg.stop(), "BenchLate": late.stop()}
        rows = _analyse(times, files, sent, pushed)
        for kind in ("start", "stop"):
            for row, took in zip(rows, REPLIES.pop(kind, []), strict=False):
                row[f"{kind}_reply_ms"] = took * 1e3
        results[f"{which} ({client})"] = rows
    print(f"machine: {machine()}; load {loadavg()}")
    print(f"block {args.block} s, late stream lag {args.lag} s")
    print("| recorder (client) | run | start→first sample | markers lost | misfiled "
          "| tail lost EEG | tail lost late stream | start reply | stop reply |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for which, rows in results.items():
        for r in rows:
            first = "no sample" if r["first_ms"] is None else f"{r['first_ms']:.0f} ms"
            print(
                f"| {which} | {r['run']} | {first} "
                f"| {r['lost']}/{r['expected']} | {r['misfiled']} "
                f"| {r['tail_eeg_ms']:.0f} ms | {r['tail_late_ms']:.0f} ms "
                f"| {_ms(r.get('start_reply_ms'))} | {_ms(r.get('stop_reply_ms'))} |"
            )


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


if __name__ == "__main__":
    main()
