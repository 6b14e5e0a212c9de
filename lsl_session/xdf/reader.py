"""Tolerant XDF loader (raw stamps, no clock sync) and a file summary for ``info``."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsl_session.limits import clip, clip_repr

from ._format import DTYPES, ChunkError, ChunkTag, decode_varlen, sample_record_dtype
from ._parse import (
    check_num_samples,
    decode_numeric,
    decode_strings,
    min_sample_bytes,
    parse_file_header,
    parse_footer,
    parse_stream_info,
)
from ._walk import ByteSource, Chunk, Source, WalkStats, iter_chunks, walk

logger = logging.getLogger(__name__)

__all__ = [
    "RawStream", "XdfFile", "iter_chunks", "load_raw", "summarize", "synced_duration"
]  # fmt: skip

_CLOCK = struct.Struct("<dd")
#: Distinct stream ids tracked per file (streams, and ids of stray chunks).
MAX_STREAM_IDS = 4096


@dataclass(slots=True)
class RawStream:
    """One stream as stored in the file: raw stamps, no clock sync, no dejitter.

    Attributes
    ----------
    stream_id : int
        The stream id of the chunks.
    info_xml : str
        The StreamHeader XML as written.
    info : dict
        Top-level header fields as str (None when empty); ``channel_count`` is an
        int, ``nominal_srate`` a float and ``desc`` a pyxdf-style nested dict or None.
    time_stamps : ndarray of float64, shape (n_samples,)
        Raw stamps in the stream's clock.
    time_series : ndarray, shape (n_samples, n_channels) | list of list of str
        Values in the declared dtype (little-endian), or strings.
    clock_times, clock_values : ndarray of float64
        The ClockOffset chunks: CollectionTime and OffsetValue.
    footer : dict | None
        ``first_timestamp``, ``last_timestamp`` (float), ``sample_count`` (int),
        ``clock_offsets`` (list of (time, value)) plus any other field as str.
    sample_count : int
        Number of samples in the file (also with ``headers_only``).
    first_stamp, last_stamp : float | None
        The first and last raw stamp decoded (None with ``headers_only`` or when
        the stream has no sample); set also when samples are not kept.
    """

    stream_id: int
    info_xml: str
    info: dict[str, Any]
    time_stamps: np.ndarray
    time_series: np.ndarray | list[list[str]]
    clock_times: np.ndarray
    clock_values: np.ndarray
    footer: dict[str, Any] | None = None
    sample_count: int = 0
    first_stamp: float | None = None
    last_stamp: float | None = None

    @property
    def channel_format(self) -> str | None:
        """The declared channel format (None if missing)."""
        return self.info.get("channel_format")

    @property
    def name(self) -> str | None:
        """The stream name."""
        return self.info.get("name")


@dataclass(slots=True)
class XdfFile:
    """Result of :func:`load_raw`.

    Attributes
    ----------
    header : dict
        FileHeader fields (``version``, ``datetime``, …) as str.
    streams : dict of int to RawStream
        In order of the first StreamHeader.
    problems : list of str
        Human-readable findings: torn tail, resyncs, unknown stream ids, missing
        footers, footer/sample mismatches, undecodable chunks.
    last_good_offset : int
        Byte offset just after the last complete valid chunk (4 if none).
    file_size : int
        Size of the data in bytes.
    """

    header: dict[str, Any]
    streams: dict[int, RawStream]
    problems: list[str]
    last_good_offset: int
    file_size: int
    headers_only: bool = False
    n_chunks: int = 0
    # private counters used by tests: walker loop iterations and numeric Samples
    # chunks that needed the per-sample (slow) decoder
    _steps: int = 0
    _slow_chunks: int = 0


class _Stream:
    """Per-stream decoding state (pyxdf's StreamData, with the framing done)."""

    def __init__(self, stream_id: int, xml: str, info: dict[str, Any]) -> None:
        self.stream_id, self.xml, self.info = stream_id, xml, info
        self.fmt: str | None = info.get("channel_format")
        self.nch: int = info.get("channel_count") or 0
        srate = info.get("nominal_srate") or 0.0
        self.tdiff = 1.0 / srate if srate > 0 else 0.0
        self.last_stamp = 0.0  # omitted stamps continue from here (pyxdf)
        self.stamps: list[np.ndarray] = []
        self.values: list[Any] = []
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.footer: dict[str, Any] | None = None
        if self.fmt in DTYPES:
            self.record = sample_record_dtype(self.fmt, self.nch)

    def result(self, clock: list[tuple[float, float]]) -> RawStream:
        if self.stamps:
            stamps = np.concatenate(self.stamps)
        else:
            stamps = np.zeros(0)
        if self.fmt == "string" or self.fmt not in DTYPES:
            series: Any = [row for chunk in self.values for row in chunk]
        elif self.values:
            series = np.concatenate(self.values)
        else:
            series = np.zeros((0, self.nch), DTYPES[self.fmt])
        clock_arr = np.array(clock, dtype=np.float64).reshape(-1, 2)
        return RawStream(
            self.stream_id, self.xml, self.info, stamps, series,
            clock_arr[:, 0].copy(), clock_arr[:, 1].copy(), self.footer, self.count,
            self.first, self.last,
        )  # fmt: skip


class _Loader:
    def __init__(
        self, src: ByteSource, headers_only: bool, keep_samples: bool = True
    ) -> None:
        self.src, self.headers_only = src, headers_only
        self.keep_samples = keep_samples
        self.stats = WalkStats()
        self.problems = self.stats.problems
        self.header: dict[str, Any] | None = None
        self.streams: dict[int, _Stream] = {}
        self.clock: dict[int, list[tuple[float, float]]] = {}
        self.orphan_footers: dict[int, dict[str, Any]] = {}
        self.unknown: dict[int, int] = {}
        self.slow_chunks = 0

    def run(self) -> XdfFile:
        last_good, n_chunks = 4, 0
        for chunk in walk(self.src, self.stats):
            n_chunks += 1
            try:
                self.handle(chunk)
            except ChunkError as err:
                self.problems.append(
                    f"{getattr(chunk.tag, 'name', chunk.tag)} chunk at byte "
                    f"{chunk.offset} (stream {chunk.stream_id}) skipped: {err}"
                )
                continue
            last_good = chunk.end
        return self.finish(last_good, n_chunks)

    def handle(self, c: Chunk) -> None:
        if c.tag == ChunkTag.BOUNDARY or c.tag not in ChunkTag._value2member_map_:
            if c.tag != ChunkTag.BOUNDARY:
                self.problems.append(f"unknown chunk tag {c.tag} at byte {c.offset}")
            return
        sid = c.stream_id
        start = c.content_offset + (4 if sid is not None else 0)
        if c.tag == ChunkTag.SAMPLES:
            return self.samples(c, sid, start)
        body = self.src.read(start, c.end - start)
        if c.tag == ChunkTag.CLOCK_OFFSET:
            if sid in self.clock or len(self.clock) < MAX_STREAM_IDS:
                self.clock.setdefault(sid, []).append(_CLOCK.unpack_from(body))
        elif c.tag == ChunkTag.FILE_HEADER:
            self.file_header(c, body)
        elif c.tag == ChunkTag.STREAM_HEADER:
            self.stream_header(c, sid, body.decode("utf-8", "replace"))
        elif c.tag == ChunkTag.STREAM_FOOTER:
            footer = parse_footer(body.decode("utf-8", "replace"))
            if sid in self.streams:
                self.streams[sid].footer = footer
            elif len(self.orphan_footers) < MAX_STREAM_IDS:
                self.orphan_footers[sid] = footer

    def file_header(self, c: Chunk, body: bytes) -> None:
        if self.header is not None:
            raise ChunkError("duplicate FileHeader")
        self.header = parse_file_header(body.decode("utf-8", "replace"))
        if c.offset != 4:
            self.problems.append(
                f"FileHeader at byte {c.offset} is not the first chunk"
            )

    def stream_header(self, c: Chunk, sid: int, xml: str) -> None:
        if sid in self.streams:
            raise ChunkError("duplicate StreamHeader (the first one is kept)")
        if len(self.streams) >= MAX_STREAM_IDS:
            raise ChunkError(f"more than {MAX_STREAM_IDS} streams in one file")
        info = parse_stream_info(xml)
        fmt = info.get("channel_format")
        if fmt not in DTYPES and fmt != "string":
            self.problems.append(
                f"stream {sid}: unknown channel_format {clip_repr(fmt)}"
            )
        elif min_sample_bytes(fmt, info["channel_count"]) - 1 > self.src.size:
            raise ChunkError(
                f"channel_count {info['channel_count']} of format {fmt}: one sample "
                f"would be larger than the whole file ({self.src.size} bytes)"
            )
        self.streams[sid] = _Stream(sid, xml, info)
        if sid in self.orphan_footers:
            self.streams[sid].footer = self.orphan_footers.pop(sid)

    def samples(self, c: Chunk, sid: int, start: int) -> None:
        s = self.streams.get(sid)
        if s is None or (s.fmt not in DTYPES and s.fmt != "string"):
            if sid in self.unknown or len(self.unknown) < MAX_STREAM_IDS:
                self.unknown[sid] = self.unknown.get(sid, 0) + 1
            return
        if self.headers_only:
            n, p = decode_varlen(self.src.read(start, min(9, c.end - start)))
            check_num_samples(n, c.end - start - p, min_sample_bytes(s.fmt, s.nch))
            s.count += n
            return
        body = self.src.read(start, c.end - start)
        if s.fmt == "string":
            stamps, values = decode_strings(body, s.nch, s.last_stamp, s.tdiff)
        else:
            stamps, values, slow = decode_numeric(body, s.record, s.last_stamp, s.tdiff)
            self.slow_chunks += slow
        if len(stamps):
            s.last_stamp = float(stamps[-1])
            if s.first is None:
                s.first = float(stamps[0])
            s.last = s.last_stamp
        if self.keep_samples:
            s.stamps.append(stamps)
            s.values.append(values)
        s.count += len(stamps)

    def finish(self, last_good: int, n_chunks: int) -> XdfFile:
        if self.header is None:
            self.problems.append("no valid FileHeader chunk")
        for sid, n in self.unknown.items():
            self.problems.append(
                f"{n} Samples chunk(s) of stream {sid} skipped (no usable StreamHeader)"
            )
        for sid in set(self.clock) - set(self.streams):
            self.problems.append(f"clock offsets of unknown stream {sid} ignored")
        for sid in self.orphan_footers:
            self.problems.append(f"footer of unknown stream {sid} ignored")
        streams = {}
        for sid, s in self.streams.items():
            streams[sid] = s.result(self.clock.get(sid, []))
            if s.footer is None:
                self.problems.append(
                    f"stream {sid} ({clip(s.info.get('name'), 80)}) has no footer"
                )
            elif s.footer.get("sample_count") != s.count:
                self.problems.append(
                    f"stream {sid} ({clip(s.info.get('name'), 80)}): footer sample_count "
                    f"{s.footer.get('sample_count')} but {s.count} samples in the file"
                )
        problems = getattr(self.problems, "closed", lambda: self.problems)()
        return XdfFile(
            self.header or {}, streams, problems, last_good, self.src.size,
            self.headers_only, n_chunks, self.stats.steps, self.slow_chunks,
        )  # fmt: skip


def load_raw(
    source: Source, *, headers_only: bool = False, keep_samples: bool = True
) -> XdfFile:
    """Load an XDF file tolerantly, without clock sync or dejitter.

    Parameters
    ----------
    source : path | bytes | binary file object
        The XDF data (a file object must be seekable).
    headers_only : bool
        Read headers, clock offsets and footers only; Samples chunks are seeked
        past (only their sample counts are read).
    keep_samples : bool
        False decodes (and so validates) every Samples chunk but keeps only counts
        and the first/last stamp per stream: memory is bounded by the largest
        chunk (plus 16 bytes per clock offset), not by the file.

    Returns
    -------
    XdfFile
        Whatever could be read, plus ``problems`` and ``last_good_offset``.

    Raises
    ------
    XdfFormatError
        If the data is not XDF at all (shorter than 4 bytes or bad magic).
    """
    with ByteSource(source) as src:
        return _Loader(src, headers_only, keep_samples).run()


#: A jump between consecutive clock offsets above this (s) is a clock reset.
RESET_JUMP_S = 1.0


def synced_duration(first: Any, last: Any, clock_values: Any) -> float | None:
    """``last - first``, corrected for a clock reset between them.

    Raw stamps are on the sender's clock. When that clock reset (consecutive
    ClockOffset values jump by more than :data:`RESET_JUMP_S`), the stamps jump
    too, so the first stamp is moved by the first offset and the last one by the
    last offset (pyxdf's sync does the same per segment, to within the drift).
    """
    if first is None or last is None:
        return None
    first, last = float(first), float(last)
    if first == last:
        return 0.0
    values = np.asarray(clock_values, dtype=np.float64)
    if len(values) > 1 and float(np.max(np.abs(np.diff(values)))) > RESET_JUMP_S:
        first += float(values[0])
        last += float(values[-1])
    return max(0.0, last - first)


def summarize(source: Source) -> dict[str, Any]:
    """Summarize an XDF file for ``lsl-session info``.

    Reads headers and footers only when every stream has a footer; otherwise
    decodes every Samples chunk without keeping the samples (memory bounded by the
    largest chunk, not the file).

    Returns
    -------
    dict
        ``file_size``, ``header``, ``streams`` (one dict per stream: identity,
        ``sample_count``, ``first_timestamp``, ``last_timestamp``, ``duration``
        (clock-offset corrected, so right across clock resets),
        ``clock_offsets`` count, ``first_clock_offset``, ``last_clock_offset``,
        ``footer``), ``problems`` and ``last_good_offset``.

    Raises
    ------
    XdfFormatError
        If the data is not XDF at all.
    """
    xdf = load_raw(source, headers_only=True)
    if xdf.problems:
        xdf = load_raw(source, keep_samples=False)
    streams = []
    for sid, s in xdf.streams.items():
        if xdf.headers_only:
            first = s.footer["first_timestamp"] if s.sample_count else None
            last = s.footer["last_timestamp"] if s.sample_count else None
        else:
            first, last = s.first_stamp, s.last_stamp
        n_clock = len(s.clock_times)
        clock = [
            (float(s.clock_times[k]), float(s.clock_values[k]))
            for k in ((0, n_clock - 1) if n_clock else ())
        ]
        streams.append({
            "stream_id": sid,
            **{k: s.info.get(k) for k in ("name", "type", "source_id", "hostname")},
            "channel_count": s.info["channel_count"],
            "channel_format": s.channel_format,
            "nominal_srate": s.info["nominal_srate"],
            "sample_count": s.sample_count,
            "first_timestamp": first,
            "last_timestamp": last,
            "duration": synced_duration(first, last, s.clock_values),
            "clock_offsets": n_clock,
            "first_clock_offset": clock[0] if clock else None,
            "last_clock_offset": clock[-1] if clock else None,
            "footer": s.footer is not None,
        })  # fmt: skip
    return {
        "file_size": xdf.file_size,
        "header": xdf.header,
        "streams": streams,
        "problems": list(xdf.problems),
        "last_good_offset": xdf.last_good_offset,
    }
