"""``load_session``: a session's synced streams, events and conversions (SPEC §8)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lsl_session.errors import LslSessionError, MetadataError, StreamNotFoundError
from lsl_session.layout import METADATA_FILE, SessionPaths
from lsl_session.metadata import read_metadata
from lsl_session.processing import tables
from lsl_session.processing.load import load_xdf_files
from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)


class NoRecordingError(LslSessionError, FileNotFoundError):
    """A session folder holds no XDF recording."""


def session_xdf_files(paths: SessionPaths, meta: dict[str, Any] | None) -> list[Path]:
    """The session's XDF files in order: from the metadata, else found on disk."""
    listed = ((meta or {}).get("recording") or {}).get("xdf_files") or []
    files = []
    for name in listed:
        try:
            path = paths.resolve(str(name))
        except LslSessionError:
            continue
        if path.is_file() and path not in files:
            files.append(path)
    if files:
        return files
    sid = paths.session_id
    pattern = re.compile(rf"^{re.escape(sid)}_part(\d+)\.xdf(\.gz)?$")
    parts = sorted(
        (int(m.group(1)), p)
        for p in paths.root.glob(f"{sid}_part*.xdf*")
        if (m := pattern.match(p.name))
    )
    first = [p for p in (paths.xdf(1), paths.xdf(1, compressed=True)) if p.is_file()][
        :1
    ]
    return first + [p for _, p in parts]


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.astimezone()


def recording_window(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The recorder's (start, stop) LSL time over all its runs, if every run has both.

    None for a recording rebuilt from the XDF files (its times are raw stamps) or
    when any run lacks a stop (a crash).
    """
    rec = meta.get("recording") or {}
    if not isinstance(rec, dict) or rec.get("rebuilt_from_xdf"):
        return None
    runs = [r for r in rec.get("runs") or [] if isinstance(r, dict)] or [rec]
    pairs = [(r.get("start_lsl_time"), r.get("stop_lsl_time")) for r in runs]
    if not all(
        isinstance(a, int | float) and isinstance(b, int | float) for a, b in pairs
    ):
        return None
    return float(min(a for a, _ in pairs)), float(max(b for _, b in pairs))


def _read_log(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The event log's events; a torn or too deeply nested line is skipped (and
    counted in ``problems``), the other events are kept."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    try:
        events = json.loads(data)
    except (ValueError, RecursionError):
        from lsl_session.recovery.eventlog import salvage_events

        events, bad = salvage_events(data)
        if problems is not None and bad:
            problems.append(
                f"{path.name}: {bad} unreadable line(s) skipped (torn or nested too "
                "deeply); `lsl-session recover` keeps them aside"
            )
    return (
        [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
    )


def _has_calibration(root: Path, meta: dict[str, Any]) -> bool:
    """Whether the session holds camera calibrations (it may then have no XDF)."""
    folder = root / "processing" / "calibration"
    return bool(meta.get("calibration")) or (
        folder.is_dir() and any(folder.glob("*.json"))
    )


@dataclass(frozen=True, slots=True)
class _Empty:
    streams: tuple = ()
    files: tuple = ()
    problems: tuple = ()
    headers: tuple = ()


_NO_RECORDING = _Empty()


@dataclass(slots=True)
class SessionData:
    """A loaded session: synced streams (pyxdf semantics), events and time origin.

    Attributes
    ----------
    streams : list of SyncedStream
        Stamps on the recorder's LSL clock.
    events : DataFrame
        ``onset`` (s since ``t0``), ``lsl_time``, ``duration``, ``description``,
        ``stream``, ``value``.
    t0 : float
        The recorder's start LSL time (else the earliest stamp).
    start_wall : datetime | None
        Wall-clock time of ``t0``.
    """

    root: Path | None
    session_id: str | None
    metadata: dict[str, Any]
    streams: list[SyncedStream]
    events: pd.DataFrame
    t0: float
    start_wall: dt.datetime | None
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[float, float] | None = None
    log_events: list[dict[str, Any]] = field(default_factory=list)
    phone_clock: str = "live"

    def remap_phones(self, mode: str = "remap") -> dict[str, Any]:
        """Re-map the phone streams (`phone_remap.remap_phone_streams`), in place.

        The events table is rebuilt from the new stamps, so every output made
        from this object (events tables, CSV, MAT, MNE annotations, BIDS, the
        report) uses them. Call it on a session loaded with every stream and
        ``phone_clock="live"`` (re-mapping twice would invert the wrong mapping).

        Returns
        -------
        dict
            The re-mapping report (``mode``, ``phones``).
        """
        from lsl_session.processing.phone_remap import remap_phone_streams

        if self.phone_clock != "live":
            raise ValueError(f"the phone streams are already {self.phone_clock}")
        report = remap_phone_streams(self.streams, mode)
        if any(p.get("used") == "remapped" for p in report["phones"].values()):
            self.events = tables.events_frame(
                self.streams, self.t0, self.session_id, self.log_events
            )
            self.phone_clock = "remapped"
        return report

    @property
    def calibration(self) -> dict[str, Any]:
        """Camera calibrations by device id (`DeviceCalibration`: per camera
        ``camera_matrix``, ``distortion``, ``rms_px``; RGB↔thermal ``stereo``),
        read from ``processing/calibration/<device>.json``; empty without any."""
        if self.root is None:
            return {}
        from lsl_session.calibration.result import load_calibrations

        return load_calibrations(self.root, self.metadata, self.problems)

    @property
    def keys(self) -> list[str]:
        """A unique key per stream: its name, or ``name@source_id`` (etc.) when
        names repeat (see `tables.stream_keys`)."""
        return tables.stream_keys(self.streams)

    def stream(self, name: str) -> SyncedStream:
        """The stream with key ``name`` (its name, or ``name@source_id``).

        Raises
        ------
        StreamNotFoundError
            If no stream has that key, or the name is shared by several streams.
        """
        keys = self.keys
        if name in keys:
            return self.streams[keys.index(name)]
        same = [k for k, s in zip(keys, self.streams, strict=True) if s.name == name]
        if same:
            raise StreamNotFoundError(
                f"{len(same)} streams are named {name!r}: use one of {', '.join(same)}"
            )
        known = ", ".join(keys) or "none"
        raise StreamNotFoundError(f"no stream named {name!r} (streams: {known})")

    def frame(self, name: str) -> pd.DataFrame:
        """One stream as a DataFrame (``time``, ``lsl_time``, channels)."""
        return tables.stream_frame(self.stream(name), self.t0)

    def aligned(self, rate: float | None = None) -> pd.DataFrame:
        """Every numeric stream on one grid (see `tables.aligned_frame`)."""
        return tables.aligned_frame(
            self.streams,
            self.t0,
            rate or tables.default_rate(self.streams),
            self.window,
        )

    def to_mne(
        self,
        sfreq: float | None = None,
        streams: list[str] | None = None,
        *,
        stim: bool = False,
        channel_names: str = "auto",
        marker_prefix: bool | None = None,
        session_events: bool = False,
    ):
        """Convert to ``mne.io.RawArray`` (see `lsl_session.processing.to_mne`).

        Parameters
        ----------
        sfreq : float | None
            Grid rate; default the highest regular rate up to 1 kHz.
        streams : list of str | None
            Keys (names, or ``name@source_id`` for a repeated name) of the numeric
            streams to include (default all). Every marker becomes an annotation
            either way.
        stim : bool
            Add a ``STI`` stim channel.
        channel_names : {"auto", "bare", "prefixed"}
            ``auto``: bare labels (``Fp1``) when unique across the chosen streams,
            else ``<stream>/<label>``.
        marker_prefix : bool | None
            Descriptions ``<stream>/<marker>``; None: only when two marker streams
            share a label.
        session_events : bool
            Also annotate the session's bookkeeping events (``start_record``,
            ``device_connected`` …). By default only markers are annotations:
            those of marker streams and the session's ``marker``/stimulus events.
        """
        from lsl_session.processing.to_mne import to_raw, without_bookkeeping

        keys = self.keys
        if streams is None:
            chosen, chosen_keys = self.streams, keys
        else:
            chosen = [self.stream(n) for n in streams]
            chosen_keys = [keys[self.streams.index(s)] for s in chosen]
        events = self.events
        if not session_events:
            session = {k for s, k in zip(self.streams, keys, strict=True)
                       if tables.is_session_event_stream(s, self.session_id)}  # fmt: skip
            events = without_bookkeeping(events, session)
        return to_raw(
            chosen, events, t0=self.t0, start_wall=self.start_wall,
            sfreq=sfreq, stim=stim, channel_names=channel_names,
            marker_prefix=marker_prefix, keys=chosen_keys,
        )  # fmt: skip


def processed_phone_clock(meta: dict[str, Any]) -> str:
    """The phone-clock mode of the session's last ``process`` run (``live`` if none).

    Exports, the report and `load_session` follow it, so every output of a
    session processed with ``--phone-clock remap`` carries the re-mapped stamps.
    """
    runs = ((meta.get("processing") or {}).get("runs")) or []
    for run in reversed(runs if isinstance(runs, list) else []):
        if isinstance(run, dict) and run.get("kind", "process") == "process":
            mode = (run.get("options") or {}).get("phone_clock") or "remap"
            return "remap" if mode == "remap" else "live"
    return "live"


def load_session(
    path: Path | str,
    *,
    streams: list[str] | None = None,
    phone_clock: str | None = None,
) -> SessionData:
    """Load a session folder (all XDF parts) or an XDF file (with its ``_partNNN``).

    Parameters
    ----------
    path : Path | str
        A session folder or an ``.xdf`` file.
    streams : list of str | None
        Keep only these stream names (markers of the others are still events).
    phone_clock : {"live", "remap"} | None
        Phone stamps: the relay's live mapping (``live``, as pyxdf shows them) or
        the whole-session re-mapping (``remap``, see `phone_remap`). Default: as
        the session was last processed (`processed_phone_clock`), else ``live``.

    Returns
    -------
    SessionData

    Raises
    ------
    SessionNotFoundError, NoRecordingError, LslSessionError
        If the path is not a session/XDF, holds no XDF, or nothing is readable.
    """
    path = Path(path)
    if path.is_file():
        from lsl_session.importer import owning_session

        # a session's own recording: load the session (its t0 and wall clock)
        path = owning_session(path) or path
    meta: dict[str, Any] = {}
    log_events: list[dict[str, Any]] = []
    log_problems: list[str] = []
    if path.is_file():
        from lsl_session.importer import recording_parts

        parts = recording_parts(path)
        same = path.resolve() in [p.resolve() for p in parts]
        root, session_id, files = None, None, parts if same else [path]
    elif (path / METADATA_FILE).exists() or path.is_dir():
        paths = SessionPaths(path.resolve())
        root, session_id = paths.root, paths.session_id
        try:
            meta = read_metadata(root)
        except MetadataError as err:
            logger.warning("%s", err)
        files = session_xdf_files(paths, meta)
        if not files and not _has_calibration(paths.root, meta):
            raise NoRecordingError(f"{path}: the session holds no XDF recording")
        log_events = _read_log(paths.log, log_problems)
    else:
        raise LslSessionError(f"{path}: no such session folder or XDF file")
    # a calibration-only session (`lsl-session calibrate`) loads without streams
    result = load_xdf_files(files) if files else _NO_RECORDING
    recording = meta.get("recording") or {}
    if recording.get("imported"):
        log_events = []  # logged on this machine's clock, not the recording's
    t0 = tables.session_t0(result.streams, recording.get("start_lsl_time"))
    mode = phone_clock or processed_phone_clock(meta)
    data = SessionData(
        root=root, session_id=session_id, metadata=meta, streams=list(result.streams),
        events=tables.events_frame(result.streams, t0, session_id, log_events),
        t0=t0, start_wall=None, log_events=log_events,
    )  # fmt: skip
    if mode != "live":  # before choosing streams: it needs the clock ones
        try:
            data.remap_phones(mode)
        except Exception as exc:  # a bad clock stream: say so, load live
            log_problems.append(f"phone clock re-mapping failed: {exc}")
            logger.warning("phone clock re-mapping failed: %s", exc)
    events = data.events
    # the recording's wall time: the recorder's, else the FileHeader's (LabRecorder
    # files), and the session's creation time only as a last resort
    wall = _parse_time(recording.get("start_time"))
    if wall is None and result.headers:
        from lsl_session.importer import header_datetime

        wall = header_datetime(result.headers[0] or {})
    if wall is None:
        wall = _parse_time(meta.get("start_time"))
    chosen = result.streams
    if streams is not None:
        keys = tables.stream_keys(chosen)
        names = {s.name for s in chosen} | set(keys)
        missing = set(streams) - names
        if missing:
            raise StreamNotFoundError(f"no stream named {sorted(missing)}")
        chosen = [
            s
            for s, k in zip(chosen, keys, strict=True)
            if s.name in streams or k in streams
        ]
    return SessionData(
        root=root, session_id=session_id, metadata=meta, streams=list(chosen),
        events=events, t0=t0, start_wall=wall, files=list(result.files),
        problems=list(result.problems) + log_problems, headers=list(result.headers),
        window=recording_window(meta), log_events=log_events,
        phone_clock=data.phone_clock,
    )  # fmt: skip
