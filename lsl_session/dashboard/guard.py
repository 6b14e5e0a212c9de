"""Connection limits of the dashboard's HTTP server (slowloris and flood bounds).

A plain ``ThreadingHTTPServer`` gives every connection a thread and an fd for as
long as it keeps sending a byte before each per-recv timeout. Here:

- at most `MAX_CONNECTIONS` connections are served at once, and at most
  `MAX_PER_IP` from one address; further ones are closed on accept (no thread);
- the request line and headers must arrive whole within `HEAD_DEADLINE` seconds
  (one deadline for the whole head, not per recv) and fit in `MAX_HEAD_BYTES`;
- the token is checked as soon as the request line is in, before the headers;
- every write has `WRITE_TIMEOUT` seconds, so a viewer that stops reading is
  dropped.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import logging
import socket
import sys
import threading
import time
import urllib.parse
from typing import Any

logger = logging.getLogger(__name__)

#: Connections served at once (every path), whatever their source.
MAX_CONNECTIONS = 64
#: Connections served at once from one IP address.
MAX_PER_IP = 16
#: Seconds for the whole request line and headers to arrive.
HEAD_DEADLINE = 5.0
#: Largest request head (request line + headers), in bytes.
MAX_HEAD_BYTES = 8192
#: Seconds a reply write may stall before the connection is dropped.
WRITE_TIMEOUT = 10.0


class HeadError(Exception):
    """The request head is refused; ``status`` is the HTTP reply (0: none)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def token_ok(target: str, token: str | None) -> bool:
    """Whether a request target (``/path?query``) carries ``token`` (None: any)."""
    if token is None:
        return True
    try:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    except ValueError:  # e.g. an unbalanced "[" in a netloc-like target
        return False
    given = (query.get("token") or [""])[0]
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def read_head(
    sock: socket.socket,
    token: str | None,
    *,
    deadline_s: float = HEAD_DEADLINE,
    max_bytes: int = MAX_HEAD_BYTES,
) -> bytes:
    """Read a request head within one deadline; check the token on its first line.

    Returns
    -------
    bytes
        The request line and headers, up to and including the blank line.

    Raises
    ------
    HeadError
        Deadline passed (408), too large (431), wrong token (403), peer closed (0).
    """
    return read_head_and_rest(sock, token, deadline_s=deadline_s, max_bytes=max_bytes)[
        0
    ]


def read_head_and_rest(
    sock: socket.socket,
    token: str | None,
    *,
    deadline_s: float = HEAD_DEADLINE,
    max_bytes: int = MAX_HEAD_BYTES,
) -> tuple[bytes, bytes]:
    """As `read_head`, also returning the bytes already read past the head.

    Returns
    -------
    head, rest : bytes
        The request head, and the start of the body that came with it.

    Raises
    ------
    HeadError
        Deadline passed (408), too large (431), wrong token (403), peer closed (0).
    """
    deadline = time.monotonic() + deadline_s
    buf = bytearray()
    checked = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HeadError(408, "request head not complete in time")
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise HeadError(408, "request head not complete in time") from None
        except OSError as exc:
            raise HeadError(0, f"connection error: {exc}") from None
        if not chunk:
            raise HeadError(0, "closed before the request was complete")
        buf += chunk
        if not checked and b"\n" in buf:
            line = bytes(buf[: buf.index(b"\n")]).decode("latin-1").strip()
            parts = line.split()
            target = parts[1] if len(parts) >= 2 else ""
            if not token_ok(target, token):
                raise HeadError(403, "wrong or missing token")
            checked = True
        end = _head_end(buf)
        if end:
            if end > max_bytes:
                raise HeadError(431, "request head too large")
            return bytes(buf[:end]), bytes(buf[end:])
        if len(buf) > max_bytes:
            raise HeadError(431, "request head too large")


def _head_end(buf: bytearray) -> int:
    for mark in (b"\r\n\r\n", b"\n\n"):
        at = buf.find(mark)
        if at >= 0:
            return at + len(mark)
    return 0


def send_status(sock: socket.socket, status: int, text: str) -> None:
    """Best-effort short plain-text reply, never blocking for long."""
    body = f"{text}\n".encode()
    reason = http.server.BaseHTTPRequestHandler.responses.get(status, ("",))[0]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with contextlib.suppress(OSError):
        sock.settimeout(0.5)
        sock.sendall(head + body)


class GuardedServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that caps connections in total and per IP."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conn_lock = threading.Lock()
        self.active = 0
        self.per_ip: dict[str, int] = {}
        #: connections closed on accept because a cap was reached
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread if under both caps, else close at once."""
        ip = str(client_address[0])
        with self._conn_lock:
            full = self.active >= MAX_CONNECTIONS
            if full or self.per_ip.get(ip, 0) >= MAX_PER_IP:
                self.refused += 1
                if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                    logger.warning(
                        "dashboard: %d connection(s) refused so far (%s)",
                        self.refused,
                        "total cap" if full else f"per-IP cap for {ip}",
                    )
                refuse = True
            else:
                self.active += 1
                self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
                refuse = False
        if refuse:
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: give the slot back
            self._release(ip)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line, never a traceback on stderr, for a request that failed."""
        exc = sys.exc_info()[1]
        logger.warning(
            "dashboard: request from %s failed: %s",
            client_address[0],
            f"{type(exc).__name__}: {exc}"[:200],
        )

    def _release(self, ip: str) -> None:
        with self._conn_lock:
            self.active -= 1
            left = self.per_ip.get(ip, 1) - 1
            if left > 0:
                self.per_ip[ip] = left
            else:
                self.per_ip.pop(ip, None)
