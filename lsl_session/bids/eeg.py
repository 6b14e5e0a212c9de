"""One EEG stream → ``eeg/`` through mne-bids (BrainVision via pybv, or EDF via edfio).

The stream is put on its nominal-rate grid from its first synced sample (drift
and dropped samples are interpolated over; gaps are zeros marked
``BAD_ACQ_SKIP``), channels are scaled to volts (µV when the stream gives no
unit, the LSL convention), and the Raw is written with ``allow_preload=True``
and an explicit ``format`` (mne-bids #803/#819). mne-bids writes annotations
relative to the Raw's first sample; ``first_samp`` is 0 here (mne-bids #403).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.bids import continuous
from lsl_session.bids.entities import Entities
from lsl_session.bids.mapping import EEG_STREAM_TYPES
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.to_mne import unit_scale

logger = logging.getLogger(__name__)

FORMATS = {"brainvision": "BrainVision", "edf": "EDF"}


def _types(stream: SyncedStream) -> list[str]:
    out = []
    for k in range(stream.channel_count):
        kind = (stream.channel_types[k] or stream.type or "").strip().lower()
        out.append(EEG_STREAM_TYPES.get(kind, "misc"))
    return out


def build_raw(
    stream: SyncedStream, *, start_wall: dt.datetime | None, t0: float,
    line_freq: float | None,
):  # fmt: skip
    """The EEG stream as an ``mne.io.RawArray`` in volts; gaps annotated.

    Returns
    -------
    raw : mne.io.RawArray
    first : float
        LSL time of sample 0.
    """
    import mne

    first = float(stream.time_stamps[0])
    data = np.concatenate(
        list(continuous.grid_blocks(stream, list(range(stream.channel_count))))
    ).T.astype(np.float64)
    kinds = _types(stream)
    for k, kind in enumerate(kinds):
        scale = unit_scale("eeg", stream.channel_units[k]) if kind in (
            "eeg", "eog", "ecg", "emg") else 1.0  # fmt: skip
        data[k] *= scale
    missing = ~np.isfinite(data).all(axis=0)
    data[:, missing] = 0.0
    names = continuous.safe_labels(stream)
    info = mne.create_info(names, stream.nominal_srate, kinds)
    if line_freq:
        info["line_freq"] = float(line_freq)
    raw = mne.io.RawArray(data, info, verbose="error")
    if start_wall is not None:
        raw.set_meas_date(
            (start_wall + dt.timedelta(seconds=first - t0)).astimezone(dt.UTC)
        )
    if missing.any():
        edges = np.flatnonzero(
            np.diff(np.concatenate(([0], missing.view(np.int8), [0])))
        )
        starts, stops = edges[0::2], edges[1::2]
        sf = stream.nominal_srate
        raw.set_annotations(mne.Annotations(
            onset=starts / sf, duration=(stops - starts) / sf,
            description=["BAD_ACQ_SKIP"] * len(starts),
            orig_time=raw.info["meas_date"],
        ))  # fmt: skip
    return raw, first


def inside(onsets: np.ndarray, sfreq: float, n_times: int) -> np.ndarray:
    """Which onsets (s from sample 0) land on a sample of the file: 0 … n_times-1.

    Rounded as pybv and mne-bids round them, so an onset half a sample before the
    end is out (pybv refuses a file with an event past its last sample).
    """
    onsets = np.asarray(onsets, dtype=float)
    sample = np.round(onsets * sfreq)
    return (onsets >= 0) & (sample >= 0) & (sample < n_times)


def add_markers(raw: Any, onsets: np.ndarray, descriptions: list[str]) -> None:
    """Annotate markers that fall inside the recording (onsets from sample 0)."""
    import mne

    keep = inside(onsets, raw.info["sfreq"], raw.n_times)
    if not keep.any():
        return
    raw.set_annotations(raw.annotations + mne.Annotations(
        onset=onsets[keep], duration=0.0,
        description=[d for d, ok in zip(descriptions, keep, strict=True) if ok],
        orig_time=raw.info["meas_date"],
    ))  # fmt: skip


def write_eeg(
    raw: Any, root: Path, entities: Entities, *, fmt: str,
    acquisition: str | None = None, device: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """Write ``raw`` with mne-bids into the dataset at ``root``; return the data file.

    mne-bids names the manufacturer after the file format (BrainVision → "Brain
    Products"); the sidecar gets the stream's own ``desc/acquisition`` instead.
    """
    from mne_bids import BIDSPath, write_raw_bids

    path = BIDSPath(
        subject=entities.subject, session=entities.session, task=entities.task,
        acquisition=acquisition or entities.acquisition, run=entities.run,
        datatype="eeg", root=root,
    )  # fmt: skip
    written = write_raw_bids(
        raw, path, format=FORMATS[fmt], allow_preload=True, overwrite=True,
        verbose="error",
    )  # fmt: skip
    sidecar = written.copy().update(suffix="eeg", extension=".json").fpath
    meta = json.loads(Path(sidecar).read_text())
    meta.pop("Manufacturer", None)
    meta.update(device or {})
    Path(sidecar).write_text(json.dumps(meta, indent=4, ensure_ascii=False) + "\n")
    return Path(written.fpath)
