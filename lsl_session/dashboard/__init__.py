"""Live dashboard of a recording: the recorder's own data over Server-Sent Events."""

from lsl_session.dashboard.server import DashboardServer
from lsl_session.dashboard.state import LiveState, stream_warnings

__all__ = ["DashboardServer", "LiveState", "stream_warnings"]
