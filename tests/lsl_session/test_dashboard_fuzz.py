"""Fuzz of the dashboard's HTTP and SSE surface against ``record --dashboard`` (#31).

Random request lines, methods, targets (tokens, encodings, NUL, non-UTF-8,
oversize), versions, headers, truncated and pipelined heads, and feeds read for a
while then dropped, over real sockets to a real recording process. Per case: the
server answers with an HTTP status line or closes, never hangs. After the run: no
traceback on the recorder's stderr, its memory and thread count bounded, and the
recording still completes.
"""

from __future__ import annotations

import json
import logging
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lsl_session.dashboard import guard

logger = logging.getLogger(__name__)
CHILD = Path(__file__).with_name("_outlet_child.py")
#: Seconds a case may wait for the server's answer or close.
CASE_TIMEOUT = 20.0

_PATHS = ["/", "/events", "/snapshot.json", "/dashboard.js", "/dashboard.css",
          "/nope", "//[", "/%00", "/%ff%fe", "/?token=", "/events?token=x&token=y",
          "/\x00", "/../../etc/passwd", "*", "http://[::1", "/" + "a" * 9000,
          "/snapshot.json?" + "&".join(["k=v"] * 500)]  # fmt: skip
_METHODS = ["GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT", "get", "G\x00T",
            "", "GETGETGETGET" * 50, "\xff\xfe"]  # fmt: skip
_VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1x",
             "", "HTTP/", "http/1.1", "HTTP/1.1 extra"]  # fmt: skip


def _noise(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _case(rng: random.Random) -> tuple[bytes, bool, bool]:
    """(bytes to send, head complete?, read a feed?)."""
    kind = rng.random()
    if kind < 0.1:
        return _noise(rng, rng.randrange(1, 3000)), False, False
    method = rng.choice(_METHODS)
    path = rng.choice(_PATHS)
    if rng.random() < 0.3:
        path += "?" + "".join(
            rng.choice("=&%tokn0x[]#") for _ in range(rng.randrange(30))
        )
    line = f"{method} {path} {rng.choice(_VERSIONS)}".encode("utf-8", "surrogateescape")
    if rng.random() < 0.1:
        line = line.replace(b" ", rng.choice([b"  ", b"\t", b""]))
    headers = []
    for _ in range(rng.choice([0, 1, 2, 5, 40, 200])):
        name = rng.choice(["Host", "X-A", "Content-Length", "Connection", "Expect",
                           "Transfer-Encoding", "", "Bad Header", "\x00"])  # fmt: skip
        value = rng.choice(["x", "-1", "99999999999999999999", "keep-alive", "chunked",
                            "100-continue", "a" * rng.randrange(3000), "\xe9"])  # fmt: skip
        headers.append(f"{name}: {value}".encode("utf-8", "surrogateescape"))
    if rng.random() < 0.1:
        headers.append(_noise(rng, 50).replace(b"\n", b""))
    eol = rng.choice([b"\r\n", b"\n"])
    head = line + eol + eol.join(headers) + (eol if headers else b"") + eol
    complete = True
    if rng.random() < 0.15:  # truncated: the client gives up mid-head
        head = head[: rng.randrange(1, len(head))]
        complete = False
    if complete and rng.random() < 0.1:  # pipelined or with a body
        head += rng.choice([head, _noise(rng, 500), b"GET / HTTP/1.1\r\n\r\n"])
    feed = complete and path.startswith("/events") and method == "GET"
    return head, complete, feed


def _send_case(port: int, data: bytes, complete: bool, feed: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT) as s:
        try:
            s.sendall(data)
        except OSError:  # the server already answered (431/403) and closed
            pass
        if not complete:
            return b""
        reply = b""
        deadline = time.monotonic() + CASE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no answer in {CASE_TIMEOUT} s to {data[:200]!r}")
            if not chunk:
                break
            reply += chunk
            if feed and b"\n\n" in reply.partition(b"\r\n\r\n")[2]:
                break  # one event of the feed: enough, drop it
        else:
            raise AssertionError(f"no end in {CASE_TIMEOUT} s to {data[:200]!r}")
        return reply


def _status(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) // 1024
    threads = int(re.search(r"Threads:\s+(\d+)", text).group(1))
    return rss, threads


def _fuzz(session_root: Path, uid: str, cases: int, seed: int) -> None:
    name = f"fuzz_{uid}"
    outlet = subprocess.Popen([sys.executable, str(CHILD), name, "100"])
    record = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(session_root),
         "--stream", f"name='{name}'", "--no-process", "--dashboard",
         "--dashboard-port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    rng = random.Random(seed)
    answered = closed = 0
    lines: list[str] = []
    try:
        port = None
        while port is None:
            line = record.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
            match = re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", line)
            port = int(match.group(1)) if match else None
        time.sleep(1.0)
        rss0, threads0 = _status(record.pid)
        peak_rss, peak_threads = rss0, threads0
        for k in range(cases):
            data, complete, feed = _case(rng)
            reply = _send_case(port, data, complete, feed)
            if complete:
                assert reply == b"" or reply.startswith(b"HTTP/1."), (
                    k,
                    data[:200],
                    reply[:200],
                )
                answered += bool(reply)
                closed += not reply
            if k % 50 == 0:
                rss, threads = _status(record.pid)
                peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
        # honest viewer afterwards: served
        reply = _send_case(port, b"GET /snapshot.json HTTP/1.1\r\n\r\n", True, False)
        assert reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
        snap = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert snap["recording"] is True
        record.send_signal(signal.SIGINT)
        out, err = record.communicate(timeout=120)
    finally:
        outlet.kill()
        outlet.wait()
        if record.poll() is None:
            record.kill()
            record.communicate()
    err = "".join(lines) + err
    logger.warning(
        "dashboard fuzz: %d cases, %d answered, %d closed without answer; RSS %d->%d MB,"
        " threads %d->%d", cases, answered, closed, rss0, peak_rss, threads0,
        peak_threads,
    )  # fmt: skip
    assert "Traceback" not in err, err[-3000:]
    assert peak_rss - rss0 < 100, (rss0, peak_rss)
    assert peak_threads <= threads0 + guard.MAX_CONNECTIONS
    assert record.returncode == 0, err[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed"


def test_dashboard_fuzz_short(session_root, uid):
    _fuzz(session_root, uid, 400, seed=31)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_dashboard_fuzz_10000(session_root, uid):
    _fuzz(session_root, uid, 10_000, seed=3131)
