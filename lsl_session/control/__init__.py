"""LabRecorder-compatible remote control: line protocol, command handler, TCP server."""

from lsl_session.control.handler import ControlHandler
from lsl_session.control.protocol import (
    REPLY_OK,
    Command,
    parse_line,
    session_name_from_fields,
)
from lsl_session.control.server import ControlServer, is_loopback

__all__ = [
    "REPLY_OK",
    "Command",
    "ControlHandler",
    "ControlServer",
    "is_loopback",
    "parse_line",
    "session_name_from_fields",
]
