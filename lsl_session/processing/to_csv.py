"""Write ``exports/csv/``: one CSV per stream and ``events.csv``.

One header row; a column with a unit is named ``label [unit]`` (``GSR [uS]``,
``time [s]``), so the file stays a plain table for spreadsheet and pandas users. Header
names are quoted only when they hold a comma, a quote or a line break.

Text cells (markers, labels) that a spreadsheet would run as a formula, those starting
with ``= + - @``, a tab or a carriage return, get a leading ``'`` (the OWASP CSV
injection rule); numeric columns are never touched, and Parquet and MAT keep the raw
text.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.to_parquet import stream_file_names

logger = logging.getLogger(__name__)


#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
FORMULA_START = "=+-@\t\r"
_FORMULA_RE = "^[=+\\-@\t\r]"


def neutralise(text: str) -> str:
    """``'`` + ``text`` if a spreadsheet would read it as a formula, else ``text``."""
    return "'" + text if text[:1] and text[0] in FORMULA_START else text


def neutralise_array(values: pa.Array) -> pa.Array:
    """:func:`neutralise` on every cell of a string array (vectorised)."""
    risky = pc.fill_null(pc.match_substring_regex(values, _FORMULA_RE), False)
    if not pc.any(risky).as_py():
        return values
    return pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)


def header_line(names: list[str]) -> bytes:
    """The header row, each name quoted only when RFC 4180 needs it.

    pyarrow quotes every header name; Octave's ``importdata`` and some
    spreadsheets keep those quotes in the column names, so the header is written
    here and pyarrow writes the data rows only.
    """
    cells = [
        '"' + n.replace('"', '""') + '"' if any(c in n for c in ',"\r\n') else n
        for n in names
    ]
    return (",".join(cells) + "\n").encode("utf-8")


def with_unit(label: str, unit: str | None) -> str:
    """``label [unit]``, or ``label`` when there is no unit."""
    return f"{label} [{unit}]" if unit else label


#: Blocks formatted at once (pyarrow formats without the GIL): the CSV step is
#: bound by float-to-text formatting, so it runs on every core it gets.
CSV_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Rows per formatted block: the text of one block of 64 float32 channels is
#: ~45 MB, so the blocks in flight stay far below the sample data.
CSV_BLOCK_ROWS = 65_536


def _format_block(table: pa.Table) -> pa.Buffer:
    """The CSV rows of one block (no header), as pyarrow writes them."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def _block_table(
    stream: SyncedStream, start: int, stop: int, t0: float, header: list[str]
) -> pa.Table:
    ts = stream.time_stamps
    cols: list = [ts[start:stop] - t0, ts[start:stop]]
    if stream.is_string:
        rows = stream.time_series[start:stop]
        cols += [
            neutralise_array(
                pa.array([r[k] if k < len(r) else "" for r in rows], pa.string())
            )
            for k in range(len(header) - 2)
        ]
    else:
        block = stream.time_series[start:stop]
        cols += [np.ascontiguousarray(block[:, k]) for k in range(len(header) - 2)]
    return pa.Table.from_arrays([pa.array(c) for c in cols], names=header)


def write_stream_csv(stream: SyncedStream, path: Path, t0: float) -> int:
    """Write one stream (``time [s]``, ``lsl_time [s]``, channels); return rows.

    Blocks of :data:`CSV_BLOCK_ROWS` rows are formatted by up to :data:`CSV_WORKERS`
    threads and written in order; at most ``CSV_WORKERS + 1`` formatted blocks
    are held at a time.
    """
    labels = tables.column_labels(stream)
    header = ["time [s]", "lsl_time [s]"] + [
        neutralise(with_unit(lbl, unit))
        for lbl, unit in zip(labels, stream.channel_units, strict=True)
    ]
    n = len(stream.time_stamps)
    first = _block_table(stream, 0, min(CSV_BLOCK_ROWS, n), t0, header)
    schema = first.schema
    starts = range(CSV_BLOCK_ROWS, n, CSV_BLOCK_ROWS)
    with open(path, "wb") as fh, ThreadPoolExecutor(CSV_WORKERS) as pool:
        fh.write(header_line(header))
        pending: deque[Future[pa.Buffer]] = deque([pool.submit(_format_block, first)])
        for start in starts:
            stop = min(start + CSV_BLOCK_ROWS, n)
            table = _block_table(stream, start, stop, t0, header)
            pending.append(pool.submit(_format_block, table.cast(schema)))
            while len(pending) > CSV_WORKERS:
                fh.write(pending.popleft().result())
        while pending:
            fh.write(pending.popleft().result())
    return n


def write_events_csv(events: pd.DataFrame, path: Path) -> int:
    """Write the events table (``onset [s]``, ``lsl_time [s]``, ``duration [s]``, …)."""
    units = {"onset": "s", "lsl_time": "s", "duration": "s"}
    frame = events.copy()
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            risky = frame[col].str.match(_FORMULA_RE, na=False).astype(bool)
            frame.loc[risky, col] = "'" + frame.loc[risky, col]
    frame = frame.rename(
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
