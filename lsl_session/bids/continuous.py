"""Physio and motion files: a stream's channels on its nominal-rate grid.

BIDS assumes the rows of ``_physio.tsv.gz`` and ``_motion.tsv`` are evenly spaced at
``SamplingFrequency``. LSL samples are not (dropped samples, device clock drift),
so each stream is linearly interpolated onto ``first_stamp + k / nominal_rate``;
gaps (a jump over two sample periods, a clock reset) become ``n/a``. Row 0 is the
stream's first (synced) sample, whose time gives ``StartTime`` (physio) and the
``acq_time`` in ``scans.tsv``.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsl_session.bids import mapping
from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream

#: Rows interpolated and written at a time (bounded memory for long streams).
BLOCK_ROWS = 262_144


#: Spelled-out LSL units → the CMIXF-12 symbols BIDS recommends.
UNITS = {
    "microsiemens": "uS", "µs": "uS", "millisiemens": "mS", "siemens": "S",
    "kiloohms": "kOhm", "kiloohm": "kOhm", "ohms": "Ohm", "ohm": "Ohm",
    "megaohms": "MOhm", "microvolts": "uV", "µv": "uV", "millivolts": "mV",
    "volts": "V", "degc": "oC", "celsius": "oC", "°c": "oC", "degrees": "deg",
    "radians": "rad", "m/s2": "m/s^2", "meters": "m", "metres": "m",
}  # fmt: skip


def bids_unit(unit: str) -> str:
    """``unit`` in BIDS's recommended spelling when we know it; ``n/a`` when empty."""
    text = " ".join(unit.split())[:50]
    return UNITS.get(text.lower(), text) or "n/a"


def safe_labels(stream: SyncedStream) -> list[str]:
    """Channel names that fit a TSV cell (no tabs or newlines, at most 100 chars)."""
    return [
        " ".join(label.split())[:100] or "ch" for label in tables.column_labels(stream)
    ]


def grid_length(stream: SyncedStream) -> int:
    """Rows of the nominal-rate grid spanning the stream."""
    ts = stream.time_stamps
    span = float(ts.max() - ts[0])
    return math.floor(span * stream.nominal_srate + 1e-6) + 1


def grid_blocks(stream: SyncedStream, channels: list[int]) -> Iterator[np.ndarray]:
    """Yield the interpolated values (rows × channels) block by block."""
    interp = tables.Interpolator(stream)
    first = float(stream.time_stamps[0])
    n = grid_length(stream)
    for start in range(0, n, BLOCK_ROWS):
        k = np.arange(start, min(start + BLOCK_ROWS, n), dtype=np.float64)
        yield interp(first + k / stream.nominal_srate)[:, channels]


def _write_rows(fh: Any, blocks: Iterator[np.ndarray]) -> int:
    rows = 0
    for block in blocks:
        pd.DataFrame(block).to_csv(
            fh, sep="\t", header=False, index=False, na_rep="n/a",
            float_format="%.10g", lineterminator="\n",
        )  # fmt: skip
        rows += len(block)
    return rows


def write_table(path: Path, stream: SyncedStream, channels: list[int]) -> int:
    """Write the headerless TSV (gzip for ``.gz``); return the row count."""
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            return _write_rows(fh, grid_blocks(stream, channels))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        return _write_rows(fh, grid_blocks(stream, channels))


def device_info(stream: SyncedStream) -> dict[str, str]:
    """Manufacturer and model from the stream's ``desc/acquisition``."""
    try:
        acq = stream.info["desc"]["acquisition"][0]
    except (KeyError, IndexError, TypeError):
        return {}
    out = {}
    for key, field in (("manufacturer", "Manufacturer"),
                       ("model", "ManufacturersModelName")):  # fmt: skip
        value = acq.get(key) if isinstance(acq, dict) else None
        if isinstance(value, list) and value and isinstance(value[0], str):
            out[field] = value[0][:200]
    return out


def _json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_physio(
    folder: Path, prefix: str, label: str, stream: SyncedStream,
    channels: list[int], base_time: float,
) -> dict[str, Any]:  # fmt: skip
    """``<prefix>_recording-<label>_physio.tsv.gz`` + ``.json``.

    ``StartTime`` is the stream's first sample minus ``base_time`` (the first
    sample of the recording the file accompanies).
    """
    names = [safe_labels(stream)[k] for k in channels]
    stem = f"{prefix}_recording-{label}_physio"
    rows = write_table(folder / f"{stem}.tsv.gz", stream, channels)
    sidecar: dict[str, Any] = {
        "SamplingFrequency": stream.nominal_srate,
        "StartTime": float(stream.time_stamps[0]) - base_time,
        "Columns": names,
        **device_info(stream),
        "RecordingName": stream.name,
        "LSLStreamType": stream.type,
        "LSLSourceID": stream.source_id,
        "SamplingFrequencyEffective": round(stream.effective_srate, 6),
    }
    for name, k in zip(names, channels, strict=True):
        entry = {"Units": bids_unit(stream.channel_units[k])}
        if stream.channel_types[k]:
            entry["Description"] = f"LSL channel type {stream.channel_types[k]}"
        sidecar[name] = entry
    _json(folder / f"{stem}.json", sidecar)
    return {
        "file": f"{stem}.tsv.gz",
        "rows": rows,
        "first": float(stream.time_stamps[0]),
    }


def write_motion(
    folder: Path, prefix: str, task: str, label: str, stream: SyncedStream,
    channels: list[int],
) -> dict[str, Any]:  # fmt: skip
    """``<prefix>_motion.tsv``, ``_channels.tsv`` and ``_motion.json``.

    ``prefix`` already holds ``tracksys-<label>``; the tracked point is the device.
    """
    labels = safe_labels(stream)
    rows_meta = []
    counts: dict[str, int] = {}
    for k in channels:
        kind = mapping.motion_type(stream, k) or "MISC"
        counts[kind] = counts.get(kind, 0) + 1
        rows_meta.append({
            "name": labels[k], "component": mapping.component(labels[k], kind),
            "type": kind, "tracked_point": label,
            "units": bids_unit(stream.channel_units[k]),
            "sampling_frequency": stream.nominal_srate,
        })  # fmt: skip
    pd.DataFrame(rows_meta).to_csv(
        folder / f"{prefix}_channels.tsv", sep="\t", index=False, lineterminator="\n"
    )
    rows = write_table(folder / f"{prefix}_motion.tsv", stream, channels)
    sidecar: dict[str, Any] = {
        "TaskName": task,
        "SamplingFrequency": stream.nominal_srate,
        "SamplingFrequencyEffective": round(stream.effective_srate, 6),
        "TrackingSystemName": stream.name,
        **device_info(stream),
        "MotionChannelCount": len(channels),
        "MissingValues": "n/a",
        "RecordingDuration": round((rows - 1) / stream.nominal_srate, 6),
    }
    for kind, n in sorted(counts.items()):
        if kind in ("ACCEL", "GYRO", "MAGN", "ORNT", "POS", "VEL"):
            sidecar[f"{kind}ChannelCount"] = n
    _json(folder / f"{prefix}_motion.json", sidecar)
    return {"file": f"{prefix}_motion.tsv", "rows": rows,
            "first": float(stream.time_stamps[0])}  # fmt: skip
