"""`SessionRecorder`: the recorder writing into a session folder."""

from __future__ import annotations

from typing import Any

from lsl_session.recorder.core import Recorder


class SessionRecorder(Recorder):
    """A `Recorder` writing ``<session_id>.xdf`` into a session folder.

    The session's own event stream is always recorded, so the event timeline is
    inside the XDF on the data's clock. A second recording in the same session
    continues in the next free ``_partNNN.xdf``; existing files are never touched.
    """

    def __init__(
        self, session, *, streams: list[str] | None = None, **kwargs: Any
    ) -> None:
        queries = list(streams) if streams else None
        own = f"source_id='{session.logger.stream_source_id}'"
        if queries is not None:
            queries.append(own)
        kwargs.setdefault("file_header_extra", {"session_id": session.session_id})
        part = 1
        while session.paths.xdf(part).exists():
            part += 1
        super().__init__(
            session.paths.xdf(1), streams=queries, first_part=part, **kwargs
        )
        self.internal_queries.add(own)
        self.session = session
        self.on_event = session.log_event
