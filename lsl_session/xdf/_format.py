"""XDF 1.0 constants and primitives shared by the writer and the reader."""

from __future__ import annotations

import logging
import struct
from enum import IntEnum

import numpy as np

logger = logging.getLogger(__name__)

MAGIC = b"XDF:"
#: The 16-byte signature carried by every Boundary chunk (a resync point).
BOUNDARY_UUID = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")

#: Channel format name → little-endian numpy dtype (``string`` is not numeric).
DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
}
#: Channel format name → bytes per value (``string`` values have a varlen size).
VALUE_SIZES: dict[str, int] = {name: dt.itemsize for name, dt in DTYPES.items()}
#: All channel formats XDF 1.0 allows, in the spelling LSL uses.
CHANNEL_FORMATS: frozenset[str] = frozenset([*DTYPES, "string"])

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_VARLEN = {1: _U8, 4: _U32, 8: _U64}


class XdfFormatError(ValueError):
    """The data is not an XDF file at all (empty, too short or bad magic)."""


class ChunkError(ValueError):
    """A chunk is malformed (internal: the reader turns it into a problem)."""


class ChunkTag(IntEnum):
    """Chunk tags of XDF 1.0."""

    FILE_HEADER = 1
    STREAM_HEADER = 2
    SAMPLES = 3
    CLOCK_OFFSET = 4
    BOUNDARY = 5
    STREAM_FOOTER = 6


#: Tags whose content starts with a uint32 stream id.
STREAM_TAGS = frozenset(
    {
        ChunkTag.STREAM_HEADER,
        ChunkTag.SAMPLES,
        ChunkTag.CLOCK_OFFSET,
        ChunkTag.STREAM_FOOTER,
    }
)
#: Smallest legal Length (tag + fixed content) per tag.
MIN_LENGTH = {
    ChunkTag.FILE_HEADER: 2,
    ChunkTag.STREAM_HEADER: 6,
    ChunkTag.SAMPLES: 8,  # tag, stream id, 2-byte varlen NumSamples
    ChunkTag.CLOCK_OFFSET: 22,
    ChunkTag.BOUNDARY: 18,
    ChunkTag.STREAM_FOOTER: 6,
}


def encode_varlen(value: int) -> bytes:
    """Encode a non-negative integer as an XDF variable-length integer.

    Parameters
    ----------
    value : int
        The integer, ``0 <= value < 2**64``.

    Returns
    -------
    bytes
        A width byte (1, 4 or 8, the smallest that fits) and the little-endian value.
    """
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varlen value must be in [0, 2**64), {value} is invalid.")
    if value < 1 << 8:
        return bytes((1, value))
    if value < 1 << 32:
        return b"\x04" + _U32.pack(value)
    return b"\x08" + _U64.pack(value)


def decode_varlen(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode a variable-length integer from ``buf`` at ``pos``.

    Returns
    -------
    value : int
        The decoded integer.
    end : int
        The position just after it.

    Raises
    ------
    ChunkError
        On a width byte other than 1/4/8 or when ``buf`` ends early.
    """
    if pos >= len(buf):
        raise ChunkError("varlen integer cut off by the end of the data")
    width = buf[pos]
    st = _VARLEN.get(width)
    if st is None:
        raise ChunkError(f"invalid varlen width byte {width}")
    end = pos + 1 + width
    if end > len(buf):
        raise ChunkError("varlen integer cut off by the end of the data")
    return st.unpack_from(buf, pos + 1)[0], end


def stream_dtype(channel_format: str) -> np.dtype:
    """Return the little-endian numpy dtype of a numeric channel format.

    Raises
    ------
    ValueError
        If the format is not one of XDF's numeric formats.
    """
    try:
        return DTYPES[channel_format]
    except KeyError:
        raise ValueError(
            f"The argument 'channel_format' must be one of {sorted(DTYPES)}, "
            f"{channel_format!r} is invalid."
        ) from None


def sample_record_dtype(channel_format: str, n_channels: int) -> np.dtype:
    """Return the packed record dtype of one sample that carries an 8-byte stamp.

    The record is ``[u1 TimeStampBytes=8][f8 TimeStamp][n_channels values]``.
    """
    return np.dtype(
        [
            ("tsbytes", "u1"),
            ("stamp", "<f8"),
            ("values", stream_dtype(channel_format), (n_channels,)),
        ]
    )
