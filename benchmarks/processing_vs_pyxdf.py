"""Post-processing vs pyxdf: load + sync time and peak RSS on ≥ 1 GB recordings.

Two recording-like XDF files are generated inside session folders (explicit
stamps, clock offsets with drift every 5 s, boundaries every 10 s, footers):

* ``big``:  1 stream × 64 ch float32 × 4.5 M samples at 1 kHz in 500-sample
  chunks + a marker stream (1.19 GB);
* ``many``: 32 streams × 32 ch float32 × 500 Hz × 10 min in 250-sample chunks,
  interleaved as a recorder writes them (many small streams, many chunks), + a
  marker stream.

Each is measured in separate child processes (peak RSS = ``ru_maxrss`` of the
child): ``pyxdf.load_xdf(f)`` (sync + dejitter, defaults) and
``lsl_session.processing.load_xdf_files(f)`` (same semantics); for ``big`` also the
full ``process`` pipeline (load + Parquet + aligned grid + CSV + MAT + report).

Run (from the repository, with the venv lsl_session is installed in):
  python benchmarks/processing_vs_pyxdf.py [--shapes big,many] [--rounds 3]
      [--scale 1.0] [--no-process] [--dir DIR] [--keep] [--json FILE]
      [--write-docs] [--from-json FILE]

Each round runs pyxdf, ours (and ``process``) in turn, the order reversed every
other round (the machine may be shared); medians are reported, with the load
average after every round.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _anchors import loadavg, machine

SECTION = "## Post-processing vs pyxdf"


def _eeg_xml(name: str, nch: int, srate: float, source_id: str) -> str:
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>EEG</type>'
        f"<channel_count>{nch}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>float32</channel_format><source_id>{source_id}</source_id>"
        "<desc><channels>"
        + "".join(
            f"<channel><label>C{k}</label><unit>microvolts</unit></channel>"
            for k in range(nch)
        )
        + "</channels></desc></info>"
    )


MARKER_XML = (
    '<?xml version="1.0"?><info><name>Markers</name><type>Markers</type>'
    "<channel_count>1</channel_count><nominal_srate>0</nominal_srate>"
    "<channel_format>string</channel_format><source_id>bench_markers</source_id>"
    "<desc/></info>"
)


def generate(
    path: Path,
    n: int,
    nch: int,
    *,
    n_streams: int = 1,
    chunk: int = 500,
    srate: float = 1000.0,
) -> int:
    """Write the recording; return the sample-data bytes (values + stamps).

    ``n`` samples per stream, ``n_streams`` streams of ``nch`` float32 channels
    (stream ids 1..n_streams, chunks interleaved) and a marker stream.
    """
    from lsl_session.xdf import XdfWriter

    rng = np.random.default_rng(0)
    block = rng.normal(0, 20, (chunk * 20, nch)).astype(np.float32)
    start, drift, offset = 12345.0, 20e-6, -0.75
    marker_id = n_streams + 1
    with XdfWriter(path) as w:
        for sid in range(1, n_streams + 1):
            name = "EEG" if n_streams == 1 else f"EEG{sid:02d}"
            w.write_stream_header(sid, _eeg_xml(name, nch, srate, f"bench_eeg_{sid}"))
        w.write_stream_header(marker_id, MARKER_XML)
        next_offset = next_boundary = 0.0
        for k in range(0, n, chunk):
            m = min(chunk, n - k)
            vals = block[(k // chunk) % 20 * chunk :][:m]
            for sid in range(1, n_streams + 1):
                t = start + (k + np.arange(m)) / srate + rng.normal(0, 2e-4, m)
                w.write_samples(sid, t, vals)
            now = (k + m) / srate
            if now >= next_offset:
                off = offset + drift * now + rng.normal(0, 3e-5)
                for sid in range(1, marker_id + 1):
                    w.write_clock_offset(sid, start + now, off)
                w.write_samples(marker_id, [start + now], [[f"marker {k}"]])
                next_offset += 5.0
            if now >= next_boundary:
                w.write_boundary()
                next_boundary += 10.0
        w.write_stream_footers()
    return n_streams * (n * nch * 4 + n * 8)


#: name -> (samples per stream, channels, streams, chunk, rate, label)
SHAPES = {
    "big": (4_500_000, 64, 1, 500, 1000.0, "1 stream × 64 ch × 1 kHz × 75 min"),
    "many": (300_000, 32, 32, 250, 500.0, "32 streams × 32 ch × 500 Hz × 10 min"),
}


def child(kind: str, target: str) -> None:
    """Run one measurement in this process; print JSON."""
    t = time.perf_counter()
    if kind == "pyxdf":
        import pyxdf

        streams, _ = pyxdf.load_xdf(target)
        n = max(len(s["time_stamps"]) for s in streams)
    elif kind == "ours":
        from lsl_session.processing import load_xdf_files

        n = max(len(s.time_stamps) for s in load_xdf_files(target).streams)
    else:
        from lsl_session.processing.pipeline import process_session
        from lsl_session.session import Session

        run = process_session(Session(target), hand_segmentation=False)
        n = {k: v["duration_s"] for k, v in run["steps"].items()}
    elapsed = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = usage.ru_maxrss * 1024
    result = {
        "kind": kind,
        "seconds": elapsed,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # the whole child, imports too
        "peak_rss": rss,
        "n": n,
    }
    sys.stdout.write(json.dumps(result) + "\n")


def measure(kind: str, target: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(target)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_docs(text: str, docs: Path) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md."""
    old = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = (
        pattern.sub(lambda _: text, old)
        if pattern.search(old)
        else old.rstrip() + "\n\n" + text
    )
    docs.write_text(new, encoding="utf-8")


def versions() -> str:
    """The versions that matter for these figures."""
    import importlib.metadata as md

    out = []
    for pkg in ("numpy", "pyarrow", "scipy", "pandas", "pyxdf"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            out.append(f"{pkg} ?")
    return ", ".join(out)


def git_head() -> str:
    r = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short",
         "HEAD"], capture_output=True, text=True,
    )  # fmt: skip
    return r.stdout.strip() or "?"


def run_shape(
    shape: str, base: Path, with_process: bool, rounds: int, scale: float
) -> dict:
    """Generate one shape, measure it in rounds, delete it (unless --keep).

    Each round runs pyxdf and ours (and ``process``) one after the other, the order
    reversed every other round, so page cache and the machine's load are shared
    out evenly; medians over the rounds are reported.
    """
    from lsl_session.session import create_session_folder

    n, nch, n_streams, chunk, srate, _ = SHAPES[shape]
    n = max(chunk, int(n * scale))
    folder = create_session_folder(base, f"bench_{shape}")
    xdf = folder / f"{folder.name}.xdf"
    t = time.perf_counter()
    data_bytes = generate(xdf, n, nch, n_streams=n_streams, chunk=chunk, srate=srate)
    out = {
        "shape": shape,
        "scale": scale,
        "samples": n,
        "generate_s": time.perf_counter() - t,
        "file_bytes": xdf.stat().st_size,
        "data_bytes": data_bytes,
        "loadavg_before": loadavg(),
        "rounds": rounds,
        "git_head": git_head(),
    }
    kinds = ["pyxdf", "ours"] + (["process"] if with_process else [])
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    loads = []
    for r in range(rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            runs[kind].append(measure(kind, folder if kind == "process" else xdf))
        loads.append(loadavg())
        print(
            f"[{shape}] round {r + 1}: "
            + ", ".join(f"{k} {runs[k][-1]['seconds']:.2f} s" for k in kinds)
            + f"; load {loads[-1]}",
            flush=True,
        )
    for kind, rs in runs.items():
        secs = [x["seconds"] for x in rs]
        med = sorted(rs, key=lambda x: x["seconds"])[len(rs) // 2]
        out[kind] = dict(med)
        out[kind]["seconds"] = float(np.median(secs))
        out[kind]["cpu_s"] = float(np.median([x["cpu_s"] for x in rs]))
        out[kind]["peak_rss"] = max(x["peak_rss"] for x in rs)
        out[kind]["all_seconds"] = secs
    out["loadavg_rounds"] = loads
    out["loadavg_after"] = loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="big,many")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="samples × this (for iteration)"
    )
    parser.add_argument("--no-process", action="store_true")
    parser.add_argument("--from-json", type=Path, default=None, help="re-render a run")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TARGET"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.from_json:
        text = render(json.loads(args.from_json.read_text()))
        sys.stdout.write(text)
        if args.write_docs:
            write_docs(
                text, Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
            )
        return
    shapes = [x for x in args.shapes.split(",") if x]
    results = []
    for shape in shapes:
        base = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-processing-"))
        try:
            with_process = shape == "big" and not args.no_process
            results.append(
                run_shape(shape, base, with_process, args.rounds, args.scale)
            )
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    text = render(results)
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(
            text, Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
        )


def _label(r: dict) -> str:
    label = SHAPES[r["shape"]][5]
    if r.get("scale", 1.0) != 1.0:
        label += f" scaled ×{r['scale']:g} ({r['samples']:,} samples per stream)"
    return label


def render(results: list[dict]) -> str:
    """The docs section."""
    gb = 1e9
    lines = [SECTION, ""]
    lines += [
        "| file | step | time (median) | CPU s (median) | peak RSS | peak RSS /"
        " sample data |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r["data_bytes"]
        steps = [
            ("`pyxdf.load_xdf(f)` (sync + dejitter)", r["pyxdf"]),
            ("`load_xdf_files(f)` (same semantics)", r["ours"]),
        ]
        if "process" in r:
            steps.append(
                ("full `process` (load, Parquet, aligned grid, CSV, MAT, report)",
                 r["process"])
            )  # fmt: skip
        for name, m in steps:
            lines.append(
                f"| {_label(r)}: {r['file_bytes'] / gb:.2f} GB, sample data"
                f" {d / gb:.2f} GB | {name} | {m['seconds']:.1f} s"
                f" | {m.get('cpu_s', 0):.1f} | {m['peak_rss'] / gb:.2f} GB"
                f" | {m['peak_rss'] / d:.2f}× |"
            )
    lines.append("")
    for r in results:
        py, us = r["pyxdf"], r["ours"]
        runs = "; ".join(
            f"{k} {', '.join(f'{x:.1f}' for x in r[k]['all_seconds'])} s"
            for k in ("pyxdf", "ours", "process")
            if k in r
        )
        lines.append(
            f"- **{_label(r)}**: load + sync **{py['seconds'] / us['seconds']:.1f}×"
            f" pyxdf's speed** in wall time, {py['cpu_s'] / us['cpu_s']:.1f}× in CPU"
            f" (medians of {r['rounds']} interleaved rounds: {runs}), peak memory"
            f" {us['peak_rss'] / py['peak_rss']:.2f}× pyxdf's,"
            f" {us['peak_rss'] / r['data_bytes']:.2f}× the sample data. Load average"
            f" {r['loadavg_before']} before, per round"
            f" {' | '.join(r.get('loadavg_rounds', []))}; lsl_session"
            f" {r.get('git_head', '?')}."
        )
        if "process" in r:
            pr = r["process"]
            lines.append(
                f"- **full `process`** ({_label(r)}): {pr['seconds']:.1f} s wall ="
                f" **{pr['seconds'] / py['seconds']:.1f}× pyxdf's load** (CPU"
                f" {pr['cpu_s']:.1f} s = {pr['cpu_s'] / py['cpu_s']:.1f}× pyxdf's),"
                f" peak RSS {pr['peak_rss'] / r['data_bytes']:.2f}× the sample data;"
                " steps of the median run (s): "
                + ", ".join(f"{k} {v:.1f}" for k, v in pr["n"].items())
                + "."
            )
    lines += [
        "",
        "Command: `python benchmarks/processing_vs_pyxdf.py --rounds 3 --write-docs`  ",
        f"Machine: {machine()}; lsl_session"
        f" {results[0].get('git_head') if results else git_head()}; {versions()}.  ",
        "Every peak RSS includes the interpreter and its imports (~0.1–0.2 GB).",
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
