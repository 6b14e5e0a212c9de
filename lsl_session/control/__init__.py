"""LabRecorder-compatible remote control: line protocol, handler, TCP server, runs."""

from lsl_session.control.finisher import SessionFinisher
from lsl_session.control.handler import ControlHandler
from lsl_session.control.protocol import (
    REPLY_OK,
    Command,
    parse_line,
    session_name_from_fields,
)
from lsl_session.control.runs import RunServerOptions, serve_runs
from lsl_session.control.server import ControlServer, is_loopback

__all__ = [
    "REPLY_OK",
    "Command",
    "ControlHandler",
    "ControlServer",
    "RunServerOptions",
    "SessionFinisher",
    "is_loopback",
    "parse_line",
    "serve_runs",
    "session_name_from_fields",
]
