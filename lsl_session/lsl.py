"""The one boundary to liblsl: stream queries, identities and formats."""

from __future__ import annotations

import ctypes
import logging

import pylsl

from lsl_session.errors import QueryError

logger = logging.getLogger(__name__)

#: pylsl channel-format codes → XDF ``channel_format`` names.
FORMAT_NAMES: dict[int, str] = {
    pylsl.cf_float32: "float32",
    pylsl.cf_double64: "double64",
    pylsl.cf_string: "string",
    pylsl.cf_int32: "int32",
    pylsl.cf_int16: "int16",
    pylsl.cf_int8: "int8",
    pylsl.cf_int64: "int64",
}

_lib = pylsl.lib.lib
_lib.lsl_stream_info_matches_query.restype = ctypes.c_int
_lib.lsl_stream_info_matches_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p]


def validate_query(query: str) -> str:
    """Return ``query`` if liblsl accepts it as a stream predicate.

    Parameters
    ----------
    query : str
        An XPath 1.0 predicate over the stream info, as LabRecorderCLI takes it
        (``name="EEG"``, ``type='Markers' and hostname='lab1'``).

    Raises
    ------
    QueryError
        If the query is empty or liblsl rejects it.
    """
    if not isinstance(query, str) or not query.strip() or "\0" in query:
        raise QueryError(f"invalid stream query {query!r}: empty")
    try:
        pylsl.ContinuousResolver(pred=query, forget_after=1.0)
    except Exception:
        raise QueryError(f"invalid stream query {query!r}") from None
    return query


def combine_queries(queries: list[str] | None) -> str | None:
    """OR several predicates into one (None when every stream is wanted)."""
    if not queries:
        return None
    return " or ".join(f"({validate_query(q)})" for q in queries)


def matches_query(info: pylsl.StreamInfo, query: str) -> bool:
    """True if ``info`` matches the XPath predicate ``query`` (liblsl's own test)."""
    return bool(_lib.lsl_stream_info_matches_query(info.obj, query.encode("utf-8")))


def stream_key(info: pylsl.StreamInfo) -> str:
    """The identity of a stream across drop-outs: its source_id, else its uid."""
    source_id = info.source_id()
    return f"source:{source_id}" if source_id else f"uid:{info.uid()}"


def sort_key(info: pylsl.StreamInfo) -> tuple[str, ...]:
    """Deterministic ordering of streams for stream-id assignment."""
    return (info.name(), info.type(), info.source_id(), info.hostname(), info.uid())


def format_name(info: pylsl.StreamInfo) -> str:
    """The XDF channel_format name of a stream."""
    return FORMAT_NAMES[info.channel_format()]
