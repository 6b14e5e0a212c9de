"""A bounded RFC 6455 WebSocket codec for the server side (no extensions).

A frame's length is checked against the caller's limit before its payload is read,
so a peer can never make the relay buffer more than the limit. Client frames must
be masked; fragmented messages are reassembled up to the same limit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Frames one message may be split into (a flood of empty fragments is refused).
MAX_FRAGMENTS = 1024
#: A pong is not queued while this many bytes wait to be sent to the peer.
MAX_PONG_BACKLOG = 1 << 16


class WebSocketError(Exception):
    """A protocol violation by the peer; ``close_code`` says how to close."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class MessageTooBig(WebSocketError):
    """A message longer than the limit (its declared length is kept)."""

    def __init__(self, length: int) -> None:
        super().__init__(f"message of {length} bytes is over the limit", 1009)
        self.length = length


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    data = np.frombuffer(payload, np.uint8)
    key = np.resize(np.frombuffer(mask, np.uint8), data.size)
    return (data ^ key).tobytes()


@dataclass(slots=True)
class Message:
    """One complete data message (text or binary) or a control frame."""

    opcode: int
    data: bytes


async def read_frame(
    reader: asyncio.StreamReader, limit: int
) -> tuple[bool, int, bytes]:
    """Read one frame: ``(fin, opcode, payload)``, unmasked.

    Raises
    ------
    MessageTooBig
        The declared length is over ``limit`` (nothing more is read).
    WebSocketError
        Unmasked client frame, reserved bits, bad control frame.
    """
    b0, b1 = await reader.readexactly(2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    if b0 & 0x70:
        raise WebSocketError("reserved bits set (no extension was negotiated)")
    if not b1 & 0x80:
        raise WebSocketError("client frames must be masked")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    if opcode >= 0x8 and (n > 125 or not fin):
        raise WebSocketError("control frames are short and never fragmented")
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketError(f"unknown opcode {opcode}")
    if n > limit:
        raise MessageTooBig(n)
    mask = await reader.readexactly(4)
    payload = await reader.readexactly(n) if n else b""
    return fin, opcode, _unmask(payload, mask) if n else b""


async def read_message(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    limit: int,
    on_control: Callable[[], Awaitable[None]] | None = None,
) -> Message:
    """Read the next data message (answering pings on the way) or a close.

    Fragments are joined; their total is held to ``limit`` and their number to
    `MAX_FRAGMENTS`. ``await on_control()`` runs before every ping/pong is handled
    (the caller's rate limit: it may wait, and the socket is not read meanwhile);
    a pong is dropped while `MAX_PONG_BACKLOG` bytes wait to be sent.
    """
    parts: list[bytes] = []
    first = None
    total = 0
    while True:
        fin, opcode, payload = await read_frame(reader, limit - total)
        if opcode in (OP_PING, OP_PONG):
            if on_control is not None:
                await on_control()
            if opcode == OP_PING and writer.transport.get_write_buffer_size() < (
                MAX_PONG_BACKLOG
            ):
                writer.write(encode_frame(OP_PONG, payload))
            continue
        if opcode == OP_CLOSE:
            return Message(OP_CLOSE, payload)
        if first is None:
            if opcode == OP_CONT:
                raise WebSocketError("continuation without a message")
            first = opcode
        elif opcode != OP_CONT:
            raise WebSocketError("new message inside a fragmented one")
        parts.append(payload)
        total += len(payload)
        if fin:
            return Message(first, b"".join(parts))
        if len(parts) >= MAX_FRAGMENTS:
            raise WebSocketError("message split into too many fragments", 1009)
