"""LabRecorder remote-control line protocol: parse lines, map ``filename`` fields; pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The reply LabRecorder writes after every line: two bytes, no newline.
REPLY_OK = b"OK"

#: Longest accepted line; longer input is discarded up to the next newline.
MAX_LINE = 64 * 1024

#: ``filename`` options LabRecorder knows (option names are case-insensitive).
FILENAME_OPTIONS = (
    "root",
    "template",
    "task",
    "run",
    "participant",
    "session",
    "acquisition",
    "modality",
)

#: BIDS entities of the session name, in BIDS order (LabRecorder's template
#: ``sub-%p_ses-%s_task-%b[_acq-%a]_run-%r_%m``).
_ENTITIES = (
    ("participant", "sub"),
    ("session", "ses"),
    ("task", "task"),
    ("acquisition", "acq"),
    ("run", "run"),
)

# LabRecorder: option = word characters, value = anything except "}".
_OPTION = re.compile(r"\{(\w+):([^}]+)\}")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed control line.

    Attributes
    ----------
    kind : str
        ``start``, ``stop``, ``update``, ``status``, ``quit``, ``auth``,
        ``select_all``, ``select_none``, ``select_query``, ``filename``,
        ``empty`` or ``unknown``.
    arg : str | None
        The query of ``select_query``, the token of ``auth``, or the line of
        ``unknown``.
    options : dict
        ``filename`` options, lower-cased names → raw values (unknown names kept).
    """

    kind: str
    arg: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_line(line: str) -> Command:
    """Classify one trimmed line with LabRecorder's matching rules.

    Parameters
    ----------
    line : str
        The line without its ``\\n`` (it is trimmed here, as Qt's ``trimmed()``).

    Returns
    -------
    Command
        The parsed command; never raises.

    Notes
    -----
    ``start``, ``stop`` and ``update`` match exactly (like LabRecorder), as do
    the extensions ``status``, ``quit`` and ``auth <token>``. A line that starts
    with ``select`` selects ``all``/``none`` when that is the whole rest,
    else the rest is an LSL query (``select name="EEG"``); a line starting with
    ``filename`` is parsed for ``{option:value}`` groups. Other lines fall back
    to LabRecorder's *contains* rules: containing ``filename`` → filename;
    containing ``select`` → ``all`` if it contains ``all``, else ``none`` if it
    contains ``none``.
    """
    text = line.strip()
    if not text:
        return Command("empty")
    lower = text.lower()
    if lower in ("start", "stop", "update", "status", "quit"):
        return Command(lower)
    head, _, rest = text.partition(" ")
    rest = rest.strip()
    if head.lower() == "auth":
        return Command("auth", arg=rest)
    if head.lower() == "filename":
        return Command("filename", options=parse_filename_options(text))
    if head.lower() == "select" and rest:
        if rest.lower() in ("all", "none"):
            return Command(f"select_{rest.lower()}")
        return Command("select_query", arg=rest)
    if "filename" in text:
        return Command("filename", options=parse_filename_options(text))
    if "select" in text:
        if "all" in text:
            return Command("select_all")
        if "none" in text:
            return Command("select_none")
    return Command("unknown", arg=text)


def parse_filename_options(line: str) -> dict[str, str]:
    """Return the ``{option:value}`` groups of a ``filename`` line.

    Option names are lower-cased; a repeated option keeps its last value; an
    unterminated group (``{task:abc``) is ignored, as LabRecorder does.
    """
    return {m.group(1).lower(): m.group(2) for m in _OPTION.finditer(line)}


def bids_label(value: str) -> str:
    """Reduce ``value`` to a BIDS label (letters and digits only)."""
    return _NOT_ALNUM.sub("", value)


def run_label(value: str) -> str:
    """``"2"`` → ``"002"`` (LabRecorder's 3-digit counter); other text → its label."""
    text = value.strip()
    if text.isdigit():
        return f"{int(text):03d}"
    return bids_label(text)


def session_name_from_fields(fields: Mapping[str, str]) -> str | None:
    """Build the session name from ``filename`` fields.

    Parameters
    ----------
    fields : mapping
        Lower-cased option names → values (``participant``, ``session``,
        ``task``, ``acquisition``, ``run``, ``modality``; others are ignored).

    Returns
    -------
    str | None
        ``sub-<participant>_ses-<session>_task-<task>_acq-<acq>_run-<NNN>_<modality>``
        with only the entities that were given and are non-empty after
        reduction to letters and digits; None when none was given.

    Examples
    --------
    >>> session_name_from_fields(
    ...     {"participant": "P003", "session": "S001", "task": "Memory", "run": "2"}
    ... )
    'sub-P003_ses-S001_task-Memory_run-002'
    """
    parts = []
    for option, key in _ENTITIES:
        value = fields.get(option)
        if value is None:
            continue
        label = run_label(value) if option == "run" else bids_label(value)
        if label:
            parts.append(f"{key}-{label}")
    modality = bids_label(fields.get("modality") or "").lower()
    if modality:
        parts.append(modality)
    return "_".join(parts) or None
