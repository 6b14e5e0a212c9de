"""Size and CPU of compressed XDF (``record --compress``) against plain XDF.

Writes the same synthetic chunks through the recorder's own `XdfOutput`, plain and
compressed (one gzip member per second of data, as the recorder's fsync cadence
does), and reports the size ratio, the writer's CPU per recorded second and per
GB, and stock ``pyxdf.load_xdf``'s load time of both files.

    python benchmarks/xdf_compression.py [--seconds 20]

Loads: float32 EEG-like (32 ch × 500 Hz: 10 Hz alpha + 1/f-ish noise, µV) and
int16 high density (384 ch × 30 kHz: Neuropixels-like band noise).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyxdf

from lsl_session.recorder.output import COMPRESS_LEVEL, XdfOutput

LOADS = {
    "EEG float32 32 ch x 500 Hz": (32, 500, "float32"),
    "high density int16 384 ch x 30 kHz": (384, 30_000, "int16"),
}


def _chunks(channels: int, srate: int, fmt: str, seconds: int):
    rng = np.random.default_rng(0)
    n = srate // 10  # 100 ms chunks, as a recorder pulls them
    walk = np.zeros(channels)
    for k in range(seconds * 10):
        t = (k * n + np.arange(n)) / srate
        if fmt == "float32":
            noise = rng.standard_normal((n, channels)).cumsum(axis=0) * 0.3 + walk
            walk = noise[-1] * 0.99
            data = (20 * np.sin(2 * np.pi * 10 * t)[:, None] + noise).astype(np.float32)
        else:
            data = (rng.standard_normal((n, channels)) * 30).astype(np.int16)
        yield t, data


def _write(
    path: Path, load: tuple[int, int, str], seconds: int, compress: bool, level: int
):
    channels, srate, fmt = load
    out = XdfOutput(lambda k: path, compress=compress, compress_level=level)
    xml = (
        f"<?xml version='1.0'?><info><name>b</name><type>EEG</type>"
        f"<channel_count>{channels}</channel_count><nominal_srate>{srate}"
        f"</nominal_srate><channel_format>{fmt}</channel_format></info>"
    )
    out.add_stream(1, xml, fmt)
    chunks = list(_chunks(channels, srate, fmt, seconds))
    cpu = time.process_time()
    for k, (t, data) in enumerate(chunks):
        out.write_samples(1, t, data)
        if k % 10 == 9:
            out.flush()  # the recorder's once-a-second fsync: one gzip member
    out.close()
    return time.process_time() - cpu, path.stat().st_size


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--level", type=int, default=COMPRESS_LEVEL)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores,"
          f" load {os.getloadavg()[0]:.1f}; zlib level {args.level}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for label, load in LOADS.items():
            row = {}
            for compress in (False, True):
                path = Path(tmp) / ("b.xdf.gz" if compress else "b.xdf")
                cpu, size = _write(path, load, args.seconds, compress, args.level)
                t0 = time.perf_counter()
                pyxdf.load_xdf(str(path))
                row[compress] = (cpu, size, time.perf_counter() - t0)
                path.unlink()
            (pc, ps, pl), (cc, cs, cl) = row[False], row[True]
            gb = ps / 1e9
            print(
                f"{label}: {args.seconds} s, plain {ps / 1e6:.1f} MB, compressed "
                f"{cs / 1e6:.1f} MB (ratio {cs / ps:.2f}); writer CPU plain "
                f"{pc / args.seconds * 1e3:.1f} ms/s, compressed "
                f"{cc / args.seconds * 1e3:.1f} ms/s ({(cc - pc) / gb:.1f} s per"
                f" GB more); pyxdf load plain {pl:.2f} s, compressed {cl:.2f} s"
            )


if __name__ == "__main__":
    main()
