"""Content parsers: header/footer XML and Samples chunk bodies (pure functions)."""

from __future__ import annotations

import logging
import math
import struct
from typing import Any
from xml.etree import ElementTree

import numpy as np

from lsl_session.limits import MAX_XML_DEPTH, clip_repr

from ._format import VALUE_SIZES, ChunkError, decode_varlen

logger = logging.getLogger(__name__)

_F64 = struct.Struct("<d")
MAX_CHANNELS = 1 << 24  # a header claiming more is corrupt


def xml_to_dict(
    elem: ElementTree.Element, depth: int = 1
) -> dict[str, list[Any]] | None:
    """Convert an element's children pyxdf-style: every child tag → list of values.

    Raises
    ------
    ChunkError
        If elements are nested deeper than ``MAX_XML_DEPTH`` below the root.
    """
    if len(elem) == 0:
        return None
    if depth > MAX_XML_DEPTH:
        raise ChunkError(f"XML nested deeper than {MAX_XML_DEPTH} levels")
    out: dict[str, list[Any]] = {}
    for child in elem:
        out.setdefault(child.tag, []).append(
            xml_to_dict(child, depth + 1) if len(child) else child.text
        )
    return out


def _parse_xml(xml: str, what: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(xml)
    except ElementTree.ParseError as err:
        raise ChunkError(f"unparsable {what} XML ({err})") from None


def parse_file_header(xml: str) -> dict[str, str | None]:
    """Parse the FileHeader XML into ``{field: text}`` (top-level leaves)."""
    return {c.tag: c.text for c in _parse_xml(xml, "FileHeader") if len(c) == 0}


def parse_stream_info(xml: str) -> dict[str, Any]:
    """Parse a StreamHeader ``<info>`` XML into a flat dict.

    Leaves are kept as text (None when empty; the first occurrence wins);
    ``channel_count`` becomes an int, ``nominal_srate`` a float (0 when invalid) and
    ``desc`` a pyxdf-style nested dict or None.

    Raises
    ------
    ChunkError
        If the XML is not well-formed or ``channel_count`` is unusable.
    """
    info: dict[str, Any] = {}
    for child in _parse_xml(xml, "StreamHeader"):
        info.setdefault(child.tag, xml_to_dict(child) if len(child) else child.text)
    info.setdefault("desc", None)
    try:
        info["channel_count"] = int(info.get("channel_count") or "")
        if not 0 <= info["channel_count"] <= MAX_CHANNELS:
            raise ValueError
    except (TypeError, ValueError):
        raise ChunkError(
            f"bad channel_count {clip_repr(info.get('channel_count'))}"
        ) from None
    try:
        srate = float(info.get("nominal_srate") or "")
    except (TypeError, ValueError):
        srate = 0.0
    info["nominal_srate"] = srate if math.isfinite(srate) and srate >= 0 else 0.0
    return info


def _to_count(text: str) -> int:
    return int(float(text))  # some writers write "9.0"


def parse_footer(xml: str) -> dict[str, Any]:
    """Parse a StreamFooter XML; numbers that are missing or invalid become None.

    Returns
    -------
    dict
        ``first_timestamp``, ``last_timestamp`` (float | None), ``sample_count``
        (int | None), ``clock_offsets`` (list of (time, value)) and any other
        top-level field as text.
    """
    root = _parse_xml(xml, "StreamFooter")
    footer: dict[str, Any] = {c.tag: c.text for c in root if len(c) == 0}
    for key, conv in (
        ("first_timestamp", float),
        ("last_timestamp", float),
        ("sample_count", _to_count),
    ):
        try:
            footer[key] = conv(footer.get(key) or "")
        except (TypeError, ValueError, OverflowError):
            footer[key] = None
    offsets = []
    for off in root.iterfind("clock_offsets/offset"):
        try:
            offsets.append((float(off.findtext("time")), float(off.findtext("value"))))
        except (TypeError, ValueError):
            continue
    footer["clock_offsets"] = offsets
    return footer


def min_sample_bytes(channel_format: str | None, n_channels: int) -> int:
    """Fewest bytes one sample can take: a stamp byte plus the smallest values.

    A numeric value takes its format's width, a string value at least 2 bytes (a
    varlen width byte and a length byte).
    """
    return 1 + n_channels * VALUE_SIZES.get(channel_format or "", 2)


def check_num_samples(n: int, room: int, min_bytes: int = 1) -> None:
    """Raise ChunkError unless ``n`` samples of ``min_bytes`` each fit in ``room``."""
    if n * max(min_bytes, 1) > room:
        raise ChunkError(f"NumSamples {n} exceeds the chunk size")


def _num_samples(body: bytes, min_bytes: int = 1) -> tuple[int, int]:
    n, p = decode_varlen(body)
    check_num_samples(n, len(body) - p, min_bytes)
    return n, p


def _stamp(body: bytes, p: int, last: float, tdiff: float) -> tuple[float, int]:
    """Read one sample's stamp at ``p`` (explicit, or deduced like pyxdf)."""
    if p >= len(body):
        raise ChunkError("Samples chunk ends inside a sample")
    if body[p]:  # pyxdf: any non-zero TimeStampBytes means an 8-byte stamp
        if p + 9 > len(body):
            raise ChunkError("Samples chunk ends inside a time stamp")
        return _F64.unpack_from(body, p + 1)[0], p + 9
    return last + tdiff, p + 1


def decode_numeric(
    body: bytes, record: np.dtype, last: float, tdiff: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Decode a numeric Samples body (after the stream id).

    Parameters
    ----------
    body : bytes
        ``[varlen NumSamples][samples…]``.
    record : np.dtype
        :func:`~lsl_session.xdf._format.sample_record_dtype` of the stream.
    last : float
        The stream's previous stamp (omitted stamps continue from it).
    tdiff : float
        ``1 / nominal_srate`` (0 for irregular streams).

    Returns
    -------
    stamps : ndarray, shape (n,)
    values : ndarray, shape (n, n_channels)
    slow : bool
        True if the per-sample decoder was needed (some stamps omitted).
    """
    dtype, nch = record["values"].base, record["values"].shape[0]
    n, p = _num_samples(body, 1 + nch * dtype.itemsize)
    if len(body) - p == n * record.itemsize:
        arr = np.frombuffer(body, record, count=n, offset=p)
        if bool((arr["tsbytes"] == 8).all()):  # fast path: every stamp explicit
            return arr["stamp"].copy(), np.ascontiguousarray(arr["values"]), False
    nbytes = nch * dtype.itemsize
    stamps, starts = np.empty(n), np.empty(n, np.intp)
    for k in range(n):
        last, p = _stamp(body, p, last, tdiff)
        stamps[k], starts[k] = last, p
        p += nbytes
    if p != len(body):
        raise ChunkError(f"sample data size mismatch ({len(body) - p} bytes left)")
    if nch == 0:
        return stamps, np.empty((n, 0), dtype), True
    raw = np.frombuffer(body, np.uint8)[starts[:, None] + np.arange(nbytes)]
    return stamps, raw.view(dtype).reshape(n, nch), True


def decode_strings(
    body: bytes, nch: int, last: float, tdiff: float
) -> tuple[np.ndarray, list[list[str]]]:
    """Decode a string Samples body: per-sample lists of ``nch`` str (UTF-8)."""
    n, p = _num_samples(body, 1 + 2 * nch)
    stamps, rows = np.empty(n), []
    for k in range(n):
        last, p = _stamp(body, p, last, tdiff)
        stamps[k] = last
        row = []
        for _ in range(nch):
            size, p = decode_varlen(body, p)
            if p + size > len(body):
                raise ChunkError("Samples chunk ends inside a string")
            row.append(body[p : p + size].decode("utf-8", "replace"))
            p += size
        rows.append(row)
    if p != len(body):
        raise ChunkError(f"sample data size mismatch ({len(body) - p} bytes left)")
    return stamps, rows
