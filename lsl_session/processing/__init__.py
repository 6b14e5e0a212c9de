"""Post-processing: XDF → synchronized tables, exports, MNE and processors (SPEC §8)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsl_session.processing.load import load_xdf_files

if TYPE_CHECKING:
    from lsl_session.processing.session_data import SessionData, load_session

__all__ = ["SessionData", "load_session", "load_xdf_files"]


def __getattr__(name: str) -> Any:
    # the session-data layer pulls in pandas; loading XDF alone does not need it
    if name in ("SessionData", "load_session"):
        from lsl_session.processing import session_data

        return getattr(session_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
