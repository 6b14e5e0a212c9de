"""Helpers for the XDF tests: fixture paths, stream XML and a recording-like file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from lsl_session.xdf import XdfWriter

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "xdf"
WELL_FORMED = [
    "minimal.xdf",
    "clock_resets.xdf",
    "empty_streams.xdf",
    "twochannel_string_marker.xdf",
]
MANGLED = [
    "xdf_rs_chunk_length_lie.xdf",
    "xdf_rs_out_of_order_clock_offsets.xdf",
    "xdf_rs_out_of_order_sample_chunk.xdf",
]


def stream_xml(name: str, fmt: str, nch: int, srate: float = 100.0) -> str:
    """Return a StreamHeader XML like LSL's ``info.as_xml()`` (abridged)."""
    return (
        '<?xml version="1.0"?>\n<info>\n'
        f"\t<name>{name}</name>\n\t<type>Test</type>\n"
        f"\t<channel_count>{nch}</channel_count>\n"
        f"\t<nominal_srate>{srate}</nominal_srate>\n"
        f"\t<channel_format>{fmt}</channel_format>\n"
        f"\t<source_id>src_{name}</source_id>\n\t<hostname>host</hostname>\n"
        "\t<desc />\n</info>\n"
    )


def build_recording(*, footers: bool = True, seed: int = 0) -> bytes:
    """Write a small LabRecorder-like file: 3 streams, offsets, boundaries, footers."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with XdfWriter(buf, header={"writer": "lsl_session tests"}) as w:
        w.write_stream_header(1, stream_xml("eeg", "float32", 4, 100.0))
        w.write_stream_header(2, stream_xml("acc", "int16", 3, 50.0))
        w.write_stream_header(3, stream_xml("markers", "string", 1, 0.0))
        t = 1000.0
        for k in range(6):
            w.write_samples(
                1, t + np.arange(10) / 100.0, rng.normal(size=(10, 4)).astype("f4")
            )
            w.write_samples(
                2, t + np.arange(5) / 50.0, rng.integers(-9, 9, (5, 3), dtype="i2")
            )
            if k % 2:
                w.write_samples(3, [t + 0.05], [[f"marker {k} ✓"]])
            if k % 3 == 0:
                for sid in (1, 2, 3):
                    w.write_clock_offset(sid, t + 0.01 * sid, -0.5 + 1e-6 * k)
                w.write_boundary()
            t += 0.1
        w.write_samples(1, [t], np.ones((1, 4), "f4"))
        if footers:
            w.write_stream_footers()
    return buf.getvalue()
