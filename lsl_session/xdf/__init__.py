"""XDF 1.0: chunk encoders and writer, tolerant chunk walker and loader."""

from ._format import BOUNDARY_UUID, CHANNEL_FORMATS, ChunkTag, XdfFormatError
from ._walk import Chunk, iter_chunks
from .reader import RawStream, XdfFile, load_raw, summarize
from .writer import (
    XdfWriter,
    encode_boundary,
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
    iter_sample_chunks,
)

__all__ = [
    "BOUNDARY_UUID",
    "CHANNEL_FORMATS",
    "Chunk",
    "ChunkTag",
    "RawStream",
    "XdfFile",
    "XdfFormatError",
    "XdfWriter",
    "encode_boundary",
    "encode_clock_offset",
    "encode_file_header",
    "encode_samples",
    "encode_stream_footer",
    "encode_stream_header",
    "iter_chunks",
    "iter_sample_chunks",
    "load_raw",
    "summarize",
]
