"""Phone clock mapping error (p50/p99/max) under delay models that happen (SPEC §14).

Runs the relay's `ClockEstimator` in simulated time (`outlets.phone.netsim`): the
relay's sync schedule, 100 Hz samples sent in 100 ms batches on the same link,
one FIFO (TCP, head-of-line) link per direction unless stated, ±3600 s offset,
±50 ppm drift (sign alternating with the seed). Each batch is mapped with the
live mapping available when it arrives, as the relay does; the offline column is
the whole-session re-mapping ``process`` does (`lsl_session.clocksync`). Prints a
markdown table.

Usage::

    python benchmarks/phone_sync_accuracy.py [--duration 120] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lsl_session.clocksync import fit_offline
from outlets.phone.clock import ClockEstimator
from outlets.phone.netsim import Scenario, max_batch_step, simulate

LOOP = {"delay_ms": (0.05, 0.05)}  # loopback: no added delay
U = {"delay_ms": (1, 30), "fifo": True}
W = {"delay_ms": (1, 30), "fifo": True, "dist": "wifi"}
STALL = {"stall_rate": 0.5, "stall_ms": (20, 80)}

SCENARIOS = [
    Scenario("no added delay", LOOP, LOOP),
    Scenario(
        "independent 1-30 both (no FIFO)",
        {"delay_ms": (1, 30)},
        {"delay_ms": (1, 30)},
    ),
    Scenario("FIFO 1-30 phone->relay only", U, LOOP, expected_bias_ms=0.475),
    Scenario("FIFO 1-30 relay->phone only", LOOP, U, expected_bias_ms=-0.475),
    Scenario("FIFO 1-30 both", U, U),
    Scenario("FIFO wifi 1-30 both", W, W),
    Scenario(
        "FIFO asym. floors 3-30 / 1-30",
        {**U, "delay_ms": (3, 30)},
        U,
        expected_bias_ms=1.0,
    ),
    Scenario("FIFO 1-30 both + Wi-Fi stalls 20-80 ms", {**U, **STALL}, {**U, **STALL}),
    Scenario(
        "FIFO 1-30 phone->relay only + stalls",
        {**U, **STALL},
        LOOP,
        expected_bias_ms=0.475,
    ),
    Scenario("FIFO 1-30 both, clock step +100 ms", U, U, step_s=0.1),
    Scenario("FIFO 1-30 both, clock step -20 ms", U, U, step_s=-0.02),
]


def run(scenario: Scenario, duration: float, seed: int) -> dict[str, float]:
    """One run: live and offline |errors| (ms), batch steps and step detection."""
    sign = -1 if seed % 2 else 1
    sc = Scenario(**{**scenario.__dict__, "offset": sign * scenario.offset,
                     "drift_ppm": sign * scenario.drift_ppm})  # fmt: skip
    res = simulate(sc, ClockEstimator, duration=duration, seed=seed)
    live = np.abs(res.errors) * 1e3
    offline_map = fit_offline(res.exchanges)
    off = np.abs(offline_map(res.phone_t) - res.true_t) * 1e3
    exclude = None
    if sc.step_s:
        end = res.step_detected_at if res.step_detected_at is not None else duration
        exclude = (sc.step_at - 1.0, end + 1.0)
    return {
        "live": live,
        "offline": off,
        "step_ms": max_batch_step(res, exclude) * 1e3,
        "detect_s": (
            None
            if not sc.step_s or res.step_detected_at is None
            else res.step_detected_at - sc.step_at
        ),
    }


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=None, help="run scenarios containing this")
    args = parser.parse_args()
    lines = [
        f"Duration {args.duration:g} s per run, {args.seeds} seeds; |error| in ms, "
        "p50/p99 pooled over seeds; step = largest change of the live mapping "
        "between consecutive batches (outside a clock step); detect = time from a "
        "clock step to its re-fit.",
        "",
        "| scenario | live p50 | live p99 | live max | step | offline p50 | "
        "offline p99 | detect s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    start = time.perf_counter()
    for sc in SCENARIOS:
        if args.only and args.only not in sc.name:
            continue
        runs = [run(sc, args.duration, s) for s in range(args.seeds)]
        live = np.concatenate([r["live"] for r in runs])
        off = np.concatenate([r["offline"] for r in runs])
        det = [r["detect_s"] for r in runs if r["detect_s"] is not None]
        det_txt = f"{max(det):.2f}" if det else ("–" if not sc.step_s else "missed")
        lines.append(
            f"| {sc.name} | {np.percentile(live, 50):.3f} | "
            f"{np.percentile(live, 99):.3f} | {live.max():.3f} | "
            f"{max(r['step_ms'] for r in runs):.3f} | {np.percentile(off, 50):.3f} | "
            f"{np.percentile(off, 99):.3f} | {det_txt} |"
        )
    lines.append("")
    lines.append(f"({time.perf_counter() - start:.1f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
