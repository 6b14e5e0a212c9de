"""Data model shared by the processing stages and processor plugins (SPEC §8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lsl_session.layout import SessionPaths


@dataclass(slots=True)
class SyncedStream:
    """One stream after loading, clock synchronisation and dejittering.

    ``time_stamps`` are on the recorder's LSL clock (pyxdf semantics: raw stamps
    + robust clock-offset fit, then dejitter of regular streams), so they equal
    ``pyxdf.load_xdf(...)[k]["time_stamps"]``.
    """

    stream_id: int
    name: str
    type: str
    source_id: str
    channel_format: str
    channel_count: int
    nominal_srate: float
    effective_srate: float
    time_stamps: np.ndarray
    time_series: Any  # ndarray (n, nch) numeric, or list of per-sample lists of str
    channel_labels: list[str]
    channel_units: list[str]
    channel_types: list[str]
    info: dict[str, Any] = field(
        default_factory=dict
    )  # parsed header (pyxdf-style dict)
    footer: dict[str, Any] | None = None
    clock_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clock_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segments: list[tuple[int, int]] = field(default_factory=list)
    clock_segments: list[tuple[int, int]] = field(default_factory=list)
    fit: dict[str, Any] = field(
        default_factory=dict
    )  # offset-fit report for sync_report
    # stamps as recorded (before clock sync and dejitter), kept only for streams
    # whose stamps the phone relay mapped, so ``process`` can re-map them
    raw_time_stamps: np.ndarray | None = None
    # samples missing in gaps of the stamps before dejitter, and the rate measured
    # there (regular streams; `lsl_session.processing.loss`), None if not counted
    stamp_lost: int | None = None
    measured_srate: float | None = None
    # every regular stream's stamps as recorded (before clock sync and
    # dejitter, which smooths gaps up to 500 samples away): loss and backward
    # jumps are counted on these
    recorded_time_stamps: np.ndarray | None = None

    @property
    def is_string(self) -> bool:
        """True for string (marker) streams."""
        return self.channel_format == "string"


@dataclass(slots=True)
class ProcessingContext:
    """What a processor gets: the session, its synced streams and its own folder."""

    paths: SessionPaths
    streams: list[SyncedStream]
    output_dir: Path  # processing/<processor name>/; a processor writes only here
    t0: float  # session start on the recorder's LSL clock (the "time" origin)
    options: dict[str, Any] = field(default_factory=dict)

    def stream(self, name: str) -> SyncedStream | None:
        """The stream called ``name``, if recorded."""
        return next((s for s in self.streams if s.name == name), None)


class Processor(Protocol):
    """A post-processing step; register it in the ``lsl_session.processors`` group."""

    name: str

    def run(self, context: ProcessingContext) -> dict[str, Any]:
        """Do the work, write under ``context.output_dir``, return a JSON report."""
