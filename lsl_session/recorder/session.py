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
        paths = session.paths
        while paths.xdf(part).exists() or paths.xdf(part, compressed=True).exists():
            part += 1
        compressed = bool(kwargs.get("compress"))
        super().__init__(
            paths.xdf(1, compressed=compressed),
            streams=queries,
            first_part=part,
            **kwargs,
        )
        self.internal_queries.add(own)
        self.session = session
        self.on_event = session.log_event
