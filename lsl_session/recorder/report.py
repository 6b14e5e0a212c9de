"""Plain-text lines about what a recorder records, for the CLI and the control log."""

from __future__ import annotations

from typing import Any

from lsl_session.lsl import describe


def _own_source_id(recorder: Any) -> str | None:
    session = getattr(recorder, "session", None)
    return None if session is None else session.logger.stream_source_id


def external_streams(recorder: Any) -> list[dict[str, Any]]:
    """The recorded streams other than the session's own event stream."""
    own = _own_source_id(recorder)
    return [s.summary() for s in list(recorder.streams.values()) if s.source_id != own]


def all_streams_line(recorder: Any) -> str:
    """What a recording without queries records (App-LabRecorder#111: say so)."""
    streams = external_streams(recorder)
    if not streams:
        return (
            "no stream selected and no LSL stream visible: recording only the"
            " session's events; streams that appear are added"
        )
    return (
        f"no stream selected: recording every visible stream ({len(streams)}): "
        + "; ".join(describe(s) for s in streams)
    )


def matched_lines(recorder: Any) -> list[str]:
    """Every stream the recording matched, with its host; shared names flagged.

    One line per stream (``name (type, source_id, host)``), then one line per
    source_id several outlets publish or per name several hosts publish.
    """
    streams = external_streams(recorder)
    lines = [f"matched {len(streams)} stream(s):"]
    lines += [f"  {describe(s)}" for s in streams]
    hosts: dict[str, set[str]] = {}
    for s in streams:
        hosts.setdefault(s["name"], set()).add(s.get("hostname") or "-")
    for name, names in sorted(hosts.items()):
        if len(names) > 1:
            lines.append(
                f"  note: {name!r} is recorded from {len(names)} hosts"
                f" ({', '.join(sorted(names))}), each as its own stream"
            )
    pool = getattr(recorder, "pool", None)
    lines += [f"  note: {line}" for line in getattr(pool, "shared_sources", None) or []]
    return lines
