"""XDF 1.0 chunk encoders (pure, returning bytes) and a small file writer."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np

from ._format import (
    BOUNDARY_UUID,
    MAGIC,
    ChunkTag,
    encode_varlen,
    sample_record_dtype,
    stream_dtype,
)

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

#: Default upper bound of one encoded Samples chunk in :func:`iter_sample_chunks`.
DEFAULT_MAX_CHUNK_BYTES = 4 * 1024 * 1024
_XML_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")
_CLOCK = struct.Struct("<Idd")
_STAMP = struct.Struct("<Bd")


def _escape(text: str) -> str:
    """XML character data: ``&``, ``<`` and ``>`` escaped (as xml.sax.saxutils)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _check_stream_id(stream_id: int) -> int:
    if not isinstance(stream_id, int | np.integer) or not 0 <= stream_id < 1 << 32:
        raise ValueError(
            f"The argument 'stream_id' must be an int in [0, 2**32), "
            f"{stream_id!r} is invalid."
        )
    return int(stream_id)


def encode_chunk(tag: int, content: bytes, stream_id: int | None = None) -> bytes:
    """Frame ``content`` as one chunk: varlen Length, uint16 tag, [stream id], content.

    Parameters
    ----------
    tag : int
        The chunk tag (see :class:`~lsl_session.xdf._format.ChunkTag`).
    content : bytes
        The content after the tag (and after the stream id, if one is given).
    stream_id : int | None
        The uint32 stream id for tags 2, 3, 4 and 6.

    Returns
    -------
    bytes
        The encoded chunk.
    """
    head = struct.pack("<H", tag)
    if stream_id is not None:
        head += struct.pack("<I", _check_stream_id(stream_id))
    return encode_varlen(len(head) + len(content)) + head + content


def encode_file_header(extra: Mapping[str, object] | None = None) -> bytes:
    """Encode the magic code and the FileHeader chunk.

    Parameters
    ----------
    extra : Mapping | None
        Additional ``<info>`` fields (e.g. ``{"writer": "lsl_session 0.1"}``). A
        ``datetime`` key replaces the default (now, local time, ``%Y-%m-%dT%H:%M:%S%z``
        like LabRecorder).

    Returns
    -------
    bytes
        ``b"XDF:"`` followed by the FileHeader chunk.
    """
    fields: dict[str, object] = {
        "version": "1.0",
        "datetime": _dt.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for key, value in (extra or {}).items():
        if key == "version" or not _XML_NAME.match(key):
            raise ValueError(f"Invalid file header field name {key!r}.")
        fields[key] = value
    body = "".join(f"\n    <{k}>{_escape(str(v))}</{k}>" for k, v in fields.items())
    xml = f'<?xml version="1.0"?>\n  <info>{body}\n  </info>'
    return MAGIC + encode_chunk(ChunkTag.FILE_HEADER, xml.encode("utf-8"))


def encode_stream_header(stream_id: int, xml: str) -> bytes:
    """Encode a StreamHeader chunk holding the stream's ``<info>`` XML (UTF-8)."""
    return encode_chunk(ChunkTag.STREAM_HEADER, xml.encode("utf-8"), stream_id)


def _encode_numeric(timestamps: np.ndarray, values, channel_format: str) -> bytes:
    values = np.asarray(values)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or values.shape[0] != timestamps.shape[0]:
        raise ValueError(
            f"The argument 'values' must have shape ({timestamps.shape[0]}, "
            f"n_channels), {values.shape} is invalid."
        )
    dtype = stream_dtype(channel_format)
    if values.dtype.kind == "f" and dtype.kind == "i":
        raise TypeError(
            f"Refusing to cast {values.dtype} values to channel format "
            f"{channel_format}."
        )
    records = np.empty(
        timestamps.shape[0], sample_record_dtype(channel_format, values.shape[1])
    )
    records["tsbytes"] = 8
    records["stamp"] = timestamps
    records["values"] = values
    return records.tobytes()


def _encode_strings(timestamps: np.ndarray, values: Sequence[Sequence[str]]) -> bytes:
    if len(values) != timestamps.shape[0]:
        raise ValueError(
            f"The argument 'values' must hold {timestamps.shape[0]} samples, "
            f"{len(values)} is invalid."
        )
    parts: list[bytes] = []
    for stamp, sample in zip(timestamps.tolist(), values, strict=True):
        if isinstance(sample, str):
            raise TypeError(
                "String samples must be sequences of str (one per channel)."
            )
        parts.append(_STAMP.pack(8, stamp))
        for value in sample:
            raw = value.encode("utf-8")
            parts.append(encode_varlen(len(raw)))
            parts.append(raw)
    return b"".join(parts)


def encode_samples(
    stream_id: int,
    timestamps: np.ndarray | Sequence[float],
    values: np.ndarray | Sequence[Sequence[str]],
    channel_format: str,
) -> bytes:
    """Encode one Samples chunk; every sample carries an explicit 8-byte stamp.

    Parameters
    ----------
    stream_id : int
        The stream id.
    timestamps : array-like of float, shape (n_samples,)
        Raw LSL stamps (the stream's clock).
    values : ndarray, shape (n_samples, n_channels) | list of list of str
        Numeric values (cast to the channel format's little-endian dtype; a whole
        chunk is encoded with one numpy record array) or, for ``"string"``, one list
        of ``str`` per sample (UTF-8, any length).
    channel_format : str
        ``int8``, ``int16``, ``int32``, ``int64``, ``float32``, ``double64`` or
        ``string``.

    Returns
    -------
    bytes
        The encoded chunk, or ``b""`` when there are no samples (XDF writers never
        emit empty Samples chunks).
    """
    stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if stamps.shape[0] == 0:
        return b""
    if channel_format == "string":
        body = _encode_strings(stamps, values)
    else:
        body = _encode_numeric(stamps, values, channel_format)
    return encode_chunk(
        ChunkTag.SAMPLES, encode_varlen(stamps.shape[0]) + body, stream_id
    )


def iter_sample_chunks(
    stream_id: int,
    timestamps: np.ndarray | Sequence[float],
    values: np.ndarray | Sequence[Sequence[str]],
    channel_format: str,
    *,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> Iterator[bytes]:
    """Encode samples as consecutive Samples chunks of at most ~``max_bytes`` each.

    A single sample larger than ``max_bytes`` still gets its own chunk.
    """
    stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    n = stamps.shape[0]
    if channel_format != "string":
        values = np.asarray(values)
        nch = values.shape[1] if values.ndim == 2 else 1
        per_sample = 9 + nch * stream_dtype(channel_format).itemsize
        step = max(1, (max_bytes - 32) // per_sample)
        for start in range(0, n, step):
            yield encode_samples(
                stream_id,
                stamps[start : start + step],
                values[start : start + step],
                channel_format,
            )
        return
    start, size = 0, 0
    for k, sample in enumerate(values):
        cost = 9 + sum(9 + len(v.encode("utf-8")) for v in sample)
        if k > start and size + cost > max_bytes - 32:
            yield encode_samples(stream_id, stamps[start:k], values[start:k], "string")
            start, size = k, 0
        size += cost
    if start < n:
        yield encode_samples(stream_id, stamps[start:], values[start:], "string")


def encode_clock_offset(
    stream_id: int, collection_time: float, offset_value: float
) -> bytes:
    """Encode a ClockOffset chunk (CollectionTime and OffsetValue, both f64 seconds)."""
    content = _CLOCK.pack(_check_stream_id(stream_id), collection_time, offset_value)
    return encode_chunk(ChunkTag.CLOCK_OFFSET, content)


def encode_boundary() -> bytes:
    """Encode a Boundary chunk (the 16-byte resync signature)."""
    return encode_chunk(ChunkTag.BOUNDARY, BOUNDARY_UUID)


def _num(value: float | None) -> str:
    # repr() is the shortest string that round-trips a float exactly
    return "0" if value is None else repr(float(value))


def encode_stream_footer(
    stream_id: int,
    first_timestamp: float | None,
    last_timestamp: float | None,
    sample_count: int,
    clock_offsets: Sequence[tuple[float, float]] = (),
    extra: Mapping[str, float | str] | None = None,
) -> bytes:
    """Encode a StreamFooter chunk with LabRecorder's footer XML.

    Parameters
    ----------
    stream_id : int
        The stream id.
    first_timestamp, last_timestamp : float | None
        Raw stamps of the first and last recorded sample (``None`` → ``"0"``, as
        LabRecorder writes for an empty stream).
    sample_count : int
        Number of recorded samples.
    clock_offsets : sequence of (float, float)
        ``(collection_time, offset_value)`` pairs, as in the ClockOffset chunks.
    extra : mapping | None
        More elements after ``clock_offsets`` (``cutoff``, ``end_reason`` of a
        stop by cutoff); names are XML element names, values numbers or plain
        text (escaped).

    Returns
    -------
    bytes
        The encoded chunk. Floats are written with ``repr`` and round-trip exactly.
    """
    offsets = "".join(
        f"<offset><time>{_num(t)}</time><value>{_num(v)}</value></offset>"
        for t, v in clock_offsets
    )
    xml = (
        '<?xml version="1.0"?><info>'
        f"<first_timestamp>{_num(first_timestamp)}</first_timestamp>"
        f"<last_timestamp>{_num(last_timestamp)}</last_timestamp>"
        f"<sample_count>{int(sample_count)}</sample_count>"
        f"<clock_offsets>{offsets}</clock_offsets>"
        + "".join(
            f"<{k}>{_num(v) if isinstance(v, float) else escape(str(v))}</{k}>"
            for k, v in (extra or {}).items()
        )
        + "</info>"
    )
    return encode_chunk(ChunkTag.STREAM_FOOTER, xml.encode("utf-8"), stream_id)


@dataclass(slots=True)
class _StreamStats:
    channel_format: str
    first: float | None = None
    last: float | None = None
    count: int = 0
    offsets: list[tuple[float, float]] = field(default_factory=list)


class XdfWriter:
    """Write an XDF file chunk by chunk, keeping the per-stream footer statistics.

    Parameters
    ----------
    target : str | Path | binary file object
        A path (created or truncated; or appended to with ``append=True``) or an
        open binary file object, which the writer does not close.
    header : Mapping | None
        Extra FileHeader fields (see :func:`encode_file_header`).
    append : bool
        Append to an existing file: no magic and FileHeader are written.

    Notes
    -----
    Not thread-safe: serialise calls. Data reaches the OS on :meth:`flush`; it is on
    disk only after ``flush(fsync=True)``.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | Path | IO[bytes],
        *,
        header: Mapping[str, object] | None = None,
        append: bool = False,
    ) -> None:
        if isinstance(target, str | os.PathLike):
            self._file: IO[bytes] = open(target, "ab" if append else "wb")
            self._owns = True
        else:
            self._file, self._owns = target, False
        self._streams: dict[int, _StreamStats] = {}
        self.bytes_written = 0
        self.closed = False
        if not append:
            self._write(encode_file_header(header))

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close (a file object passed in is flushed, not closed)."""
        if self.closed:
            return
        self.closed = True
        self._file.flush()
        if self._owns:
            self._file.close()

    def flush(self, fsync: bool = False) -> None:
        """Flush buffered data to the OS, and to the disk if ``fsync``."""
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def write_boundary(self) -> None:
        """Write a Boundary chunk."""
        self._write(encode_boundary())

    def write_clock_offset(
        self, stream_id: int, collection_time: float, offset_value: float
    ) -> None:
        """Write a ClockOffset chunk and remember it for the footer."""
        self._write(encode_clock_offset(stream_id, collection_time, offset_value))
        self._stats(stream_id).offsets.append((collection_time, offset_value))

    def write_samples(
        self,
        stream_id: int,
        timestamps: np.ndarray | Sequence[float],
        values: np.ndarray | Sequence[Sequence[str]],
        *,
        max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    ) -> None:
        """Write samples as one or more Samples chunks (see :func:`encode_samples`)."""
        stats = self._stats(stream_id)
        stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        for chunk in iter_sample_chunks(
            stream_id, stamps, values, stats.channel_format, max_bytes=max_bytes
        ):
            self._write(chunk)
        if stamps.shape[0]:
            if stats.first is None:
                stats.first = float(stamps[0])
            stats.last = float(stamps[-1])
            stats.count += int(stamps.shape[0])

    def write_stream_footer(self, stream_id: int) -> None:
        """Write the StreamFooter from what was written for this stream."""
        s = self._stats(stream_id)
        self._write(
            encode_stream_footer(stream_id, s.first, s.last, s.count, s.offsets)
        )

    def write_stream_footers(self) -> None:
        """Write the StreamFooter of every stream, in header order."""
        for stream_id in self._streams:
            self.write_stream_footer(stream_id)

    def write_stream_header(
        self, stream_id: int, xml: str, channel_format: str | None = None
    ) -> None:
        """Write a StreamHeader chunk.

        ``channel_format`` defaults to the ``<channel_format>`` element of ``xml``.
        """
        if stream_id in self._streams:
            raise ValueError(f"Stream id {stream_id} already has a header.")
        if channel_format is None:
            channel_format = ElementTree.fromstring(xml).findtext("channel_format", "")
        if channel_format != "string":
            stream_dtype(channel_format)
        self._write(encode_stream_header(stream_id, xml))
        self._streams[stream_id] = _StreamStats(channel_format)

    def _stats(self, stream_id: int) -> _StreamStats:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise ValueError(f"Stream id {stream_id} has no header yet.") from None

    def _write(self, data: bytes) -> None:
        if self.closed:
            raise ValueError("The XdfWriter is closed.")
        self._file.write(data)
        self.bytes_written += len(data)
