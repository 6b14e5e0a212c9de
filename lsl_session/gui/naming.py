"""Run naming: LabRecorder's file-name template applied to the enforced session tree.

LabRecorder names a file ``StudyRoot/<template>`` with the placeholders ``%p``
(participant), ``%s`` (session), ``%b`` (block/task), ``%a`` (acquisition), ``%m``
(modality) and ``%n``/``%r`` (the run counter, three digits). Its BIDS template is
`BIDS_TEMPLATE`. We keep the enforced session folder (SPEC §2), so the template's
folders become folders *above* the session folder, and its file stem becomes the
session name: ``sub-P01/ses-S01/sub-P01_ses-S01_task-T_run-001_eeg_<date>_<time>/``.
The modality folder of the BIDS template (``%m/``) is left out: a session folder
holds every modality.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lsl_session.control.protocol import bids_label
from lsl_session.errors import LslSessionError
from lsl_session.fsutil import atomic_write_bytes

#: LabRecorder's BIDS template (its default when "BIDS" is ticked).
BIDS_TEMPLATE = "sub-%p/ses-%s/%m/sub-%p_ses-%s_task-%b[_acq-%a]_run-%r_%m.xdf"
#: LabRecorder's legacy default template.
LEGACY_TEMPLATE = "exp%n/block_%b.xdf"
#: Longest field value and template accepted (characters).
MAX_FIELD = 64
MAX_TEMPLATE = 256
#: Folder levels a template may put above the session folder.
MAX_FOLDERS = 4
#: Where the fields persist between page loads and restarts (under the root).
STATE_FILE = ".lsl_session_gui.json"

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_SAFE_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class RunFields:
    """What the page's naming fields hold (LabRecorder's defaults)."""

    participant: str = "P001"
    session: str = "S001"
    task: str = "Default"
    acquisition: str = ""
    run: int = 1
    modality: str = "eeg"
    template: str = BIDS_TEMPLATE

    def check(self) -> RunFields:
        """Validate every field; return self.

        Raises
        ------
        LslSessionError
            A field too long, with a control character or a brace (which the
            remote-control ``filename`` line cannot carry), or a run out of range.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "run":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise LslSessionError("run must be a whole number")
                if not 1 <= value <= 999:
                    raise LslSessionError("run must be between 1 and 999")
                continue
            if not isinstance(value, str):
                raise LslSessionError(f"{f.name} must be text")
            limit = MAX_TEMPLATE if f.name == "template" else MAX_FIELD
            if len(value) > limit:
                raise LslSessionError(f"{f.name}: at most {limit} characters")
            if any(c in value for c in "{}") or any(ord(c) < 32 for c in value):
                raise LslSessionError(
                    f"{f.name}: no braces or control characters allowed"
                )
        if not self.template.strip():
            self.template = BIDS_TEMPLATE
        return self


def expand(template: str, f: RunFields) -> str:
    """Fill a LabRecorder template with the fields.

    ``[...]`` groups (``[_acq-%a]``) appear only when the acquisition is given.
    Entity values are reduced to letters and digits (BIDS labels); the run is
    three digits.

    Examples
    --------
    >>> expand(BIDS_TEMPLATE, RunFields(participant="P01", task="oddball", run=2))
    'sub-P01/ses-S001/eeg/sub-P01_ses-S001_task-oddball_run-002_eeg.xdf'
    """
    values = {
        "%p": bids_label(f.participant),
        "%s": bids_label(f.session),
        "%b": bids_label(f.task),
        "%a": bids_label(f.acquisition),
        "%m": bids_label(f.modality).lower(),
        "%n": f"{f.run:03d}",
        "%r": f"{f.run:03d}",
    }

    def group(match: re.Match[str]) -> str:
        body = match.group(1)
        return body if "%a" not in body or values["%a"] else ""

    text = _OPTIONAL.sub(group, template.replace("\\", "/"))
    for key, value in values.items():
        text = text.replace(key, value)
    return text


@dataclass(frozen=True)
class Placement:
    """Where a run's session goes: folders under the root, and its name."""

    folders: tuple[str, ...]
    name: str

    def root_under(self, root: Path) -> Path:
        """The folder the session folder is created in."""
        return root.joinpath(*self.folders)


def placement(f: RunFields) -> Placement:
    """The folders and the session name a template gives (see the module notes).

    Raises
    ------
    LslSessionError
        If the template gives no usable name or too many folder levels.
    """
    text = expand(f.template, f)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        raise LslSessionError("the template gives an empty file name")
    stem = parts[-1]
    if stem.lower().endswith((".xdf", ".xdfz")):
        stem = stem.rsplit(".", 1)[0]
    folders = parts[:-1]
    modality = bids_label(f.modality).lower()
    if "%m/" in f.template.replace("\\", "/") and folders and folders[-1] == modality:
        folders = folders[:-1]  # the BIDS datatype folder: a session holds all
    clean = []
    for part in folders:
        safe = _SAFE_PART.sub("_", part).strip("._")
        if not safe or part == "..":
            raise LslSessionError(f"the template gives an unusable folder {part!r}")
        clean.append(safe)
    if len(clean) > MAX_FOLDERS:
        raise LslSessionError(
            f"the template gives {len(clean)} folder levels, at most {MAX_FOLDERS}"
        )
    name = _SAFE_PART.sub("_", stem).strip("._-")
    if not name:
        raise LslSessionError("the template gives an empty file name")
    return Placement(tuple(clean), name)


def load_fields(root: Path) -> RunFields:
    """The fields saved under ``root`` (defaults when none or unreadable)."""
    path = root / STATE_FILE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 65536:
            return RunFields()
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(RunFields)}
        return RunFields(**{k: v for k, v in data.items() if k in known}).check()
    except (OSError, ValueError, TypeError, LslSessionError):
        return RunFields()


def save_fields(root: Path, f: RunFields) -> None:
    """Persist the fields atomically (temp + fsync + rename) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / STATE_FILE
    if path.is_symlink():
        os.unlink(path)
    atomic_write_bytes(path, json.dumps(asdict(f), indent=1).encode())
