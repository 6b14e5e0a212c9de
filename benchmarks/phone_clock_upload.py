"""Phone clock mapping error through a reconnect during an upload (issue #24 item 7).

Real relay, real simulated phone over TCP (virtual delays: send-only FIFO 1–30 ms
phone → relay, none back), ±3600 s offset, 50 ppm drift. After a warm-up the phone
uploads a file at a real uplink's pace (default 4 MiB/s, 48 MiB: ~12 s); the
connection is cut a third of the way, the phone reconnects and resumes.
Prints the live mapping error (|mapped − true| of every pushed sample, ms) in the
seconds after the reconnect.

    python benchmarks/phone_clock_upload.py [--size-mb 8] [--after 15] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from lsl_session.session import create_session_folder
from outlets.phone import PhoneRelay, PhoneSimulator

FIFO = {"delay_ms": (1, 30), "fifo": True}
LOOP = {"delay_ms": (0.05, 0.05)}


def run(
    size_mb: float, after: float, seed: int, chunk: int, mbps: float, cut: bool = True
) -> np.ndarray:
    """One trial: |error| (ms) of every sample pushed within ``after`` s of the cut."""
    root = Path(tempfile.mkdtemp(prefix="clock-upload-"))
    session = create_session_folder(root, "clk")
    dev = f"phone_cu_{os.getpid()}_{seed}"
    log: dict[str, list] = defaultdict(list)
    with PhoneRelay(tokens={dev: "t"}, session=session) as relay:
        relay.push_observers.append(
            lambda d, s, p, t: log[s].append((p.copy(), t.copy(), time.monotonic()))
        )
        size = int(size_mb * 2**20)
        sim = PhoneSimulator(
            "127.0.0.1", relay.port, dev, "t", clock_offset=3600 * (-1) ** seed,
            drift_ppm=50, up_link=FIFO, down_link=LOOP, seed=seed,
            upload_chunk=chunk, cut_upload_after=size // 3 if cut else None, auto_reconnect=True,
            upload_bps=mbps * 2**20 if mbps else None,
        ).start()  # fmt: skip
        assert relay.wait_ready(dev)
        time.sleep(8.0)  # a settled mapping before the upload
        blob = root / "video.mp4"
        blob.write_bytes(np.random.default_rng(seed).bytes(size))
        cut_at = time.monotonic()
        record = sim.upload_file(blob, "rgb")
        done_at = time.monotonic()
        time.sleep(max(0.0, after - (done_at - cut_at)))
        sim.stop()
    out = []
    for stream, batches in log.items():
        true_t, phone_t, _ = sim.truth(stream)
        for p, t, when in batches:
            if cut_at <= when <= cut_at + after:
                idx = np.searchsorted(phone_t, p)
                out.append(np.abs(t - true_t[idx]) * 1e3)
    print(
        f"seed {seed}: upload {record.get('attempts')} attempts, "
        f"{done_at - cut_at:.1f} s, result {record.get('result', {}).get('type')}"
    )
    return np.concatenate(out) if out else np.zeros(0)


def main() -> None:
    """Run the trials and print p50/p99/max."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=48.0)
    parser.add_argument("--after", type=float, default=15.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    parser.add_argument("--no-cut", action="store_true", help="no reconnect")
    parser.add_argument(
        "--mbps", type=float, default=4.0, help="uplink MiB/s (0: none)"
    )
    args = parser.parse_args()
    errs = [
        run(args.size_mb, args.after, s, args.chunk, args.mbps, not args.no_cut)
        for s in range(args.seeds)
    ]
    for s, e in enumerate(errs):
        print(
            f"seed {s}: p50 {np.percentile(e, 50):.3f} p99 "
            f"{np.percentile(e, 99):.3f} max {e.max():.3f} ms (n={len(e)})"
        )
    e = np.concatenate(errs)
    print(
        f"all: p50 {np.percentile(e, 50):.3f} p99 {np.percentile(e, 99):.3f} "
        f"max {e.max():.3f} ms (n={len(e)})"
    )


if __name__ == "__main__":
    main()
