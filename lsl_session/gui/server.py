"""HTTP server of the control room: one static page and a small JSON API.

Safety (bounds in docs/gui.md):

- loopback by default; another bind address needs a token (``?token=`` on every
  URL), checked on the request line before the headers (`dashboard.guard`);
- connections capped in total and per IP, one deadline for the whole head, a
  body of at most `MAX_BODY` bytes read under one deadline;
- the ``Host`` header must name this server (no DNS rebinding), and every POST
  needs the page's CSRF token in ``X-CSRF-Token`` and, if the browser sends one,
  a same-origin ``Origin``;
- reports are served with a CSP sandbox: no script in them can run.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import secrets
import threading
import time
import urllib.parse
from importlib import resources
from typing import Any

from lsl_session.control.server import is_loopback
from lsl_session.dashboard.guard import (
    WRITE_TIMEOUT,
    GuardedServer,
    HeadError,
    read_head_and_rest,
    send_status,
)
from lsl_session.errors import LslSessionError
from lsl_session.fsutil import open_nofollow
from lsl_session.gui.app import MARKER_BUTTONS, MAX_NOTE, GuiApp
from lsl_session.gui.naming import placement

logger = logging.getLogger(__name__)

#: Largest request body (bytes), and the seconds it has to arrive.
MAX_BODY = 64 * 1024
BODY_DEADLINE = 5.0
#: Largest report served (bytes).
MAX_REPORT = 64 * 1024 * 1024

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/gui.js": ("gui.js", "text/javascript; charset=utf-8"),
    "/gui.css": ("gui.css", "text/css; charset=utf-8"),
}
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_REPORT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = WRITE_TIMEOUT
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("gui %s: %s", self.address_string(), format % args)

    def handle(self) -> None:
        """One request per connection; head (and body) under one deadline each."""
        self.close_connection = True
        try:
            head, self._rest = read_head_and_rest(
                self.connection, self.server.gui.token
            )
        except HeadError as exc:
            if exc.status:
                send_status(self.connection, exc.status, exc.reason)
            return
        self.connection.settimeout(WRITE_TIMEOUT)
        self.rfile = io.BytesIO(head)
        with contextlib.suppress(OSError):
            self.handle_one_request()

    # ------------------------------------------------------------- replies
    def _reply(self, code: int, body: bytes, ctype: str, csp: str = _PAGE_CSP) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", csp)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._reply(code, json.dumps(data).encode(), "application/json")

    # -------------------------------------------------------------- checks
    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host not in self.server.gui.allowed_hosts:
            raise _Refused(403, "unknown Host header")

    def _check_post(self) -> None:
        gui = self.server.gui
        origin = self.headers.get("Origin")
        if origin is not None:
            parsed = urllib.parse.urlsplit(origin)
            if parsed.netloc.lower() not in gui.allowed_hosts:
                raise _Refused(403, "cross-origin request refused")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise _Refused(403, "cross-site request refused")
        given = self.headers.get("X-CSRF-Token") or ""
        if not secrets.compare_digest(given.encode(), gui.csrf.encode()):
            raise _Refused(403, "missing or wrong X-CSRF-Token")

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise _Refused(400, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise _Refused(413, f"request body over {MAX_BODY} bytes")
        data = bytearray(self._rest[:length])
        deadline = time.monotonic() + BODY_DEADLINE
        while len(data) < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Refused(408, "request body not complete in time")
            self.connection.settimeout(left)
            try:
                chunk = self.connection.recv(min(65536, length - len(data)))
            except TimeoutError:
                raise _Refused(408, "request body not complete in time") from None
            if not chunk:
                raise _Refused(400, "request body cut short")
            data += chunk
        self.connection.settimeout(WRITE_TIMEOUT)
        if not data:
            return {}
        try:
            body = json.loads(bytes(data))
        except (ValueError, RecursionError):
            raise _Refused(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise _Refused(400, "the body must be a JSON object")
        return body

    # -------------------------------------------------------------- routes
    def do_GET(self) -> None:
        try:
            self._check_host()
            self._get(urllib.parse.urlsplit(self.path))
        except _Refused as exc:
            self._json(exc.status, {"error": str(exc)})
        except LslSessionError as exc:
            self._json(400, {"error": str(exc)})

    def do_POST(self) -> None:
        try:
            self._check_host()
            self._check_post()
            body = self._body()
            url = urllib.parse.urlsplit(self.path)
            self._json(200, self._post(url.path, body))
        except _Refused as exc:
            self._json(exc.status, {"error": str(exc)})
        except LslSessionError as exc:
            self._json(400, {"error": str(exc)})
        except Exception:
            logger.exception("gui: %s failed", self.path[:80])
            self._json(500, {"error": "internal error (see the server's log)"})

    def _get(self, url: urllib.parse.SplitResult) -> None:
        gui = self.server.gui
        app = gui.app
        if url.path in _STATIC:
            name, ctype = _STATIC[url.path]
            body = resources.files("lsl_session.gui").joinpath("static", name)
            self._reply(200, body.read_bytes(), ctype)
        elif url.path == "/favicon.ico":
            self._reply(204, b"", "image/x-icon")
        elif url.path == "/api/hello":
            self._json(
                200,
                {
                    "csrf": gui.csrf,
                    "marker_buttons": list(MARKER_BUTTONS),
                    "max_note": MAX_NOTE,
                    "rcs": gui.rcs_address,
                },
            )
        elif url.path == "/api/state":
            self._json(200, gui.state())
        elif url.path == "/api/sessions":
            self._json(200, {"sessions": app.sessions(), "jobs": app.jobs.views()})
        elif url.path == "/api/trace":
            query = urllib.parse.parse_qs(url.query)
            try:
                stream = int((query.get("stream") or ["-1"])[0])
                first = int((query.get("first") or ["0"])[0])
            except ValueError:
                raise _Refused(400, "stream and first are numbers") from None
            self._json(200, {"trace": app.viewer.trace(stream, first)})
        elif url.path.startswith("/report/"):
            self._report(urllib.parse.unquote(url.path[len("/report/") :]))
        else:
            self._json(404, {"error": "not found"})

    def _report(self, session_id: str) -> None:
        folder = self.server.gui.app.session_folder(session_id)
        path = folder / "processing" / "report.html"
        import os

        try:
            fd = open_nofollow(path, os.O_RDONLY)
        except OSError:
            raise _Refused(404, "this session has no report yet") from None
        with os.fdopen(fd, "rb") as fh:
            body = fh.read(MAX_REPORT + 1)
        if len(body) > MAX_REPORT:
            raise _Refused(413, "the report is too large to serve")
        self._reply(200, body, "text/html; charset=utf-8", csp=_REPORT_CSP)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        app = self.server.gui.app
        if path == "/api/update":
            app.update()
        elif path == "/api/select":
            queries = body.get("queries")
            if not isinstance(queries, list):
                raise _Refused(400, "select needs a list of queries")
            return {"ok": True, "warnings": app.select(queries)}
        elif path == "/api/fields":
            app.set_fields(body)
        elif path == "/api/start":
            app.start_run()
        elif path == "/api/stop":
            app.stop_run()
        elif path == "/api/split":
            return {"ok": True, "file": app.split()}
        elif path == "/api/note":
            kind = "marker" if body.get("kind") == "marker" else "note"
            app.note(body.get("text"), kind)  # type: ignore[arg-type]
        elif path == "/api/job":
            return {
                "ok": True,
                "job": app.run_job(str(body.get("kind")), str(body.get("session_id"))),
            }
        else:
            raise _Refused(404, "no such action")
        return {"ok": True}


class _HttpServer(GuardedServer):
    def __init__(self, address: tuple[str, int], gui: GuiServer) -> None:
        self.gui = gui
        super().__init__(address, _Handler)


class GuiServer:
    """Serve the control room of ``app`` on ``host:port`` (see the module notes)."""

    def __init__(
        self,
        app: GuiApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        if not is_loopback(host) and not token:
            raise LslSessionError(
                f"refusing to serve the control room on non-loopback {host!r}"
                " without a token (give --token)"
            )
        self.app = app
        self.host = host
        self.token = token or None
        self.csrf = secrets.token_urlsafe(24)
        self._server = _HttpServer((host, port), self)
        self.port = self._server.server_address[1]
        names = {host.lower(), "localhost", "127.0.0.1", "[::1]"}
        self.allowed_hosts = {f"{n}:{self.port}" for n in names}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address (with the token, if any)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"/?token={urllib.parse.quote(self.token)}" if self.token else "/"
        return f"http://{host}:{self.port}{suffix}"

    @property
    def rcs_address(self) -> list[Any] | None:
        control = self.app.control
        return None if control is None else list(control.address)

    def state(self) -> dict[str, Any]:
        """Everything the page polls, in one JSON object."""
        app = self.app
        f = app.fields()
        try:
            where = placement(f)
            preview = "/".join([*where.folders, f"{where.name}_<date>_<time>/"])
        except LslSessionError as exc:
            preview = f"(unusable template: {exc})"
        return {
            "fields": {**f.__dict__, "root": str(app.study_root)},
            "preview": preview,
            "streams": app.stream_rows(),
            "required": app.required_rows(),
            "selection": list(app.handler.selection),
            "live": app.live_view(),
        }

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="gui-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
