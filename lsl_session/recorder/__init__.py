"""LSL → XDF recorder (SPEC §7)."""

from lsl_session.recorder.core import Recorder
from lsl_session.recorder.session import SessionRecorder
from lsl_session.recorder.stream import RecorderTiming

__all__ = ["Recorder", "RecorderTiming", "SessionRecorder"]
