"""Which sync pulses each stream is held to (the sync check's matching rules).

Every sync pulse the lab emits carries an id: the reference marker is
``sync_pulse <id>``, a phone told to flash by the relay sends back
``sync_flash <id>`` on its ``<device>_events`` stream (docs/phone-protocol.md §11).
A stream is held only to the pulses it was sent or could observe:

- a marker stream (``kind == "markers"``): the reference pulses whose ids it
  carries, matched by id (its anonymous ``sync…`` labels are the device's own
  pulses, not the lab's);
- a signal (GSR steps, video flashes) of a device that has an ``_events``
  stream: the ids in that events stream (the pulses the device was sent),
  matched by time; detections explained by the device's own anonymous pulses
  are set aside;
- any other signal (a webcam, a Shimmer): the pulses it could observe, every
  reference pulse inside its span, matched by time. If most of its detections
  match no reference pulse, its pulses are not the lab's: not checked.

With an unidentified reference (no ids, e.g. an older session or a numeric
reference stream) every stream is matched by time as in the last rule.
A stream that shares no pulses with the reference is ``not checked (no shared
pulses)``: it has no alignment verdict and is not counted as aligned or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsl_session.processing.pulses import ANONYMOUS, match_pulses

#: The verdict of a stream with no pulse in common with the reference.
NOT_SHARED = "not checked (no shared pulses)"
#: The verdict of every stream when the reference has no pulses.
NO_REFERENCE = "not checked (no reference pulses)"
#: Below this fraction of its detections matched, a signal's pulses are unrelated.
MIN_MATCHED_FRACTION = 0.5


@dataclass
class StreamPulses:
    """The sync pulses found in one stream."""

    name: str
    kind: str  # "markers", "steps" or "video"
    times: np.ndarray  # pulse times (LSL s)
    ids: np.ndarray  # int64 pulse ids, ANONYMOUS where the pulse carries none
    note: str = ""
    period: float | None = None  # sample period (s), None for irregular streams
    span: tuple[float, float] | None = None  # where it can show a pulse


@dataclass
class Held:
    """What one stream is held to, ready for `alignment_row`."""

    detected: np.ndarray
    reference: np.ndarray  # reference times of the pulses it is held to, in span
    n_outside: int = 0
    #: (detected index, reference index) pairs when matched by id, else None.
    pairs: tuple[np.ndarray, np.ndarray] | None = None
    reason: str | None = None  # a "not checked" verdict, or None when checked


def shared_ids(ids: np.ndarray, ref_ids: np.ndarray) -> np.ndarray:
    """Indices (first occurrence) of ``ids`` that are identified reference pulses."""
    ids = np.asarray(ids, np.int64)
    _, first = np.unique(ids, return_index=True)
    first = np.sort(first)
    keep = (ids[first] != ANONYMOUS) & np.isin(ids[first], ref_ids)
    return first[keep]


def _reference_index(ref_ids: np.ndarray) -> dict[int, int]:
    """Pulse id → index of its first reference pulse."""
    out: dict[int, int] = {}
    for i, k in enumerate(np.asarray(ref_ids).tolist()):
        if k != ANONYMOUS:
            out.setdefault(int(k), i)
    return out


def _in_span(times: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    if span is None:
        return np.ones(times.size, bool)
    return (times >= span[0]) & (times <= span[1])


def _set_aside_own(
    detected: np.ndarray, own: np.ndarray, held: np.ndarray, window: float
) -> np.ndarray:
    """Drop detections closer to one of the device's own pulses than to a held one."""
    if own.size == 0 or detected.size == 0:
        return detected
    d_own = np.min(np.abs(detected[:, None] - own[None, :]), axis=1)
    d_held = (
        np.min(np.abs(detected[:, None] - held[None, :]), axis=1)
        if held.size
        else np.full(detected.size, np.inf)
    )
    return detected[~((d_own <= window) & (d_own < d_held))]


def _by_time(stream: StreamPulses, reference: np.ndarray, window: float) -> Held:
    """Match by time to the ``reference`` pulses inside the stream's span."""
    seen = reference[_in_span(reference, stream.span)]
    held = Held(stream.times, seen, n_outside=int(reference.size - seen.size))
    di, _ = match_pulses(stream.times, seen, window=window)
    if seen.size == 0 or di.size == 0:
        held.reason = NOT_SHARED
        return held
    lo, hi = seen.min() - window, seen.max() + window
    n_near = int(np.count_nonzero((stream.times >= lo) & (stream.times <= hi)))
    if di.size < MIN_MATCHED_FRACTION * n_near:
        held.reason = NOT_SHARED  # its own pulse train, unrelated to the lab's
    return held


def held_pulses(
    stream: StreamPulses,
    ref_times: np.ndarray,
    ref_ids: np.ndarray,
    events: StreamPulses | None,
    window: float,
) -> Held:
    """Decide which reference pulses ``stream`` is held to (module docstring).

    Parameters
    ----------
    stream : StreamPulses
        The stream's pulses.
    ref_times, ref_ids : numpy.ndarray
        The reference pulses and their ids.
    events : StreamPulses | None
        The pulses of the stream's device's ``_events`` stream, if any.
    window : float
        ± seconds for matching by time.
    """
    empty = np.zeros(0)
    if ref_times.size == 0:
        return Held(stream.times, empty, reason=NO_REFERENCE)
    identified = bool(np.any(ref_ids != ANONYMOUS))
    if not identified:
        return _by_time(stream, ref_times, window)
    index = _reference_index(ref_ids)
    if stream.kind == "markers":
        mine = shared_ids(stream.ids, ref_ids)
        if mine.size == 0:
            return Held(stream.times, empty, reason=NOT_SHARED)
        ri = np.array([index[int(k)] for k in stream.ids[mine]], np.int64)
        n = mine.size
        return Held(
            stream.times[mine],
            ref_times[ri],
            pairs=(np.arange(n), np.arange(n)),
        )
    if events is None:
        return _by_time(stream, ref_times, window)
    sent = shared_ids(events.ids, ref_ids)
    if sent.size == 0:
        return Held(stream.times, empty, reason=NOT_SHARED)
    reference = np.sort(ref_times[[index[int(k)] for k in events.ids[sent]]])
    own = events.times[events.ids == ANONYMOUS]
    detected = _set_aside_own(stream.times, own, reference, window)
    seen = reference[_in_span(reference, stream.span)]
    held = Held(detected, seen, n_outside=int(reference.size - seen.size))
    if seen.size == 0:
        held.reason = NOT_SHARED  # sent pulses, but none while it streamed
    return held
