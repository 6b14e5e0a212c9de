"""Background jobs of the control room: process, export BIDS, recover a session.

Each job is the CLI command a user would type, run as a child process (so a
crash in processing never takes the recorder down), with its progress read
from its output. Bounds: `MAX_RUNNING` jobs at once (more are refused),
`MAX_KEPT` finished jobs remembered, `MAX_OUTPUT` characters of output kept per
job.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from lsl_session.errors import LslSessionError

JobKind = Literal["process", "bids", "recover"]
KINDS: tuple[str, ...] = ("process", "bids", "recover")
MAX_RUNNING = 2
MAX_KEPT = 20
MAX_OUTPUT = 4000
#: A job still running after this long is stopped.
JOB_TIMEOUT_S = 3600.0


class JobView(TypedDict):
    """A job as the page shows it."""

    id: int
    kind: str
    session_id: str
    state: str
    started: float
    elapsed_s: float
    last_line: str
    returncode: int | None


@dataclass
class _Job:
    id: int
    kind: str
    session_id: str
    argv: list[str]
    started: float = field(default_factory=time.time)
    ended: float | None = None
    state: str = "running"
    output: str = ""
    returncode: int | None = None

    def view(self) -> JobView:
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        end = self.ended if self.ended is not None else time.time()
        return {
            "id": self.id,
            "kind": self.kind,
            "session_id": self.session_id,
            "state": self.state,
            "started": self.started,
            "elapsed_s": round(end - self.started, 1),
            "last_line": lines[-1][:300] if lines else "",
            "returncode": self.returncode,
        }


def command_for(kind: str, folder: Path, bids_root: Path) -> list[str]:
    """The CLI command of a job kind on a session folder."""
    base = [sys.executable, "-m", "lsl_session"]
    if kind == "process":
        return [*base, "process", str(folder)]
    if kind == "bids":
        return [*base, "export", str(folder), "--bids", str(bids_root)]
    if kind == "recover":
        return [*base, "recover", str(folder)]
    raise LslSessionError(f"unknown job {kind!r}; one of {', '.join(KINDS)}")


class JobRunner:
    """Run and track background jobs (see the module bounds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []
        self._ids = itertools.count(1)

    def submit(self, kind: str, session_id: str, argv: list[str]) -> JobView:
        """Start a job; refuse when `MAX_RUNNING` are running or the session is busy."""
        with self._lock:
            running = [j for j in self._jobs if j.state == "running"]
            if len(running) >= MAX_RUNNING:
                raise LslSessionError(
                    f"{len(running)} jobs are running already (at most {MAX_RUNNING})"
                )
            if any(j.session_id == session_id for j in running):
                raise LslSessionError(f"a job on {session_id} is running already")
            job = _Job(next(self._ids), kind, session_id, argv)
            self._jobs.append(job)
            done = [j for j in self._jobs if j.state != "running"]
            for old in done[: max(0, len(done) - MAX_KEPT)]:
                self._jobs.remove(old)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job.view()

    def _run(self, job: _Job) -> None:
        try:
            proc = subprocess.Popen(
                job.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            self._finish(job, "failed", None, f"could not start: {exc}")
            return
        deadline = time.monotonic() + JOB_TIMEOUT_S
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._lock:
                job.output = (job.output + line)[-MAX_OUTPUT:]
            if time.monotonic() > deadline:
                proc.kill()
                break
        code = proc.wait()
        self._finish(job, "done" if code == 0 else "failed", code, "")

    def _finish(self, job: _Job, state: str, code: int | None, extra: str) -> None:
        with self._lock:
            job.state, job.returncode, job.ended = state, code, time.time()
            if extra:
                job.output = (job.output + extra)[-MAX_OUTPUT:]

    def views(self) -> list[JobView]:
        """Every remembered job, newest first."""
        with self._lock:
            return [j.view() for j in reversed(self._jobs)]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs (tests, shutdown); True if idle in time."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not any(j.state == "running" for j in self._jobs):
                    return True
            time.sleep(0.1)
        return False
