"""Phone relay (SPEC §10): protocol, clock mapping, relay server and phone simulator."""

from __future__ import annotations

from outlets.phone.clock import ClockEstimator, SyncQuality
from outlets.phone.protocol import PROTOCOL_VERSION, ProtocolError
from outlets.phone.relay import PhoneRelay
from outlets.phone.simulator import PhoneSimulator
from outlets.phone.streams import source_id, stream_name

__all__ = [
    "PROTOCOL_VERSION",
    "ClockEstimator",
    "PhoneRelay",
    "PhoneSimulator",
    "ProtocolError",
    "SyncQuality",
    "source_id",
    "stream_name",
]
