"""Write ``exports/matlab/<session_id>.mat``: a struct per stream and the events.

Layout (like xdf-Matlab's ``load_xdf``): ``<stream>.time_series`` is channels ×
samples (a cell array for string streams), ``<stream>.time_stamps`` 1 × samples
(recorder LSL clock), ``<stream>.time`` 1 × samples (s since t0), ``<stream>.info``
(name, type, source_id, channel_format, nominal/effective srate, channel labels,
units and types). ``events`` holds onset/lsl_time/duration columns and cell
columns description/stream/value; ``session`` holds the session id and t0.

MATLAB v5 (scipy's writer; non-ASCII text as UTF-16 code units, MATLAB's own layout,
so GNU Octave reads it intact) when every variable is below
:data:`V73_THRESHOLD_BYTES`, else v7.3: HDF5 written with h5py in MATLAB's layout
(512-byte userblock with the MAT header, ``MATLAB_class`` attributes, column-major
dimensions, ``#refs#`` for cell contents).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.io.matlab._mio5 import MatFile5Writer, VarWriter5
from scipy.io.matlab._mio5_params import miUINT16, mxCHAR_CLASS
from scipy.io.matlab._miobase import arr_to_chars

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

#: A variable at least this large switches the whole file to v7.3 (MATLAB's v5
#: limit is 2 GB per variable).
V73_THRESHOLD_BYTES = 2**31 - 1
_IDENT = re.compile(r"[^A-Za-z0-9_]+")
_CLASSES = {
    "float64": "double", "float32": "single", "int8": "int8", "int16": "int16",
    "int32": "int32", "int64": "int64", "uint8": "uint8", "uint16": "uint16",
    "uint32": "uint32", "uint64": "uint64", "bool": "logical",
}  # fmt: skip


def matlab_name(name: str, used: set[str]) -> str:
    """A unique valid MATLAB identifier (≤ 63 characters) for ``name``."""
    base = _IDENT.sub("_", name).strip("_") or "stream"
    if not base[0].isalpha():
        base = f"s_{base}"
    base = base[:58]
    out, n = base, 1
    while out.lower() in used:
        n += 1
        out = f"{base}_{n}"
    used.add(out.lower())
    return out


def _cell(values: list[str], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr.reshape(shape)


def stream_struct(stream: SyncedStream, t0: float) -> dict[str, Any]:
    """The MATLAB struct of one stream (numpy dims = MATLAB dims)."""
    ts = stream.time_stamps
    if stream.is_string:
        nch = stream.channel_count
        flat = [
            row[k] if k < len(row) else ""
            for k in range(nch)
            for row in stream.time_series
        ]
        series: Any = _cell(flat, (nch, len(ts))) if nch else np.zeros((0, len(ts)))
    else:
        series = stream.time_series.T  # channels × samples, F-contiguous view
    info = {
        "name": stream.name, "type": stream.type, "source_id": stream.source_id,
        "channel_format": stream.channel_format, "channel_count": float(stream.channel_count),
        "nominal_srate": float(stream.nominal_srate), "effective_srate": float(stream.effective_srate),
        "srate": float(stream.nominal_srate),
        "channel_labels": _cell(list(stream.channel_labels), (1, len(stream.channel_labels))),
        "channel_units": _cell(list(stream.channel_units), (1, len(stream.channel_units))),
        "channel_types": _cell(list(stream.channel_types), (1, len(stream.channel_types))),
        "hostname": str(stream.info.get("hostname") or ""),
    }  # fmt: skip
    return {
        "time_series": series,
        "time_stamps": ts.reshape(1, -1),
        "time": (ts - t0).reshape(1, -1),
        "info": info,
    }


def events_struct(events: pd.DataFrame) -> dict[str, Any]:
    """The events as a struct of columns (n × 1)."""
    out: dict[str, Any] = {}
    for col in events.columns:
        values = events[col]
        if values.dtype.kind == "f":
            out[col] = values.to_numpy(np.float64).reshape(-1, 1)
        else:
            out[col] = _cell([str(v) for v in values], (len(values), 1))
    return out


def _nbytes(value: Any) -> int:
    if isinstance(value, dict):
        return max((_nbytes(v) for v in value.values()), default=0)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.nbytes
    if isinstance(value, np.ndarray):
        return sum(len(str(v)) * 2 + 64 for v in value.flat)
    return 64


def build_variables(
    streams: list[SyncedStream], t0: float, events: pd.DataFrame, session_id: str
) -> dict[str, Any]:
    """All variables of the file: one struct per stream, ``events``, ``session``."""
    used = {"events", "session"}
    names = {}
    variables: dict[str, Any] = {}
    for s in streams:
        var = matlab_name(s.name, used)
        variables[var] = stream_struct(s, t0)
        names[var] = s.name
    variables["events"] = events_struct(events)
    variables["session"] = {
        "session_id": session_id, "t0_lsl_time": float(t0),
        "stream_variables": _cell(list(names), (1, len(names))),
        "stream_names": _cell(list(names.values()), (1, len(names))),
    }  # fmt: skip
    return variables


def write_matlab(
    streams: list[SyncedStream],
    path: Path,
    *,
    t0: float,
    events: pd.DataFrame,
    session_id: str,
    threshold: int | None = None,
    version: str = "auto",
) -> dict[str, Any]:
    """Write the session's ``.mat``; return ``{"file", "format", "variables"}``.

    ``version`` is ``"5"``, ``"7.3"`` or ``"auto"`` (v7.3 when a variable reaches
    ``threshold`` bytes, default :data:`V73_THRESHOLD_BYTES`).
    """
    if version not in ("auto", "5", "7.3"):
        raise ValueError(f"MAT version must be auto, 5 or 7.3, not {version!r}")
    limit = V73_THRESHOLD_BYTES if threshold is None else int(threshold)
    variables = build_variables(streams, t0, events, session_id)
    largest = max((_nbytes(v) for v in variables.values()), default=0)
    if version == "5" and largest >= V73_THRESHOLD_BYTES:
        raise ValueError("a variable is over 2 GB: MATLAB v5 cannot hold it (use 7.3)")
    if version == "5" or (version == "auto" and largest < limit):
        write_v5(path, variables)
        fmt = "v5"
    else:
        write_v73(path, variables)
        fmt = "v7.3"
    return {"file": path.name, "format": fmt, "variables": list(variables)}


# --------------------------------------------------------------------- v5
class _Utf16CharWriter(VarWriter5):
    """scipy's v5 variable writer, with non-ASCII text as MATLAB itself stores it
    and numeric data written without a copy.

    scipy writes char data as ``miUTF8`` bytes under a header that counts
    characters; GNU Octave reads that many *bytes* and truncates every non-ASCII
    string. MATLAB's own files hold char data as UTF-16 code units in a
    ``miUINT16`` element with the code-unit count as the dimension, which MATLAB
    and Octave (converting to its UTF-8 chars) both read intact. ASCII-only text
    is left to scipy (byte-identical to ``scipy.io.savemat``).
    """

    def write_bytes(self, arr: np.ndarray) -> None:
        """Write ``arr`` in column-major order without a copy when it already is.

        scipy writes ``arr.tobytes(order="F")``, a full copy of every array (the
        channels × samples view of a 1 GB recording doubled the peak memory).
        The bytes are the same.
        """
        if arr.ndim > 1 and arr.flags.f_contiguous:
            self.file_stream.write(memoryview(arr.T).cast("B"))
        elif arr.ndim <= 1 and arr.flags.c_contiguous and arr.size:
            self.file_stream.write(memoryview(arr.reshape(-1)).cast("B"))
        else:
            super().write_bytes(arr)

    def write_char(self, arr: np.ndarray, codec: str = "ascii") -> None:
        chars = arr_to_chars(arr) if arr.dtype.kind == "U" else arr
        if chars.dtype.kind != "U" or chars.size == 0 or chars.ndim != 2:
            return super().write_char(arr, codec)
        rows = ["".join(row) for row in chars.tolist()]
        if all(r.isascii() for r in rows):
            return super().write_char(arr, codec)
        units = [np.frombuffer(r.encode("utf-16-le"), "<u2") for r in rows]
        width = max(len(u) for u in units)
        codes = np.full((len(units), width), ord(" "), np.uint16)  # MATLAB pads
        for k, u in enumerate(units):
            codes[k, : len(u)] = u
        self.write_header(codes.shape, mxCHAR_CLASS)
        self.write_element(codes.T.ravel(), mdtype=miUINT16)  # column-major
        return None


def write_v5(path: Path, variables: dict[str, Any]) -> None:
    """Write ``variables`` as an uncompressed MATLAB v5 MAT-file (UTF-16 text)."""
    with open(path, "wb") as fh:
        writer = MatFile5Writer(
            fh, unicode_strings=True, long_field_names=True, oned_as="row"
        )
        writer.write_file_header()
        chars = _Utf16CharWriter(writer)
        for name, value in variables.items():
            chars.write_top(value, name.encode("latin1"), False)


# ------------------------------------------------------------------- v7.3
def _header() -> bytes:
    text = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        + time.strftime("%a %b %d %H:%M:%S %Y")
        + " HDF5 schema 1.00 ."
    )
    head = text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02IM"
    return head.ljust(512, b"\x00")


class _V73:
    def __init__(self, h5: Any) -> None:
        self.h5 = h5
        self.refs = None
        self.counter = 0

    def _refs_group(self):
        if self.refs is None:
            self.refs = self.h5.create_group("#refs#")
        return self.refs

    def write(self, parent: Any, name: str, value: Any) -> Any:
        import h5py

        if isinstance(value, dict):
            group = parent.create_group(name)
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            for key, item in value.items():
                self.write(group, key, item)
            vlen = h5py.vlen_dtype(np.dtype("S1"))
            fields = np.empty(len(value), dtype=object)
            fields[:] = [np.array(list(k), dtype="S1") for k in value]
            group.attrs.create("MATLAB_fields", fields, dtype=vlen)
            return group
        if isinstance(value, str):
            codes = np.frombuffer(value.encode("utf-16-le"), "<u2").reshape(1, -1)
            return self._array(parent, name, codes, "char", decode=True)
        arr = np.asarray(value)
        if arr.dtype == object:
            return self._cell(parent, name, arr)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr.reshape(1, -1)
        return self._array(parent, name, arr, _CLASSES[arr.dtype.name])

    def _array(self, parent, name, arr, cls, decode=False):
        """Store a MATLAB array with numpy dims = MATLAB dims (HDF5 dims reversed)."""
        if arr.size == 0:
            ds = parent.create_dataset(name, data=np.array(arr.shape, np.uint64))
            ds.attrs["MATLAB_empty"] = np.uint8(1)
        else:
            ds = parent.create_dataset(
                name, data=arr.T
            )  # F-order bytes = HDF5 C-order of .T
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        if decode:
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
        return ds

    def _cell(self, parent, name, arr):
        import h5py

        refs = self._refs_group()
        out = np.empty(arr.shape, dtype=h5py.ref_dtype)
        for idx, item in np.ndenumerate(arr):
            self.counter += 1
            target = self.write(refs, f"r{self.counter}", item)
            out[idx] = target.ref
        if arr.ndim == 1:
            out = out.reshape(1, -1)
        ds = parent.create_dataset(name, data=out.T, dtype=h5py.ref_dtype)
        ds.attrs["MATLAB_class"] = np.bytes_("cell")
        return ds


def write_v73(path: Path, variables: dict[str, Any]) -> None:
    """Write ``variables`` as a MATLAB v7.3 (HDF5) MAT-file."""
    import h5py

    with h5py.File(path, "w", userblock_size=512, libver="earliest") as h5:
        writer = _V73(h5)
        for name, value in variables.items():
            writer.write(h5, name, value)
    with open(path, "r+b") as fh:
        fh.write(_header())
    logger.info("wrote MATLAB v7.3 file %s", path)


def stream_variable_names(streams: list[SyncedStream]) -> list[str]:
    """The variable name each stream gets, in order."""
    used = {"events", "session"}
    return [matlab_name(s.name, used) for s in streams]


__all__ = [
    "V73_THRESHOLD_BYTES",
    "stream_variable_names",
    "tables",
    "write_matlab",
    "write_v73",
]
