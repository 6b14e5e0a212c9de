"""The one boundary to liblsl: stream queries, identities and formats."""

from __future__ import annotations

import ctypes
import logging
import re
import time
from typing import Any

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


def _balanced(query: str) -> bool:
    """True if the parentheses outside string literals balance and quotes close.

    ``(query)`` is then one expression, whatever ``query`` says: a query such as
    ``name='A') or (true()`` cannot escape the SessionID term liblsl puts in
    front of every predicate.
    """
    depth, quote = 0, ""
    for ch in query:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not quote


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
        If the query is empty, its parentheses or quotes do not balance, or
        liblsl rejects it.
    """
    if not isinstance(query, str) or not query.strip() or "\0" in query:
        raise QueryError(f"invalid stream query {query!r}: empty")
    if not _balanced(query):
        raise QueryError(
            f"invalid stream query {query!r}: unbalanced parentheses or quotes"
        )
    try:
        pylsl.ContinuousResolver(pred=predicate(query), forget_after=1.0)
    except Exception:
        raise QueryError(f"invalid stream query {query!r}") from None
    return query


def predicate(query: str) -> str:
    """``query`` as the one parenthesised expression handed to liblsl.

    liblsl prepends ``session_id='<SessionID>' and `` to every predicate (its
    ``[lab] SessionID``); without the parentheses an ``or`` inside the query
    would bind looser than that ``and`` and match streams of other sessions.
    Every predicate given to a liblsl resolver goes through here.
    """
    return f"({query})"


def combine_queries(queries: list[str] | None) -> str | None:
    """OR several predicates into ONE parenthesised predicate (None: every stream).

    ``((q1) or (q2))``: liblsl's SessionID term then applies to all of them
    (see `predicate`).
    """
    if not queries:
        return None
    joined = " or ".join(predicate(validate_query(q)) for q in queries)
    return predicate(joined) if len(queries) > 1 else joined


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


#: The stream-info fields a query usually tests (liblsl evaluates any XPath).
QUERY_FIELDS = (
    "name",
    "type",
    "source_id",
    "hostname",
    "channel_count",
    "nominal_srate",
    "channel_format",
    "uid",
    "session_id",
)

# `field = 'value'` / `field="value"` / `field=value`, and `contains(field, 'x')`
_COMPARISON = re.compile(
    r"""([A-Za-z_][\w.-]*)\s*!?=\s*(?:'([^']*)'|"([^"]*)"|([^\s'"()]+))"""
)
_QUOTED = re.compile(r"""'([^']*)'|"([^"]*)\"""")


def stream_record(info: pylsl.StreamInfo) -> dict[str, Any]:
    """The identity and format of a stream as a plain dict (the ``streams`` table)."""
    return {
        "name": info.name(),
        "type": info.type(),
        "source_id": info.source_id(),
        "hostname": info.hostname(),
        "channel_count": info.channel_count(),
        "nominal_srate": info.nominal_srate(),
        "channel_format": FORMAT_NAMES.get(info.channel_format(), "unknown"),
        "uid": info.uid(),
    }


def describe(info: pylsl.StreamInfo | dict[str, Any]) -> str:
    """``name (type X, source_id Y, host Z)``, for messages."""
    rec = info if isinstance(info, dict) else stream_record(info)
    return (
        f"{rec['name']} (type {rec['type'] or '-'}, source_id "
        f"{rec['source_id'] or '-'}, host {rec['hostname'] or '-'})"
    )


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two (short) strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            )
        previous = current
    return previous[-1]


def query_literals(query: str) -> list[str]:
    """The values a query compares against (quoted or bare), at most 8."""
    values = [
        m.group(2) or m.group(3) or m.group(4) or ""
        for m in _COMPARISON.finditer(query)
    ]
    values += [m.group(1) or m.group(2) or "" for m in _QUOTED.finditer(query)]
    seen: list[str] = []
    for v in values:
        if v and v not in seen:
            seen.append(v)
    return seen[:8]


def query_hints(query: str) -> list[str]:
    """Likely mistakes in a query: unknown fields, unquoted values."""
    hints = []
    for m in _COMPARISON.finditer(query):
        field, bare = m.group(1), m.group(4)
        base = field.split("/")[0]
        if base not in QUERY_FIELDS and not base.startswith("desc"):
            close = min(QUERY_FIELDS, key=lambda f: edit_distance(f, base.lower()))
            hints.append(f"unknown field {field!r} (did you mean {close}?)")
        if bare is not None and not bare.replace(".", "", 1).isdigit():
            hints.append(f'unquoted value {bare!r}: write {field}="{bare}"')
    return hints


def closest_streams(
    query: str, infos: list[pylsl.StreamInfo] | list[dict[str, Any]], limit: int = 3
) -> list[dict[str, Any]]:
    """The visible streams closest to ``query`` (edit distance on name/type/source_id).

    Case is ignored, so ``name="eeg"`` finds ``EEG``. Streams are ranked by the
    smallest distance between any value of the query and the stream's name,
    type or source_id.
    """
    records = [i if isinstance(i, dict) else stream_record(i) for i in infos]
    literals = [v.lower() for v in query_literals(query)] or [query.lower()]

    def score(rec: dict[str, Any]) -> int:
        fields = [str(rec.get(k) or "").lower() for k in ("name", "type", "source_id")]
        return min(edit_distance(v, f) for v in literals for f in fields)

    return sorted(records, key=lambda r: (score(r), r["name"]))[:limit]


def explain_unmatched(query: str, infos: list[pylsl.StreamInfo]) -> str:
    """One line: why ``query`` may match nothing, and the closest visible streams."""
    parts = [f"query {query!r} matched no stream"]
    parts += query_hints(query)
    closest = closest_streams(query, infos)
    literals = query_literals(query)
    for rec in closest:
        for key in ("name", "type", "source_id"):
            value = str(rec.get(key) or "")
            wrong = [v for v in literals if v != value and v.lower() == value.lower()]
            if wrong:
                parts.append(f"values are case-sensitive: {value!r}, not {wrong[0]!r}")
                break
    if closest:
        parts.append("closest visible: " + "; ".join(describe(r) for r in closest))
    else:
        parts.append("no LSL stream is visible at all")
    return "; ".join(parts)


def resolve_all(wait: float = 1.0) -> list[pylsl.StreamInfo]:
    """Every visible stream after ``wait`` seconds, sorted (see `sort_key`)."""
    return sorted(pylsl.resolve_streams(wait_time=wait), key=sort_key)


def find_streams(
    query: str | None = None, wait: float = 1.0, settle: float = 0.6
) -> list[pylsl.StreamInfo]:
    """Streams visible within ``wait`` seconds (matching ``query`` if given), sorted.

    Returns early once at least one stream answered and no new one did for
    ``settle`` seconds (one liblsl resolve wave), so ``wait`` can be long.

    Raises
    ------
    QueryError
        If ``query`` is not a valid predicate.
    """
    resolver = (
        pylsl.ContinuousResolver(pred=predicate(validate_query(query)))
        if query is not None
        else pylsl.ContinuousResolver()
    )
    deadline = time.monotonic() + max(0.0, wait)
    found: dict[str, pylsl.StreamInfo] = {}
    changed = time.monotonic()
    while True:
        for info in resolver.results():
            if info.uid() not in found:
                found[info.uid()] = info
                changed = time.monotonic()
        now = time.monotonic()
        if now >= deadline or (found and now - changed >= settle):
            break
        time.sleep(0.05)
    return sorted(found.values(), key=sort_key)
