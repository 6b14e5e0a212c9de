"""Read LabRecorder.cfg (QSettings INI) and map it onto a recording with our session tree.

Keys honoured: ``StudyRoot``, ``StorageLocation`` (its root), ``RequiredStreams``,
``RCSEnabled``, ``RCSPort``, ``AutoStart``, ``SessionBlocks`` (the first block is
the default task). ``PathTemplate``, the template part of ``StorageLocation``,
``BidsModalities`` and ``OnlineSync`` cannot be honoured (the session tree is
enforced, synchronisation happens in post-processing): each is logged once.
See docs/remote-control.md.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsl_session.errors import ConfigError

if TYPE_CHECKING:
    from lsl_session.manager import SessionManager

logger = logging.getLogger(__name__)

#: LabRecorder's defaults when a key is missing (src/mainwindow.cpp, the shipped cfg).
DEFAULT_RCS_PORT = 22345

#: Largest config file read (a LabRecorder.cfg is a few KB).
MAX_BYTES = 1_000_000
#: Most ``RequiredStreams`` entries, longest entry and longest path value accepted.
MAX_REQUIRED = 64
MAX_ENTRY = 1024
MAX_PATH = 4096

_KNOWN = {
    "studyroot",
    "pathtemplate",
    "storagelocation",
    "sessionblocks",
    "bidsmodalities",
    "requiredstreams",
    "onlinesync",
    "rcsenabled",
    "rcsport",
    "autostart",
}
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")
# "Name (HOST)": LabRecorder allows no whitespace inside the parentheses
_REQUIRED = re.compile(r"^(.*\S)\s+\((\S+)\)$")


@dataclass(frozen=True, slots=True)
class RequiredStream:
    """One ``RequiredStreams`` entry and the LSL query it becomes."""

    label: str
    query: str


@dataclass(frozen=True, slots=True)
class LabRecorderConfig:
    """The honoured settings of a LabRecorder.cfg."""

    path: Path
    root: Path | None = None
    required: tuple[RequiredStream, ...] = ()
    rcs_enabled: bool = True
    rcs_port: int = DEFAULT_RCS_PORT
    auto_start: bool = False
    blocks: tuple[str, ...] = ()
    not_honoured: tuple[str, ...] = field(default_factory=tuple)

    @property
    def queries(self) -> list[str]:
        """The required streams as LSL queries."""
        return [r.query for r in self.required]

    def default_fields(self) -> dict[str, str]:
        """``filename`` fields implied by the config (the first block as task)."""
        return {"task": self.blocks[0]} if self.blocks else {}


def split_list(value: str) -> list[str]:
    """Split a QSettings list value (``"a", "b, c", d``) into its items.

    Items may be double-quoted (``\\"`` and ``\\\\`` escape inside quotes);
    surrounding whitespace and empty items are dropped.

    Raises
    ------
    ValueError
        For an unterminated quote.
    """
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise ValueError("unterminated quote")
    items.append("".join(buf).strip())
    return [i for i in items if i]


def parse_ini(text: str) -> dict[str, str]:
    """QSettings INI lines → ``{key (lower-cased): raw value}``; later keys win.

    Keys in ``[General]`` or before any section are read; keys of other
    sections come back as ``section/key``.
    """
    values: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            section = "" if name.lower() == "general" else name.lower()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"not a key=value line: {line[:80]!r}")
        key = key.strip().lower()
        values[f"{section}/{key}" if section else key] = value.strip()
    return values


def required_stream(entry: str) -> RequiredStream:
    """``"BioSemi (lab-pc)"`` → ``name='BioSemi' and hostname='lab-pc'``.

    An entry that does not parse becomes ``name='<entry>'``, as in LabRecorder.
    """
    match = _REQUIRED.match(entry.strip())
    name, host = (match.group(1), match.group(2)) if match else (entry.strip(), None)
    if "'" in name and '"' in name:
        raise ValueError(f"stream name {name!r} holds both kinds of quotes")
    quote = '"' if "'" in name else "'"
    query = f"name={quote}{name}{quote}"
    if host is not None:
        if "'" in host:
            raise ValueError(f"host name {host!r} holds a quote")
        query += f" and hostname='{host}'"
    return RequiredStream(entry.strip(), query)


def _bool(path: Path, key: str, value: str) -> bool:
    text = value.strip().strip('"').lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{path}: {key} must be 1 or 0, not {value[:40]!r}")


def _root(path: Path, key: str, value: str) -> Path:
    text = value.strip().strip('"')
    if not text:
        raise ConfigError(f"{path}: {key} is empty")
    if len(text) > MAX_PATH:
        raise ConfigError(
            f"{path}: {key} is {len(text)} characters, at most {MAX_PATH}"
        )
    if any(ord(c) < 32 for c in text):
        raise ConfigError(f"{path}: {key} holds a control character")
    if _WINDOWS_PATH.match(text) and os.name != "nt":
        raise ConfigError(
            f"{path}: {key} {text[:80]!r} is a Windows path; give a path of this machine"
        )
    try:
        root = Path(text).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise ConfigError(f"{path}: {key} {text[:80]!r}: {exc}") from None
    return root if root.is_absolute() else (path.parent / root)


def read_labrecorder_config(path: Path | str) -> LabRecorderConfig:
    """Read a LabRecorder.cfg.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, too large or has an invalid value;
        the message names the file and the key, in one line.
    """
    path = Path(path)
    data = _read_regular(path)
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not a LabRecorder config: binary data (a NUL byte on line {line})"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:  # LabRecorder.cfg edited on Windows: Notepad's ANSI code page
            text = data.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not a LabRecorder config: neither UTF-8 nor cp1252 text"
                f" (byte {exc.start})"
            ) from None
        logger.warning("%s: not UTF-8; read as Windows cp1252 text", path.name)
    try:
        values = parse_ini(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a LabRecorder config: {exc}") from None
    return _build(path, values)


def _read_regular(path: Path) -> bytes:
    """The file's first `MAX_BYTES` + 1 bytes; a FIFO or device is refused unread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such LabRecorder config") from None
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else exc
        raise ConfigError(f"{path}: unreadable ({detail or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: not a regular file; not a LabRecorder config")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_BYTES} bytes; not a LabRecorder.cfg"
        )
    return data


def _build(path: Path, values: dict[str, str]) -> LabRecorderConfig:
    not_honoured: list[str] = []
    root = None
    if "storagelocation" in values:
        if "studyroot" in values or "pathtemplate" in values:
            raise ConfigError(
                f"{path}: StorageLocation cannot be combined with StudyRoot/PathTemplate"
            )
        location = values["storagelocation"].strip().strip('"')
        head = location.split("%", 1)[0]
        folder = head.rsplit("/", 1)[0] if "/" in head else "."
        root = _root(path, "StorageLocation", folder or "/")
        not_honoured.append(
            f"StorageLocation file template {location[len(folder) :].lstrip('/')[:80]!r}:"
            " each run is a session folder under the root (SPEC §2)"
        )
    if "studyroot" in values:
        root = _root(path, "StudyRoot", values["studyroot"])
    if values.get("pathtemplate", "").strip().strip('"'):
        not_honoured.append(
            f"PathTemplate {values['pathtemplate'].strip()[:80]!r}: each run is a session"
            " folder <root>/<sub-…_ses-…_task-…_run-NNN>_<timestamp>/ (SPEC §2)"
        )
    try:
        entries = split_list(values.get("requiredstreams", ""))
        if len(entries) > MAX_REQUIRED:
            raise ValueError(
                f"RequiredStreams lists {len(entries)} streams, at most {MAX_REQUIRED}"
            )
        for entry in entries:
            if len(entry) > MAX_ENTRY or any(ord(c) < 32 for c in entry):
                raise ValueError(
                    f"RequiredStreams entry {entry[:40]!r}… is over {MAX_ENTRY}"
                    " characters or holds a control character"
                )
        required = tuple(required_stream(e) for e in entries)
        blocks = tuple(split_list(values.get("sessionblocks", "")))
        sync = split_list(values.get("onlinesync", ""))
        modalities = split_list(values.get("bidsmodalities", ""))
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if sync:
        not_honoured.append(
            "OnlineSync: raw time stamps and clock offsets are recorded; "
            "`lsl-session process` synchronizes"
        )
    if modalities:
        not_honoured.append("BidsModalities: not needed, any {modality:…} is accepted")
    port = DEFAULT_RCS_PORT
    if "rcsport" in values:
        text = values["rcsport"].strip().strip('"')
        if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) < 65536:
            raise ConfigError(f"{path}: RCSPort must be 1-65535, not {text[:40]!r}")
        port = int(text)
    unknown = sorted(set(values) - _KNOWN)
    for key in unknown[:10]:
        not_honoured.append(f"unknown key {key[:60]!r} ignored")
    if len(unknown) > 10:
        not_honoured.append(f"{len(unknown) - 10} more unknown keys ignored")
    return LabRecorderConfig(
        path=path,
        root=root,
        required=required,
        rcs_enabled=_bool(path, "RCSEnabled", values.get("rcsenabled", "1")),
        rcs_port=port,
        auto_start=_bool(path, "AutoStart", values.get("autostart", "0")),
        blocks=blocks,
        not_honoured=tuple(not_honoured),
    )


def looks_like_labrecorder_config(path: Path) -> bool:
    """True for a ``.cfg`` file (LabRecorder's config extension)."""
    return path.suffix.lower() == ".cfg"


def log_not_honoured(config: LabRecorderConfig) -> None:
    """Log, once, every setting that cannot be honoured."""
    for message in config.not_honoured:
        logger.warning("%s: %s", config.path.name, message)


def missing_required(recorder: Any, required: tuple[RequiredStream, ...]) -> list[str]:
    """The labels of the required streams a started recorder has not found.

    They stay watched by the recorder and are recorded when they appear.
    """
    if recorder is None or not required:
        return []
    unmatched = set(recorder.unmatched_queries())
    return [r.label for r in required if r.query in unmatched]


def log_missing_required(manager: SessionManager, missing: list[str]) -> str:
    """Log the ``error`` event for required streams missing at start; return the text."""
    message = (
        f"required stream(s) missing at start: {', '.join(missing)};"
        " watching for them (recorded when they appear)"
    )
    manager.logger.log_event(
        "error", {"category": "device", "message": message, "missing": missing}
    )
    return message
