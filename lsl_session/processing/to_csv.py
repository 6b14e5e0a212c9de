"""Write ``exports/csv/``: one CSV per stream and ``events.csv``.

One header row; a column with a unit is named ``label [unit]`` (``GSR [uS]``,
``time [s]``), so the file stays a plain table for spreadsheet and pandas users.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.to_parquet import BLOCK_ROWS, stream_file_names

logger = logging.getLogger(__name__)


def with_unit(label: str, unit: str | None) -> str:
    """``label [unit]``, or ``label`` when there is no unit."""
    return f"{label} [{unit}]" if unit else label


def write_stream_csv(stream: SyncedStream, path: Path, t0: float) -> int:
    """Write one stream (``time [s]``, ``lsl_time [s]``, channels); return rows."""
    labels = tables.column_labels(stream)
    header = ["time [s]", "lsl_time [s]"] + [
        with_unit(lbl, unit)
        for lbl, unit in zip(labels, stream.channel_units, strict=True)
    ]
    ts = stream.time_stamps
    n = len(ts)
    schema = None
    with open(path, "wb") as fh:
        writer = None
        for start in range(0, max(n, 1), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, n)
            cols: list = [ts[start:stop] - t0, ts[start:stop]]
            if stream.is_string:
                rows = stream.time_series[start:stop]
                cols += [
                    pa.array([r[k] if k < len(r) else "" for r in rows], pa.string())
                    for k in range(len(labels))
                ]
            else:
                block = stream.time_series[start:stop]
                cols += [np.ascontiguousarray(block[:, k]) for k in range(len(labels))]
            table = pa.Table.from_arrays([pa.array(c) for c in cols], names=header)
            if writer is None:
                schema = table.schema
                writer = pacsv.CSVWriter(fh, schema)
            writer.write_table(table.cast(schema))
        if writer is not None:
            writer.close()
    return n


def write_events_csv(events: pd.DataFrame, path: Path) -> int:
    """Write the events table (``onset [s]``, ``lsl_time [s]``, ``duration [s]``, …)."""
    units = {"onset": "s", "lsl_time": "s", "duration": "s"}
    frame = events.rename(
        columns={c: with_unit(c, units.get(c)) for c in events.columns}
    )
    frame.to_csv(path, index=False, float_format="%.9f")
    return len(frame)


def write_csv(
    streams: list[SyncedStream], out_dir: Path, *, t0: float, events: pd.DataFrame
) -> list[str]:
    """Write every stream and the events into ``out_dir``; return the file names."""
    names = stream_file_names(streams)
    files = []
    for k, stream in enumerate(streams):
        name = f"{names[k]}.csv"
        write_stream_csv(stream, out_dir / name, t0)
        files.append(name)
    write_events_csv(events, out_dir / "events.csv")
    files.append("events.csv")
    return files
