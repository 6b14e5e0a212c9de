"""Write ``processing/synchronized_data/``: Parquet tables and ``sync_report.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lsl_session.fsutil import check_room
from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

#: Rows per Parquet row group (and per in-memory block while writing).
BLOCK_ROWS = 262_144


def stream_file_names(streams: list[SyncedStream]) -> dict[int, str]:
    """A unique, file-name-safe base name per stream (index in ``streams`` → name)."""
    used: set[str] = set()
    out = {}
    for k, key in enumerate(tables.stream_keys(streams)):
        base = tables.safe_name(key)
        name, n = base, 1
        while (
            name.lower() in used
            or name.lower() == "events"
            or name.startswith("aligned_")
        ):
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        out[k] = name
    return out


def stream_metadata(stream: SyncedStream) -> dict[str, Any]:
    """Identity, rates and channels of a stream (stored in the Arrow schema)."""
    return {
        "name": stream.name,
        "type": stream.type,
        "source_id": stream.source_id,
        "stream_id": stream.stream_id,
        "channel_format": stream.channel_format,
        "nominal_srate": stream.nominal_srate,
        "effective_srate": stream.effective_srate,
        "hostname": stream.info.get("hostname"),
        "channels": [
            {"column": c, "label": lbl, "unit": u, "type": t}
            for c, lbl, u, t in zip(
                tables.column_labels(stream), stream.channel_labels,
                stream.channel_units, stream.channel_types, strict=True,
            )
        ],
    }  # fmt: skip


def _schema(stream: SyncedStream) -> pa.Schema:
    fields = [
        pa.field("time", pa.float64(), metadata={"unit": "s"}),
        pa.field("lsl_time", pa.float64(), metadata={"unit": "s"}),
    ]
    value_type = (
        pa.string()
        if stream.is_string
        else pa.from_numpy_dtype(np.asarray(stream.time_series).dtype)
    )
    for col, unit, ctype in zip(
        tables.column_labels(stream),
        stream.channel_units,
        stream.channel_types,
        strict=True,
    ):
        fields.append(pa.field(col, value_type, metadata={"unit": unit, "type": ctype}))
    meta = {
        "lsl_session": json.dumps(stream_metadata(stream)),
        "units": units_json(fields),
    }
    return pa.schema(fields, metadata=meta)


def units_json(fields: list[pa.Field]) -> str:
    """``{"column": "unit", …}`` of the fields, for the Parquet key-value metadata."""
    return json.dumps(
        {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in fields},
        ensure_ascii=False,
    )


def _writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionary-encode string columns only (it is ~10× slower on float data)."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    return {"use_dictionary": strings or False, "compression": "snappy"}


def write_stream(stream: SyncedStream, path: Path, t0: float) -> int:
    """Write one stream at its native rate; return the number of rows."""
    schema = _schema(stream)
    ts = stream.time_stamps
    n = len(ts)
    labels = tables.column_labels(stream)
    with pq.ParquetWriter(path, schema, **_writer_options(schema)) as writer:
        for start in range(0, max(n, 1), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, n)
            cols: list[Any] = [ts[start:stop] - t0, ts[start:stop]]
            if stream.is_string:
                rows = stream.time_series[start:stop]
                cols += [
                    [r[k] if k < len(r) else "" for r in rows]
                    for k in range(len(labels))
                ]
            else:
                block = stream.time_series[start:stop]
                cols += [np.ascontiguousarray(block[:, k]) for k in range(len(labels))]
            writer.write_table(pa.Table.from_arrays(
                [pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)],
                schema=schema,
            ))  # fmt: skip
    return n


def aligned_bytes(
    streams: list[SyncedStream],
    t0: float,
    rate: float,
    window: tuple[float, float] | None = None,
) -> int:
    """Uncompressed size of the aligned table (an upper bound of the Parquet file)."""
    numeric = [s for s in streams if tables.is_numeric(s)]
    k0, k1 = tables.grid_span(numeric, t0, rate, window)
    row = 16 + sum(tables.aligned_dtype(s).itemsize * s.channel_count for s in numeric)
    return max(k1 - k0 + 1, 0) * row


def write_aligned(
    streams: list[SyncedStream],
    path: Path,
    t0: float,
    rate: float,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Write the aligned grid table; return its summary.

    Raises
    ------
    GridError
        If the grid would be implausibly long (see `tables.grid_span`).
    DiskSpaceError
        If its uncompressed size exceeds the free disk space (nothing is written).
    """
    numeric = [s for s in streams if tables.is_numeric(s)]
    check_room(path.parent, aligned_bytes(numeric, t0, rate, window), f"{path.name}")
    names = tables.aligned_columns(numeric)
    fields = [
        pa.field("time", pa.float64(), metadata={"unit": "s"}),
        pa.field("lsl_time", pa.float64(), metadata={"unit": "s"}),
    ]
    for s in numeric:
        dtype = pa.from_numpy_dtype(tables.aligned_dtype(s))
        for unit in s.channel_units:
            fields.append(
                pa.field(names[len(fields) - 2], dtype, metadata={"unit": unit})
            )
    meta = {
        "lsl_session": json.dumps(
            {
                "rate": rate,
                "t0": t0,
                "interpolation": "linear",
                "streams": [s.name for s in numeric],
            }
        ),
        # plain key-value metadata of the Parquet footer (DuckDB's
        # parquet_kv_metadata, parquet-tools): Arrow's field metadata is hidden
        # inside the binary ARROW:schema entry
        "units": units_json(fields),
    }
    schema = pa.schema(fields, metadata=meta)
    rows = 0
    with pq.ParquetWriter(path, schema, **_writer_options(schema)) as writer:
        for rel, lsl, arrays in tables.aligned_blocks(
            numeric, t0, rate, block=BLOCK_ROWS, window=window
        ):
            cols = [rel, lsl] + [
                np.ascontiguousarray(a[:, k]) for a in arrays for k in range(a.shape[1])
            ]
            writer.write_table(pa.Table.from_arrays(
                [pa.array(c, type=f.type, from_pandas=True) for c, f in zip(cols, schema, strict=True)],
                schema=schema,
            ))  # fmt: skip
            rows += len(rel)
            # free this block before the generator builds the next one: two
            # blocks alive at once were ~0.3 GB on 64 channels
            del cols, arrays
    return {"file": path.name, "rate": rate, "rows": rows, "columns": len(names)}


def write_events(events: pd.DataFrame, path: Path) -> int:
    """Write the events table; return the number of rows."""
    table = pa.Table.from_pandas(events, preserve_index=False)
    table = table.replace_schema_metadata(
        {"lsl_session": json.dumps({"onset_unit": "s"})}
    )
    pq.write_table(table, path)
    return len(events)


def stream_report(stream: SyncedStream, t0: float) -> dict[str, Any]:
    """The sync report entry of one stream."""
    ts = stream.time_stamps
    return {
        **{k: v for k, v in stream_metadata(stream).items() if k != "channels"},
        "sample_count": len(ts),
        "first_time": float(ts[0] - t0) if len(ts) else None,
        "last_time": float(ts[-1] - t0) if len(ts) else None,
        "first_lsl_time": float(ts[0]) if len(ts) else None,
        "last_lsl_time": float(ts[-1]) if len(ts) else None,
        "clock_offsets": len(stream.clock_times),
        "offset_fit": stream.fit,
        "clock_segments": [list(s) for s in stream.clock_segments],
        "segments": [list(s) for s in stream.segments],
        "gaps": tables.gap_report(stream),
    }


def write_synchronized(
    streams: list[SyncedStream],
    out_dir: Path,
    *,
    t0: float,
    rate: float | None,
    events: pd.DataFrame,
    extra_report: dict[str, Any] | None = None,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Write every table of ``synchronized_data`` into ``out_dir``.

    ``window`` is the recorder's (start, stop) LSL time; it bounds the aligned grid.

    Returns
    -------
    dict
        The sync report (also written as ``sync_report.json``).
    """
    rate = float(rate) if rate else tables.default_rate(streams)
    names = stream_file_names(streams)
    report: dict[str, Any] = {"t0_lsl_time": t0, "streams": [], **(extra_report or {})}
    for k, stream in enumerate(streams):
        entry = stream_report(stream, t0)
        entry["file"] = f"{names[k]}.parquet"
        write_stream(stream, out_dir / entry["file"], t0)
        report["streams"].append(entry)
    rate_name = f"{rate:g}".replace(".", "_")
    report["aligned"] = write_aligned(
        streams, out_dir / f"aligned_{rate_name}Hz.parquet", t0, rate, window
    )
    report["events"] = {
        "file": "events.parquet",
        "count": write_events(events, out_dir / "events.parquet"),
    }
    (out_dir / "sync_report.json").write_text(
        json.dumps(report, indent=2, default=_json_default), encoding="utf-8"
    )
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
