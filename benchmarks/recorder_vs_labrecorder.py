"""Recorder vs LabRecorder (SPEC §14): CPU, loss, tail loss at stop, stop latency, RSS.

For each load of SPEC §14 (and issue #16's fourth) —
  (a) 32 streams x 32 ch x 500 Hz float32,
  (b) 1 stream x 64 ch x 10 kHz float32,
  (c) 1 stream x 8 ch x 100 kHz float32,
  (d) 8 streams x 64 ch x 2 kHz float32 (high-density EEG + aux) —
one outlet process is started (values = sample index, explicit stamps t0 + i/srate,
unique source ids per run and load; it saves every pushed stamp and the local clock
after its push returned to ``<load>_<k>.npy`` on SIGTERM). The same outlets are then
recorded for ``--duration`` seconds, one recorder after the other (never concurrently):

  ours  our ``lsl_session.recorder.Recorder`` in its own process (this script's
        ``_ours`` mode, run with this python): ``Recorder(path, streams=[one exact source_id
        predicate per stream]).start()``, sleep, ``stop()``. Stop latency = stop
        request -> ``stop()`` returned (footers written, fsynced, closed).
  lr    the ``labrecorder==1.0.0rc0`` wheel's Python extension in its own process
        (``_lr`` mode, run with the LabRecorder venv's python):
        ``Recording(path, pylsl.resolve_bypred(...))``, sleep, ``r.stop(); del r``.
        Stop latency = stop request -> ``del r`` returned (footers are written only
        when the object is destroyed).

CPU seconds (user+sys) and peak RSS of each recorder process come from ``os.wait4``
(the whole process life: interpreter start, imports, resolve, recording, stop,
exit); the driver also reports the CPU it used between the start request and the
finished stop ("window CPU"). Files are read with ``lsl_session.xdf.reader.load_raw``
(raw stamps: no clock sync, no dejitter).

Loss is counted per stream against what the outlet pushed: the window runs from the
first sample in the file to the last sample whose push had returned before the stop
request. ``lost`` = index gaps inside the window + the missing tail; ``tail`` = pushed
before the stop request but not in the file (also in ms of data).

The LabRecorder venv is created on first use under the benchmark cache folder
(``~/.cache/lsl-session-bench/labrecorder-1.0.0rc0``; see ``_anchors.py``).

Run (from the repository, with the venv lsl_session is installed in):
  python benchmarks/recorder_vs_labrecorder.py [--duration 20] [--repeats 3]
      [--loads a,b,c,d] [--recorders ours,lr] [--lr-venv DIR] [--workdir DIR]
      [--keep] [--json results.json] [--write-docs docs/benchmarks.md]
      [--py-spy OUTDIR]   # also profile our recorder with py-spy (raw collapsed stacks)
  python benchmarks/recorder_vs_labrecorder.py --from-json results.json [--write-docs ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
from _anchors import ensure_labrecorder, loadavg, machine  # noqa: E402

#: name -> (streams, channels, rate)
LOADS = {
    "a": (32, 32, 500.0),
    "b": (1, 64, 10_000.0),
    "c": (1, 8, 100_000.0),
    "d": (8, 64, 2_000.0),
}
LOAD_LABEL = {
    "a": "32 streams × 32 ch × 500 Hz",
    "b": "1 stream × 64 ch × 10 kHz",
    "c": "1 stream × 8 ch × 100 kHz",
    "d": "8 streams × 64 ch × 2 kHz",
}
DOC_SECTION = "## Recorder vs LabRecorder"
DOC_BEGIN = "<!-- recorder_vs_labrecorder: generated table begin -->"
DOC_END = "<!-- recorder_vs_labrecorder: generated table end -->"


def source_id(tag: str, load: str, k: int) -> str:
    return f"lslbench-{tag}-{load}-{k:02d}"


# --------------------------------------------------------------------- outlets
def run_outlets(args: argparse.Namespace) -> None:
    """Push the load until SIGTERM, then save every stamp + push clock per stream."""
    import numpy as np
    import pylsl

    n_streams, n_ch, srate = LOADS[args.load]
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    outlets = []
    for k in range(n_streams):
        info = pylsl.StreamInfo(
            f"bench_{args.load}_{k:02d}",
            "EEG",
            n_ch,
            srate,
            pylsl.cf_float32,
            source_id(args.tag, args.load, k),
        )
        outlets.append(pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360))
    # per stream: list of (first index, count, push-returned clock)
    log: list[list[tuple[int, int, float]]] = [[] for _ in outlets]
    sent = 0
    t0 = pylsl.local_clock() + 0.01
    Path(args.ready).write_text(f"{t0!r}\n")
    tick = 0.005
    while not stop:
        now = pylsl.local_clock()
        due = int((now - t0) * srate) + 1
        if due > sent:
            idx = np.arange(sent, due)
            stamps = t0 + idx / srate
            values = np.repeat(idx.astype(np.float32)[:, None], n_ch, axis=1)
            for k, outlet in enumerate(outlets):
                outlet.push_chunk(values, stamps)
                log[k].append((sent, due - sent, pylsl.local_clock()))
            sent = due
        time.sleep(tick)
    out = Path(args.stamps_dir)
    for k in range(n_streams):
        clocks = (
            np.concatenate([np.full(n, c) for _, n, c in log[k]])
            if log[k]
            else np.empty(0)
        )
        stamps = t0 + np.arange(clocks.size) / srate
        np.save(out / f"{args.load}_{k:02d}.npy", np.column_stack([stamps, clocks]))
    # outlets are destroyed at exit


# ------------------------------------------------------------ recorder drivers
def _self_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def task_cpu() -> dict[int, float]:
    """CPU seconds (user+sys) of every thread of this process, by native id."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, grouped by role (thread name)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    groups: dict[str, float] = {}
    for tid, cpu in task_cpu().items():
        name = names.get(tid, "native (liblsl)")
        role = name.split("-", 1)[0] if "-" in name else name
        groups[role] = groups.get(role, 0.0) + cpu
    return {k: round(v, 3) for k, v in sorted(groups.items())}


def per_thread_cpu() -> list[float]:
    """CPU seconds of every thread of this process, largest first.

    liblsl's threads carry no names, so the two recorders are compared by the
    shape of this list (e.g. 32 receive threads of similar cost).
    """
    return sorted(task_cpu().values(), reverse=True)


def run_ours(args: argparse.Namespace) -> None:
    """Record the queries with lsl_session's Recorder; write timings as JSON."""
    import pylsl

    from lsl_session.recorder import Recorder, RecorderTiming

    queries = json.loads(args.queries)
    timing = RecorderTiming()
    if args.pull_interval:  # experiments only
        timing.pull_interval = args.pull_interval
    cpu0 = _self_cpu()
    t_start_req = pylsl.local_clock()
    rec = Recorder(args.out, streams=queries, initial_wait=10.0, timing=timing)
    rec.start()
    t_started = pylsl.local_clock()
    cpu_started = _self_cpu()
    time.sleep(args.duration)
    cpu_steady = _self_cpu() - cpu_started
    threads = thread_cpu()
    native = per_thread_cpu()
    t_stop_req = pylsl.local_clock()
    summary = rec.stop()
    t_stopped = pylsl.local_clock()
    cpu1 = _self_cpu()
    Path(args.result).write_text(
        json.dumps(
            {
                "start_request": t_start_req,
                "started": t_started,
                "stop_request": t_stop_req,
                "stop_returned": t_stopped,
                "file_complete": t_stopped,
                "recorder_stop_clock": rec.stop_clock,
                "window_cpu_s": cpu1 - cpu0,
                "steady_cpu_s": cpu_steady,
                "start_cpu_s": cpu_started - cpu0,
                "thread_cpu_before_stop": threads,
                "per_thread_cpu_before_stop": native,
                "n_streams": len(summary.get("streams", [])),
                "summary_sample_counts": [
                    s["sample_count"] for s in summary["streams"]
                ],
            }
        )
    )


def run_lr(args: argparse.Namespace) -> None:
    """Record with the labrecorder extension (runs in the LabRecorder venv)."""
    import labrecorder
    import pylsl

    cpu0 = _self_cpu()
    infos = pylsl.resolve_bypred(args.pred, minimum=args.n_streams, timeout=15.0)
    if len(infos) < args.n_streams:
        raise SystemExit(f"resolved {len(infos)} of {args.n_streams} streams")
    t_start_req = pylsl.local_clock()
    r = labrecorder.Recording(args.out, infos, [], {}, True)
    t_started = pylsl.local_clock()
    cpu_started = _self_cpu()
    time.sleep(args.duration)
    cpu_steady = _self_cpu() - cpu_started
    native = per_thread_cpu()
    t_stop_req = pylsl.local_clock()
    r.stop()
    t_stop_returned = pylsl.local_clock()
    del r
    t_deleted = pylsl.local_clock()
    cpu1 = _self_cpu()
    Path(args.result).write_text(
        json.dumps(
            {
                "start_request": t_start_req,
                "started": t_started,
                "stop_request": t_stop_req,
                "stop_returned": t_stop_returned,
                "file_complete": t_deleted,
                "window_cpu_s": cpu1 - cpu0,
                "steady_cpu_s": cpu_steady,
                "start_cpu_s": cpu_started - cpu0,
                "per_thread_cpu_before_stop": native,
                "n_streams": len(infos),
            }
        )
    )


# ------------------------------------------------------------- orchestration
def run_child(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run a recorder process; its CPU and peak RSS via wait4."""
    t0 = time.monotonic()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "wall_s": time.monotonic() - t0,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "peak_rss_mb": ru.ru_maxrss / 1024.0,
    }


def analyse(xdf: Path, pushed: dict[str, object], timing: dict, srate: float) -> dict:
    """Compare the file with what the outlets pushed."""
    import numpy as np

    from lsl_session.xdf.reader import load_raw

    f = load_raw(xdf)
    by_sid = {s.info.get("source_id"): s for s in f.streams.values()}
    stop = timing["stop_request"]
    tot = dict(
        in_window=0,
        recorded=0,
        lost=0,
        gaps=0,
        tail=0,
        dup=0,
        after_stop=0,
        bad_stamps=0,
        missing_streams=0,
        no_footer=0,
        footer_mismatch=0,
    )
    tail_ms_max = 0.0
    last_age_ms_max = 0.0
    start_delay = []
    for sid, arr in pushed.items():
        stamps, clocks = arr[:, 0], arr[:, 1]
        p_before = int(np.searchsorted(clocks, stop, side="left"))  # pushed before stop
        s = by_sid.get(sid)
        if s is None or s.sample_count == 0:
            tot["missing_streams"] += 1
            continue
        idx = np.asarray(s.time_series)[:, 0].astype(np.int64)
        tot["recorded"] += idx.size
        uniq = np.unique(idx)
        tot["dup"] += idx.size - uniq.size
        ok = (idx >= 0) & (idx < stamps.size)
        tot["bad_stamps"] += int(np.count_nonzero(~ok)) + int(
            np.count_nonzero(s.time_stamps[ok] != stamps[idx[ok]])
        )
        first = int(uniq[0])
        last = int(uniq[-1])
        in_win = max(0, p_before - first)
        top = min(last, p_before - 1)
        got_in_win = int(np.count_nonzero(uniq <= top))
        gaps = (top - first + 1) - got_in_win if top >= first else 0
        tail = max(0, (p_before - 1) - last)
        tot["in_window"] += in_win
        tot["gaps"] += gaps
        tot["tail"] += tail
        tot["lost"] += gaps + tail
        tot["after_stop"] += int(np.count_nonzero(uniq >= p_before))
        tail_ms_max = max(tail_ms_max, tail / srate * 1000.0)
        last_age_ms_max = max(
            last_age_ms_max, (stop - clocks[min(last, clocks.size - 1)]) * 1000.0
        )
        start_delay.append(clocks[first] - timing["start_request"])
        if s.footer is None:
            tot["no_footer"] += 1
        elif s.footer.get("sample_count") != s.sample_count:
            tot["footer_mismatch"] += 1
    tot.update(
        tail_ms_max=tail_ms_max,
        last_sample_age_ms_max=last_age_ms_max,
        first_sample_after_start_s=max(start_delay) if start_delay else None,
        file_mb=xdf.stat().st_size / 1e6,
        problems=f.problems[:5],
        streams_in_file=len(f.streams),
    )
    return tot


def ours_timing() -> str:
    from lsl_session.recorder import RecorderTiming

    t = RecorderTiming()
    return ", ".join(f"{k}={getattr(t, k)}" for k in t.__slots__)


def git_state() -> str:
    def git(*a: str) -> str:
        r = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True)
        return r.stdout.strip()

    dirty = git("status", "--porcelain", "--", "lsl_session/recorder")
    return git("rev-parse", "--short", "HEAD") + (
        " + uncommitted lsl_session/recorder changes" if dirty else ""
    )


def ours_command(
    xdf: Path, sids: list[str], duration: float, result: Path
) -> list[str]:
    """The command line of one run of our recorder (this script's ``_ours`` mode)."""
    queries = json.dumps([f"source_id='{s}'" for s in sids])
    return [
        sys.executable,
        str(HERE),
        "_ours",
        "--out",
        str(xdf),
        "--queries",
        queries,
        "--duration",
        str(duration),
        "--result",
        str(result),
    ]


def bench_load(load: str, args, work: Path, tag: str, lr_py: Path) -> list[dict]:
    import numpy as np

    n_streams, _, srate = LOADS[load]
    stamps_dir = work / f"stamps_{load}"
    stamps_dir.mkdir()
    ready = work / f"ready_{load}"
    outlet_log = open(work / f"outlets_{load}.log", "wb")
    outlets = subprocess.Popen(
        [
            sys.executable,
            str(HERE),
            "_outlets",
            "--load",
            load,
            "--tag",
            tag,
            "--ready",
            str(ready),
            "--stamps-dir",
            str(stamps_dir),
        ],
        stdout=outlet_log,
        stderr=subprocess.STDOUT,
    )
    rows = []
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            if outlets.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"outlet process for load {load} did not start")
            time.sleep(0.05)
        time.sleep(1.0)
        sids = [source_id(tag, load, k) for k in range(n_streams)]
        # alternate the order (AB, BA, ...): the first recorder on fresh outlets
        # was measured to pay up to 0.3 s more CPU than the second
        runs = [
            (rep, who)
            for rep in range(args.repeats)
            for who in (args.recorders if rep % 2 == 0 else args.recorders[::-1])
        ]
        for rep, who in runs:
            xdf = work / f"{who}_{load}_{rep}.xdf"
            result = work / f"{who}_{load}_{rep}.json"
            if who == "ours":
                cmd = ours_command(xdf, sids, args.duration, result)
            else:
                pred = f"starts-with(source_id,'lslbench-{tag}-{load}-')"
                cmd = [
                    str(lr_py),
                    str(HERE),
                    "_lr",
                    "--out",
                    str(xdf),
                    "--pred",
                    pred,
                    "--n-streams",
                    str(n_streams),
                    "--duration",
                    str(args.duration),
                    "--result",
                    str(result),
                ]
            la0 = loadavg()
            print(
                f"[{load}/{who} #{rep + 1}] recording {args.duration:g} s (load avg {la0})",
                flush=True,
            )
            log = work / f"{who}_{load}_{rep}.log"
            proc = run_child(cmd, log)
            proc["loadavg_before"] = la0
            if proc["rc"] != 0 or not result.exists():
                print(log.read_text()[-3000:])
                rows.append(
                    {
                        "load": load,
                        "recorder": who,
                        "repeat": rep,
                        **proc,
                        "failed": True,
                    }
                )
                continue
            rows.append(
                {
                    "load": load,
                    "recorder": who,
                    "repeat": rep,
                    **proc,
                    **json.loads(result.read_text()),
                    "xdf": str(xdf),
                }
            )
            time.sleep(1.0)
        if args.py_spy and "ours" in args.recorders:
            rows.extend(profile_ours(load, args, work, sids))
    finally:
        outlets.send_signal(signal.SIGTERM)
        outlets.wait(60)
        outlet_log.close()
    pushed = {
        sid: np.load(stamps_dir / f"{load}_{k:02d}.npy") for k, sid in enumerate(sids)
    }
    for row in rows:
        if row.get("failed") or row.get("profiled"):
            continue
        row.update(analyse(Path(row["xdf"]), pushed, row, srate))
        row["stop_latency_s"] = row["file_complete"] - row["stop_request"]
        if not args.keep:
            Path(row["xdf"]).unlink()
    return rows


def profile_ours(load: str, args, work: Path, sids: list[str]) -> list[dict]:
    """Re-run our recorder under py-spy (all threads, raw collapsed stacks)."""
    out = Path(args.py_spy)
    out.mkdir(parents=True, exist_ok=True)
    pyspy = Path(sys.executable).parent / "py-spy"
    xdf = work / f"ours_{load}_pyspy.xdf"
    cmd = [
        str(pyspy),
        "record",
        "--format",
        "raw",
        "--rate",
        "200",
        "--threads",
        "--nonblocking",
        "-o",
        str(out / f"ours_{load}.txt"),
        "--",
        *ours_command(xdf, sids, args.duration, work / f"ours_{load}_pyspy.json"),
    ]
    print(f"[{load}/ours] py-spy profile run", flush=True)
    proc = run_child(cmd, work / f"pyspy_{load}.log")
    xdf.unlink(missing_ok=True)
    return [{"load": load, "recorder": "ours+py-spy", "profiled": True, **proc}]


# --------------------------------------------------------------------- report
def fmt_ratio(ours, lr) -> str:
    if ours is None or lr is None:
        return "–"
    if lr == 0:
        return "–" if ours == 0 else "∞"
    return f"{ours / lr:.3g}"


_WORST = (
    "lost",
    "gaps",
    "tail",
    "tail_ms_max",
    "peak_rss_mb",
    "missing_streams",
    "no_footer",
    "bad_stamps",
    "dup",
)
_MEDIAN = (
    "cpu_s",
    "window_cpu_s",
    "start_cpu_s",
    "steady_cpu_s",
    "in_window",
    "stop_latency_s",
    "file_mb",
)


def aggregate(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (load, recorder): medians of costs, the worst of losses, and ranges."""
    import statistics

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if not r.get("profiled"):
            groups.setdefault((r["load"], r["recorder"]), []).append(r)
    out = {}
    for key, runs in groups.items():
        ok = [r for r in runs if not r.get("failed")]
        if not ok:
            out[key] = {"failed": True, "rc": runs[0].get("rc")}
            continue
        agg = {"runs": len(ok), "failed_runs": len(runs) - len(ok)}
        for k in _WORST:
            agg[k] = max(r[k] for r in ok)
        for r in ok:
            if "start_cpu_s" in r:
                r["stop_cpu_s"] = (
                    r["window_cpu_s"] - r["start_cpu_s"] - r["steady_cpu_s"]
                )
        for k in (*_MEDIAN, "stop_cpu_s"):
            values = [r[k] for r in ok if k in r]
            if values:
                agg[k] = statistics.median(values)
                agg[k + "_range"] = (min(values), max(values))
        agg["thread_cpu_before_stop"] = ok[0].get("thread_cpu_before_stop", {})
        out[key] = agg
    return out


def _rng(r: dict, key: str, fmt: str) -> str:
    lo, hi = r[key + "_range"]
    mid = format(r[key], fmt)
    return mid if r["runs"] == 1 else f"{mid} ({format(lo, fmt)}–{format(hi, fmt)})"


def markdown(rows: list[dict], meta: dict) -> str:
    out = []
    out.append(f"Run {meta['date']} — `{meta['command']}`\n")
    out.append(
        f"- Machine: {meta.get('machine') or meta['uname']}; liblsl via pylsl"
        f" {meta['pylsl']} (ours, numpy {meta.get('numpy', '?')}) / labrecorder"
        " 1.0.0rc0 (liblsl 1.17.5)"
    )
    if "ours_timing" in meta:
        out.append(
            f"- lsl_session at {meta['git']}; `RecorderTiming({meta['ours_timing']})`"
        )
    out.append(
        f"- Load average: before {meta['load_before']}, after {meta['load_after']}"
        f" (2 cores shared with other work); per-run load in the JSON."
    )
    out.append(
        f"- Each recorder records {meta['duration']:g} s on the same outlet process"
        f" (one per load, started fresh for each load), {meta.get('repeats', 1)} times"
        f" each in alternating order (AB, BA, ...), never concurrently. Costs are"
        f" medians (range in brackets); losses, tails and RSS are the worst run.\n"
    )
    out.append(
        "| load | recorder | CPU s (process) | CPU s (start→stop) | pushed in window"
        " | lost (gaps + tail) | tail at stop | stop latency | peak RSS | file |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    by = aggregate(rows)
    for load in meta["loads"]:
        for who in meta["recorders"]:
            r = by.get((load, who))
            name = "lsl_session" if who == "ours" else "LabRecorder"
            if r is None or r.get("failed"):
                out.append(
                    f"| {LOAD_LABEL[load]} | {name} | failed (rc {r and r.get('rc')}) |"
                    " | | | | | | |"
                )
                continue
            extra = ""
            if r["missing_streams"]:
                extra += f", {r['missing_streams']} stream(s) missing"
            if r["no_footer"]:
                extra += f", {r['no_footer']} without footer"
            if r["bad_stamps"]:
                extra += f", {r['bad_stamps']} bad stamps"
            if r["dup"]:
                extra += f", {r['dup']} duplicates"
            out.append(
                f"| {LOAD_LABEL[load]} | {name} | {_rng(r, 'cpu_s', '.2f')}"
                f" | {_rng(r, 'window_cpu_s', '.2f')}"
                f" | {int(r['in_window']):,} | {r['lost']:,} ({r['gaps']:,} + {r['tail']:,}){extra}"
                f" | {r['tail']:,} smp / {r['tail_ms_max']:.0f} ms"
                f" | {_rng(r, 'stop_latency_s', '.3f')} s | {r['peak_rss_mb']:.0f} MB"
                f" | {r['file_mb']:.1f} MB |"
            )
    if set(meta["recorders"]) == {"ours", "lr"}:
        out.append("\nRatios lsl_session / LabRecorder (< 1: we use less):\n")
        out.append(
            "| load | CPU (process) | CPU (start→stop) | lost | stop latency | peak RSS |"
        )
        out.append("|---|---|---|---|---|---|")
        for load in meta["loads"]:
            o, lr = by.get((load, "ours")), by.get((load, "lr"))
            if not o or not lr or o.get("failed") or lr.get("failed"):
                continue
            out.append(
                f"| {LOAD_LABEL[load]} | {fmt_ratio(o['cpu_s'], lr['cpu_s'])}"
                f" | {fmt_ratio(o['window_cpu_s'], lr['window_cpu_s'])}"
                f" | {o['lost']:,} vs {lr['lost']:,}"
                f" | {fmt_ratio(o['stop_latency_s'], lr['stop_latency_s'])}"
                f" | {fmt_ratio(o['peak_rss_mb'], lr['peak_rss_mb'])} |"
            )
    phases = [
        (load, who, by[(load, who)])
        for load in meta["loads"]
        for who in meta["recorders"]
        if (load, who) in by
        and not by[(load, who)].get("failed")
        and "start_cpu_s" in by[(load, who)]
    ]
    if phases:
        out.append(
            "\nCPU s by phase (medians). *start*: start request → `start()`/"
            "`Recording()` returned (includes the resolve); *recording*: the"
            f" {meta['duration']:g} s sleep; *stop*: the rest of the window."
            " LabRecorder opens its inlets in background threads, so its inlet"
            " set-up lands in *recording*; ours opens them before `start()` returns:\n"
        )
        out.append("| load | recorder | start | recording | stop |")
        out.append("|---|---|---|---|---|")
        for load, who, r in phases:
            name = "lsl_session" if who == "ours" else "LabRecorder"
            out.append(
                f"| {LOAD_LABEL[load]} | {name} | {r['start_cpu_s']:.2f}"
                f" | {r['steady_cpu_s']:.2f} | {r['stop_cpu_s']:.2f} |"
            )
    ours = [by.get((load, "ours")) for load in meta["loads"]]
    if any(r and not r.get("failed") for r in ours):
        out.append(
            "\nlsl_session CPU seconds by thread, read from /proc just before stop"
            " (the whole thread life; 10-ms tick resolution per thread):\n"
        )
        out.append("| load | thread group: CPU s |")
        out.append("|---|---|")
        for load, r in zip(meta["loads"], ours, strict=True):
            if r and not r.get("failed"):
                cells = ", ".join(
                    f"{k} {v:.2f}"
                    for k, v in r.get("thread_cpu_before_stop", {}).items()
                )
                out.append(f"| {LOAD_LABEL[load]} | {cells} |")
    return "\n".join(out) + "\n"


def write_docs(doc: Path, table: str) -> None:
    """Replace the generated block of our section; keep everything else intact."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{DOC_BEGIN}\n{table}{DOC_END}"
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        _, tail = rest.split(DOC_END, 1)
        text = head + block + tail
    elif DOC_SECTION in text:
        head, rest = text.split(DOC_SECTION, 1)
        nl = rest.find("\n## ")
        body, tail = (rest, "") if nl < 0 else (rest[: nl + 1], rest[nl + 1 :])
        text = (
            head
            + DOC_SECTION
            + body.rstrip("\n")
            + "\n\n"
            + block
            + "\n"
            + ("\n" + tail if tail else "")
        )
    else:
        text = text.rstrip("\n") + f"\n\n{DOC_SECTION}\n\n{block}\n"
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode")
    p = sub.add_parser("_outlets")
    p.add_argument("--load", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--stamps-dir", required=True)
    for name in ("_ours", "_lr"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--duration", type=float, required=True)
        p.add_argument("--result", required=True)
        p.add_argument("--queries")
        p.add_argument("--pred")
        p.add_argument("--n-streams", type=int)
        p.add_argument("--pull-interval", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--loads", default="a,b,c,d")
    parser.add_argument("--recorders", default="ours,lr")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per recorder and load, in alternating order; medians reported",
    )
    parser.add_argument(
        "--lr-venv",
        type=Path,
        default=None,
        help="LabRecorder venv (default: under ~/.cache/lsl-session-bench)",
    )
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="keep the XDF files")
    parser.add_argument("--json", help="write all figures to this JSON file")
    parser.add_argument("--write-docs", help="update the section in this markdown file")
    parser.add_argument("--py-spy", help="also profile our recorder; raw stacks here")
    parser.add_argument(
        "--from-json", help="only re-render the tables of a --json file"
    )
    args = parser.parse_args()
    if args.mode == "_outlets":
        return run_outlets(args)
    if args.mode == "_ours":
        return run_ours(args)
    if args.mode == "_lr":
        return run_lr(args)

    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        table = markdown(saved["rows"], saved["meta"])
        print(table)
        if args.write_docs:
            write_docs(Path(args.write_docs), table)
        return None

    import pylsl

    args.loads = [x for x in args.loads.split(",") if x]
    args.recorders = [x for x in args.recorders.split(",") if x]
    lr_py = ensure_labrecorder(args.lr_venv) if "lr" in args.recorders else None
    if args.py_spy and not (Path(sys.executable).parent / "py-spy").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True
        )
    meta = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python benchmarks/recorder_vs_labrecorder.py "
        + " ".join(sys.argv[1:]),
        "uname": " ".join(platform.uname()),
        "machine": machine(),
        "numpy": __import__("numpy").__version__,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "pylsl": pylsl.__version__,
        "duration": args.duration,
        "loads": args.loads,
        "recorders": args.recorders,
        "repeats": args.repeats,
        "load_before": loadavg(),
        "ours_timing": ours_timing(),
        "git": git_state(),
    }
    tag = f"{os.getpid()}{int(time.time()) % 100000}"
    work = Path(tempfile.mkdtemp(prefix="rec_vs_lr_", dir=args.workdir))
    rows: list[dict] = []
    try:
        for load in args.loads:
            rows.extend(bench_load(load, args, work, tag, lr_py))
    finally:
        if args.keep:
            print(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = loadavg()
    table = markdown(rows, meta)
    print(table)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "rows": rows}, indent=1, default=str)
        )
    if args.write_docs:
        write_docs(Path(args.write_docs), table)


if __name__ == "__main__":
    main()
