"""HTTP server of the live dashboard: a static page and a Server-Sent Events feed.

Loopback by default; any other bind address needs a token (as the control
socket), given as ``?token=`` on the page URL. Connections are capped in total and
per IP, a request head has one deadline and the token is checked on its first line
(`guard`), and a feed ends after `FEED_MAX_SECONDS` or when its viewer stops
reading, so no viewer can hold the recorder's fds or threads.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from lsl_session.control.server import is_loopback
from lsl_session.dashboard.guard import (
    WRITE_TIMEOUT,
    GuardedServer,
    HeadError,
    read_head,
    send_status,
    token_ok,
)
from lsl_session.dashboard.state import LiveState
from lsl_session.errors import LslSessionError

logger = logging.getLogger(__name__)

#: Seconds between two updates of the feed.
UPDATE_INTERVAL = 0.5
#: Feed connections served at once; more get 503.
MAX_CLIENTS = 8
#: A feed is closed after this many seconds (the browser reconnects at once), so
#: a viewer that keeps its slot without looking frees it.
FEED_MAX_SECONDS = 300.0
#: Kernel send buffer of a feed socket: a viewer that stops reading stalls the
#: writes soon, and is dropped after `WRITE_TIMEOUT`.
FEED_SNDBUF = 32 * 1024
#: Milliseconds the browser waits before reconnecting a closed feed.
FEED_RETRY_MS = 1000

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = WRITE_TIMEOUT
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard %s: %s", self.address_string(), format % args)

    def handle(self) -> None:
        """One request per connection; its head read under one deadline."""
        self.close_connection = True
        try:
            head = read_head(self.connection, self.server.dashboard.token)
        except HeadError as exc:
            logger.debug("dashboard %s: %s", self.client_address[0], exc.reason)
            if exc.status:
                send_status(self.connection, exc.status, exc.reason)
            return
        self.connection.settimeout(WRITE_TIMEOUT)
        self.rfile.close()  # the socket's own reader is not used: the head is read
        self.rfile = io.BytesIO(head)
        with contextlib.suppress(OSError):
            self.handle_one_request()

    def send_response_only(self, code: int, message: str | None = None) -> None:
        """Always an HTTP/1.1 status line (never the header-less HTTP/0.9 form)."""
        self.request_version = "HTTP/1.1"
        super().send_response_only(code, message)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """A plain-text error naming only the code: nothing the peer sent is echoed."""
        logger.debug("dashboard %s: %d %s", self.client_address[0], code, message)
        self.close_connection = True
        reason = self.responses.get(code, ("error",))[0]
        body = f"{code} {reason}\n".encode()
        self.send_response(code, reason)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def _authorised(self) -> bool:
        return token_ok(self.path, self.server.dashboard.token)

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        try:
            url = urllib.parse.urlsplit(self.path)
        except ValueError:
            self._reply(400, b"bad request target\n", "text/plain")
            return
        if not self._authorised():
            self._reply(403, b"forbidden: wrong or missing token\n", "text/plain")
            return
        if url.path in _STATIC:
            name, ctype = _STATIC[url.path]
            body = (
                resources.files("lsl_session.dashboard")
                .joinpath("static", name)
                .read_bytes()
            )
            self._reply(200, body, ctype)
        elif url.path == "/snapshot.json":
            body = json.dumps(self.server.dashboard.snapshot()).encode()
            self._reply(200, body, "application/json")
        elif url.path == "/events":
            self._feed()
        else:
            self._reply(404, b"not found\n", "text/plain")

    def _feed(self) -> None:
        dashboard = self.server.dashboard
        if not dashboard.clients.acquire(blocking=False):
            self._reply(503, b"too many dashboard viewers\n", "text/plain")
            return
        try:
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, FEED_SNDBUF
                )
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            end = time.monotonic() + FEED_MAX_SECONDS
            retry = f"retry: {FEED_RETRY_MS}\n"  # on the first event only
            while not dashboard.stopping.is_set() and time.monotonic() < end:
                data = json.dumps(dashboard.snapshot())
                self.wfile.write(f"data: {data}\n{retry}\n".encode())
                retry = ""
                self.wfile.flush()
                if dashboard.stopping.wait(UPDATE_INTERVAL):
                    break
        except OSError:  # gone, or stopped reading for WRITE_TIMEOUT: evicted
            pass
        finally:
            dashboard.clients.release()


class _HttpServer(GuardedServer):
    def __init__(self, address: tuple[str, int], dashboard: DashboardServer) -> None:
        self.dashboard = dashboard
        super().__init__(address, _Handler)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` without a token (before anything starts).

    Raises
    ------
    LslSessionError
        One line naming the host.
    """
    if not is_loopback(host) and not token:
        raise LslSessionError(
            f"refusing to serve the dashboard on non-loopback {host!r}"
            " without a token (give --dashboard-token)"
        )


class DashboardServer:
    """Serve the live dashboard of a recording.

    Parameters
    ----------
    state : LiveState
        Where the figures come from.
    host, port : str, int
        Bind address (port 0 picks a free one: see `url`).
    token : str | None
        Required for a non-loopback ``host``; the page URL carries it.
    """

    def __init__(
        self,
        state: LiveState,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        check_bind(host, token)
        self.state = state
        self.host = host
        self.port = port
        self.token = token or None
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        """The latest snapshot, computed at most once per half update interval."""
        with self._cache_lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= UPDATE_INTERVAL / 2:
                self._cache = (now, self.state.snapshot())
            return self._cache[1]

    @property
    def url(self) -> str:
        """The page's address (with the token, if any)."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        suffix = f"?token={urllib.parse.quote(self.token)}" if self.token else ""
        return f"http://{host}:{self.port}/{suffix}"

    def start(self) -> None:
        """Bind and serve in a background thread."""
        try:
            self._server = _HttpServer((self.host, self.port), self)
        except OSError as exc:
            raise LslSessionError(
                f"cannot serve the dashboard on {self.host}:{self.port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="dashboard",
            daemon=True,
        )
        self._thread.start()
        # attach to each new recorder as soon as it exists, not when a page opens
        self._watcher = threading.Thread(
            target=self._watch, name="dashboard-watch", daemon=True
        )
        self._watcher.start()
        logger.info("dashboard at http://%s:%d/", self.host, self.port)

    def _watch(self) -> None:
        while not self.stopping.wait(UPDATE_INTERVAL):
            try:
                self.state.refresh()
            except Exception:
                logger.exception("dashboard refresh failed")

    def stop(self) -> None:
        """End every feed and close the socket."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serve_recordings(
    manager: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    say: Callable[[str], None] = logger.info,
) -> Iterator[DashboardServer]:
    """Serve the dashboard of ``manager``'s recordings for the duration of the block.

    ``manager`` is a `SessionManager`: the page follows its current recorder and
    session, so it carries on across runs (remote control, several recordings).
    """
    state = LiveState(lambda: manager.recorder, lambda: manager.session)
    server = DashboardServer(state, host=host, port=port, token=token)
    server.start()
    say(f"dashboard: {server.url}")
    try:
        yield server
    finally:
        server.stop()
