"""SIGINT/SIGTERM at random moments of ``record``, ``demo`` and a lab run (issue #31).

The handler takes no lock (`lsl_session.signals`): a signal landing while the main
thread sits inside ``Event.wait`` once hung ``record`` forever. Each trial starts
the real command as a subprocess, sends one signal (sometimes a second one) at a
random moment, and requires the process to end within the stop bound.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lsl_session.signals import StopRequest, stop_on_signals

logger = logging.getLogger(__name__)
CHILD = Path(__file__).with_name("_outlet_child.py")
CLI = [sys.executable, "-m", "lsl_session"]
#: Seconds from the signal to the end of the process (record, lab run without
#: processing work beyond the verdict; demo processes its session after the stop).
STOP_BOUND = {"record": 60.0, "lab": 90.0, "demo": 300.0}
#: Exit codes a stopped command may give (docs/output.md): done, interrupted
#: (Ctrl-C before the recording began), or killed by the signal before the
#: handler was installed (interpreter start-up).
ENDINGS = {0, 130, -signal.SIGINT, -signal.SIGTERM}


@dataclass
class Storm:
    """Figures of a run of trials."""

    times: dict[str, list[float]] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)

    def add(self, kind: str, took: float, code: int) -> None:
        self.times.setdefault(kind, []).append(took)
        self.codes[code] = self.codes.get(code, 0) + 1

    def summary(self) -> str:
        # exit code -1000 stands for "interrupted during interpreter start-up"
        parts = [
            f"{k}: {len(v)} trials, max {max(v):.1f} s, median "
            f"{sorted(v)[len(v) // 2]:.1f} s"
            for k, v in self.times.items()
        ]
        return "; ".join(parts) + f"; exit codes {self.codes}"


def _command(kind: str, root: Path, uid: str, k: int) -> list[str]:
    if kind == "record":
        return [*CLI, "record", "--root", str(root), "--stream",
                f"name='storm_{uid}'", "--no-process", "--duration", "30"]  # fmt: skip
    if kind == "demo":
        return [*CLI, "demo", "--root", str(root), "--duration", "4", "--phones", "0"]
    config = root / f"lab_{k}.toml"
    config.write_text(
        f'[session]\nroot = "{root / "lab"}"\n[markers]\nname = "M_{uid}_{k}"\n'
        "sync_every_s = 0.5\n"
    )
    return [*CLI, "record", "--config", str(config), "--duration", "30", "--no-process"]


def _trial(
    kind: str, root: Path, uid: str, k: int, rng: random.Random
) -> tuple[float, int, str]:
    log = root / f"{kind}_{k}.err"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            _command(kind, root, uid, k), stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        time.sleep(rng.uniform(0.0, 6.0 if kind != "demo" else 12.0))
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        proc.send_signal(sig)
        sent = time.monotonic()
        if rng.random() < 0.3:  # an impatient second press
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
        try:
            code = proc.wait(STOP_BOUND[kind])
        except subprocess.TimeoutExpired:
            stack = subprocess.run(
                ["py-spy", "dump", "--pid", str(proc.pid)],
                capture_output=True, text=True, check=False,
            ).stdout if _have("py-spy") else ""  # fmt: skip
            raise AssertionError(
                f"{kind} trial {k} still running {STOP_BOUND[kind]} s after "
                f"{sig.name}:\n{log.read_text()[-2000:]}\n{stack}"
            ) from None
        return time.monotonic() - sent, code, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _have(tool: str) -> bool:
    return any(
        os.access(os.path.join(d, tool), os.X_OK)
        for d in os.environ.get("PATH", "").split(os.pathsep)
    )


def _storm(tmp_path: Path, uid: str, counts: dict[str, int], seed: int) -> Storm:
    rng = random.Random(seed)
    outlet = subprocess.Popen([sys.executable, str(CHILD), f"storm_{uid}", "200"])
    storm = Storm()
    try:
        plan = [kind for kind, n in counts.items() for _ in range(n)]
        rng.shuffle(plan)
        for k, kind in enumerate(plan):
            took, code, err = _trial(kind, tmp_path, uid, k, rng)
            if code == 1 and "init_import_site" in err:
                # Ctrl-C while the interpreter itself starts (before any of our
                # code): Python's own fatal error; it still ended at once
                storm.add(kind, took, -1000)
                continue
            assert code in ENDINGS, f"{kind} trial {k}: exit {code}\n{err[-3000:]}"
            if code in (0, 130):
                assert "Traceback" not in err, f"{kind} trial {k}:\n{err[-3000:]}"
            storm.add(kind, took, code)
    finally:
        outlet.kill()
        outlet.wait()
    logger.warning("signal storm: %s", storm.summary())
    return storm


def test_signals_at_random_moments_short(tmp_path, uid):
    _storm(tmp_path, uid, {"record": 5, "lab": 2, "demo": 1}, seed=31)


@pytest.mark.slow
@pytest.mark.timeout(7200)  # ~25 min on the 2-core VM; a hang still fails a trial
def test_200_signals_at_random_moments(tmp_path, uid):
    storm = _storm(tmp_path, uid, {"record": 120, "lab": 50, "demo": 30}, seed=2031)
    assert sum(len(v) for v in storm.times.values()) == 200


def test_handler_sets_no_lock_and_wakes_the_waiter():
    """In-process: the handler only flags; the waiting main thread still wakes."""
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals() as stopper:
        assert isinstance(stopper, StopRequest)
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.wait(30)
        assert time.monotonic() - started < 30
        assert stopper.signal_name == "SIGTERM" and stopper.count == 1
        assert stopper.event.is_set() or stopper.is_set()
        # a burst: every signal counted, no hang
        for _ in range(200):
            os.kill(os.getpid(), signal.SIGINT)
        assert stopper.count == 201
    # handlers restored
    assert signal.getsignal(signal.SIGINT) is before


def test_signal_during_start_up_imports_stops_cleanly(session_root, uid):
    """SIGINT while ``record`` still imports: deferred, then a clean stop (no
    "ImportError: initialization failed" from a C extension)."""
    from lsl_session.signals import _EARLY, defer_signals

    before = signal.getsignal(signal.SIGINT)
    defer_signals()
    os.kill(os.getpid(), signal.SIGINT)
    assert _EARLY == ["SIGINT"]
    with stop_on_signals() as stopper:
        assert stopper.is_set() and stopper.signal_name == "SIGINT"
    assert _EARLY == []
    assert signal.getsignal(signal.SIGINT) is before  # not the deferring handler
    # the CLI: signals at many early moments of start-up
    codes = []
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5):
        with open(session_root / f"e{delay}.err", "w") as err:
            proc = subprocess.Popen(
                [*CLI, "record", "--root", str(session_root), "--stream",
                 f"name='early_{uid}'", "--no-process", "--duration", "20"],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        codes.append(proc.wait(STOP_BOUND["record"]))
        text = (session_root / f"e{delay}.err").read_text()
        assert "Traceback" not in text and "initialization failed" not in text, text
    # 2: the recording began and its (absent) stream never matched
    assert set(codes) <= ENDINGS | {2}, codes
