"""Synced streams → ``mne.io.RawArray`` on one grid, markers as annotations.

Channel names are the bare channel labels (``Fp1``) when they are unique across
the chosen streams, so ``raw.set_montage("standard_1020")`` works, else
``<stream>/<label>`` (``channel_names="prefixed"`` forces that); a stream name
that repeats is disambiguated as ``name@source_id`` (else ``@hostname``, else
``#stream_id``; see `tables.stream_keys`). Types: ``gsr`` (siemens; µS, nS, mS
are scaled) for GSR/EDA conductance channels, ``eeg`` (volts; µV assumed when no
unit is given, the LSL convention) for EEG, ``misc`` for everything else (values
as recorded; the original units are listed in ``info["description"]``), and an
optional ``stim`` channel with one code per marker description. Data are
linearly interpolated onto the grid; samples outside a stream's span or inside a
gap are NaN and covered by ``BAD_ACQ_SKIP`` annotations (MNE's filter, epoching
and plotting skip them). The grid starts at the first numeric sample, or earlier
(whole periods) to hold a recorded marker that precedes it, so every recorded
marker is annotated; with ``marker_prefix`` (automatic when two marker streams
share a label) a description reads ``<stream>/<marker>``. ``meas_date`` is the
wall-clock time of the first grid sample.
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


def mne_channel_names(
    streams: list[SyncedStream], mode: str = "auto", keys: list[str] | None = None
) -> list[str]:
    """MNE channel names of the numeric ``streams``, in order.

    Parameters
    ----------
    streams : list of SyncedStream
        The numeric streams, in channel order.
    mode : {"auto", "bare", "prefixed"}
        ``bare``: the channel labels (``Fp1``); ``prefixed``: ``<stream>/<label>``;
        ``auto``: bare when every label is unique across ``streams``, else prefixed.
    keys : list of str | None
        The stream part of prefixed names (default `tables.stream_keys`).

    Raises
    ------
    ValueError
        For an unknown mode, or ``bare`` with repeated labels.
    """
    if mode not in ("auto", "bare", "prefixed"):
        raise ValueError(f"channel_names must be auto, bare or prefixed, not {mode!r}")
    keys = keys or tables.stream_keys(streams)
    bare = [label for s in streams for label in tables.column_labels(s)]
    unique = len(set(bare)) == len(bare) and "STI" not in bare
    if mode == "bare" and not unique:
        raise ValueError("channel labels repeat across the streams: use prefixed names")
    if mode == "bare" or (mode == "auto" and unique):
        return bare
    return [
        f"{key}/{label}"
        for s, key in zip(streams, keys, strict=True)
        for label in tables.column_labels(s)
    ]


#: Session events that mark the experiment (annotations by default); the other
#: session events (start_record, device_connected, processing_end …) are bookkeeping.
EXPERIMENT_EVENTS = frozenset(
    {"marker", "stimulus_play", "stimulus_stop", "calibration_capture"}
)


def _event_name(value: Any) -> str | None:
    try:
        event = json.loads(value)
    except (TypeError, ValueError):
        return None
    return str(event.get("event")) if isinstance(event, dict) else None


def without_bookkeeping(events: pd.DataFrame, session_keys: set[str]) -> pd.DataFrame:
    """``events`` without the session's bookkeeping events.

    Rows of the session event stream (keys in ``session_keys``, and the JSON log's
    ``session_log``) stay only when their event is in `EXPERIMENT_EVENTS`; markers of
    every other stream always stay.
    """
    session = events["stream"].isin(session_keys | {"session_log"}).to_numpy()
    if not session.any():
        return events
    names = [_event_name(v) for v in events["value"]]  # None: not a session event
    keep = ~session | np.array(
        [n is None or n in EXPERIMENT_EVENTS for n in names], dtype=bool
    )
    return events[keep].reset_index(drop=True)


def shared_marker_labels(events: pd.DataFrame) -> bool:
    """True when two recorded marker streams share at least one description."""
    recorded = events[events["stream"] != "session_log"]
    per_stream = recorded.groupby("stream")["description"].agg(
        lambda d: set(map(str, d))
    )
    seen: set[str] = set()
    for labels in per_stream:
        if seen & labels:
            return True
        seen |= labels
    return False


def gap_segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges (stop exclusive) where ``valid`` is False."""
    bad = np.concatenate(([False], ~valid, [False]))
    edges = np.flatnonzero(np.diff(bad.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def to_raw(
    streams: list[SyncedStream],
    events: pd.DataFrame,
    *,
    t0: float,
    start_wall: dt.datetime | None = None,
    sfreq: float | None = None,
    stim: bool = False,
    channel_names: str = "auto",
    marker_prefix: bool | None = None,
    keys: list[str] | None = None,
):
    """Build a ``RawArray`` from numeric streams and annotate it with ``events``.

    Parameters
    ----------
    streams : list of SyncedStream
        Numeric streams become channels (string streams are ignored here).
    events : DataFrame
        The events table (``lsl_time``, ``description``, ``duration``, ``stream``).
    t0 : float
        The recorder's start LSL time, paired with ``start_wall``.
    start_wall : datetime | None
        Wall-clock time (timezone-aware) of ``t0``; None leaves ``meas_date`` unset.
    sfreq : float | None
        Grid rate; default the highest regular rate up to 1 kHz.
    stim : bool
        Add a ``STI`` channel: a code per marker description at its sample.
    channel_names : {"auto", "bare", "prefixed"}
        See :func:`mne_channel_names`.
    marker_prefix : bool | None
        Annotation descriptions ``<stream>/<marker>``; None (default) turns it on
        when two marker streams share a label, so they stay apart.
    keys : list of str | None
        Display key per stream in ``streams`` (default `tables.stream_keys`).

    Returns
    -------
    mne.io.RawArray
        Grid samples where a channel has no data (outside its stream's span,
        inside a gap) are NaN and covered by ``BAD_ACQ_SKIP`` annotations, which
        ``raw.filter`` and epoching skip.

    Raises
    ------
    ValueError
        If there is no numeric stream.
    """
    import mne

    if keys is None:
        keys = tables.stream_keys(streams)
    pairs = [(s, k) for s, k in zip(streams, keys, strict=True) if tables.is_numeric(s)]
    if not pairs:
        raise ValueError("no numeric stream to convert to MNE")
    numeric = [s for s, _ in pairs]
    sfreq = float(sfreq) if sfreq else tables.default_rate(numeric)
    # robust spans: a stray stamp 10^7 s late does not stretch the grid
    spans = [
        sp
        for s in numeric
        if (sp := tables.robust_span(s.time_stamps, s.nominal_srate))
    ]
    if not spans:
        raise ValueError("no numeric stream with a finite time stamp")
    first = min(sp[0] for sp in spans)
    last = max(sp[1] for sp in spans)
    recorded = events.loc[events["stream"] != "session_log", "lsl_time"]
    if len(recorded):  # extend the grid (NaN data) so that every marker fits
        start = first - np.ceil((first - float(recorded.min())) * sfreq) / sfreq
        first = min(first, start)
        last = max(last, float(recorded.max()))
    n = int(np.floor((last - first) * sfreq + 1e-9)) + 1
    tables.check_grid(n, sfreq, max(sp[2] for sp in spans))  # before allocating
    grid = first + np.arange(n) / sfreq
    names = mne_channel_names(numeric, channel_names, [k for _, k in pairs])
    kinds, rows, units = [], [], {}
    for s in numeric:
        values = tables.Interpolator(s)(grid)
        for k in range(values.shape[1]):
            kind = channel_type(s, k)
            kinds.append(kind)
            rows.append(
                values[:, k].astype(np.float64) * unit_scale(kind, s.channel_units[k])
            )
            units[names[len(rows) - 1]] = s.channel_units[k]
    data = np.vstack(rows)
    valid = np.isfinite(data).all(axis=0)
    codes: dict[str, int] = {}
    if marker_prefix is None:
        marker_prefix = shared_marker_labels(events)
    descriptions = [
        f"{stream}/{desc}" if marker_prefix and stream != "session_log" else str(desc)
        for stream, desc in zip(events["stream"], events["description"], strict=True)
    ]
    if stim:
        stim_row = np.zeros(n)
        for lsl, desc in zip(events["lsl_time"], descriptions, strict=True):
            idx = round((lsl - first) * sfreq)
            if 0 <= idx < n:
                stim_row[idx] = codes.setdefault(desc, len(codes) + 1)
        data = np.vstack([data, stim_row])
        names.append("STI")
        kinds.append("stim")
    info = mne.create_info(names, sfreq, kinds)
    info["description"] = json.dumps(
        {"units": units, "stim_codes": codes,
         "streams": dict(zip([k for _, k in pairs], [s.name for s in numeric], strict=True))},
        ensure_ascii=False,
    )  # fmt: skip
    raw = mne.io.RawArray(data, info, verbose="error")
    orig_time = None
    if start_wall is not None:
        meas = (start_wall + dt.timedelta(seconds=first - t0)).astimezone(dt.UTC)
        raw.set_meas_date(meas)
        orig_time = raw.info["meas_date"]
    gaps = gap_segments(valid)
    onsets = [a / sfreq for a, _ in gaps] + list(
        events["lsl_time"].to_numpy(float) - first
    )
    durations = [(b - a) / sfreq for a, b in gaps] + list(
        events["duration"].to_numpy(float)
    )
    labels = ["BAD_ACQ_SKIP"] * len(gaps) + descriptions
    if labels:
        raw.set_annotations(
            mne.Annotations(onsets, durations, labels, orig_time=orig_time),
            verbose="error",
        )
    return raw


def annotation_summary(raw: Any) -> dict[str, Any]:
    """A small JSON-able summary of a Raw (for reports)."""
    return {
        "n_channels": len(raw.ch_names),
        "n_times": int(raw.n_times),
        "sfreq": float(raw.info["sfreq"]),
        "annotations": len(raw.annotations),
    }
