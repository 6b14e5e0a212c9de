"""The dashboard under attack: slowloris, floods, stalled viewers (issue #31).

Real sockets against ``record --dashboard`` run as a subprocess: the attack is
held to the stated bounds (connections, head deadline, token first) and the
recording goes on to its duration with its status right and its owner released.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pyxdf
from lsl_helpers import wait_until

from lsl_session.dashboard import DashboardServer, LiveState, guard
from lsl_session.dashboard import server as server_module

logger = logging.getLogger(__name__)
CHILD = Path(__file__).with_name("_outlet_child.py")


class Slowloris:
    """``count`` sockets, each sending one byte of a request head every ``every`` s.

    Sockets the server closes are reopened at once, so the pressure is constant.
    ``lifetimes`` holds how long each closed socket lived.
    """

    def __init__(self, port: int, count: int, every: float, head: bytes) -> None:
        self.port, self.count, self.every, self.head = port, count, every, head
        self.lifetimes: list[float] = []
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Slowloris:
        self._thread.start()
        return self

    def _open(self) -> tuple[socket.socket, float, int] | None:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s, time.monotonic(), 0

    def _run(self) -> None:
        socks: list[tuple[socket.socket, float, int] | None] = [None] * self.count
        while not self._stop.is_set():
            for i, entry in enumerate(socks):
                if entry is None:
                    socks[i] = self._open()
                    continue
                s, born, sent = entry
                try:
                    s.send(self.head[sent % len(self.head) : sent % len(self.head) + 1])
                    socks[i] = (s, born, sent + 1)
                except BlockingIOError:
                    pass  # not connected yet (backlog): try on the next round
                except OSError:
                    self.lifetimes.append(time.monotonic() - born)
                    s.close()
                    socks[i] = self._open()
            self._stop.wait(self.every)
        for entry in socks:
            if entry is not None:
                entry[0].close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _proc_counts(pid: int) -> tuple[int, int]:
    """(open fds, threads) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return fds, threads


def _dashboard_port(proc: subprocess.Popen, lines: list[str]) -> int:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", line)
        if match:
            return int(match.group(1))
    raise AssertionError("record never printed its dashboard URL:\n" + "".join(lines))


def _slowloris_against_record(
    session_root: Path,
    uid: str,
    *,
    count: int,
    duration: float,
    split: bool,
    process: bool = False,
) -> None:
    name = f"loris_{uid}"
    rate = 3000 if split else 500  # split: > 1 MB a part in the duration
    outlet = subprocess.Popen([sys.executable, str(CHILD), name, str(rate)])
    cmd = [
        sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
        "--stream", f"name='{name}'", "--dashboard",
        "--dashboard-port", "0", "--duration", str(duration),
    ]  # fmt: skip
    if not process:
        cmd.append("--no-process")
    if split:
        cmd += ["--split-mb", "1"]
    record = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    attack = None
    peak_fds = peak_threads = 0
    try:
        port = _dashboard_port(record, lines)
        base_fds, base_threads = _proc_counts(record.pid)
        attack = Slowloris(
            port, count, 1.0, b"GET /events HTTP/1.1\r\nX-a: b\r\n"
        ).start()
        while record.poll() is None:
            try:
                fds, threads = _proc_counts(record.pid)
            except (FileNotFoundError, ProcessLookupError, AttributeError):
                break
            peak_fds, peak_threads = max(peak_fds, fds), max(peak_threads, threads)
            time.sleep(0.5)
        out, err = record.communicate(timeout=120)
    finally:
        if attack is not None:
            attack.stop()
        outlet.kill()
        if record.poll() is None:
            record.kill()
            record.communicate()
    err = "".join(lines) + err
    logger.warning(
        "slowloris %d sockets: fds %d->%d, threads %d->%d, %d opened, %d closed by"
        " the server, longest %.1f s", count, base_fds, peak_fds, base_threads,
        peak_threads, attack.opened, len(attack.lifetimes),
        max(attack.lifetimes, default=0),
    )  # fmt: skip
    # the bound: one thread and one fd per served connection, at most the cap
    assert peak_threads <= base_threads + guard.MAX_CONNECTIONS + 4, err
    assert peak_fds <= base_fds + guard.MAX_CONNECTIONS + 16, err
    # the head deadline is one deadline, not per byte: nobody lives much longer
    assert attack.lifetimes, "the server never closed a slow connection"
    assert max(attack.lifetimes) < guard.HEAD_DEADLINE + 10
    # the honest user: the recording went to its duration, completed, released
    assert record.returncode == 0, err
    assert "Traceback" not in err
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed", meta["status"]
    assert "owner" not in meta
    if process:  # processing ran under the attack too (it had failed: no fds left)
        runs = meta["processing"]["runs"]
        assert [r["status"] for r in runs] == ["ok"], runs
    parts = sorted(folder.rglob("*.xdf"))
    if split:
        assert len(parts) > 1, parts
    total = 0
    for part in parts:
        streams, _ = pyxdf.load_xdf(
            str(part), synchronize_clocks=False, dejitter_timestamps=False
        )
        total += sum(
            len(s["time_stamps"]) for s in streams if s["info"]["name"][0] == name
        )
    assert total >= rate * duration * 0.8, total


def test_slowloris_short_record_goes_on(session_root, uid):
    _slowloris_against_record(
        session_root, uid, count=200, duration=12, split=False, process=True
    )


@pytest.mark.slow
def test_slowloris_1000_sockets_split_recording_goes_on(session_root, uid):
    _slowloris_against_record(session_root, uid, count=1000, duration=60, split=True)


def _raw(port: int, data: bytes, *, timeout: float = 15) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_token_checked_on_request_line_before_headers():
    with DashboardServer(LiveState(lambda: None), token="s3cret") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /snapshot.json?token=nope HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            reply = s.recv(4096)  # no blank line sent: the head is not complete
            assert reply.startswith(b"HTTP/1.1 403"), reply
            assert time.monotonic() - started < guard.HEAD_DEADLINE
        # the honest viewer with the token is served
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}/snapshot.json?token=s3cret", timeout=10
        ) as page:
            assert json.loads(page.read())["streams"] == []


def test_head_deadline_is_whole_head_not_per_byte():
    with DashboardServer(LiveState(lambda: None)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            started = time.monotonic()
            closed_after = None
            for byte in b"GET / HTTP/1.1\r\nX-slow: " + b"a" * 100:
                try:
                    s.sendall(bytes([byte]))
                    time.sleep(0.5)
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                if closed_after is None and time.monotonic() - started > 30:
                    break
            if closed_after is None:
                s.settimeout(5)
                reply = s.recv(4096)
                closed_after = time.monotonic() - started
                assert reply.startswith(b"HTTP/1.1 408") or reply == b""
        assert closed_after < guard.HEAD_DEADLINE + 5


def test_head_too_large_and_caps_refuse_without_thread():
    with DashboardServer(LiveState(lambda: None)) as server:
        reply = _raw(server.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
        held = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10)
            for _ in range(guard.MAX_PER_IP)
        ]
        try:
            assert wait_until(lambda: server._server.active == guard.MAX_PER_IP, 10)
            # one more from the same address is closed on accept
            reply = _raw(server.port, b"GET / HTTP/1.1\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 503") or reply == b""
            assert server._server.refused >= 1
        finally:
            for s in held:
                s.close()
        # slots come back: the honest viewer is served
        assert wait_until(lambda: server._server.active == 0, 10)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}/", timeout=10
        ) as p:
            assert b"<title>lsl-session" in p.read()


def test_idle_feed_viewers_are_evicted(monkeypatch):
    monkeypatch.setattr(server_module, "FEED_MAX_SECONDS", 2.0)
    with DashboardServer(LiveState(lambda: None)) as server:
        url = f"http://127.0.0.1:{server.port}/events"
        feeds = [
            urllib.request.urlopen(url, timeout=10)
            for _ in range(server_module.MAX_CLIENTS)
        ]
        try:
            assert all(f.readline().startswith(b"data: ") for f in feeds)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url, timeout=10)
            assert err.value.code == 503
            # the idle viewers never read again: their feeds end, slots free
            assert wait_until(
                lambda: server.clients._value == server_module.MAX_CLIENTS, 20
            )
            with urllib.request.urlopen(url, timeout=10) as honest:
                first = honest.readline()
                assert first.startswith(b"data: ")
                assert honest.readline().startswith(b"retry: ")
        finally:
            for f in feeds:
                f.close()


def test_record_ends_on_sigint_under_slowloris(session_root, uid):
    """Ctrl-C during the attack still ends the recording cleanly."""
    name = f"lorisint_{uid}"
    outlet = subprocess.Popen([sys.executable, str(CHILD), name, "100"])
    record = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
         "--stream", f"name='{name}'", "--no-process", "--dashboard",
         "--dashboard-port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    attack = None
    try:
        port = _dashboard_port(record, lines)
        attack = Slowloris(port, 100, 0.5, b"GET / HTTP/1.1\r\n").start()
        time.sleep(3)
        record.send_signal(signal.SIGINT)
        out, err = record.communicate(timeout=60)
    finally:
        if attack is not None:
            attack.stop()
        outlet.kill()
        if record.poll() is None:
            record.kill()
    assert record.returncode == 0, "".join(lines) + err
    meta = json.loads(
        (Path(out.strip().splitlines()[-1]) / "session_metadata.json").read_text()
    )
    assert meta["status"] == "completed" and "owner" not in meta
