"""One summary line a user can trust, and a line for each partial count it has.

Samples lost count only samples that are missing (`stream_loss`): gaps of a
counter or frame index where a stream has one (a video frame stream's first
channel), otherwise gaps of the recorded stamps (before dejitter) longer than
1.5 periods of the stream's *measured* rate (the median interval), see
`lsl_session.processing.loss`. A stream delivering steadily
fewer samples than its nominal rate has lost nothing: it is reported as
``rate 15.0 of 30 Hz nominal`` and counted as "below nominal rate" in the line.

Devices come from ``session_metadata.json``: a device that never connected is
``missing``, one that dropped and did not come back is ``disconnected``; both
are counted in the line and explained in a note.

Loss and rate are measured on the stamps as recorded in the file (before
clock sync and dejitter, which smooths a gap of up to 500 samples away); a
stamp earlier than the one before it is a backward jump, named in the notes
(the data came from another outlet), as is every ``stream_source_changed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.processing.loss import measured_rate, missing_in_stamps

#: A measured rate more than this fraction below nominal is a shortfall.
RATE_SHORTFALL = 0.01
#: Channel labels that count samples (a lost sample leaves a gap in them).
COUNTER_LABELS = frozenset({"counter", "frame", "frame_index", "index", "sample_index"})


def missing_samples(stamps: np.ndarray, srate: float) -> int:
    """Samples missing from a regular stream's stamps at rate ``srate`` (Hz)."""
    if srate <= 0 or len(stamps) < 2:
        return 0
    steps = np.diff(np.asarray(stamps, dtype=np.float64)) * srate
    gaps = steps[steps > 1.5]
    return int(np.sum(np.round(gaps) - 1)) if gaps.size else 0


def counter_of(stream: Any) -> np.ndarray | None:
    """The stream's sample counter (frame index), or None if it has none."""
    if getattr(stream, "is_string", False) or not len(stream.time_stamps):
        return None
    labels = [str(x).lower() for x in (getattr(stream, "channel_labels", None) or [])]
    if str(getattr(stream, "type", "")).lower() == "videoframes":
        column = 0
    elif labels and labels[0] in COUNTER_LABELS:
        column = 0
    else:
        return None
    values = np.asarray(stream.time_series, dtype=np.float64)
    return values.reshape(len(stream.time_stamps), -1)[:, column]


def counter_gaps(counter: np.ndarray) -> int:
    """Values skipped by an increasing counter (a restart from 0 is not a loss)."""
    c = np.asarray(counter, dtype=np.float64)
    c = c[np.isfinite(c)]
    if c.size < 2:
        return 0
    d = np.diff(c)
    return int(np.sum(d[d > 1] - 1))


@dataclass
class StreamLoss:
    """What a regular stream lost, and the rate it delivered."""

    lost: int = 0
    rate: float = 0.0  # measured (Hz), 0 for irregular streams
    nominal: float = 0.0
    by: str = "stamps"  # "counter" or "stamps"

    @property
    def slow(self) -> bool:
        """The stream delivered steadily fewer samples than nominal."""
        return bool(
            self.nominal > 0
            and self.rate > 0
            and self.rate < self.nominal * (1 - RATE_SHORTFALL)
        )


def stream_loss(stream: Any) -> StreamLoss:
    """Samples lost and the measured rate of one stream (module docstring)."""
    nominal = float(stream.nominal_srate or 0)
    if nominal <= 0 or getattr(stream, "is_string", False):
        return StreamLoss(nominal=nominal)
    rate = getattr(stream, "measured_srate", None) or measured_rate(stream.time_stamps)
    counter = counter_of(stream)
    if counter is not None:
        return StreamLoss(counter_gaps(counter), rate, nominal, "counter")
    lost = getattr(stream, "stamp_lost", None)  # before dejitter (processing.load)
    if lost is None:
        lost = missing_in_stamps(stream.time_stamps, rate)
    return StreamLoss(int(lost), rate, nominal)


def recorded_stamps(stream: Any) -> np.ndarray:
    """The stamps as recorded in the file (the synced ones if not kept)."""
    stamps = getattr(stream, "recorded_time_stamps", None)
    return stream.time_stamps if stamps is None else stamps


def aligned_text(row: dict[str, Any]) -> str:
    """``yes``, ``NO`` or why the stream was not checked (older reports: yes/NO)."""
    return str(row.get("aligned") or ("yes" if row.get("within_one_sample") else "NO"))


def device_status_text(info: dict[str, Any]) -> str:
    """A device's status as the dashboard shows it (dashboard, report)."""
    status = str(info.get("status") or "waiting")
    text = {
        "missing": "missing (never connected)",
        "disconnected": f"disconnected at {info.get('disconnected_time', '?')}",
        "stopped": "stopped with the recording",
    }.get(status, status)
    restarts = info.get("restarts") or 0
    if restarts:
        text += f", {restarts} restarts"
    return text


def device_problems(devices: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    """Devices ``missing`` (never connected) and ``disconnected`` (dropped)."""
    missing, dropped = [], []
    for device_id, info in sorted((devices or {}).items()):
        status = (info or {}).get("status")
        if status == "missing":
            missing.append(device_id)
        elif status == "disconnected":
            dropped.append(device_id)
    return missing, dropped


#: A regular stream's stamp may step back this many periods without being a jump:
#: chunks stamped at push time (pylsl's default) overlap by up to about a period.
JUMP_PERIODS = 2.0


def backward_jumps(stamps: np.ndarray, srate: float = 0.0) -> np.ndarray:
    """The negative steps of ``stamps`` (a stamp earlier than the one before).

    For a regular stream (``srate`` > 0) a step back of less than `JUMP_PERIODS`
    periods is stamping jitter, not a jump.
    """
    if len(stamps) < 2:
        return np.zeros(0)
    steps = np.diff(np.asarray(stamps, dtype=np.float64))
    tolerance = JUMP_PERIODS / srate if srate > 0 else 0.0
    return steps[steps < -tolerance]


def source_notes(metadata: dict[str, Any] | None) -> list[str]:
    """One line per recorded stream whose data came from another outlet."""
    from lsl_session.source_change import describe_change

    runs = ((metadata or {}).get("recording") or {}).get("runs") or []
    notes = []
    for run in runs if isinstance(runs, list) else []:
        for change in (run or {}).get("source_changes") or []:
            try:
                notes.append(describe_change(change))
            except (KeyError, TypeError, ValueError):
                continue
    return notes[:50]


@dataclass
class Verdict:
    """The summary of a session: counts and the lines that explain them."""

    n_streams: int = 0
    samples_lost: int = 0
    n_aligned: int = 0
    n_checked: int = 0
    n_slow: int = 0
    n_unchecked: int = 0  # streams with pulses, none shared with the reference
    devices_missing: list[str] = field(default_factory=list)
    devices_disconnected: list[str] = field(default_factory=list)
    report: str | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        """The one summary line."""
        parts = [
            f"{self.n_streams} streams",
            f"{self.samples_lost} samples lost",
        ]
        if self.n_slow:
            parts.append(f"{self.n_slow} below nominal rate")
        if self.n_checked:
            parts.append(
                f"{self.n_aligned}/{self.n_checked} sync-checked streams aligned"
                " within one sample period"
            )
        elif self.n_unchecked:
            parts.append("no stream shares sync pulses with the reference")
        else:
            parts.append("no sync pulses to check alignment")
        if self.n_unchecked:
            parts.append(f"{self.n_unchecked} not sync-checked")
        if self.devices_missing:
            parts.append(f"{len(self.devices_missing)} devices missing")
        if self.devices_disconnected:
            parts.append(f"{len(self.devices_disconnected)} devices disconnected")
        if self.problems:
            parts.append(f"{len(self.problems)} problems")
        if self.report:
            parts.append(f"report: {self.report}")
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """The summary line, then one line per note and problem."""
        return [self.line, *self.notes, *(f"problem: {p}" for p in self.problems)]


def _sync_notes(verdict: Verdict, sync_report: dict[str, Any] | None) -> None:
    unchecked: dict[str, list[str]] = {}
    for row in (sync_report or {}).get("streams", []):
        if row.get("checked") is False:
            unchecked.setdefault(aligned_text(row), []).append(row["stream"])
            verdict.n_unchecked += 1
            continue
        verdict.n_checked += 1
        verdict.n_aligned += bool(row.get("within_one_sample"))
        outside = row.get("n_reference_outside") or 0
        if not row.get("within_one_sample") and row.get("n_matched"):
            verdict.notes.append(
                f"{row['stream']}: NOT aligned: offset {row.get('offset_ms')} ms,"
                f" max error {row.get('max_error_ms')} ms over {row['n_matched']}"
                f" pulses (tolerance {row.get('tolerance_ms')} ms)"
            )
        if outside:
            verdict.notes.append(
                f"{row['stream']}: {row.get('n_matched', 0)}/{row.get('n_reference', 0)}"
                f" pulses: {outside} fell outside the stream's recorded span"
                " (before its first or after its last sample), so it could not see them"
            )
        elif not row.get("n_detected") and row.get("note"):
            verdict.notes.append(f"{row['stream']}: no pulses detected: {row['note']}")
        elif row.get("n_matched", 0) < row.get("n_reference", 0):
            verdict.notes.append(
                f"{row['stream']}: {row.get('n_matched', 0)}/{row['n_reference']}"
                " pulses matched: the others were not detected within the window"
            )
    for reason, names in unchecked.items():
        verdict.notes.append(f"{reason}: {', '.join(names)}")


def session_verdict(
    streams: list[Any],
    sync_report: dict[str, Any] | None = None,
    *,
    report: str | None = None,
    problems: list[str] | None = None,
    devices: dict[str, Any] | None = None,
) -> Verdict:
    """Summarise loaded streams, the sync check and the devices into a `Verdict`.

    Parameters
    ----------
    streams : list of SyncedStream
        The session's streams (``time_stamps``, ``nominal_srate``, ``name``).
    sync_report : dict | None
        ``processing/sync_check/sync_check.json``.
    report : str | None
        Where the HTML report is, for the summary line.
    problems : list of str | None
        Problems found while loading or processing.
    devices : dict | None
        ``session_metadata.json``'s ``devices`` (id → ``status`` …).
    """
    verdict = Verdict(n_streams=len(streams), report=report)
    verdict.problems = list(problems or [])
    for s in streams:
        loss = stream_loss(s)
        verdict.samples_lost += loss.lost
        if loss.lost:
            where = "its frame index" if loss.by == "counter" else "its recorded stamps"
            verdict.notes.append(
                f"{s.name}: {loss.lost} samples missing in gaps of {where}"
            )
        jumps = backward_jumps(recorded_stamps(s), s.nominal_srate or 0.0)
        if jumps.size:
            verdict.notes.append(
                f"{s.name}: its stamps jump back {jumps.size} time(s), by up to"
                f" {float(-jumps.min()):.3f} s (the data came from another outlet"
                " or clock)"
            )
        if loss.slow:
            verdict.n_slow += 1
            verdict.notes.append(
                f"{s.name}: rate {loss.rate:.1f} of {loss.nominal:g} Hz nominal"
                " (fewer samples than declared, none lost)"
                if not loss.lost
                else f"{s.name}: rate {loss.rate:.1f} of {loss.nominal:g} Hz nominal"
            )
    _sync_notes(verdict, sync_report)
    missing, dropped = device_problems(devices)
    verdict.devices_missing, verdict.devices_disconnected = missing, dropped
    for device_id in missing:
        verdict.notes.append(f"{device_id}: missing (never connected)")
    for device_id, info in sorted((devices or {}).items()):
        restarts = (info or {}).get("restarts") or 0
        if restarts:
            verdict.notes.append(f"{device_id}: reconnected {restarts} times")
    for device_id in dropped:
        info = (devices or {}).get(device_id) or {}
        when = info.get("disconnected_time")
        verdict.notes.append(
            f"{device_id}: disconnected"
            + (f" at {when}" if when else "")
            + " and did not come back"
        )
    return verdict


def read_verdict(folder: Any, summary: dict[str, Any] | None = None) -> list[str]:
    """The verdict lines of a session folder (``processing/verdict.json``).

    Without a processed verdict (``--no-process``), one line from the recorder's
    ``summary``: streams, samples and gaps, and how to process.
    """
    path = Path(folder) / "processing" / "verdict.json"
    try:
        saved = json.loads(path.read_text())
        return [saved["verdict"], *saved.get("notes", []),
                *(f"problem: {p}" for p in saved.get("problems", []))]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        pass
    streams = (summary or {}).get("streams", [])
    samples = sum(s.get("sample_count", 0) for s in streams)
    gaps = sum(s.get("gaps", 0) for s in streams)
    lost = sum(s.get("samples_lost", 0) for s in streams)
    jumps = sum(s.get("backward_jumps", 0) for s in streams)
    return [
        f"{len(streams)} streams, {samples} samples, {gaps} gaps"
        f" ({lost} samples lost, {jumps} backward jumps);"
        f" {_processing_state(Path(folder))} (lsl-session process {folder})",
        *source_notes({"recording": {"runs": [summary or {}]}}),
    ]


def _processing_state(folder: Any) -> str:
    """``not processed``, or what the last processing run says failed (no verdict)."""
    import json

    try:
        meta = json.loads((folder / "session_metadata.json").read_text())
        last = meta["processing"]["runs"][-1]
        steps = last.get("steps") or {}
        failed = [
            f"{name} failed: {str(step.get('error') or 'error')[:200]}"
            for name, step in steps.items()
            if isinstance(step, dict) and step.get("status") == "error"
        ]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "not processed"
    if not failed:
        return f"processing {last.get('status', 'unfinished')}, no verdict written"
    return f"processing {last.get('status', 'error')}: " + "; ".join(failed[:5])
