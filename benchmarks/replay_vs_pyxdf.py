"""Replay an XDF file as LSL: ``lsl-session replay`` vs ``pyxdf.cli.playback_lsl``.

Both tools replay the same generated recording (N numeric streams, 32 ch float32 at
500 Hz, plus a 4-Hz string marker stream) in their own process, waiting for a
consumer; this process is the consumer (one inlet per stream, pulling chunks).
Measured per tool: the replaying process's CPU time and wall time (``wait4``),
samples received vs recorded, the largest deviation of the received stamps from
the recorded ones after removing one constant shift (timing fidelity), and whether
the channel labels and a custom ``desc`` element arrive.

Usage (from a clone, in an environment with ``pip install -e ".[dev]"``)::

    python benchmarks/replay_vs_pyxdf.py [--streams 8] [--duration 20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl

from lsl_session.xdf import XdfWriter

CH, RATE, MARKER_RATE = 32, 500.0, 4.0


def _xml(name: str, stype: str, fmt: str, n: int, srate: float, sid: str) -> str:
    chans = "".join(
        f"<channel><label>C{k}</label><unit>microvolts</unit><type>{stype}</type></channel>"
        for k in range(n)
    )
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{stype}</type>'
        f"<channel_count>{n}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>{fmt}</channel_format><source_id>{sid}</source_id>"
        f"<desc><channels>{chans}</channels><custom><lab>bench</lab></custom></desc></info>"
    )


def make_recording(path: Path, token: str, n_streams: int, duration: float) -> dict:
    rng = np.random.default_rng(0)
    t = 100.0 + np.arange(int(duration * RATE)) / RATE
    truth = {}
    with XdfWriter(path) as w:
        for k in range(n_streams):
            sid = f"{token}_s{k}"
            w.write_stream_header(
                k + 1, _xml(f"{token}_eeg{k}", "EEG", "float32", CH, RATE, sid)
            )
            data = rng.normal(0, 10, (len(t), CH)).astype(np.float32)
            for a in range(0, len(t), 250):
                w.write_samples(k + 1, t[a : a + 250], data[a : a + 250])
            w.write_clock_offset(k + 1, t[0], 0.0)
            w.write_clock_offset(k + 1, t[-1], 0.0)
            truth[sid] = t
        mk = 100.0 + np.arange(int(duration * MARKER_RATE)) / MARKER_RATE + 0.013
        sid = f"{token}_mk"
        w.write_stream_header(99, _xml(f"{token}_mk", "Markers", "string", 1, 0, sid))
        w.write_samples(99, mk, [[f"m{i}"] for i in range(len(mk))])
        w.write_clock_offset(99, mk[0], 0.0)
        w.write_clock_offset(99, mk[-1], 0.0)
        w.write_stream_footers()
        truth[sid] = mk
    return truth


def run_tool(cmd: list[str], token: str, truth: dict) -> dict:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    infos = pylsl.resolve_bypred(f"starts-with(source_id,'{token}')", len(truth), 30.0)
    inlets = {i.source_id(): pylsl.StreamInlet(i, max_buflen=60) for i in infos}
    for inlet in inlets.values():
        inlet.open_stream(10.0)
    got = {sid: [] for sid in inlets}
    desc_ok = {}
    for sid, inlet in inlets.items():
        full = inlet.info(5.0)
        desc_ok[sid] = (
            full.desc().child("channels").child("channel").child_value("label") == "C0",
            full.desc().child("custom").child_value("lab") == "bench",
        )
    rusage = None
    while True:
        for sid, inlet in inlets.items():
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=100_000)
            if ts:
                got[sid].append(np.asarray(ts))
        if rusage is None:
            pid, _, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                rusage, wall, done_at = ru, time.monotonic() - start, time.monotonic()
        elif time.monotonic() - done_at > 2.0:
            break
        time.sleep(0.02)
    result = {"cpu_s": rusage.ru_utime + rusage.ru_stime, "wall_s": wall, "streams": {}}
    for sid, t in truth.items():
        stamps = np.concatenate(got.get(sid) or [np.zeros(0)])
        n = min(len(stamps), len(t))
        dev = None
        if n:
            shift = stamps[:n] - t[:n]
            dev = float(np.max(np.abs(shift - np.median(shift))))
        result["streams"][sid] = {
            "recorded": len(t), "received": len(stamps), "max_stamp_dev_ms": None if dev is None else dev * 1e3,
            "labels": bool(desc_ok.get(sid, (False,))[0]), "custom_desc": bool(desc_ok.get(sid, (False, False))[1]),
        }  # fmt: skip
    return result


def summarize(name: str, res: dict, n_streams: int) -> str:
    eeg = [v for k, v in res["streams"].items() if not k.endswith("_mk")]
    mk = next(v for k, v in res["streams"].items() if k.endswith("_mk"))
    rec = sum(v["recorded"] for v in eeg)
    got = sum(min(v["received"], v["recorded"]) for v in eeg)
    dev = max((v["max_stamp_dev_ms"] or 0) for v in eeg)
    return (
        f"| {name} | {res['cpu_s']:.2f} | {res['wall_s']:.1f} | {got}/{rec} |"
        f" {mk['received']}/{mk['recorded']} | {dev:.3f} | {mk['max_stamp_dev_ms'] or 0:.3f} |"
        f" {all(v['labels'] for v in res['streams'].values())} |"
        f" {all(v['custom_desc'] for v in res['streams'].values())} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="replay_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    results = {}
    for name in ("lsl-session replay", "pyxdf playback_lsl"):
        token = f"rb{uuid.uuid4().hex[:8]}"
        path = work / f"{token}.xdf"
        truth = make_recording(path, token, args.streams, args.duration)
        if name.startswith("lsl-session"):
            cmd = [
                sys.executable,
                "-m",
                "lsl_session",
                "replay",
                str(path),
                "--wait-for-consumers",
                "60",
            ]
        else:
            cmd = [
                sys.executable,
                "-m",
                "pyxdf.cli.playback_lsl",
                str(path),
                "--wait_for_consumer",
            ]
        results[name] = run_tool(cmd, token, truth)
        rows.append(summarize(name, results[name], args.streams))
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()},"
          f" pylsl {pylsl.__version__}; {args.streams} x {CH} ch float32 @ {RATE:g} Hz + markers,"
          f" {args.duration:g} s")  # fmt: skip
    print("| tool | CPU s | wall s | numeric samples received | markers received |"
          " max stamp deviation, numeric (ms) | markers (ms) | labels | custom desc |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
