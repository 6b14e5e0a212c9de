"""A hostile peer process: stalled or ping-flooding pre-auth sockets from many IPs.

``python _preauth_flood.py MODE PORT IPS PER_IP SECONDS``: MODE ``stall`` opens
TCP connections that never send a hello; ``ping`` upgrades to a WebSocket on
``/ws`` and sends masked pings as fast as the server reads them. A socket the
server closes is reopened at once. Prints ``ready`` once every socket was tried.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time

PING = bytes([0x89, 0x80 | 4]) + os.urandom(4) + b"\0\0\0\0"


def _open(mode: str, port: int, ip: str) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=5, source_address=(ip, 0)
    )
    if mode == "ping":
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
    return sock


def _run(mode: str, port: int, ip: str, until: float, tried: threading.Barrier) -> None:
    first = True
    while time.monotonic() < until:
        try:
            sock = _open(mode, port, ip)
        except OSError:
            sock = None
        if first:
            first = False
            tried.wait()
        if sock is None:
            time.sleep(0.05)
            continue
        try:
            if mode == "ping":  # read the pongs in a second thread, as a client would
                sock.settimeout(None)
                threading.Thread(target=_drain, args=(sock,), daemon=True).start()
                burst = PING * 64
                while time.monotonic() < until:
                    sock.sendall(burst)
            else:
                sock.settimeout(1.0)
                while time.monotonic() < until:
                    try:
                        if not sock.recv(4096):
                            break
                    except TimeoutError:
                        continue
        except OSError:
            pass
        finally:
            sock.close()
        time.sleep(0.2)  # reconnect: the test is the sockets' traffic, not a SYN flood


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def main() -> None:
    mode, port, ips, per_ip, seconds = sys.argv[1:6]
    until = time.monotonic() + float(seconds)
    n = int(ips) * int(per_ip)
    tried = threading.Barrier(n + 1)
    for i in range(int(ips)):
        for _ in range(int(per_ip)):
            threading.Thread(
                target=_run,
                args=(mode, int(port), f"127.0.0.{i + 2}", until, tried),
                daemon=True,
            ).start()
    tried.wait()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while time.monotonic() < until:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
