"""Stated bounds on what hostile or faulty input can make us hold, echo or log.

Every text that quotes file or peer content goes through :func:`clip`; every list of
findings that input can grow is a :class:`BoundedList`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Longest quoted text (file content, peer strings) in an error or log line.
MAX_TEXT = 200
#: Findings kept per file or session report; the rest are counted in one summary line.
MAX_PROBLEMS = 100
#: Deepest XML element nesting accepted in a StreamHeader/FileHeader/footer.
MAX_XML_DEPTH = 64


def clip(value: Any, limit: int = MAX_TEXT) -> str:
    """``str(value)`` cut to ``limit`` characters (``…`` and the cut count appended).

    Examples
    --------
    >>> clip("x" * 300, 10)
    'xxxxxxxxxx… (290 more characters)'
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def clip_repr(value: Any, limit: int = MAX_TEXT) -> str:
    """``repr(value)`` cut like :func:`clip`."""
    return clip(repr(value), limit)


class BoundedList(list):
    """A list of lines that keeps the first ``cap`` and counts the rest.

    ``append``/``extend`` beyond ``cap`` only count; :meth:`summary` (also applied by
    :meth:`closed`) reports how many were left out. Each kept line is clipped to
    ``MAX_TEXT * 2`` characters.
    """

    def __init__(self, items: Iterable[str] = (), cap: int = MAX_PROBLEMS) -> None:
        super().__init__()
        self.cap = cap
        self.dropped = 0
        self.extend(items)

    def append(self, item: str) -> None:  # type: ignore[override]
        """Keep ``item`` (clipped) while under the cap, else count it."""
        if len(self) < self.cap:
            super().append(clip(item, 2 * MAX_TEXT))
        else:
            self.dropped += 1

    def extend(self, items: Iterable[str]) -> None:  # type: ignore[override]
        """Append every item (see :meth:`append`)."""
        for item in items:
            self.append(item)

    def summary(self) -> str | None:
        """The line that stands for the dropped items, or None."""
        if not self.dropped:
            return None
        return f"… and {self.dropped} more problem(s) of the same kind (not listed)"

    def closed(self) -> list[str]:
        """A plain list: the kept lines plus the summary line, if any."""
        extra = self.summary()
        return [*self, extra] if extra else list(self)


#: Largest nominal rate (Hz) accepted from a peer's stream (recorded or replayed):
#: liblsl preallocates its inlet and outlet buffers by rate, so a stream advertising
#: 1e8 Hz would take gigabytes before a sample arrives. 200 kHz covers 192 kHz audio.
MAX_NOMINAL_SRATE = 200_000.0
#: Largest channel count × nominal rate (values per second) accepted from a peer
#: (384 channels × 30 kHz, a Neuropixels probe, is 11.5 M).
MAX_VALUES_PER_SECOND = 20_000_000.0
#: Largest channel count accepted from a peer (any rate).
MAX_PEER_CHANNELS = 65_536


def stream_refusal(srate: float, channels: int) -> str | None:
    """Why a stream with this rate and channel count is refused, or None.

    Examples
    --------
    >>> stream_refusal(1e8, 1)
    'nominal rate 1e+08 Hz is above the largest accepted (200000 Hz)'
    >>> stream_refusal(500.0, 64) is None
    True
    """
    if not srate == srate or srate < 0 or srate == float("inf"):
        return f"nominal rate {srate!r} is not a rate"
    if srate > MAX_NOMINAL_SRATE:
        return (
            f"nominal rate {srate:g} Hz is above the largest accepted"
            f" ({MAX_NOMINAL_SRATE:g} Hz)"
        )
    if not 0 <= channels <= MAX_PEER_CHANNELS:
        return (
            f"{channels} channels is above the largest accepted ({MAX_PEER_CHANNELS})"
        )
    if channels * srate > MAX_VALUES_PER_SECOND:
        return (
            f"{channels} channels x {srate:g} Hz = {channels * srate:g} values/s is"
            f" above the largest accepted ({MAX_VALUES_PER_SECOND:g})"
        )
    return None
