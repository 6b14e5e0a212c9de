"""Phone ⇄ relay wire protocol: framing, message validation and stream specs (pure).

Every frame is a 4-byte big-endian payload length followed by the payload. The
payload's first byte says what follows: ``J`` (0x4A) a UTF-8 JSON object, ``B``
(0x42) a binary message (4-byte big-endian header length, a JSON header, then raw
bytes). The full description, for phone developers, is ``docs/phone-protocol.md``.
Nothing here does I/O or imports pylsl.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from outlets.phone.limits import MAX_TEXT, cut

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
#: Largest payload accepted, checked before anything is allocated.
MAX_FRAME = 16 * 1024 * 1024
#: Largest JSON header of a binary message, and largest JSON message.
MAX_HEADER = 64 * 1024
#: Deepest nesting of objects/lists in a JSON message (the message itself is 1).
MAX_DEPTH = 16
#: Most digits of a JSON integer (2^64 has 20).
MAX_INT_DIGITS = 20
KIND_JSON = 0x4A  # "J"
KIND_BINARY = 0x42  # "B"
_LEN = struct.Struct(">I")
#: Byte order and type of sample batches: big-endian float64 (Java's default).
SAMPLE_DTYPE = np.dtype(">f8")


class ProtocolError(Exception):
    """A peer sent something the protocol does not allow.

    Parameters
    ----------
    code : str
        Machine-readable error code sent back in the ``error`` message.
    message : str
        Human-readable explanation.
    fatal : bool
        Whether the connection is closed after the error reply.
    **extra
        Further fields of the error reply (e.g. ``have`` for uploads).
    """

    def __init__(
        self, code: str, message: str, *, fatal: bool = False, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: its ``type``, JSON fields and binary body (or b"")."""

    type: str
    fields: dict[str, Any]
    body: bytes = b""

    def get(self, key: str, default: Any = None) -> Any:
        """Return field ``key`` or ``default``."""
        return self.fields.get(key, default)


# --------------------------------------------------------------------- streams
@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One phone stream: LSL name suffix, type, channels and rate (SPEC §6).

    ``channels`` holds ``(label, unit, type)`` triples.
    """

    key: str
    lsl_type: str
    channels: tuple[tuple[str, str, str], ...]
    nominal_rate: float
    channel_format: str
    capability: str | None

    @property
    def channel_count(self) -> int:
        """Number of channels."""
        return len(self.channels)


STREAMS: dict[str, StreamSpec] = {
    "motion": StreamSpec(
        "motion",
        "Accelerometer",
        (
            ("accel_x", "m/s^2", "ACC"),
            ("accel_y", "m/s^2", "ACC"),
            ("accel_z", "m/s^2", "ACC"),
            ("gyro_x", "rad/s", "GYRO"),
            ("gyro_y", "rad/s", "GYRO"),
            ("gyro_z", "rad/s", "GYRO"),
        ),
        100.0,
        "float32",
        "motion_data",
    ),
    "gsr": StreamSpec(
        "gsr",
        "GSR",
        (("conductance", "microsiemens", "GSR"),),
        128.0,
        "float32",
        "gsr_data",
    ),
    "rgb_frames": StreamSpec(
        "rgb_frames",
        "VideoFrames",
        (("frame_index", "index", "FrameIndex"),),
        30.0,
        "double64",
        "rgb_video",
    ),
    "thermal_frames": StreamSpec(
        "thermal_frames",
        "VideoFrames",
        (
            ("frame_index", "index", "FrameIndex"),
            ("temp_min", "degC", "Temperature"),
            ("temp_max", "degC", "Temperature"),
            ("temp_mean", "degC", "Temperature"),
        ),
        25.0,
        "double64",
        "thermal_video",
    ),
    "orientation": StreamSpec(
        "orientation",
        "Orientation",
        (
            ("alpha", "deg", "ORNT"),
            ("beta", "deg", "ORNT"),
            ("gamma", "deg", "ORNT"),
        ),
        60.0,
        "float32",
        "orientation_data",
    ),
    "events": StreamSpec(
        "events", "Markers", (("event", "", "Marker"),), 0.0, "string", None
    ),
}
#: Streams that carry numeric sample batches.
NUMERIC_STREAMS = tuple(k for k in STREAMS if k != "events")


def streams_for(capabilities: list[str]) -> list[str]:
    """Return the stream keys a phone with ``capabilities`` publishes (events always)."""
    return [
        k
        for k, s in STREAMS.items()
        if s.capability is None or s.capability in capabilities
    ]


# --------------------------------------------------------------------- framing
def parse_length(header: bytes, max_frame: int = MAX_FRAME) -> int:
    """Return the payload length of a 4-byte frame header, checked against the limit.

    Raises
    ------
    ProtocolError
        ``bad_frame`` (fatal) for an empty or oversized frame.
    """
    (n,) = _LEN.unpack(header)
    if n == 0 or n > max_frame:
        raise ProtocolError(
            "bad_frame",
            f"frame length {n} outside 1..{max_frame} bytes (not this protocol?)",
            fatal=True,
        )
    return n


def encode_json(message: dict[str, Any]) -> bytes:
    """Return one complete frame holding ``message`` as JSON."""
    payload = (
        bytes([KIND_JSON])
        + json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    )
    return _LEN.pack(len(payload)) + payload


def encode_binary(header: dict[str, Any], body: bytes | memoryview) -> bytes:
    """Return one complete frame holding a JSON ``header`` and a binary ``body``."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    size = 1 + 4 + len(head) + len(body)
    return b"".join(
        (_LEN.pack(size), bytes([KIND_BINARY]), _LEN.pack(len(head)), head, body)
    )


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(
            "bad_json", f"integer with more than {MAX_INT_DIGITS} digits"
        )
    return int(text)


def _parse_constant(name: str) -> float:
    raise ProtocolError("bad_json", f"{name} is not allowed (plain numbers only)")


def _too_deep(obj: object, limit: int = MAX_DEPTH) -> bool:
    """True if ``obj`` nests containers deeper than ``limit`` (iterative walk)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _load_object(raw: bytes | memoryview) -> dict[str, Any]:
    if len(raw) > MAX_HEADER:
        raise ProtocolError("bad_json", f"JSON longer than {MAX_HEADER} bytes")
    try:
        obj = json.loads(
            bytes(raw).decode("utf-8"),
            parse_int=_parse_int,
            parse_constant=_parse_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"invalid JSON: {cut(str(exc), 120)}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object")
    if _too_deep(obj):
        raise ProtocolError("bad_json", f"JSON nested deeper than {MAX_DEPTH}")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("bad_message", "a message needs a string 'type'")
    return obj


def decode_payload(payload: bytes) -> Message:
    """Decode one frame payload into a `Message`.

    Raises
    ------
    ProtocolError
        ``bad_frame`` (fatal) for an unknown payload kind or a broken binary
        header; ``bad_json``/``bad_message`` (not fatal) for bad JSON.
    """
    kind = payload[0]
    if kind == KIND_JSON:
        obj = _load_object(memoryview(payload)[1:])
        return Message(obj["type"], obj)
    if kind == KIND_BINARY:
        if len(payload) < 5:
            raise ProtocolError("bad_frame", "binary frame too short", fatal=True)
        (h,) = _LEN.unpack_from(payload, 1)
        if h > MAX_HEADER or 5 + h > len(payload):
            raise ProtocolError(
                "bad_frame", f"binary header length {h} does not fit", fatal=True
            )
        obj = _load_object(memoryview(payload)[5 : 5 + h])
        return Message(obj["type"], obj, payload[5 + h :])
    raise ProtocolError(
        "bad_frame",
        f"unknown payload kind 0x{kind:02x} (expected 'J' or 'B')",
        fatal=True,
    )


@dataclass
class FrameDecoder:
    """Incremental decoder: feed received bytes, iterate complete messages."""

    max_frame: int = MAX_FRAME
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> Iterator[Message]:
        """Add ``data`` and yield every message now complete.

        Raises
        ------
        ProtocolError
            As `parse_length` and `decode_payload`.
        """
        self._buf += data
        while len(self._buf) >= 4:
            n = parse_length(bytes(self._buf[:4]), self.max_frame)
            if len(self._buf) < 4 + n:
                return
            payload = bytes(self._buf[4 : 4 + n])
            del self._buf[: 4 + n]
            yield decode_payload(payload)


# ------------------------------------------------------------- sample batches
def encode_samples(stream: str, times: np.ndarray, values: np.ndarray) -> bytes:
    """Return a ``samples`` frame: phone times (s) and an (n, channels) array."""
    values = np.asarray(values, dtype=np.float64).reshape(len(times), -1)
    block = np.empty((len(times), 1 + values.shape[1]), dtype=SAMPLE_DTYPE)
    block[:, 0] = times
    block[:, 1:] = values
    header = {
        "type": "samples",
        "stream": stream,
        "n": len(times),
        "channels": values.shape[1],
    }
    return encode_binary(header, block.tobytes())


def decode_samples(message: Message) -> tuple[str, np.ndarray, np.ndarray]:
    """Decode a ``samples`` message into (stream, phone times, values).

    Rows whose time is not finite are dropped; rows out of time order are sorted
    (stable), so LSL time never goes backwards inside a batch. Vectorised: no
    per-sample work.

    Raises
    ------
    ProtocolError
        ``bad_message`` for an unknown stream, a wrong channel count or a body
        whose size does not match ``n``.
    """
    stream = message.get("stream")
    n = message.get("n")
    spec = STREAMS.get(stream) if isinstance(stream, str) else None
    if spec is None or stream == "events":
        raise ProtocolError(
            "bad_message",
            f"unknown sample stream {cut(stream, 40)!r}; known: {NUMERIC_STREAMS}",
        )
    if message.get("channels") != spec.channel_count:
        raise ProtocolError(
            "bad_message",
            f"stream {stream} has {spec.channel_count} channels, "
            f"got {cut(message.get('channels'), 40)}",
        )
    width = 1 + spec.channel_count
    if not _is_int(n) or n < 1 or len(message.body) != n * width * 8:
        raise ProtocolError(
            "bad_message",
            f"samples body is {len(message.body)} bytes, expected n*{width}*8 "
            f"with n={cut(n, 40)}",
        )
    block = np.frombuffer(message.body, dtype=SAMPLE_DTYPE).reshape(n, width)
    times = block[:, 0].astype(np.float64)
    ok = np.isfinite(times)
    values = block[:, 1:].astype(np.float64)
    if not ok.all():
        times, values = times[ok], values[ok]
    if len(times) > 1 and not np.all(times[1:] >= times[:-1]):
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
    return stream, times, values


# ----------------------------------------------------------------- validation
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool)) and math.isfinite(x)


_CHECKS = {
    "int": _is_int,
    "num": _is_num,
    "str": lambda x: isinstance(x, str),
    "list": lambda x: isinstance(x, list),
    "dict": lambda x: isinstance(x, dict),
}

#: Messages a phone may send: type → {field: kind}. Optional fields are not listed.
PHONE_MESSAGES: dict[str, dict[str, str]] = {
    "hello": {"protocol": "int", "device_id": "str"},
    "sync_req": {"seq": "int", "t1": "num"},
    "sync_done": {"seq": "int", "t1": "num", "t4": "num"},
    "heartbeat": {},
    "event": {"t": "num", "label": "str"},
    "ack": {"re": "int", "status": "str"},
    "samples": {"stream": "str", "n": "int", "channels": "int"},
    "upload_offer": {
        "id": "int",
        "name": "str",
        "size": "int",
        "sha256": "str",
        "file_type": "str",
    },
    "upload_chunk": {"upload_id": "str", "offset": "int"},
    "upload_end": {"id": "int", "upload_id": "str"},
    "bye": {},
}


def validate(message: Message) -> Message:
    """Check a phone message's type and required fields.

    Raises
    ------
    ProtocolError
        ``unknown_type`` or ``bad_message`` (not fatal).
    """
    spec = PHONE_MESSAGES.get(message.type)
    if spec is None:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {message.type[:40]!r}; known: "
            f"{', '.join(sorted(PHONE_MESSAGES))}",
        )
    for name, kind in spec.items():
        if not _CHECKS[kind](message.fields.get(name)):
            raise ProtocolError(
                "bad_message",
                f"{message.type}: field {name!r} must be {kind}, "
                f"got {cut(message.fields.get(name), 40)!r}",
            )
    return message


_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXT = re.compile(r"[A-Za-z0-9]{1,10}")
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Allowed upload extensions per destination folder.
ALLOWED_EXTENSIONS: dict[str, frozenset[str]] = {
    "rgb_videos": frozenset({"mp4", "mkv", "mov", "3gp", "webm", "avi"}),
    "thermal_videos": frozenset(
        {"mp4", "mkv", "mov", "3gp", "webm", "avi", "dat", "raw", "bin"}
    ),
    "sensor_data": frozenset({"csv", "json", "wav", "bin", "dat"}),
}


def check_file_name(name: str, folder: str) -> str:
    """Validate a phone-supplied file name and return its lower-case extension.

    The name is never used as a path: only its extension survives. Anything that
    looks like a path (``/``, ``\\``, ``..``, a drive letter, NUL, control
    characters) is refused.

    Raises
    ------
    ProtocolError
        ``bad_name`` (not fatal).
    """
    bad = None
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        bad = "must be 1-255 characters"
    elif any(c in name for c in "/\\:\0") or any(ord(c) < 32 for c in name):
        bad = "must not contain '/', '\\', ':', NUL or control characters"
    elif name in (".", "..") or name.startswith("..") or _DRIVE.match(name):
        bad = "must not be a path ('..', drive letter)"
    elif "." not in name.strip("."):
        bad = "needs an extension"
    if bad is None:
        ext = name.rsplit(".", 1)[1].lower()
        allowed = ALLOWED_EXTENSIONS.get(folder, frozenset())
        if not _EXT.fullmatch(ext) or ext not in allowed:
            bad = f"extension {ext[:12]!r} not allowed here ({', '.join(sorted(allowed))})"
        else:
            return ext
    raise ProtocolError("bad_name", f"file name {cut(name, 80)!r} refused: {bad}")


def check_sha256(value: str) -> str:
    """Return ``value`` if it is 64 lower-case hex digits, else raise ``bad_message``."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ProtocolError("bad_message", "sha256 must be 64 lower-case hex digits")
    return value


def error_message(
    code: str,
    message: str,
    *,
    re_id: int | None = None,
    fatal: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Build an ``error`` message; the text is cut to `MAX_TEXT` characters."""
    msg: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": cut(message, MAX_TEXT),
        "fatal": fatal,
    }
    if re_id is not None:
        msg["re"] = re_id
    msg.update(extra)
    return msg
