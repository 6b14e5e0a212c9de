"""LabRecorder remote-control line protocol: parse lines, map ``filename`` fields; pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The reply LabRecorder writes after every line: two bytes, no newline.
REPLY_OK = b"OK"

#: Longest accepted line; longer input is discarded up to the next newline.
MAX_LINE = 64 * 1024

#: Longest ``filename`` value (``{participant:…}``, …) and ``root`` path accepted.
MAX_FIELD = 256
#: Largest ``{run:N}`` (LabRecorder's counter is 3 digits; 4 are allowed).
MAX_RUN = 9999
#: Queries the selection holds at once (``select <query>`` lines), and the
#: longest query: liblsl refuses deeper or-chains (~1,500 terms, "Exceeded
#: maximum allowed query depth"), so a bounded selection always starts.
MAX_SELECTION = 64
MAX_QUERY = 1024

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


class ControlRefused(ValueError):
    """A control line was refused; its message goes into the error reply."""


def error_reply(message: str) -> bytes:
    """``ERR <message>\\n``: the reply to a refused or failed line (one line, ≤ 300 bytes)."""
    body = " ".join(message.split()).encode("utf-8", errors="replace")
    if len(body) > 295:  # cut on a character boundary: bytes, not characters
        body = body[:292].decode("utf-8", errors="ignore").encode() + "…".encode()
    return b"ERR " + body + b"\n"


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


_ASCII_DIGITS = re.compile(r"[0-9]+")


def run_label(value: str) -> str:
    """``"2"`` → ``"002"`` (LabRecorder's 3-digit counter); other text → its label.

    Only ASCII digits count as a number (``"²"`` and ``"٣"`` are not); a number is
    read without Python's int conversion limits (a 5,000-digit run is its label).
    """
    text = value.strip()
    if _ASCII_DIGITS.fullmatch(text) and len(text) <= 9:
        return f"{int(text):03d}"
    return bids_label(text)


def check_filename_options(options: Mapping[str, str]) -> None:
    """Refuse ``filename`` values that cannot name a session.

    Raises
    ------
    ControlRefused
        A value longer than `MAX_FIELD`, containing a control character
        (NUL, newline, …), a ``run`` that is not a number 0…`MAX_RUN`, or
        a naming value with no letter or digit left (``{task:%%%}``).
        Unknown options are not checked (they are ignored).
    """
    for option, value in options.items():
        if option not in FILENAME_OPTIONS:
            continue  # ignored (logged by the handler), as LabRecorder does
        name = _clip(option)
        if len(value) > MAX_FIELD:
            raise ControlRefused(
                f"filename {{{name}:…}}: {len(value)} characters, at most {MAX_FIELD}"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ControlRefused(f"filename {{{name}:…}}: control character in value")
        if option == "run":
            text = value.strip()
            digits = text.lstrip("0")
            if not _ASCII_DIGITS.fullmatch(text) or int(digits[:5] or "0") > MAX_RUN:
                raise ControlRefused(
                    f"filename {{run:{_clip(value)}}}: not a run number 0…{MAX_RUN}"
                )
        elif option in _NAMING and not bids_label(value):
            raise ControlRefused(
                f"filename {{{name}:{_clip(value)}}}: no letter or digit (A-Z a-z 0-9)"
            )


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


_NAMING = frozenset(option for option, _ in _ENTITIES) | {"modality"}


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
