"""Steady-state CPU of ``lsl-session record`` beside LabRecorder, both recording at once.

For each load of ``recorder_vs_labrecorder.py`` one outlet process is started; then,
``--repeats`` times, two recorders record the same streams *concurrently*:

  cli  ``python -m lsl_session record --stream <pred> --no-process
       --status-interval S`` (a new session under a temporary root; the live
       status lines go to stderr, as in a terminal);
  lr   the ``labrecorder`` wheel's ``Recording`` (``recorder_vs_labrecorder.py``'s
       ``_lr`` mode, in the LabRecorder venv under the benchmark cache folder).

After ``--warmup`` seconds (both recording), each process's CPU (user+sys, all
threads, from ``/proc/<pid>/stat``) is read, and again ``--window`` seconds later:
start-up and stop are excluded, and both see the same machine load at the same
time. The start order alternates between repeats; medians are reported. Peak RSS
comes from ``wait4``.

Run (from the repository, with the venv lsl_session is installed in):
  python benchmarks/record_cli_vs_labrecorder.py [--loads a,b,c,d] [--repeats 3]
      [--warmup 5] [--window 20] [--status-interval 1] [--json out.json]
      [--write-docs docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from _anchors import ensure_labrecorder, loadavg, machine  # noqa: E402
from recorder_vs_labrecorder import LOAD_LABEL, LOADS  # noqa: E402

RVL = HERE.with_name("recorder_vs_labrecorder.py")
DOC_BEGIN = "<!-- record_cli_vs_labrecorder: generated table begin -->"
DOC_END = "<!-- record_cli_vs_labrecorder: generated table end -->"
DOC_SECTION = "## `lsl-session record` beside LabRecorder (steady state)"


def proc_cpu(pid: int) -> float:
    """CPU seconds (user+sys, every thread) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_rusage(proc: subprocess.Popen, timeout: float) -> dict:
    """Wait for ``proc``; its exit code, CPU and peak RSS."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return {
                "rc": proc.returncode,
                "cpu_total_s": ru.ru_utime + ru.ru_stime,
                "peak_rss_mb": ru.ru_maxrss / 1024.0,
            }
        if time.monotonic() > deadline:
            proc.kill()
            timeout = 10.0
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def one_round(args, load: str, tag: str, work: Path, lr_py: Path, k: int) -> dict:
    """Both recorders at once; each one's CPU over the same window."""
    n_streams = LOADS[load][0]
    pred = f"starts-with(source_id,'lslbench-{tag}-{load}-')"
    root = work / f"root_{load}_{k}"
    cli_cmd = [
        sys.executable, "-m", "lsl_session", "record", "--root", str(root),
        "--name", f"bench{k}", "--stream", pred, "--no-process",
        "--status-interval", str(args.status_interval),
    ]  # fmt: skip
    lr_cmd = [
        str(lr_py), str(RVL), "_lr", "--out", str(work / f"lr_{load}_{k}.xdf"),
        "--pred", pred, "--n-streams", str(n_streams),
        "--duration", str(args.warmup + args.window + 2.0),
        "--result", str(work / f"lr_{load}_{k}.json"),
    ]  # fmt: skip
    order = ("cli", "lr") if k % 2 == 0 else ("lr", "cli")
    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    for who in order:
        logs[who] = open(work / f"{who}_{load}_{k}.log", "wb")
        procs[who] = subprocess.Popen(
            cli_cmd if who == "cli" else lr_cmd,
            stdout=logs[who],
            stderr=subprocess.STDOUT,
        )
    la = loadavg()
    try:
        time.sleep(args.warmup)
        c0 = {who: proc_cpu(p.pid) for who, p in procs.items()}
        time.sleep(args.window)
        c1 = {who: proc_cpu(p.pid) for who, p in procs.items()}
        procs["cli"].send_signal(signal.SIGINT)
        done = {who: wait_rusage(p, 60.0) for who, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for fh in logs.values():
            fh.close()
    row = {"load": load, "round": k, "order": order, "loadavg_before": la}
    for who in procs:
        row[who] = {"window_cpu_s": c1[who] - c0[who], **done[who]}
    status_lines = (work / f"cli_{load}_{k}.log").read_text(errors="replace")
    row["cli"]["status_lines"] = status_lines.count(" samples  ")
    return row


def bench_load(args, load: str, work: Path, lr_py: Path) -> list[dict]:
    tag = f"c{os.getpid()}{int(time.time()) % 100000}"
    stamps = work / f"stamps_{load}"
    stamps.mkdir()
    ready = work / f"ready_{load}"
    outlets = subprocess.Popen(
        [
            sys.executable, str(RVL), "_outlets", "--load", load, "--tag", tag,
            "--ready", str(ready), "--stamps-dir", str(stamps),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows = []
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            if outlets.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"outlet process for load {load} did not start")
            time.sleep(0.05)
        time.sleep(1.0)
        for k in range(args.repeats):
            row = one_round(args, load, tag, work, lr_py, k)
            print(
                f"[{load} #{k + 1}] cli {row['cli']['window_cpu_s']:.2f} s,"
                f" LabRecorder {row['lr']['window_cpu_s']:.2f} s"
                f" (rc {row['cli']['rc']}/{row['lr']['rc']})",
                flush=True,
            )
            rows.append(row)
    finally:
        outlets.send_signal(signal.SIGTERM)
        outlets.wait(60)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    out = [
        f"Run {meta['date']} — `{meta['command']}`\n",
        f"- Machine: {meta['machine']}; lsl_session {meta['git']}, pylsl"
        f" {meta['pylsl']}; LabRecorder 1.0.0rc0 (liblsl 1.17.5)",
        f"- Load average: before {meta['load_before']}, after {meta['load_after']}"
        " (2 cores shared with other engineers' test runs).",
        f"- Both record the same outlets at the same time; CPU over {meta['window']:g} s"
        f" after a {meta['warmup']:g} s warm-up, {meta['repeats']} rounds with the"
        " start order alternating; medians (range). `lsl-session record` prints its"
        f" live status every {meta['status_interval']:g} s.\n",
        "| load | `lsl-session record` CPU s | LabRecorder CPU s | ratio (median of"
        " per-round ratios) | peak RSS cli / LR | exit codes |",
        "|---|---|---|---|---|---|",
    ]
    for load in meta["loads"]:
        rs = [r for r in rows if r["load"] == load]
        if not rs:
            continue
        cli = [r["cli"]["window_cpu_s"] for r in rs]
        lr = [r["lr"]["window_cpu_s"] for r in rs]
        ratios = [c / max(x, 1e-9) for c, x in zip(cli, lr, strict=True)]
        rss_c = max(r["cli"]["peak_rss_mb"] for r in rs)
        rss_l = max(r["lr"]["peak_rss_mb"] for r in rs)
        codes = sorted({(r["cli"]["rc"], r["lr"]["rc"]) for r in rs})
        out.append(
            f"| {LOAD_LABEL[load]} | {statistics.median(cli):.2f}"
            f" ({min(cli):.2f}–{max(cli):.2f}) | {statistics.median(lr):.2f}"
            f" ({min(lr):.2f}–{max(lr):.2f}) | **{statistics.median(ratios):.2f}**"
            f" ({min(ratios):.2f}–{max(ratios):.2f}) | {rss_c:.0f} / {rss_l:.0f} MB"
            f" | {', '.join(f'{a}/{b}' for a, b in codes)} |"
        )
    return "\n".join(out) + "\n"


def write_docs(doc: Path, table: str) -> None:
    """Replace this script's generated block (or append its section)."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{DOC_BEGIN}\n{table}{DOC_END}"
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{DOC_SECTION}\n\n{block}\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", default="a,b,c,d")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--status-interval", type=float, default=1.0)
    parser.add_argument("--lr-venv", type=Path, default=None)
    parser.add_argument("--json")
    parser.add_argument("--write-docs")
    parser.add_argument("--from-json")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        table = markdown(saved["rows"], saved["meta"])
    else:
        import pylsl
        from recorder_vs_labrecorder import git_state

        lr_py = ensure_labrecorder(args.lr_venv)
        loads = [x for x in args.loads.split(",") if x]
        meta = {
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python benchmarks/record_cli_vs_labrecorder.py "
            + " ".join(sys.argv[1:]),
            "machine": machine(),
            "pylsl": pylsl.__version__,
            "git": git_state(),
            "loads": loads,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "window": args.window,
            "status_interval": args.status_interval,
            "load_before": loadavg(),
        }
        work = Path(tempfile.mkdtemp(prefix="cli_vs_lr_"))
        rows: list[dict] = []
        try:
            for load in loads:
                rows.extend(bench_load(args, load, work, lr_py))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        meta["load_after"] = loadavg()
        table = markdown(rows, meta)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"meta": meta, "rows": rows}, indent=1, default=str)
            )
    print(table)
    if args.write_docs:
        write_docs(Path(args.write_docs), table)


if __name__ == "__main__":
    main()
