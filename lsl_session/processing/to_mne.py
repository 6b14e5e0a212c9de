"""Synced streams → ``mne.io.RawArray`` on one grid, markers as annotations.

Channel names are ``<stream>/<label>``. Types: ``gsr`` (siemens; µS, nS, mS are
scaled) for GSR/EDA channels or streams, ``eeg`` (volts; µV assumed when no unit
is given, the LSL convention) for EEG, ``misc`` for everything else (values as
recorded; the original units are listed in ``info["description"]``), and an
optional ``stim`` channel with one code per marker description. Data are linearly
interpolated onto the grid; samples outside a stream's span or inside a gap are
NaN. The grid starts at the first numeric sample, or earlier (whole periods) to
hold a recorded marker that precedes it, so every recorded marker is annotated. ``meas_date`` is the wall-clock time of the first grid sample.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

_PREFIX = {"": 1.0, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "micro": 1e-6, "m": 1e-3,
           "milli": 1e-3, "n": 1e-9, "nano": 1e-9, "k": 1e3, "kilo": 1e3}  # fmt: skip
_BASE = {"gsr": ("s", "siemens"), "eeg": ("v", "volt", "volts")}
_DEFAULT_SCALE = {"gsr": 1e-6, "eeg": 1e-6}


def channel_type(stream: SyncedStream, k: int) -> str:
    """MNE type of channel ``k``: ``gsr``, ``eeg`` or ``misc``.

    The channel's own ``type`` decides; the stream type only when it is empty.
    """
    kind = (stream.channel_types[k] or stream.type or "").strip().lower()
    if kind in ("gsr", "eda"):
        # a GSR device's other channels (skin resistance in kΩ) are not siemens
        unit = (stream.channel_units[k] if k < len(stream.channel_units) else "") or ""
        return "gsr" if _is_conductance(unit) else "misc"
    return "eeg" if kind == "eeg" else "misc"


def _is_conductance(unit: str) -> bool:
    """True for siemens units (µS, uS, microsiemens, S …) and for no unit at all."""
    text = unit.strip()
    if not text:
        return True
    lower = text.lower()
    if lower.endswith("siemens"):
        return True
    return text[-1] == "S" and (text[:-1] in _PREFIX or text[:-1].lower() in _PREFIX)


def unit_scale(kind: str, unit: str) -> float:
    """Factor from ``unit`` to the SI unit MNE expects for ``kind`` (1 for misc)."""
    if kind not in _BASE:
        return 1.0
    text = (unit or "").strip()
    if not text:
        return _DEFAULT_SCALE[kind]
    lower = text.lower()
    for base in sorted(_BASE[kind], key=len, reverse=True):
        if lower.endswith(base):
            prefix = text[: len(text) - len(base)]
            if prefix in ("M", "mega"):
                return 1e6
            factor = _PREFIX.get(prefix) or _PREFIX.get(prefix.lower())
            if factor is not None:
                return factor
    logger.warning("unknown %s unit %r; assuming %g", kind, unit, _DEFAULT_SCALE[kind])
    return _DEFAULT_SCALE[kind]


def to_raw(
    streams: list[SyncedStream],
    events: pd.DataFrame,
    *,
    t0: float,
    start_wall: dt.datetime | None = None,
    sfreq: float | None = None,
    stim: bool = False,
):
    """Build a ``RawArray`` from numeric streams and annotate it with ``events``.

    Parameters
    ----------
    streams : list of SyncedStream
        Numeric streams become channels (string streams are ignored here).
    events : DataFrame
        The events table (``lsl_time``, ``description``, ``duration``).
    t0 : float
        The recorder's start LSL time, paired with ``start_wall``.
    start_wall : datetime | None
        Wall-clock time (timezone-aware) of ``t0``; None leaves ``meas_date`` unset.
    sfreq : float | None
        Grid rate; default the highest regular rate up to 1 kHz.
    stim : bool
        Add a ``STI`` channel: a code per marker description at its sample.

    Returns
    -------
    mne.io.RawArray

    Raises
    ------
    ValueError
        If there is no numeric stream.
    """
    import mne

    numeric = [s for s in streams if tables.is_numeric(s)]
    if not numeric:
        raise ValueError("no numeric stream to convert to MNE")
    sfreq = float(sfreq) if sfreq else tables.default_rate(numeric)
    first = min(float(s.time_stamps.min()) for s in numeric)
    last = max(float(s.time_stamps.max()) for s in numeric)
    recorded = events.loc[events["stream"] != "session_log", "lsl_time"]
    if len(recorded):  # extend the grid (NaN data) so that every marker fits
        start = first - np.ceil((first - float(recorded.min())) * sfreq) / sfreq
        first = min(first, start)
        last = max(last, float(recorded.max()))
    n = int(np.floor((last - first) * sfreq + 1e-9)) + 1
    grid = first + np.arange(n) / sfreq
    names, kinds, rows, units = [], [], [], {}
    for s in numeric:
        values = tables.Interpolator(s)(grid)
        for k, label in enumerate(tables.column_labels(s)):
            kind = channel_type(s, k)
            names.append(f"{s.name}/{label}")
            kinds.append(kind)
            rows.append(
                values[:, k].astype(np.float64) * unit_scale(kind, s.channel_units[k])
            )
            units[names[-1]] = s.channel_units[k]
    data = np.vstack(rows)
    codes: dict[str, int] = {}
    if stim:
        stim_row = np.zeros(n)
        for lsl, desc in zip(events["lsl_time"], events["description"], strict=True):
            idx = round((lsl - first) * sfreq)
            if 0 <= idx < n:
                stim_row[idx] = codes.setdefault(str(desc), len(codes) + 1)
        data = np.vstack([data, stim_row])
        names.append("STI")
        kinds.append("stim")
    info = mne.create_info(names, sfreq, kinds)
    info["description"] = json.dumps({"units": units, "stim_codes": codes})
    raw = mne.io.RawArray(data, info, verbose="error")
    orig_time = None
    if start_wall is not None:
        meas = (start_wall + dt.timedelta(seconds=first - t0)).astimezone(dt.UTC)
        raw.set_meas_date(meas)
        orig_time = raw.info["meas_date"]
    if len(events):
        onsets = events["lsl_time"].to_numpy(float) - first
        annotations = mne.Annotations(
            onset=onsets,
            duration=events["duration"].to_numpy(float),
            description=[str(d) for d in events["description"]],
            orig_time=orig_time,
        )
        raw.set_annotations(annotations, verbose="error")
    return raw


def annotation_summary(raw: Any) -> dict[str, Any]:
    """A small JSON-able summary of a Raw (for reports)."""
    return {
        "n_channels": len(raw.ch_names),
        "n_times": int(raw.n_times),
        "sfreq": float(raw.info["sfreq"]),
        "annotations": len(raw.annotations),
    }
