"""Post-processing: XDF → synchronized tables, exports, MNE and processors (SPEC §8)."""

from lsl_session.processing.load import load_xdf_files
from lsl_session.processing.session_data import SessionData, load_session

__all__ = ["SessionData", "load_session", "load_xdf_files"]
