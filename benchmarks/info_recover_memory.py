"""Peak RSS of ``info`` and ``recover`` on a large crashed recording (issue #15, item 4).

Writes a session whose XDF (default 320 MB: 32 float32 channels, 500-sample chunks,
a Boundary every 100 chunks) has no footers and a torn final chunk, as a recorder
killed mid-write leaves it, then runs as separate processes and reports each one's
peak resident memory (``ru_maxrss`` from ``wait4``):

- ``lsl-session info FILE.xdf`` (no footers: every Samples chunk is decoded),
- ``lsl-session info SESSION`` (a dry-run recovery: every chunk decoded),
- ``lsl-session recover SESSION`` (cuts the torn tail, appends computed footers).

Run: python benchmarks/info_recover_memory.py [--size-mb 320] [--dir DIR] [--limit-mb 150]
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
from pathlib import Path

import numpy as np

from lsl_session.session import create_session_folder
from lsl_session.xdf import XdfWriter

CHANNELS = 32
CHUNK = 500


def _stream_xml(name: str) -> str:
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>EEG</type>'
        f"<channel_count>{CHANNELS}</channel_count><nominal_srate>1000</nominal_srate>"
        f"<channel_format>float32</channel_format><source_id>bench_{name}</source_id>"
        "<desc/></info>"
    )


def write_crashed_session(root: Path, size_mb: float) -> tuple[Path, Path]:
    """A session left ``recording`` by a dead process, with a torn, footer-less XDF."""
    folder = create_session_folder(root, "bigcrash")
    xdf = folder / f"{folder.name}.xdf"
    per_chunk = CHUNK * (9 + 4 * CHANNELS)
    n_chunks = int(size_mb * 1e6 / per_chunk) + 1
    rng = np.random.default_rng(0)
    block = rng.normal(size=(CHUNK, CHANNELS)).astype("f4")
    with XdfWriter(xdf) as w:
        w.write_stream_header(1, _stream_xml("eeg"))
        t = 1000.0
        for k in range(n_chunks):
            w.write_samples(1, t + np.arange(CHUNK) / 1000.0, block)
            t += CHUNK / 1000.0
            if k % 100 == 0:
                w.write_clock_offset(1, t, -0.25)
                w.write_boundary()
    with open(xdf, "ab") as fh:  # a Samples chunk cut by the crash
        fh.write(b"\x04" + (per_chunk + 6).to_bytes(4, "little") + b"\x03\x00\x01\x00")
        fh.write(b"\x00" * 1000)
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["status"] = "recording"
    meta["owner"] = {"pid": 2**22 + 1, "host": platform.node()}
    meta["recording"]["xdf_files"] = [xdf.name]
    meta_path.write_text(json.dumps(meta))
    return folder, xdf


def peak_rss_mb(args: list[str]) -> tuple[float, float, int]:
    """Run ``python -m lsl_session ARGS``; return (peak RSS MB, seconds, exit code)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=float, default=320.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (tmp)")
    parser.add_argument("--limit-mb", type=float, default=150.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder, xdf = write_crashed_session(Path(tmp), args.size_mb)
        size = xdf.stat().st_size
        base, _, _ = peak_rss_mb(["--version"])
        rows = [("python -m lsl_session --version (baseline)", base, 0.0, 0)]
        for label, cmd in (
            ("info FILE.xdf", ["info", str(xdf)]),
            ("info SESSION", ["info", str(folder)]),
            ("recover SESSION", ["recover", str(folder)]),
        ):
            rows.append((label, *peak_rss_mb(cmd)))
        after = xdf.stat().st_size
    print(f"XDF {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB), after recover "
          f"{after / 1e6:.1f} MB; {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    print("| command | peak RSS | wall | exit |")
    print("|---|---|---|---|")
    for label, rss, wall, code in rows:
        print(f"| `{label}` | {rss:.1f} MB | {wall:.1f} s | {code} |")
    worst = max(r[1] for r in rows[1:])
    verdict = "below" if worst < args.limit_mb else "ABOVE"
    print(f"worst {worst:.1f} MB: {verdict} the {args.limit_mb:.0f} MB bound")
    if worst >= args.limit_mb or any(r[3] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
