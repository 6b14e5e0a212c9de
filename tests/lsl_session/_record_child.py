"""Child process of the fault-injection trials: one session, record, stop, end.

Prints ``<phase> <lsl local_clock>`` lines (flushed) so the parent can aim its
SIGKILL at a phase: creating, created, starting, recording, stopping, stopped,
ending, ended.
"""

from __future__ import annotations

import argparse
import sys
import time

import pylsl

from lsl_session.manager import SessionManager


def phase(name: str) -> None:
    sys.stdout.write(f"{name} {pylsl.local_clock():.6f}\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--name", default="trial")
    parser.add_argument("--stream", action="append", default=[])
    parser.add_argument("--stop-after", type=float, default=1.0)
    parser.add_argument("--hold", type=float, default=30.0)
    args = parser.parse_args()
    manager = SessionManager(args.root)
    phase("creating")
    manager.create_session(args.name)
    phase("created")
    phase("starting")
    manager.start_recording(args.stream)
    phase("recording")
    time.sleep(args.stop_after)
    phase("stopping")
    manager.stop_recording()
    phase("stopped")
    phase("ending")
    manager.end_session(process=False)
    phase("ended")
    time.sleep(args.hold)  # wait for the parent's SIGKILL


if __name__ == "__main__":
    main()
