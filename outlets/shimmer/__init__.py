"""Shimmer3 GSR+ → LSL: pyshimmer outlet, clock mapping, conversion, pty emulator."""

from outlets.shimmer.clock import ClockFit, ClockMapper, CounterUnwrapper, count_lost
from outlets.shimmer.connection import ShimmerError
from outlets.shimmer.emulator import ShimmerEmulator
from outlets.shimmer.outlet import ShimmerOutlet, ShimmerStats

__all__ = [
    "ClockFit",
    "ClockMapper",
    "CounterUnwrapper",
    "ShimmerEmulator",
    "ShimmerError",
    "ShimmerOutlet",
    "ShimmerStats",
    "count_lost",
]
