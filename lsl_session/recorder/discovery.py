"""Finding and opening the streams to record: the initial resolve, rescans, inlets."""

from __future__ import annotations

import logging
import time

import pylsl

from lsl_session.limits import stream_refusal
from lsl_session.lsl import matches_query, predicate

logger = logging.getLogger(__name__)

#: Late-stream rescans once every query has matched: LabRecorder's watch cadence
#: (``resolve_interval`` of ``recording.h``) and the length of one rescan.
RESCAN_SECONDS = 5.0
RESCAN_WAIT = 1.0

#: The initial resolve ends once the set of answers has not changed for this long
#: (longer than one of liblsl's resolve waves, so a stream that missed one answers).
SETTLE_SECONDS = 0.6


#: Most samples, and values (samples x channels), one inlet may buffer.
MAX_BUFFER_SAMPLES = 6_000_000
MAX_BUFFER_VALUES = 100_000_000
#: Refused streams already logged (bounded: a flood of names logs once each, then
#: nothing more).
_REFUSED_LOGGED: set[tuple[str, str]] = set()
_MAX_REFUSED_LOGGED = 1000


def inlet_buffer_seconds(info: pylsl.StreamInfo) -> int:
    """liblsl's inlet buffer: 6 min like LabRecorder, but at most ~4 M samples.

    A 100 kHz stream with a 360 s buffer preallocates hundreds of MB and takes
    seconds to open; 30 s is still far more than any stall the recorder survives.
    Never more than `MAX_BUFFER_SAMPLES` samples nor `MAX_BUFFER_VALUES` values
    (liblsl preallocates about 24 bytes per buffered sample, and a full buffer
    holds the values), and at least 1 s.
    """
    srate = info.nominal_srate()
    if srate <= 0:
        return 360
    values = srate * max(1, info.channel_count())
    seconds = min(
        360.0,
        max(30.0, 4e6 / srate),
        MAX_BUFFER_SAMPLES / srate,
        MAX_BUFFER_VALUES / values,
    )
    return max(1, int(seconds))


def refusal(info: pylsl.StreamInfo) -> str | None:
    """Why a peer's stream is not opened (implausible rate or size), or None.

    See `lsl_session.limits.stream_refusal`; logged once per stream.
    """
    reason = stream_refusal(info.nominal_srate(), info.channel_count())
    if reason is None:
        return None
    key = (info.name(), info.source_id())
    if key not in _REFUSED_LOGGED:
        if len(_REFUSED_LOGGED) < _MAX_REFUSED_LOGGED:
            _REFUSED_LOGGED.add(key)
        logger.warning("stream %r not recorded: %s", info.name()[:200], reason)
    return reason


def settled_results(
    resolver: pylsl.ContinuousResolver, queries: list[str] | None, wait: float
) -> list[pylsl.StreamInfo]:
    """Wait until every query matched and the answers settled, or ``wait`` seconds.

    Answers to a resolve arrive over a few tens of ms; stopping at the first
    match of a broad query would leave the rest to the late-stream path, with
    stream ids in arrival order instead of sorted order.
    """
    deadline = time.monotonic() + wait
    found: list[pylsl.StreamInfo] = []
    count, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        found = resolver.results()
        if len(found) != count:
            count, stable_since = len(found), time.monotonic()
        matched = queries and all(
            any(matches_query(i, q) for i in found) for q in queries
        )
        if matched and time.monotonic() - stable_since >= SETTLE_SECONDS:
            break
        time.sleep(0.1)
    return found


def continuous_resolver(predicate: str | None) -> pylsl.ContinuousResolver:
    """liblsl's continuous resolver for ``predicate`` (from `combine_queries`: one
    parenthesised expression, so the SessionID holds), or for every stream."""
    if predicate:
        return pylsl.ContinuousResolver(pred=predicate)
    return pylsl.ContinuousResolver()


def resolve_query(query: str, wait: float) -> list[pylsl.StreamInfo]:
    """One short resolve of a single user or run query (parenthesised: SessionID holds)."""
    return pylsl.resolve_bypred(predicate(query), 1, wait)


def rescan(predicate: str | None) -> list[pylsl.StreamInfo]:
    """One resolve of ``RESCAN_WAIT`` seconds (every visible stream without a predicate)."""
    if predicate:
        return pylsl.resolve_bypred(predicate, 0, RESCAN_WAIT)
    return pylsl.resolve_streams(RESCAN_WAIT)


def open_inlet(
    info: pylsl.StreamInfo,
) -> tuple[pylsl.StreamInlet, pylsl.StreamInfo] | None:
    """Open an inlet and fetch the full info (may block: never under a lock).

    Returns None (and logs why) when the stream cannot be opened or is refused
    (`refusal`: an implausible rate or size, before liblsl allocates anything).
    """
    if refusal(info) is not None:
        return None
    try:
        inlet = pylsl.StreamInlet(
            info,
            max_buflen=inlet_buffer_seconds(info),
            max_chunklen=0,
            recover=True,
        )
        full = inlet.info(timeout=5.0)
        inlet.open_stream(timeout=5.0)
    except Exception as exc:
        logger.warning("could not open stream %s: %s", info.name(), exc)
        return None
    return inlet, full
