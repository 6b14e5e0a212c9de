"""Stimulus markers → LSL: the marker outlet, a simulated sync-pulse source, its CLI."""

from __future__ import annotations

from outlets._base import OutletError
from outlets.markers.outlet import DEFAULT_NAME, MarkerOutlet, marker_source_id
from outlets.markers.simulated import SyncMarkerPulser

__all__ = [
    "DEFAULT_NAME",
    "MarkerOutlet",
    "OutletError",
    "SyncMarkerPulser",
    "marker_source_id",
]
