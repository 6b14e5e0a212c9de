"""Phone clock mapping error (p50/p99/max) under offset, drift and jitter (SPEC §14).

Runs the relay's `ClockEstimator` in simulated time with the relay's sync schedule
(a 64-exchange burst at connect, then 16 exchanges every second, 10 ms apart) and
maps 100 Hz samples with the fit available when each 100 ms batch arrives, as the
relay does. Prints a markdown table.

Usage::

    python benchmarks/phone_sync_accuracy.py [--duration 600] [--seeds 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from outlets.phone.clock import ClockEstimator

SCENARIOS = [
    # name, offset s, drift ppm, up (lo, hi) ms, down (lo, hi) ms, distribution
    ("no jitter", 3600.0, 50.0, (1, 1), (1, 1), "uniform"),
    ("uniform 1-30 ms", 3600.0, 50.0, (1, 30), (1, 30), "uniform"),
    ("uniform 1-30 ms", -3600.0, -50.0, (1, 30), (1, 30), "uniform"),
    ("wifi 1-30 ms", 3600.0, 50.0, (1, 30), (1, 30), "wifi"),
    ("uniform, asym. spread 1-30/1-5", 100.0, 20.0, (1, 30), (1, 5), "uniform"),
    ("wifi, asym. floors 4/1 ms", 0.0, 0.0, (4, 30), (1, 30), "wifi"),
]


def run(
    duration: float, offset: float, drift_ppm: float, up, down, dist: str, seed: int
) -> np.ndarray:
    """Return the signed mapping errors (s) of every sample in one simulated run."""
    rng = np.random.default_rng(seed)
    d, t0 = drift_ppm * 1e-6, 20000.0

    def clock(t):
        return (t + offset) * (1 + d)

    def delay(lo_hi):
        lo, hi = (x * 1e-3 for x in lo_hi)
        if hi <= lo:
            return lo
        if dist == "uniform":
            return rng.uniform(lo, hi)
        while True:
            x = lo + rng.exponential((hi - lo) / 6)
            if x <= hi:
                return x

    sends = list(t0 + np.arange(64) * 0.01)
    t = t0 + 0.64
    while t < t0 + duration:
        t += 1.0
        sends += list(t + np.arange(16) * 0.01)
    exchanges = []
    for ts in sends:
        t2 = ts + delay(up)
        t3 = t2 + 50e-6
        arrive = t3 + delay(down)
        exchanges.append((arrive, clock(ts), t2, t3, clock(arrive)))
    exchanges.sort()
    est = ClockEstimator()
    errors, pending, i = [], [], 0
    for now in np.arange(t0 + 0.1, t0 + duration, 0.1):
        while i < len(exchanges) and exchanges[i][0] <= now:
            est.add(*exchanges[i][1:])
            i += 1
        pending.append(now - 0.1 + np.arange(10) * 0.01)
        if est.ready:
            for true in pending:
                errors.append(est.map(clock(true)) - true)
            pending = []
    return np.concatenate(errors)


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    lines = [
        f"Duration {args.duration:g} s per run, {args.seeds} seeds; |error| in ms "
        "(p50/p99 pooled over seeds; worst = worst single-run p99).",
        "",
        "| scenario | offset s | drift ppm | p50 | p99 | max | worst p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    start = time.perf_counter()
    for name, offset, drift, up, down, dist in SCENARIOS:
        runs = [
            np.abs(run(args.duration, offset, drift, up, down, dist, s)) * 1e3
            for s in range(args.seeds)
        ]
        pooled = np.concatenate(runs)
        worst = max(np.percentile(r, 99) for r in runs)
        lines.append(
            f"| {name} | {offset:+g} | {drift:+g} | {np.percentile(pooled, 50):.3f} | "
            f"{np.percentile(pooled, 99):.3f} | {pooled.max():.3f} | {worst:.3f} |"
        )
    lines.append("")
    lines.append(f"({time.perf_counter() - start:.1f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
