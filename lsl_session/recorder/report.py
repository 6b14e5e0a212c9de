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
