"""What a phone connection shares with the relay: device state and the relay's face.

`Connection` (``_connection.py``) needs a few things of the relay and the relay
owns the connections; both depend on this module and not on each other, so
there is no import cycle. `RelayHost` is what a connection may use of the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from outlets.phone.clock import ClockEstimator
from outlets.phone.limits import RelayLimits
from outlets.phone.streams import PhoneOutlets
from outlets.phone.uploads import UploadStore


@dataclass
class DeviceState:
    """What the relay remembers about a device id across connections.

    ``conn`` is the device's live connection (a `Connection`), or None.
    """

    device_id: str
    conn: Any = None
    outlets: PhoneOutlets | None = None
    estimator: ClockEstimator | None = None
    clock: Any = None  # ClockOutlets: <device>_clock and <device>_clock_exchanges
    address: str = ""
    phone_status: dict[str, Any] = field(default_factory=dict)
    record_started: datetime | None = None
    recording: bool = False
    generation: int = 0


class RelayHost(Protocol):
    """The part of `PhoneRelay` a connection uses."""

    limits: RelayLimits
    tokens: dict[str, str] | None
    session: Any
    uploads: UploadStore | None
    devices: dict[str, DeviceState]
    push_observers: list[Callable[..., None]]
    sync_schedule: dict[str, Any]
    max_frame: int
    max_errors: int
    hello_timeout: float
    heartbeat_interval: float
    heartbeat_timeout: float
    outlet_grace_s: float

    def log(self, event: str, details: dict[str, Any]) -> None:
        """Record a relay event (history, observers, session log)."""

    def log_error(self, host: str, details: dict[str, Any]) -> bool:
        """Record an ``error`` event unless rate-limited; True if it was recorded."""

    def session_call(self, method: str, *args: Any) -> None:
        """Run a session method in the ordered session-I/O thread."""

    def auth_failure(self, host: str) -> float:
        """Count a failed hello from ``host``; return the seconds to wait."""

    def authenticated(self, conn: Any) -> None:
        """Tell the relay that ``conn`` passed its hello (frees its pre-auth slot)."""
