"""HTTPS + WebSocket front of the phone relay: the page, and phones over WebSocket.

``GET /`` serves the phone page (static, shipped in the package), ``GET /ws``
upgrades to a WebSocket that the relay serves exactly like a TCP phone (same
caps, limits and error replies, see `bridge`). Request heads are bounded (8 KiB,
10 s), concurrent page requests are capped, and nothing a client sends is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from importlib import resources
from typing import Any

from outlets.phone.listener import Listener, Slot
from outlets.phone.web import bridge, ws

logger = logging.getLogger(__name__)

#: Bytes and seconds a request head may take.
MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0
#: Page/static requests served at once (WebSockets count against the relay's cap).
MAX_HTTP = 16

_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_STATIC = {
    "/": ("phone.html", "text/html; charset=utf-8"),
    "/phone.js": ("phone.js", "text/javascript; charset=utf-8"),
    "/phone.css": ("phone.css", "text/css; charset=utf-8"),
}
# cross-origin isolation gives the page 5 µs timers instead of 100 µs (browser.md)
_HEADERS = (
    "Cache-Control: no-store\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "Cross-Origin-Embedder-Policy: require-corp\r\n"
    "X-Content-Type-Options: nosniff\r\n"
)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
    except (UnicodeDecodeError, ValueError):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0].split("#", 1)[0], headers


class WebFront:
    """Serve the phone page and WebSocket phones for a running `PhoneRelay`.

    Parameters
    ----------
    relay : PhoneRelay
        A started relay; WebSocket phones become its connections.
    host, port : str, int
        Listen address (port 0: any free port, see `port`).
    ssl_context : ssl.SSLContext | None
        HTTPS (browsers give sensors and the camera only to a secure context:
        HTTPS, or ``localhost``).
    """

    def __init__(
        self,
        relay: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.relay = relay
        self.host, self.port = host, int(port)
        self.ssl_context = ssl_context
        self._server: Listener | None = None
        self._http = 0

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return "https" if self.ssl_context else "http"

    def start(self) -> WebFront:
        """Listen on the relay's event loop."""
        self.relay._call(self._listen(), 10.0)
        return self

    def stop(self) -> None:
        """Stop listening (the relay closes the WebSocket phones it serves)."""
        if self._server is not None and self.relay._loop is not None:
            with contextlib.suppress(Exception):
                self.relay._call(self._close(), 5.0)

    async def _listen(self) -> None:
        lim = self.relay.limits
        # the relay's own listener: the same caps (connections, unauthenticated
        # ones per address) hold before the TLS handshake, for this port too
        self._server = Listener(
            self.host, self.port, self._client,
            ssl_context=self.ssl_context, handshake_timeout=HEAD_TIMEOUT,
            read_limit=MAX_HEAD, max_connections=lim.max_connections,
            max_preauth_per_host=lim.max_preauth_per_host,
            max_preauth=lim.max_preauth,
            on_refused=self.relay._refused, busy_frame=_BUSY,
        )  # fmt: skip
        self.port = await self._server.start()
        logger.info("phone page on %s://%s:%d/", self.scheme, self.host, self.port)

    async def _close(self) -> None:
        assert self._server is not None
        await self._server.close()

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError,
                ConnectionError, OSError, ValueError):  # fmt: skip
            writer.close()
            return
        request = _parse_head(head)
        if request is None:
            await self._reply(writer, 400, b"bad request\n")
            return
        method, path, headers = request
        if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            await self._websocket(reader, writer, headers, slot)
        elif method != "GET":
            await self._reply(writer, 405, b"method not allowed\n")
        elif path in _STATIC:
            await self._static(writer, path)
        elif path == "/favicon.ico":
            await self._reply(writer, 204, b"")
        else:
            await self._reply(writer, 404, b"not found\n")

    async def _static(self, writer: asyncio.StreamWriter, path: str) -> None:
        if self._http >= MAX_HTTP:
            await self._reply(writer, 503, b"busy\n")
            return
        self._http += 1
        try:
            name, ctype = _STATIC[path]
            body = resources.files("outlets.phone.web").joinpath("static", name)
            await self._reply(writer, 200, body.read_bytes(), ctype)
        finally:
            self._http -= 1

    async def _reply(
        self, writer: asyncio.StreamWriter, code: int, body: bytes,
        ctype: str = "text/plain; charset=utf-8",
    ) -> None:  # fmt: skip
        reason = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
                  405: "Method Not Allowed", 503: "Service Unavailable"}[code]  # fmt: skip
        head = (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{_HEADERS}Connection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        writer.close()

    async def _websocket(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        slot: Slot,
    ) -> None:
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or len(key) != 24:
            await self._reply(writer, 400, b"bad websocket handshake\n")
            return
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ws.accept_key(key)}"
                "\r\n\r\n"
            ).encode("latin-1")
        )
        frames = bridge.FrameReader()
        out = bridge.FrameWriter(writer)
        lim = self.relay.limits

        def rates() -> tuple[float, int]:
            if slot.authenticated:
                return lim.control_rate, lim.control_burst
            return lim.preauth_control_rate, lim.preauth_control_burst

        pump = asyncio.create_task(
            bridge.pump(
                reader, writer, frames,
                first_limit=lim.preauth_max_frame,
                limit=self.relay.max_frame,
                budget=bridge.ControlBudget(rates),
            )
        )  # fmt: skip
        try:
            await self.relay._accept(frames, out, slot)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            out.close()
