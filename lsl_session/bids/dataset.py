"""The dataset around the recordings: staging, merge, scans/participants, lock.

Nothing is written, replaced or deleted through a symbolic link inside the dataset
(`refuse_links`, as processing does in a session): a planted link is a one-line
error before the export changes anything. The dataset root itself may be a link.

One export writes everything for its recording into a staging dataset inside
``sourcedata/.lsl_session/`` (ignored by BIDS tools), then, holding the dataset's
lock, replaces the recording's previous files, moves the new ones in (``rename``
on one filesystem) and merges ``participants.tsv`` and ``scans.tsv``. Several
exports into one dataset (``--jobs``, a cluster on a shared disk) therefore never
interleave their table updates, and a crash leaves the previous files in place.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lsl_session import __version__
from lsl_session.bids.entities import Entities
from lsl_session.errors import LslSessionError
from lsl_session.fsutil import ensure_inside, shared_mkdtemp

BIDS_VERSION = "1.9.0"
WORK = "sourcedata/.lsl_session"
#: Extra scans.tsv column naming the lsl_session recording a file came from.
SOURCE_COLUMN = "lsl_session_source"


README = """\
This dataset was recorded with the Lab Streaming Layer (LSL) and exported by
lsl_session (`lsl-session export --bids`).

- EEG streams are in eeg/ (BrainVision or EDF, written by mne-bids).
- GSR, PPG and other physiological streams are *_physio.tsv.gz files beside
  the EEG (or in beh/ when a session has no EEG), one recording-<label> per stream.
- Accelerometer, gyroscope and other motion channels are in motion/, one
  tracksys-<label> per stream.
- Markers and session events are in *_events.tsv, on the time base of the
  first EEG sample (sessions without EEG: the recorder's start).
- scans.tsv gives each data file's acq_time (UTC, microseconds).
- The original XDF recordings and session files are under sourcedata/.
"""


class BidsConflictError(LslSessionError):
    """Another recording already holds these entities in the dataset."""


def refuse_links(root: Path, *paths: Path) -> None:
    """Raise `UnsafePathError` if writing any of ``paths`` would go through a link.

    Every existing component below ``root`` (the path itself included) must be a
    real folder or file; see `lsl_session.fsutil.ensure_inside`.
    """
    for path in paths:
        ensure_inside(root, path)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a TSV (empty when missing)."""
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def write_tsv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write a TSV atomically (temp + rename); missing cells are ``n/a``."""
    tmp = _tmp(path)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        fh.write("\t".join(header) + "\n")
        for row in rows:
            fh.write("\t".join(str(row.get(h) or "n/a") for h in header) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def upsert(path: Path, key: str, new_rows: list[dict[str, str]],
           first: list[str]) -> None:  # fmt: skip
    """Replace rows of ``path`` with the same ``key``, add the others."""
    header, rows = read_tsv(path)
    for col in [*first, *(c for r in new_rows for c in r)]:
        if col not in header:
            header.append(col)
    by_key = {r[key]: r for r in new_rows}
    kept = [r for r in rows if r.get(key) not in by_key]
    write_tsv(path, header, sorted([*kept, *new_rows], key=lambda r: r.get(key, "")))


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the dataset's exclusive lock (``flock`` on a file under ``sourcedata``)."""
    work = root / WORK
    refuse_links(root, work / "lock")
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A fresh staging dataset inside the dataset; removed afterwards."""
    work = root / WORK
    refuse_links(root, work)
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="stage-", dir=work))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _json(path: Path, data: dict[str, Any]) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def ensure_dataset(root: Path, *, name: str | None = None) -> None:
    """``dataset_description.json``, ``README`` and the scans column description."""
    root.mkdir(parents=True, exist_ok=True)
    desc = root / "dataset_description.json"
    refuse_links(root, desc, _tmp(desc), root / "README", root / ".bidsignore",
                 root / WORK, root / "participants.tsv",
                 _tmp(root / "participants.tsv"), root / "participants.json")  # fmt: skip
    if not desc.is_file():
        _json(desc, {
            "Name": name or root.name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "lsl_session", "Version": __version__,
                             "Description": "lsl-session export --bids"}],
        })  # fmt: skip
    readme = root / "README"
    if not readme.is_file() and not any(root.glob("README.*")):
        readme.write_text(README)
    ignore = root / ".bidsignore"
    if not ignore.is_file():
        ignore.write_text("sourcedata/.lsl_session/\n")


def _entity_pattern(entities: Entities) -> re.Pattern[str]:
    """File names of one recording's entities (any tracksys/acq/recording)."""
    sub = f"sub-{entities.subject}"
    ses = f"_ses-{entities.session}" if entities.session else ""
    acq = (
        f"(?:_acq-{entities.acquisition})"
        if entities.acquisition
        else "(?:_acq-[A-Za-z0-9]+)?"
    )
    run = f"_run-{entities.run}" if entities.run else ""
    return re.compile(
        rf"^{sub}{ses}_task-{entities.task}(?:_tracksys-[A-Za-z0-9]+)?{acq}{run}"
        rf"(?:_(?:recording|space|split)-[A-Za-z0-9]+)*_[A-Za-z]+\."
    )


def check_conflict(root: Path, entities: Entities, source: str) -> None:
    """Raise if a different recording already holds these entities."""
    scans = (
        root / entities.folder() / f"{entities.folder().replace('/', '_')}_scans.tsv"
    )
    _, rows = read_tsv(scans)
    pattern = _entity_pattern(entities)
    for row in rows:
        name = Path(row.get("filename", "")).name
        other = row.get(SOURCE_COLUMN) or ""
        if pattern.match(name) and other and other != source:
            raise BidsConflictError(
                f"{entities.prefix()} already holds {other} in {root}; choose "
                "another --run or --session"
            )


def replace_recording(
    stage: Path, root: Path, entities: Entities, source: str
) -> list[str]:
    """Move a staged recording into the dataset (holding the lock); return its files."""
    folder = entities.folder()
    scans_name = f"{folder.replace('/', '_')}_scans.tsv"
    pattern = _entity_pattern(entities)
    check_conflict(root, entities, source)
    target = root / folder
    scans = target / scans_name
    refuse_links(root, scans, _tmp(scans), scans.with_suffix(".json"),
                 _tmp(scans.with_suffix(".json")))  # fmt: skip
    olds = []
    if target.is_dir():  # the previous export of this recording
        olds = [p for p in target.glob("*/*") if pattern.match(p.name)]
        refuse_links(root, *olds)
    staged = [
        p for p in sorted((stage / folder).rglob("*"))
        if p.is_file() and p.name != scans_name
    ]  # fmt: skip
    refuse_links(root, *(root / p.relative_to(stage) for p in staged))
    for old in olds:
        if old.is_file():
            old.unlink()
    moved = []
    for path in staged:
        rel = path.relative_to(stage)
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        moved.append(rel.as_posix())
    _, staged_scans = read_tsv(stage / folder / scans_name)
    for row in staged_scans:
        row[SOURCE_COLUMN] = source
    if staged_scans:
        upsert(scans, "filename", staged_scans, ["filename", "acq_time"])
        scans_json = scans.with_suffix(".json")
        if not scans_json.is_file():
            _json(scans_json, {SOURCE_COLUMN: {
                "Description": "The lsl_session session (or XDF file) this file "
                "was exported from, under sourcedata/"}})  # fmt: skip
    _merge_participants(stage, root, entities)
    return moved


def _merge_participants(stage: Path, root: Path, entities: Entities) -> None:
    header, rows = read_tsv(stage / "participants.tsv")
    row = next((r for r in rows if r.get("participant_id") == f"sub-{entities.subject}"),
               {"participant_id": f"sub-{entities.subject}"})  # fmt: skip
    path = root / "participants.tsv"
    _, existing = read_tsv(path)
    if any(r.get("participant_id") == row["participant_id"] for r in existing):
        return
    upsert(path, "participant_id", [row], header or ["participant_id"])
    pjson = root / "participants.json"
    if not pjson.is_file() and (stage / "participants.json").is_file():
        shutil.copyfile(stage / "participants.json", pjson)


def replace_sourcedata(
    src_files: list[tuple[Path, str]], root: Path, dest: str
) -> list[str]:
    """Copy ``(file, relative name)`` pairs to ``sourcedata/<dest>/`` as a whole."""
    final = root / "sourcedata" / dest
    refuse_links(root, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = shared_mkdtemp(f".{final.name}.new-", final.parent)
    try:
        for path, rel in src_files:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [f"sourcedata/{dest}/{rel}" for _, rel in src_files]
