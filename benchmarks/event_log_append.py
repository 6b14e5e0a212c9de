"""Event-log append cost vs log length: 100,000 appends, first 1k vs last 1k.

Run: python benchmarks/event_log_append.py [--n 100000] [--no-fsync]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lsl_session.session import Session, create_session_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = create_session_folder(Path(tmp), "bench")
        session = Session(folder, fsync_events=not args.no_fsync)
        costs = []
        for i in range(args.n):
            t0 = time.perf_counter()
            session.log_event("marker", {"label": f"marker {i}", "i": i})
            costs.append(time.perf_counter() - t0)
        size = session.paths.log.stat().st_size
    first = sum(costs[:1000]) / 1000 * 1e6
    last = sum(costs[-1000:]) / 1000 * 1e6
    print("| appends | fsync | log size | first 1k mean | last 1k mean | ratio |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.n} | {not args.no_fsync} | {size / 1e6:.1f} MB | {first:.1f} µs"
        f" | {last:.1f} µs | {last / first:.2f} |"
    )


if __name__ == "__main__":
    main()
