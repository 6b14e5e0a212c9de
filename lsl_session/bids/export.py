"""``export_bids``: one session folder or XDF file → (a part of) a BIDS dataset.

Time base: the first sample of the (first) EEG stream when there is one —
``_events.tsv`` onsets and physio ``StartTime`` are relative to it — else the
recorder's start (``recording.start_lsl_time``), and the events and physio go to
``beh/``. Motion files start at their own first sample; ``scans.tsv`` gives every
data file's ``acq_time`` (UTC, microseconds) on the same clock.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lsl_session.bids import continuous, dataset, eeg, mapping
from lsl_session.bids.entities import Entities, resolve
from lsl_session.errors import LslSessionError
from lsl_session.layout import LOCK_FILE
from lsl_session.processing.session_data import SessionData, load_session

logger = logging.getLogger(__name__)

#: Session sub-folders copied to sourcedata/ (derived outputs are not).
SOURCE_FOLDERS = ("devices", "webcam")
_EVENT_COLUMNS = {
    "trial_type": "The marker (or session event) description",
    "value": "The marker string as recorded (session events: their JSON)",
    "stream": "The LSL stream the marker came from",
    "lsl_time": "The marker's time on the recorder's LSL clock (s)",
    "sample": "Sample index of the onset in the EEG data (0-based)",
}


def _utc(start_wall: dt.datetime | None, t0: float, lsl: float) -> str:
    if start_wall is None:
        return "n/a"
    when = (start_wall + dt.timedelta(seconds=lsl - t0)).astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clean(text: Any) -> str:
    value = " ".join(str(text).split())[:1000]
    return value or "n/a"


def events_table(data: SessionData, base: float, sfreq: float | None,
                 gaps: list[tuple[float, float]], n_times: int | None = None,
                 label: str = "") -> pd.DataFrame:  # fmt: skip
    """The events (markers, session events, EEG gaps) relative to ``base``.

    With ``n_times`` (the data file's samples at ``sfreq``), only the events that
    land on one of its samples are kept: an events file never points before the
    file's first sample (a stream that started late) or past its last one. The
    events left out are counted in the log; every one stays in the XDF in
    ``sourcedata/``.
    """
    ev = data.events
    frame = pd.DataFrame({
        "onset": ev["lsl_time"].to_numpy(float) - base,
        "duration": ev["duration"].to_numpy(float),
        "trial_type": [_clean(d) for d in ev["description"]],
        "value": [_clean(v) for v in ev["value"]],
        "stream": [_clean(s) for s in ev["stream"]],
        "lsl_time": ev["lsl_time"].to_numpy(float),
    })  # fmt: skip
    if gaps:
        frame = pd.concat([frame, pd.DataFrame({
            "onset": [g[0] for g in gaps], "duration": [g[1] for g in gaps],
            "trial_type": "BAD_ACQ_SKIP", "value": "n/a", "stream": "n/a",
            "lsl_time": [g[0] + base for g in gaps],
        })], ignore_index=True)  # fmt: skip
    if sfreq and n_times is not None:
        keep = eeg.inside(frame["onset"].to_numpy(float), sfreq, n_times)
        if not keep.all():
            logger.info("BIDS: %d of %d events fall outside %s's data; left out of "
                        "its events file", int((~keep).sum()), len(keep), label or "the EEG")  # fmt: skip
        frame = frame[keep]
    frame = frame.sort_values("onset", kind="stable").reset_index(drop=True)
    if sfreq:
        frame.insert(4, "sample", np.round(frame["onset"] * sfreq).astype(int))
    return frame


def write_events(folder: Path, prefix: str, frame: pd.DataFrame) -> str:
    """``<prefix>_events.tsv`` + ``.json``; return the file name."""
    name = f"{prefix}_events.tsv"
    out = frame.copy()
    for col in ("onset", "lsl_time"):
        out[col] = out[col].map(lambda x: f"{x:.6f}")
    out["duration"] = out["duration"].map(lambda x: f"{x:.6f}" if x > 0 else "0")
    # cells hold no tab or newline (`_clean`), so no quoting: BIDS TSV has none
    out.to_csv(folder / name, sep="\t", index=False, lineterminator="\n", na_rep="n/a",
               quoting=csv.QUOTE_NONE)  # fmt: skip
    sidecar = {c: {"Description": d} for c, d in _EVENT_COLUMNS.items() if c in out}
    sidecar["onset"] = {"Description": "Seconds from the first sample of the "
                        "recording", "Units": "s"}  # fmt: skip
    (folder / f"{prefix}_events.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return name


def source_files(data: SessionData) -> list[tuple[Path, str]]:
    """The recording's own files: XDF parts, metadata, log, device and webcam files."""
    files = [(Path(f), Path(f).name) for f in data.files]
    if data.root is None:
        return files
    root = data.root
    names = {rel for _, rel in files}
    for path in sorted(root.iterdir()):
        if (path.is_file() and not path.is_symlink() and not path.name.startswith(".")
                and path.name != LOCK_FILE):  # fmt: skip
            if path.name not in names:
                files.append((path, path.name))
    for sub in SOURCE_FOLDERS:
        for path in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
            if (
                path.is_file()
                and not path.is_symlink()
                and not any(
                    part.startswith(".") for part in path.relative_to(root).parts
                )
            ):
                files.append((path, path.relative_to(root).as_posix()))
    return files


def is_exported(path: Path | str, bids_root: Path | str, **entities: Any) -> bool:
    """True when the dataset already holds this session's sourcedata copy."""
    path = Path(path)
    name = path.stem if path.is_file() else path.name
    ents = resolve(name, log=False, **entities)
    return (Path(bids_root) / "sourcedata" / ents.folder() / name).is_dir()


def _gaps(raw: Any) -> list[tuple[float, float]]:
    return [(float(a["onset"]), float(a["duration"])) for a in raw.annotations
            if a["description"] == "BAD_ACQ_SKIP"]  # fmt: skip


def export_bids(
    path: Path | str,
    bids_root: Path | str,
    *,
    subject: str | None = None,
    session: str | None = None,
    task: str | None = None,
    run: str | int | None = None,
    eeg_format: str = "brainvision",
    line_freq: float | None = None,
    data: SessionData | None = None,
) -> dict[str, Any]:
    """Export one session folder (or XDF file) into the BIDS dataset ``bids_root``.

    Parameters
    ----------
    path : Path | str
        A session folder or an ``.xdf`` file.
    bids_root : Path | str
        The dataset folder; created, or extended when it exists.
    subject, session, task, run : str | None
        BIDS entities; default from the session name (see `entities.resolve`).
    eeg_format : {"brainvision", "edf"}
        The EEG file format.
    line_freq : float | None
        Power line frequency in Hz for ``_eeg.json`` (default ``n/a``).
    data : SessionData | None
        The loaded session, when the caller has it.

    Returns
    -------
    dict
        ``entities``, ``files`` (relative to ``bids_root``), ``not_mapped``
        {stream: reason}, ``time_base`` and ``first_sample_lsl``.
    """
    if eeg_format not in eeg.FORMATS:
        raise LslSessionError(f"EEG format must be one of {sorted(eeg.FORMATS)}")
    path, root = Path(path), Path(bids_root).resolve()
    data = data if data is not None else load_session(path)
    name = data.session_id or path.stem
    ents = resolve(name, subject=subject, session=session, task=task, run=run)
    plans = mapping.plan_streams(data.streams)
    labels = mapping.unique_labels(plans)
    not_mapped = {p.stream.name: p.reason for p in plans if p.kind == "skip"}
    for name_, reason in not_mapped.items():
        logger.info("BIDS: stream %s not mapped: %s", name_, reason)
    eegs = [i for i, p in enumerate(plans) if p.kind == "eeg"]
    physio = [i for i, p in enumerate(plans) if p.kind == "split" and p.physio]
    motion = [i for i, p in enumerate(plans) if p.kind == "split" and p.motion]
    if not (eegs or physio or motion or len(data.events)):
        raise LslSessionError(
            f"{path}: no stream maps to BIDS ({not_mapped or 'none'})"
        )
    source = f"sourcedata/{ents.folder()}/{name}"
    dataset.ensure_dataset(root)
    with dataset.locked(root):
        dataset.check_conflict(root, ents, source)
    scans: list[dict[str, str]] = []
    with dataset.staging(root) as stage:
        folder = stage / ents.folder()
        primary_acq = None
        if eegs:
            base, sfreq, n_times, gaps = _write_eegs(stage, data, ents, plans, eegs,
                                                     labels, eeg_format, line_freq)  # fmt: skip
            datatype = "eeg"
            primary_acq = labels[eegs[0]] if len(eegs) > 1 else None
        else:
            base, datatype, sfreq, n_times, gaps = data.t0, "beh", None, None, []
        prefix = ents.prefix(acq=primary_acq)
        out = folder / datatype
        out.mkdir(parents=True, exist_ok=True)
        label = plans[eegs[0]].stream.name if eegs else ""
        table = events_table(data, base, sfreq, gaps, n_times, label)
        events_name = write_events(out, prefix, table)
        if datatype == "beh":
            scans.append({"filename": f"beh/{events_name}",
                          "acq_time": _utc(data.start_wall, data.t0, base)})  # fmt: skip
        for i in physio:
            info = continuous.write_physio(
                out, prefix, labels[i], plans[i].stream, plans[i].physio, base
            )
            scans.append({"filename": f"{datatype}/{info['file']}",
                          "acq_time": _utc(data.start_wall, data.t0, info["first"])})  # fmt: skip
        if motion:
            mot = folder / "motion"
            mot.mkdir(parents=True, exist_ok=True)
            for i in motion:
                info = continuous.write_motion(
                    mot,
                    ents.prefix(tracksys=labels[i]),
                    ents.task,
                    labels[i],
                    plans[i].stream,
                    plans[i].motion,
                )
                scans.append({"filename": f"motion/{info['file']}",
                              "acq_time": _utc(data.start_wall, data.t0, info["first"])})  # fmt: skip
        scans_path = folder / f"{ents.folder().replace('/', '_')}_scans.tsv"
        dataset.upsert(scans_path, "filename", scans, ["filename", "acq_time"])
        with dataset.locked(root):
            files = dataset.replace_recording(stage, root, ents, source)
            files += dataset.replace_sourcedata(
                source_files(data), root, f"{ents.folder()}/{name}"
            )
    return {
        "entities": ents.prefix(), "files": files, "not_mapped": not_mapped,
        "time_base": "eeg" if eegs else "recording_start",
        "first_sample_lsl": base,
    }  # fmt: skip


def _write_eegs(
    stage: Path, data: SessionData, ents: Entities, plans: list, eegs: list[int],
    labels: dict[int, str], fmt: str, line_freq: float | None,
) -> tuple[float, float, int, list[tuple[float, float]]]:  # fmt: skip
    """Write every EEG stream; return the first's (first stamp, rate, samples, gaps)."""
    base = sfreq = 0.0
    n_times = 0
    gaps: list[tuple[float, float]] = []
    for n, i in enumerate(eegs):
        raw, first = eeg.build_raw(plans[i].stream, start_wall=data.start_wall,
                                   t0=data.t0, line_freq=line_freq)  # fmt: skip
        onsets = data.events["lsl_time"].to_numpy(float) - first
        eeg.add_markers(raw, onsets, [str(d) for d in data.events["description"]])
        acq = labels[i] if len(eegs) > 1 else None
        eeg.write_eeg(raw, stage, ents, fmt=fmt, acquisition=acq,
                      device=continuous.device_info(plans[i].stream))  # fmt: skip
        if n == 0:
            base, sfreq, n_times, gaps = (
                first,
                raw.info["sfreq"],
                raw.n_times,
                _gaps(raw),
            )
        else:  # the others get their own events on their own time base
            prefix = ents.prefix(acq=acq)
            write_events(stage / ents.folder() / "eeg", prefix,
                         events_table(data, first, raw.info["sfreq"], _gaps(raw),
                                      raw.n_times, plans[i].stream.name))  # fmt: skip
    return base, sfreq, n_times, gaps
