"""Turn a WebSocket into the framed byte stream a relay `Connection` reads and writes.

Each WebSocket message becomes one protocol frame (``uint32 length + payload``):
a text message is a JSON payload (``J`` + its UTF-8), a binary message is the
payload itself (``J`` or ``B`` first). Frames the relay writes go back one per
message: JSON as text (without the ``J``), anything else as binary. The relay's
own checks (pre-auth frame limit, JSON bounds, error replies) therefore apply to
the WebSocket path unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from outlets.phone.web import ws

logger = logging.getLogger(__name__)

#: Bytes of converted input held before the WebSocket is read again.
READ_AHEAD = 1 << 16
#: Seconds input is discarded after refusing an oversized message.
LINGER_SECONDS = 1.0


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


class ControlBudget:
    """Token bucket of WebSocket control frames (ping/pong) for one connection.

    ``rates()`` gives ``(per_second, burst)`` now (a stricter pair before
    authentication); `take` waits when the bucket is empty, so a ping flood only
    fills the peer's own socket buffers: the relay reads at the budgeted rate.
    """

    def __init__(self, rates: Callable[[], tuple[float, int]]) -> None:
        self._rates = rates
        self._tokens = float(rates()[1])
        self._last = time.monotonic()

    async def take(self) -> None:
        """Spend one token, waiting for it if the bucket is empty."""
        rate, burst = self._rates()
        now = time.monotonic()
        self._tokens = min(float(burst), self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / rate)
            self._tokens, self._last = 1.0, time.monotonic()
        self._tokens -= 1.0


class FrameReader:
    """What `Connection` reads: framed bytes fed from WebSocket messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._data = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self.drained.clear()
        self._data.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._data.set()

    def _took(self) -> None:
        if len(self._buffer) < READ_AHEAD:
            self.drained.set()

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self._eof:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            self._data.clear()
            await self._data.wait()
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._took()
        return out

    async def read(self, n: int = -1) -> bytes:
        while not self._buffer and not self._eof:
            self._data.clear()
            await self._data.wait()
        n = len(self._buffer) if n < 0 else n
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        self._took()
        return out


class FrameWriter:
    """What `Connection` writes: framed bytes sent on as WebSocket messages."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._pending = bytearray()
        self._closed = False

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._writer.transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._pending += data
        while len(self._pending) >= 4:
            (n,) = struct.unpack(">I", self._pending[:4])
            if len(self._pending) < 4 + n:
                return
            payload = bytes(self._pending[4 : 4 + n])
            del self._pending[: 4 + n]
            if payload[:1] == b"J":
                self._writer.write(ws.encode_frame(ws.OP_TEXT, payload[1:]))
            else:
                self._writer.write(ws.encode_frame(ws.OP_BINARY, payload))

    def is_closing(self) -> bool:
        return self._closed or self._writer.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:  # pragma: no cover - can_write_eof is False
        raise NotImplementedError

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self, code: int = 1000) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._writer.write(
                    ws.encode_frame(ws.OP_CLOSE, struct.pack(">H", code))
                )
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    frames: FrameReader,
    *,
    first_limit: int,
    limit: int,
    budget: ControlBudget | None = None,
) -> None:
    """Move WebSocket messages into ``frames`` until the socket ends.

    The first message (the hello) is held to ``first_limit`` bytes, later ones to
    ``limit``. A message over its limit is passed on as a frame header declaring
    its length, so the relay refuses it exactly as it refuses an oversized TCP
    frame (``bad_frame``); nothing of its payload is read. Control frames are
    read at the pace of ``budget`` (see `ControlBudget`).
    """
    on_control = None if budget is None else budget.take
    current = first_limit
    try:
        while True:
            await frames.drained.wait()
            try:
                msg = await ws.read_message(reader, writer, current, on_control)
            except ws.MessageTooBig as exc:
                frames.feed(struct.pack(">I", min(exc.length + 1, 0xFFFFFFFF)))
                # discard what is still coming, so the close is a FIN and the
                # error reply is not wiped out by a TCP reset (as on TCP)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_discard(reader), LINGER_SECONDS)
                return
            if msg.opcode == ws.OP_CLOSE:
                return
            payload = b"J" + msg.data if msg.opcode == ws.OP_TEXT else msg.data
            frames.feed(struct.pack(">I", len(payload)) + payload)
            current = limit
    except ws.WebSocketError as exc:
        logger.debug("websocket closed: %s", exc)
        with contextlib.suppress(Exception):
            writer.write(
                ws.encode_frame(ws.OP_CLOSE, struct.pack(">H", exc.close_code))
            )
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        frames.feed_eof()
