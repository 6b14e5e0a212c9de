"""Memory, log and file growth of a phone relay process under the issue #15 attacks.

Starts ``lsl-session outlet phone-relay`` (with tokens and a session) as a separate
process, runs each attack from this process over real sockets, and after each
one reports the relay's resident memory (``VmRSS``, and the peak ``VmHWM`` at the
end, from ``/proc``), the size of the session's event log, its ``.part`` files and
the relay's open file descriptors:

1. 40 unauthenticated connections each sending 12 MiB of a frame announced as
   16 MiB, left open;
2. 20 hellos with a 4 MiB device id;
3. a paired phone sending 65 heartbeats with a 4 MiB field (then 60 kB ones);
4. the same phone sending 64 MiB of sample batches without clock sync;
5. the same phone offering 1,100 different uploads.

Run: python benchmarks/relay_hostile_memory.py [--dir DIR]
To measure another version, run it from outside the repository (``-m lsl_session``
would import the current directory first) with ``PYTHONPATH=<export of that
version's lsl_session/ and outlets/>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from lsl_session.session import Session, create_session_folder
from outlets.phone import protocol as P

PHONE = "bench_phone"


def _status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _send(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        s.sendall(data)


def _drain(s: socket.socket, seconds: float) -> None:
    """Read (and discard) what the relay sends for a while."""
    end = time.monotonic() + seconds
    s.setblocking(False)
    while time.monotonic() < end:
        ready, _, _ = select.select([s], [], [], 0.05)
        if ready:
            try:
                if not s.recv(1 << 20):
                    return
            except (BlockingIOError, OSError):
                return


def _paired(port: int) -> socket.socket:
    s = _connect(port)
    hello = {"type": "hello", "id": 1, "protocol": 1, "device_id": PHONE, "token": "t"}
    s.sendall(P.encode_json(hello))
    dec = P.FrameDecoder()
    while True:
        for m in dec.feed(s.recv(65536)):
            if m.type == "welcome":
                return s
            if m.type == "error":
                raise RuntimeError(m.fields)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: temp)"
    )
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="relay_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    session = create_session_folder(work / "recordings", "hostile")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({PHONE: "t"}))
    cmd = [
        sys.executable, "-m", "lsl_session", "outlet", "phone-relay", "--host",
        "127.0.0.1", "--port", "0", "--tokens", str(tokens), "--session", str(session),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = ""
    while "listening:" not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            sys.exit("relay did not start")
    port = int(line.split(":")[2].split()[0])
    # keep reading the relay's stderr so its warnings never block it
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    log = Session.open(session).paths.log
    rows = []

    def row(name: str) -> None:
        time.sleep(1.0)
        parts = list((session / "devices").rglob("*.part"))
        rows.append(
            (
                name,
                _status(proc.pid, "VmRSS"),
                log.stat().st_size if log.exists() else 0,
                len(parts),
                _fds(proc.pid),
            )
        )

    try:
        time.sleep(1.0)
        row("idle")
        half = []
        for _ in range(40):
            s = _connect(port)
            _send(s, struct.pack(">I", 16 * 1024 * 1024 - 1) + b"J" + b"x" * (12 << 20))
            half.append(s)
        row("40 half-sent 16 MiB frames")
        for s in half:
            s.close()
        for _ in range(20):
            s = _connect(port)
            big = {
                "type": "hello",
                "id": 1,
                "protocol": 1,
                "device_id": "Q" * (4 << 20),
            }
            _send(s, P.encode_json(big))
            _drain(s, 0.2)
            s.close()
        row("20 hellos, 4 MiB device id")
        phone = _paired(port)
        for _ in range(65):
            _send(
                phone,
                P.encode_json({"type": "heartbeat", "t": 1.0, "x": "Q" * (4 << 20)}),
            )
            _drain(phone, 0.01)
        for k in range(65):
            _send(
                phone,
                P.encode_json({"type": "heartbeat", "t": 1.0, f"x{k}": "Q" * 60000}),
            )
        _drain(phone, 0.5)
        row("65 heartbeats, 4 MiB field")
        phone.close()
        phone = _paired(port)
        n = (1 << 20) // 56
        batch = P.encode_samples("motion", np.arange(n, dtype=float), np.zeros((n, 6)))
        for _ in range(64):
            _send(phone, batch)
            _drain(phone, 0.01)
        row("64 MiB unsynced samples")
        phone.close()
        phone = _paired(port)
        for k in range(1100):
            data = f"file {k}".encode()
            offer = {
                "type": "upload_offer", "id": 10 + k, "name": "v.mp4", "size": 10,
                "sha256": hashlib.sha256(data).hexdigest(), "file_type": "rgb",
            }  # fmt: skip
            _send(phone, P.encode_json(offer))
            _drain(phone, 0.002)
        row("1,100 upload offers")
        phone.close()
        row("after the phone left")
        peak = _status(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"# relay under attack ({platform.node()}, {platform.processor() or ''},"
          f" Python {platform.python_version()})")  # fmt: skip
    print(f"# {' '.join(cmd[:5])} ...; relay code from {P.__file__}")
    print("| after | VmRSS MiB | event log bytes | .part files | open fds |")
    print("|---|---|---|---|---|")
    for name, rss, size, parts, fds in rows:
        print(f"| {name} | {rss:.0f} | {size} | {parts} | {fds} |")
    print(f"\npeak VmHWM {peak:.0f} MiB")


if __name__ == "__main__":
    main()
