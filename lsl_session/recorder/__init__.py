"""LSL → XDF recorder (SPEC §7)."""

from lsl_session.recorder.core import Recorder, SessionRecorder
from lsl_session.recorder.stream import RecorderTiming

__all__ = ["Recorder", "RecorderTiming", "SessionRecorder"]
