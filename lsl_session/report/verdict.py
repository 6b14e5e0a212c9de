"""One summary line a user can trust, and a line for each partial count it has.

Samples lost are counted on the recorded stamps of regularly sampled streams: an
interval longer than 1.5 sample periods holds ``round(interval · rate) - 1``
missing samples (robust to clock drift, unlike comparing with the nominal count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def missing_samples(stamps: np.ndarray, srate: float) -> int:
    """Samples missing from a regular stream's stamps (see the module docstring)."""
    if srate <= 0 or len(stamps) < 2:
        return 0
    steps = np.diff(np.asarray(stamps, dtype=np.float64)) * srate
    gaps = steps[steps > 1.5]
    return int(np.sum(np.round(gaps) - 1)) if gaps.size else 0


@dataclass
class Verdict:
    """The summary of a session: counts and the lines that explain them."""

    n_streams: int = 0
    samples_lost: int = 0
    n_aligned: int = 0
    n_checked: int = 0
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
        if self.n_checked:
            parts.append(
                f"{self.n_aligned}/{self.n_checked} sync-checked streams aligned"
                " within one sample period"
            )
        else:
            parts.append("no sync pulses to check alignment")
        if self.problems:
            parts.append(f"{len(self.problems)} problems")
        if self.report:
            parts.append(f"report: {self.report}")
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """The summary line, then one line per note and problem."""
        return [self.line, *self.notes, *(f"problem: {p}" for p in self.problems)]


def session_verdict(
    streams: list[Any],
    sync_report: dict[str, Any] | None = None,
    *,
    report: str | None = None,
    problems: list[str] | None = None,
) -> Verdict:
    """Summarise loaded streams and the sync check into a `Verdict`.

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
    """
    verdict = Verdict(n_streams=len(streams), report=report)
    verdict.problems = list(problems or [])
    for s in streams:
        lost = missing_samples(s.time_stamps, s.nominal_srate)
        verdict.samples_lost += lost
        if lost:
            verdict.notes.append(
                f"{s.name}: {lost} samples missing in gaps of its recorded stamps"
            )
    for row in (sync_report or {}).get("streams", []):
        verdict.n_checked += 1
        verdict.n_aligned += bool(row.get("within_one_sample"))
        outside = row.get("n_reference_outside") or 0
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
    return verdict


def read_verdict(folder: Any, summary: dict[str, Any] | None = None) -> list[str]:
    """The verdict lines of a session folder (``processing/verdict.json``).

    Without a processed verdict (``--no-process``), one line from the recorder's
    ``summary``: streams, samples and gaps, and how to process.
    """
    import json
    from pathlib import Path

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
    return [
        f"{len(streams)} streams, {samples} samples, {gaps} gaps;"
        f" {_processing_state(Path(folder))} (lsl-session process {folder})"
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
