"""Assemble ``processing/report.html``: one self-contained page, readable offline.

Figures are PNGs embedded as data URIs (no network, no scripts); every text that
comes from the recording is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any

from lsl_session.fsutil import atomic_write_bytes, ensure_inside
from lsl_session.report import channel_figures, figures, sections
from lsl_session.report.verdict import (
    Verdict,
    aligned_text,
    device_status_text,
    session_verdict,
    source_notes,
)

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #eee;
text-align:left} .verdict{font-size:1.05em;background:#eef6ee;padding:.5em 1em}
.bad{color:#b00020} img{max-width:100%} .notes li{margin:2px 0}
h3{font-size:1em;margin:1.2em 0 .2em} .meta{color:#555;margin:.1em 0 .4em}
section.stream{border-left:3px solid #dde;padding-left:.8em;margin:1em 0}
details{margin:.3em 0} summary{cursor:pointer;color:#345}
table.channels td:last-child{font-weight:600}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p>(no data for: {_esc(alt)})</p>"
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img class="figure" alt="{_esc(alt)}" src="data:image/png;base64,{data}"></figure>'


def final_status(status: str) -> str:
    """The session status the report shows.

    The report is the last step of the processing: a session still marked
    ``processing`` while it is written is ``completed`` once it is read.
    """
    return "completed" if status == "processing" else status


def _stream_rows(streams: list[Any]) -> list[list[Any]]:
    from lsl_session.report.verdict import stream_loss

    rows = []
    for s in streams:
        n = len(s.time_stamps)
        span = float(s.time_stamps[-1] - s.time_stamps[0]) if n > 1 else 0.0
        rows.append(
            [
                s.name,
                s.type,
                s.source_id,
                n,
                "irregular" if s.nominal_srate <= 0 else f"{s.nominal_srate:g}",
                f"{s.effective_srate:.3f}",
                f"{span:.2f}",
                len(s.segments) - 1 if s.segments else 0,
                stream_loss(s).lost,
                len(s.clock_times),
                s.fit.get("clock_resets", 0),
            ]
        )
    return rows


def _file_rows(folder: Path, meta: dict[str, Any]) -> tuple[list[list[Any]], list[str]]:
    from lsl_session.recovery.rebuild import check_files

    problems = check_files(folder, meta)
    rows = []
    for device_id, entries in (meta.get("files") or {}).items():
        for entry in entries or []:
            rel = entry.get("file_path", "")
            bad = any(rel in p for p in problems)
            rows.append(
                [
                    device_id,
                    entry.get("file_type", ""),
                    rel,
                    entry.get("file_size", ""),
                    (entry.get("sha256") or "")[:16] + "…",
                    "MISMATCH or missing" if bad else "ok",
                ]
            )
    return rows, problems


def render_report(
    folder: Path,
    data: Any,
    sync_report: dict[str, Any] | None,
    verdict: Verdict,
    run: dict[str, Any] | None = None,
) -> str:
    """The report page of a loaded session, as an HTML string."""
    meta = data.metadata or {}
    sid = data.session_id or folder.name
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(sid)} — session report</title><style>{_STYLE}</style></head><body>",
        f"<h1>Session {_esc(sid)}</h1>",
        f"<p class='verdict' id='verdict'>{_esc(verdict.line)}</p>",
    ]
    if verdict.notes or verdict.problems:
        items = [f"<li>{_esc(n)}</li>" for n in verdict.notes]
        items += [f"<li class='bad'>{_esc(p)}</li>" for p in verdict.problems]
        parts.append(f"<ul class='notes'>{''.join(items)}</ul>")
    parts.append(
        _table(
            ["started", "ended", "duration (s)", "status", "XDF files"],
            [
                [
                    meta.get("start_time", ""),
                    meta.get("end_time", ""),
                    meta.get("duration_s", ""),
                    final_status(meta.get("status", "")),
                    ", ".join(Path(f).name for f in data.files),
                ]
            ],
        )
    )
    parts.append("<h2>Streams</h2>")
    parts.append(
        _table(
            [
                "name",
                "type",
                "source_id",
                "samples",
                "nominal Hz",
                "effective Hz",
                "span s",
                "gaps",
                "samples missing",
                "clock offsets",
                "clock resets",
            ],
            _stream_rows(data.streams),
        )
    )
    flagged = sections.flag_texts(data.streams, data.session_id)
    if flagged:
        parts.append("<p class='bad'>Flagged channels (flat: no change at all; clipped:"
                     " stuck at its extreme):</p><ul class='notes'>"
                     + "".join(f"<li class='bad'>{_esc(f)}</li>" for f in flagged)
                     + "</ul>")  # fmt: skip
    parts.append("<h2>Data streams</h2>")
    parts.append(sections.data_sections(data))
    parts.append("<h2>Internal streams</h2>")
    parts.append("<p>Recorded for the pipeline (clock mappings, the session's event"
                 " log); not data.</p>")  # fmt: skip
    parts.append(sections.internal_section(data))
    parts.append("<h2>Rates and gaps</h2>")
    parts.append(_table(["stream", "nominal Hz", "delivered Hz (median interval)",
                         "effective Hz (pyxdf)",
                         f"rate (ok: within {sections.RATE_OK * 100:g} %)"],
                        sections.rate_rows(data.streams, data.session_id)))  # fmt: skip
    parts.append("<h2>Clock offsets</h2>")
    data_streams = [s for s in data.streams
                    if sections.internal_kind(s, data.session_id) is None]  # fmt: skip
    parts.append(_figure(figures.clock_offsets(data_streams), "clock offsets"))
    parts.append("<h2>Sync check</h2>")
    if sync_report:
        rows = [
            [r["stream"], r.get("kind", ""), f"{r.get('n_matched', 0)}/{r.get('n_reference', 0)}",
             r.get("n_reference_outside", 0), r.get("median_error_ms"), r.get("max_error_ms"),
             r.get("sample_period_ms"), aligned_text(r)]
            for r in sync_report.get("streams", [])
        ]  # fmt: skip
        parts.append(
            _table(
                [
                    "stream",
                    "kind",
                    "pulses",
                    "outside span",
                    "median ms",
                    "max ms",
                    "period ms",
                    "aligned",
                ],
                rows,
            )
        )
    parts.append(_figure(figures.sync_errors(sync_report or {}), "sync check"))
    parts.append("<h2>Events</h2>")
    events = data.events.to_dict("records") if len(data.events) else []
    parts.append(_figure(channel_figures.timeline(events, data.t0), "event timeline"))
    parts.append("<h2>Devices</h2>")
    parts.append(
        _table(
            ["device", "type", "capabilities", "status"],
            [
                [
                    d,
                    i.get("device_type", ""),
                    ", ".join(i.get("capabilities", [])),
                    device_status_text(i),
                ]
                for d, i in (meta.get("devices") or {}).items()
            ],
        )
    )
    file_rows, _ = _file_rows(folder, meta)
    parts.append("<h2>Files</h2>")
    parts.append(
        _table(["device", "type", "path", "bytes", "sha256", "check"], file_rows)
    )
    if run is not None:
        parts.append("<h2>Processing</h2>")
        parts.append(
            _table(
                ["step", "status", "seconds", "error"],
                [
                    [k, v.get("status"), v.get("duration_s"), v.get("error", "")]
                    for k, v in run.get("steps", {}).items()
                ],
            )
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    folder: Path | str,
    *,
    data: Any = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``processing/report.html`` (and ``processing/verdict.json``).

    Parameters
    ----------
    folder : Path
        The session folder.
    data : SessionData | None
        The loaded session (loaded here when None).
    run : dict | None
        The processing run so far, shown in the report.

    Returns
    -------
    dict
        ``{"outputs": [...], "verdict": line, "notes": [...]}``.
    """
    from lsl_session.processing.session_data import load_session

    folder = Path(folder)
    if data is None:
        data = load_session(folder)
    sync_path = folder / "processing" / "sync_check" / "sync_check.json"
    sync_report = json.loads(sync_path.read_text()) if sync_path.is_file() else None
    _, file_problems = _file_rows(folder, data.metadata or {})
    report_rel = f"processing/{REPORT_NAME}"
    verdict = session_verdict(
        data.streams,
        sync_report,
        report=str(folder / report_rel),
        problems=list(data.problems) + file_problems,
        devices=(data.metadata or {}).get("devices"),
    )
    verdict.notes = source_notes(data.metadata) + verdict.notes
    if run is not None:
        verdict.notes += frame_notes(run)
    page = render_report(folder, data, sync_report, verdict, run)
    out = ensure_inside(folder, folder / "processing")  # no write through a link
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / REPORT_NAME, page.encode("utf-8"))
    summary = {"verdict": verdict.line, "notes": verdict.notes,
               "problems": verdict.problems}  # fmt: skip
    atomic_write_bytes(out / "verdict.json", json.dumps(summary, indent=1).encode())
    logger.info("report: %s", out / REPORT_NAME)
    return {"outputs": [report_rel, "processing/verdict.json"], **summary}


def frame_notes(run: dict[str, Any]) -> list[str]:
    """Explain videos with frames inside the recording that have no LSL time.

    Frames captured before or after the frame stream was recorded (the camera runs
    while the recording starts and stops) are expected and are no note.
    """
    result = (run.get("steps", {}).get("hand_segmentation") or {}).get("report") or {}
    notes = []
    for video in (result.get("result") or {}).get("videos", []):
        missing = video.get("n_frames_without_time") or 0
        inside = video.get("n_frames_unstamped_inside", missing) or 0
        if inside:
            notes.append(
                f"{video['video']}: {inside} of {video.get('n_frames')} frames inside"
                " the recording have no LSL time: their frame-index samples are missing"
            )
    return notes
