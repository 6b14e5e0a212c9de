"""BIDS entities of a session: from its name, from options, or defaulted (logged).

A session recorded through remote control is named
``sub-P003_ses-S001_task-Memory_run-002[_eeg]_YYYYMMDD_HHMMSS``; LabRecorder names
its files ``sub-P003_ses-S001_task-Memory_run-002_eeg.xdf``. Both give their
entities. Any other name (the demo's ``demo_20250731_143022``) defaults to
``sub-<name>`` and ``ses-<timestamp>``, ``task-recording``, so two sessions of one
name land as two sessions of one subject.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from lsl_session.errors import LslSessionError
from lsl_session.layout import parse_session_id

logger = logging.getLogger(__name__)

_KEYS = {"sub": "subject", "ses": "session", "task": "task", "acq": "acquisition",
         "run": "run"}  # fmt: skip
_PAIR = re.compile(r"^(sub|ses|task|acq|run)-([A-Za-z0-9]+)$")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
DEFAULT_TASK = "recording"


class BidsEntityError(LslSessionError):
    """An entity label that BIDS cannot hold."""


def label(value: str, what: str) -> str:
    """``value`` reduced to letters and digits (BIDS labels); error when empty."""
    cleaned = _NOT_ALNUM.sub("", str(value))[:64]
    if not cleaned:
        raise BidsEntityError(f"--{what} {value!r} has no letters or digits")
    return cleaned


def run_index(value: str | int) -> str:
    """A BIDS run index: a non-negative integer (leading zeros kept)."""
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,6}", text):  # ASCII digits: "²".isdigit() is True
        raise BidsEntityError(f"--run must be a non-negative integer, got {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class Entities:
    """``sub``/``ses``/``task``/``acq``/``run`` of one recording."""

    subject: str
    task: str
    session: str | None = None
    acquisition: str | None = None
    run: str | None = None

    def prefix(self, *, tracksys: str | None = None, acq: str | None = None) -> str:
        """``sub-…[_ses-…]_task-…[_tracksys-…][_acq-…][_run-…]`` (BIDS order)."""
        parts = [f"sub-{self.subject}"]
        if self.session:
            parts.append(f"ses-{self.session}")
        parts.append(f"task-{self.task}")
        if tracksys:
            parts.append(f"tracksys-{tracksys}")
        acquisition = acq or self.acquisition
        if acquisition:
            parts.append(f"acq-{acquisition}")
        if self.run:
            parts.append(f"run-{self.run}")
        return "_".join(parts)

    def folder(self) -> str:
        """``sub-…[/ses-…]`` relative to the dataset root."""
        sub = f"sub-{self.subject}"
        return f"{sub}/ses-{self.session}" if self.session else sub


def from_name(name: str) -> dict[str, str]:
    """Entities written into a name as ``key-label`` words (others ignored)."""
    found: dict[str, str] = {}
    for word in name.split("_"):
        match = _PAIR.match(word)
        if match and _KEYS[match.group(1)] not in found:
            found[_KEYS[match.group(1)]] = match.group(2)
    return found


def resolve(
    name: str,
    *,
    subject: str | None = None,
    session: str | None = None,
    task: str | None = None,
    run: str | int | None = None,
    acquisition: str | None = None,
    log: bool = True,
) -> Entities:
    """The entities of a session id or XDF file stem, options taking precedence.

    Parameters
    ----------
    name : str
        The session id (``[name_]YYYYMMDD_HHMMSS[_n]``) or an XDF file's stem.
    subject, session, task, run, acquisition
        Overrides (``--subject`` …); labels are reduced to letters and digits.
    log : bool
        Log the entities that were defaulted.

    Returns
    -------
    Entities
    """
    parsed = parse_session_id(name)
    prefix, stamp = (parsed[0], parsed[1]) if parsed else (name, None)
    if parsed and name != f"{prefix}_{stamp}" and prefix:
        stamp = name[len(prefix) + 1 :]  # keep the _2 of a second session
    elif parsed and not prefix:
        stamp = name
    found = from_name(prefix or name)
    chosen = dict(found)
    given = {"subject": subject, "session": session, "task": task, "run": run,
             "acquisition": acquisition}  # fmt: skip
    chosen.update({k: str(v) for k, v in given.items() if v is not None})
    defaulted = []
    if "subject" not in chosen:
        chosen["subject"] = _NOT_ALNUM.sub("", prefix or name)[:64] or "01"
        defaulted.append(f"sub-{chosen['subject']}")
    if not found and "session" not in chosen and stamp:
        chosen["session"] = _NOT_ALNUM.sub("", stamp)
        defaulted.append(f"ses-{chosen['session']}")
    if "task" not in chosen:
        chosen["task"] = DEFAULT_TASK
        defaulted.append(f"task-{DEFAULT_TASK}")
    if defaulted and log:
        logger.warning(
            "BIDS entities of %s defaulted to %s (set --subject/--session/--task/--run)",
            name, " ".join(defaulted),
        )  # fmt: skip
    return Entities(
        subject=label(chosen["subject"], "subject"),
        task=label(chosen["task"], "task"),
        session=label(chosen["session"], "session") if chosen.get("session") else None,
        acquisition=label(chosen["acquisition"], "acquisition")
        if chosen.get("acquisition")
        else None,
        run=run_index(chosen["run"]) if chosen.get("run") else None,
    )
