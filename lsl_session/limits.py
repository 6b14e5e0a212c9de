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
