"""Steady-state CPU of recording 32 streams × 32 ch × 500 Hz: who costs what.

An ablation next to ``recorder_vs_labrecorder.py``: one outlet process (that script's
``_outlets`` mode, load ``a``) and, one after the other, several recording processes.
Each resolves the 32 streams, starts recording, waits ``--warmup`` seconds and then
measures its own CPU (user+sys) over ``--window`` seconds — start-up and stop excluded.

Modes:
  pylsl        32 pylsl inlets, ``pull_chunk(dest_obj=...)`` every 0.5 s, nothing else
  pylsl-write  the same plus ``encode_samples`` and ``os.write`` of every chunk
  labrecorder  ``labrecorder.Recording`` (run with the LabRecorder venv's python)
  ours         ``lsl_session.recorder.Recorder``
  ours-lean    ours without clock offsets, fsync/boundaries and late-stream resolver
               (patched out: an ablation only, not a usable recorder)
  ours-no-offsets, ours-no-housekeeping, ours-no-resolver
               ours without one of the three

With ``--beside-labrecorder`` every mode runs *at the same time as* a LabRecorder
process on the same outlets and the per-round ratio mode / LabRecorder is
reported: both see the same machine load, which on a shared machine matters
more than anything measured here.

Run (from the repository, with the venv lsl_session is installed in; the
LabRecorder venv is created under ~/.cache/lsl-session-bench on first use):
  python benchmarks/recorder_steady_state.py [--rounds 2]
      [--modes pylsl,pylsl-write,labrecorder,ours,ours-lean] [--lr-venv DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from _anchors import ensure_labrecorder, loadavg, machine  # noqa: E402

N_STREAMS, N_CH = 32, 32


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _pylsl_pullers(infos, write: bool, out: Path):
    import numpy as np
    import pylsl

    from lsl_session.xdf.writer import encode_samples

    inlets = [pylsl.StreamInlet(i, max_buflen=360, recover=True) for i in infos]
    for inlet in inlets:
        inlet.open_stream(timeout=5.0)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lock, stop = threading.Lock(), threading.Event()

    def pull(inlet) -> None:
        buf = np.empty((1024, N_CH), np.float32)
        while not stop.wait(0.5):
            values, stamps = inlet.pull_chunk(
                timeout=0.0, max_samples=1024, dest_obj=buf, as_numpy=True
            )
            if write and len(stamps):
                data = encode_samples(1, np.asarray(stamps), values, "float32")
                with lock:
                    os.write(fd, data)

    threads = [threading.Thread(target=pull, args=(i,), daemon=True) for i in inlets]
    for t in threads:
        t.start()

    def close() -> None:
        stop.set()
        for t in threads:
            t.join()
        os.close(fd)

    return close


def _ours(infos, without: set[str], out: Path):
    from lsl_session.recorder import Recorder, output, stream

    if "offsets" in without:
        stream.PooledStream.poll_offset = lambda self, now, force=False: False
    if "housekeeping" in without:
        output.XdfOutput.flush = lambda self: None
        output.XdfOutput.write_boundary = lambda self: None
    queries = [f"source_id='{i.source_id()}'" for i in infos]
    rec = Recorder(out, streams=queries, initial_wait=10.0)
    rec.start()
    if "resolver" in without:  # no continuous resolver, no rescans
        rec.pool.rescan_interval = float("inf")
        rec.pool._resolver = None  # destroys liblsl's continuous resolver
    return rec.stop


def _labrecorder(infos, out: Path):
    import labrecorder

    rec = labrecorder.Recording(str(out), infos, [], {}, True)

    def close() -> None:
        nonlocal rec
        rec.stop()
        del rec

    return close


def run_mode(args: argparse.Namespace) -> None:
    """Child process: record in ``args.mode`` and print the window's CPU as JSON."""
    import pylsl

    sys.path.insert(0, str(ROOT))
    pred = f"starts-with(source_id,'lslbench-{args.tag}-a-')"
    infos = pylsl.resolve_bypred(pred, minimum=N_STREAMS, timeout=15.0)
    if len(infos) < N_STREAMS:
        raise SystemExit(f"resolved {len(infos)} of {N_STREAMS} streams")
    out = Path(args.out)
    if args.mode in ("pylsl", "pylsl-write"):
        close = _pylsl_pullers(infos, args.mode == "pylsl-write", out)
    elif args.mode == "ours-lean":
        close = _ours(infos, {"offsets", "housekeeping", "resolver"}, out)
    elif args.mode.startswith("ours"):
        close = _ours(infos, set(args.mode.split("-no-")[1:]), out)
    elif args.mode == "labrecorder":
        close = _labrecorder(infos, out)
    else:
        raise SystemExit(f"unknown mode {args.mode!r}")
    time.sleep(args.warmup)
    c0 = _cpu()
    time.sleep(args.window)
    cpu = _cpu() - c0
    close()
    print(json.dumps({"mode": args.mode, "cpu_s": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes", default="pylsl,pylsl-write,labrecorder,ours,ours-lean"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--lr-venv", type=Path, default=None)
    parser.add_argument(
        "--beside-labrecorder",
        action="store_true",
        help="run each mode concurrently with LabRecorder; report ratios",
    )
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        return run_mode(args)

    lr_python = (
        str(ensure_labrecorder(args.lr_venv))
        if "labrecorder" in args.modes.split(",") or args.beside_labrecorder
        else ""
    )
    print(f"machine: {machine()}; load average {loadavg()}", flush=True)
    tag = f"ss{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="steady_"))
    (work / "stamps").mkdir()
    outlets = subprocess.Popen(
        [
            sys.executable,
            str(HERE.with_name("recorder_vs_labrecorder.py")),
            "_outlets",
            "--load",
            "a",
            "--tag",
            tag,
            "--ready",
            str(work / "ready"),
            "--stamps-dir",
            str(work / "stamps"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, list[float]] = {}
    try:
        deadline = time.monotonic() + 20
        while not (work / "ready").exists():
            if outlets.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the outlet process did not start")
            time.sleep(0.05)
        modes = [m for m in args.modes.split(",") if m]
        if args.beside_labrecorder:
            modes = [m for m in modes if m != "labrecorder"]

        def command(mode: str, k: int, suffix: str = "") -> list[str]:
            py = lr_python if mode == "labrecorder" else sys.executable
            cmd = [py, str(HERE), "--mode", mode, "--tag", tag]
            cmd += ["--out", str(work / f"{mode}_{k}{suffix}.xdf")]
            return [*cmd, "--warmup", str(args.warmup), "--window", str(args.window)]

        def cpu_of(proc: subprocess.Popen) -> float:
            out, _ = proc.communicate(timeout=args.warmup + args.window + 60)
            return json.loads(out.strip().splitlines()[-1])["cpu_s"]

        for k in range(args.rounds):
            for mode in modes if k % 2 == 0 else modes[::-1]:
                if args.beside_labrecorder:
                    pair = [
                        subprocess.Popen(
                            command(m, k, "_pair"),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                            text=True,
                        )
                        for m in (mode, "labrecorder")
                    ]
                    cpu, lr_cpu = (cpu_of(p) for p in pair)
                    results.setdefault(mode, []).append(cpu / lr_cpu)
                    print(
                        f"round {k + 1} {mode:<12} {cpu:.3f} s beside LabRecorder"
                        f" {lr_cpu:.3f} s: {cpu / lr_cpu:.3f}",
                        flush=True,
                    )
                    continue
                proc = subprocess.run(
                    command(mode, k), capture_output=True, text=True, check=True
                )
                cpu = json.loads(proc.stdout.strip().splitlines()[-1])["cpu_s"]
                results.setdefault(mode, []).append(cpu)
                print(f"round {k + 1} {mode:<12} {cpu:.3f} s", flush=True)
    finally:
        outlets.terminate()
        outlets.wait(60)
    shutil.rmtree(work, ignore_errors=True)
    what = "CPU ratio to LabRecorder" if args.beside_labrecorder else "CPU s"
    print(f"\n{what} per {args.window:g} s after a {args.warmup:g} s warm-up:\n")
    print(f"| process | runs | {what}: median (range) |")
    print("|---|---|---|")
    for mode, values in results.items():
        lo, hi = min(values), max(values)
        med = statistics.median(values)
        print(f"| {mode} | {len(values)} | {med:.2f} ({lo:.2f}–{hi:.2f}) |")
    print(f"\nload average after: {loadavg()}")


if __name__ == "__main__":
    main()
