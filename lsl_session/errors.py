"""Exception hierarchy: every error the library raises on purpose derives from here."""

from __future__ import annotations


class LslSessionError(Exception):
    """Base class of all lsl_session errors; the CLI turns these into one-line errors."""


class InvalidNameError(LslSessionError, ValueError):
    """A session or device name is unusable (empty after sanitizing, wrong type)."""


class SessionStateError(LslSessionError):
    """An operation is not allowed in the session's current lifecycle state."""


class SessionNotFoundError(LslSessionError, FileNotFoundError):
    """A path is not a session folder (missing, or without session metadata)."""


class MetadataError(LslSessionError):
    """session_metadata.json is missing, unreadable or has an invalid value."""


class DeviceError(LslSessionError):
    """A device is unknown, misconfigured, unreachable or sent bad data."""


class StreamNotFoundError(LslSessionError):
    """No LSL stream matched a query."""


class RecorderError(LslSessionError):
    """The recorder could not start or had to stop (disk full, unwritable folder)."""


class ConfigError(LslSessionError, ValueError):
    """A session config file is invalid; the message names the file and the field."""


class QueryError(LslSessionError, ValueError):
    """An LSL stream query (XPath predicate) is invalid."""


class DiskSpaceError(LslSessionError):
    """An output would not fit in the free disk space (nothing was written)."""


class UnsafePathError(LslSessionError):
    """A write target is a symbolic link or lies outside the session folder."""
