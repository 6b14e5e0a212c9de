"""Session lifecycle states and the allowed transitions (SPEC §5); pure."""

from __future__ import annotations

from enum import StrEnum

from lsl_session.errors import SessionStateError


class State(StrEnum):
    """Lifecycle states of the manager and of a session folder."""

    IDLE = "idle"
    CREATING = "creating"
    ACTIVE = "active"
    RECORDING = "recording"
    PROCESSING = "processing"
    COMPLETED = "completed"
    EMPTY = "empty"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    RECOVERED = "recovered"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.CREATING}),
    State.CREATING: frozenset({State.ACTIVE, State.ERROR}),
    State.ACTIVE: frozenset(
        {State.RECORDING, State.PROCESSING, State.EMPTY, State.ERROR}
    ),
    State.RECORDING: frozenset({State.ACTIVE, State.ERROR}),
    State.PROCESSING: frozenset({State.COMPLETED, State.ERROR}),
    State.COMPLETED: frozenset({State.IDLE, State.CREATING, State.PROCESSING}),
    State.EMPTY: frozenset({State.IDLE, State.CREATING}),
    State.ERROR: frozenset({State.IDLE}),
    State.INTERRUPTED: frozenset({State.RECOVERED}),
    State.RECOVERED: frozenset({State.PROCESSING, State.IDLE, State.CREATING}),
}

#: Status values a session folder can hold after a crash while it was busy.
UNFINISHED: frozenset[str] = frozenset(
    {State.ACTIVE, State.RECORDING, State.PROCESSING, State.CREATING}
)


def check_transition(current: State, target: State, action: str) -> None:
    """Raise `SessionStateError` unless ``current → target`` is allowed.

    Parameters
    ----------
    current, target : State
        The states before and after the operation.
    action : str
        The operation's name, used in the message.
    """
    if target not in TRANSITIONS[current]:
        raise SessionStateError(
            f"cannot {action}: the session is {current.value}"
            f" (allowed next states: {', '.join(sorted(TRANSITIONS[current]))})"
        )
