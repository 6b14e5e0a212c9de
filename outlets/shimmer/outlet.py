"""Shimmer3 GSR+ → LSL outlet through pyshimmer 1.0.0, with timeouts and reconnects.

pyshimmer has no timeouts and its reader thread dies on unexpected bytes, so
every call goes through `ShimmerConnection` (a helper thread with a join
timeout), the reader thread and the packet flow are watched, and any failure tears the connection down and
reconnects with exponential backoff. Packets are collected by a trivial
callback and converted, time-mapped and pushed in numpy batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl
from pyshimmer.dev.channels import EChannelType, ESensorGroup

from outlets.shimmer.clock import (
    TICKS_PER_SECOND,
    ClockMapper,
    CounterUnwrapper,
    count_lost,
)
from outlets.shimmer.connection import ByteCommand, ShimmerConnection, ShimmerError
from outlets.shimmer.conversion import (
    GSR_RANGE_AUTO,
    accel_raw_to_ms2,
    gsr_raw_to_kohm,
    kohm_to_us,
    ppg_raw_to_mv,
)

logger = logging.getLogger(__name__)

#: Smallest step between two pushed stamps (s): clamping packets of one burst to
#: their common arrival time must not give equal stamps.
MIN_STAMP_STEP = 1e-6


def strictly_increasing(stamps: np.ndarray, after: float) -> np.ndarray:
    """``stamps`` raised where needed so each is ``MIN_STAMP_STEP`` past the last."""
    steps = np.arange(1, len(stamps) + 1) * MIN_STAMP_STEP
    return np.maximum.accumulate(np.maximum(stamps - steps, after)) + steps


#: Rows held at most while a new outlet waits for its first consumer.
MAX_HELD_ROWS = 65536

#: (label, unit, type) per channel. Only the conductance channel is typed ``GSR``:
#: readers that map the lowercased LSL type onto MNE's (mne-lsl, mnextend) load a
#: ``gsr`` channel as siemens, so the skin resistance in kΩ is typed ``Resistance``
#: (not an MNE type, hence ``misc``).
CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("gsr_conductance", "microsiemens", "GSR"),
    ("gsr_resistance", "kiloohms", "Resistance"),
    ("ppg", "millivolts", "PPG"),
    ("accel_x", "m/s^2", "Accelerometer"),
    ("accel_y", "m/s^2", "Accelerometer"),
    ("accel_z", "m/s^2", "Accelerometer"),
)
_RAW_CHANNELS = (
    EChannelType.TIMESTAMP,
    EChannelType.GSR_RAW,
    EChannelType.INTERNAL_ADC_13,
    EChannelType.ACCEL_LN_X,
    EChannelType.ACCEL_LN_Y,
    EChannelType.ACCEL_LN_Z,
)
SENSORS = (ESensorGroup.GSR, ESensorGroup.CH_A13, ESensorGroup.ACCEL_LN)


@dataclass(slots=True)
class ShimmerStats:
    """Counters exposed by `ShimmerOutlet.stats`."""

    packets: int = 0
    lost: int = 0
    pushed: int = 0
    connects: int = 0
    reconnect_attempts: int = 0
    errors: list[str] = field(default_factory=list)


class ShimmerOutlet:
    """Stream a Shimmer3 GSR+ to LSL with device-clock timestamps.

    Parameters
    ----------
    port : str
        Serial device (``/dev/rfcomm0``, or an emulator's pty).
    device_id : str
        Stream name ``shimmer_<device_id>``, source_id ``lsl_session/shimmer_<id>``.
    source_id : str | None
        Another source_id (the lab gives ``lsl_session/<rig>/shimmer_<id>``).
    rate : float
        Requested sampling rate in Hz; the rate read back is the nominal rate.
    call_timeout : float
        Seconds any single pyshimmer call may take.
    stall_timeout : float
        Seconds without packets while streaming before reconnecting.
    backoff : tuple of float
        First and maximum delay between reconnect attempts.
    gsr_range : int
        GSR range setting sent to the device, 0-3 fixed or 4 = auto.
    clock_window : float
        Seconds of device time used by the clock fit.
    push_interval : float
        Seconds between conversions/pushes of collected packets.
    on_chunk : callable, optional
        Called after each push with ``(ticks, stamps, data)``: unwrapped device
        ticks, LSL stamps and the float32 samples (monitoring and tests).
    consumer_wait : float
        Seconds the first samples are held until an inlet (the recorder) is
        connected, so a recorder attaching to the new stream loses none (liblsl
        drops what is pushed before an inlet connects); 0 pushes at once.

    Notes
    -----
    `start` connects synchronously and raises `ShimmerError` when that first
    attempt fails; afterwards failures are logged and retried until `stop`.
    LSL stamps are ``local_clock`` times mapped from the device counter by
    `ClockMapper`, never arrival times (they only feed the fit).
    """

    def __init__(
        self,
        port: str,
        *,
        device_id: str = "1",
        source_id: str | None = None,
        rate: float = 128.0,
        call_timeout: float = 3.0,
        stall_timeout: float = 2.0,
        backoff: tuple[float, float] = (0.5, 8.0),
        gsr_range: int = GSR_RANGE_AUTO,
        clock_window: float = 60.0,
        push_interval: float = 0.05,
        on_chunk: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
        consumer_wait: float = 0.0,
    ) -> None:
        self.port, self.device_id, self.rate = port, str(device_id), float(rate)
        self._source_id = source_id
        self.call_timeout, self.stall_timeout = call_timeout, stall_timeout
        self.backoff, self.gsr_range, self.push_interval = (
            backoff,
            gsr_range,
            push_interval,
        )
        self.on_chunk = on_chunk
        self.consumer_wait = float(consumer_wait)
        self._held: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._held_rows = 0
        self._outlet_created = 0.0
        self.stats = ShimmerStats()
        self.clock = ClockMapper(window_s=clock_window)
        self._unwrap = CounterUnwrapper()
        self._pending: deque[tuple[Any, float]] = deque()
        self._conn: ShimmerConnection | None = None
        self._outlet: pylsl.StreamOutlet | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_packet = 0.0
        self._last_stamp = -np.inf
        self._period = round(TICKS_PER_SECOND / self.rate)
        self.firmware = ""

    @property
    def stream_name(self) -> str:
        """LSL stream name (``shimmer_<device_id>``)."""
        return f"shimmer_{self.device_id}"

    @property
    def source_id(self) -> str:
        """Stable LSL source id (``lsl_session/shimmer_<device_id>`` by default)."""
        return self._source_id or f"lsl_session/{self.stream_name}"

    @property
    def connected(self) -> bool:
        """Whether a connection is currently streaming."""
        return self._conn is not None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> ShimmerOutlet:
        """Connect, create the LSL outlet and start streaming in the background.

        Raises
        ------
        ShimmerError
            If the port cannot be opened or the device does not answer.
        """
        try:
            self._connect()
        except ShimmerError:
            self._outlet = None
            raise
        self._thread = threading.Thread(
            target=self._run, name="shimmer-outlet", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop streaming and close the port; can be called twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover
                logger.error("Shimmer outlet thread did not stop within %g s", timeout)
            self._thread = None
        self._disconnect(stop_streaming=True)
        self._outlet = None

    def __enter__(self) -> ShimmerOutlet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ connection
    def _connect(self) -> None:
        conn = ShimmerConnection(self.port, self.call_timeout)
        try:
            sh = conn.shim
            conn.call(sh.initialize)
            caps = sh.capabilities
            v = caps.version
            self.firmware = f"{caps.fw_type.name} {v.major}.{v.minor}.{v.rel}"
            conn.call(sh.set_sampling_rate, self.rate)
            rate = float(conn.call(sh.get_sampling_rate))
            conn.call(sh.set_sensors, SENSORS)
            conn.call(sh._process_and_wait, ByteCommand(0x21, self.gsr_range))
            conn.call(sh._process_and_wait, ByteCommand(0x5E, 1))  # PPG power
            sh.add_stream_callback(self._on_packet)
            self._pending.clear()
            self._unwrap.reset()
            self.clock.reset()
            self._period = round(TICKS_PER_SECOND / rate)
            if self._outlet is None:
                self._outlet = pylsl.StreamOutlet(self._make_info(rate), 0, 360)
                self._outlet_created = time.monotonic()
                self._held = [] if self.consumer_wait > 0 else None
            self._last_packet = time.monotonic()
            conn.call(sh.start_streaming)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, ShimmerError):
                raise
            raise ShimmerError(
                f"Shimmer on {self.port!r} failed to start: {exc}"
            ) from exc
        self._conn = conn
        self.stats.connects += 1
        logger.info(
            "Shimmer %s on %s streaming at %g Hz", self.firmware, self.port, rate
        )

    def _disconnect(self, *, stop_streaming: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if stop_streaming and conn.reader_alive():
            try:
                conn.call(conn.shim.stop_streaming)
            except Exception as exc:  # closing anyway
                logger.warning("Shimmer stop_streaming failed: %s", exc)
        conn.close()
        self._pump()

    def _make_info(self, rate: float) -> pylsl.StreamInfo:
        info = pylsl.StreamInfo(
            self.stream_name,
            "GSR",
            len(CHANNELS),
            rate,
            pylsl.cf_float32,
            self.source_id,
        )
        chans = info.desc().append_child("channels")
        for label, unit, ctype in CHANNELS:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", ctype)
        acq = info.desc().append_child("acquisition")
        acq.append_child_value("manufacturer", "Shimmer")
        acq.append_child_value("model", "Shimmer3 GSR+")
        acq.append_child_value("firmware", self.firmware)
        acq.append_child_value("gsr_range_setting", str(self.gsr_range))
        acq.append_child_value("clock", "device counter 32768 Hz mapped to local_clock")
        return info

    # ------------------------------------------------------------- data path
    def _on_packet(self, pkt: Any) -> None:
        # Runs on pyshimmer's reader thread: must be O(µs) and never raise.
        self._pending.append((pkt, pylsl.local_clock()))

    def _pump(self) -> int:
        n = len(self._pending)
        if n == 0 or self._outlet is None:
            return 0
        items = [self._pending.popleft() for _ in range(n)]
        try:
            raw = np.array([[p[c] for c in _RAW_CHANNELS] for p, _ in items], np.int64)
        except KeyError as exc:
            logger.error("Shimmer packet lacks channel %s; dropping %d packets", exc, n)
            return 0
        arrival = np.fromiter((t for _, t in items), np.float64, n)
        previous = self._unwrap.last
        ticks = self._unwrap.unwrap(raw[:, 0])
        lost = count_lost(ticks, self._period, previous)
        if lost:
            self.stats.lost += lost
            logger.warning("Shimmer: %d packets lost", lost)
        device_s = ticks / TICKS_PER_SECOND
        self.clock.update(device_s, arrival)
        stamps = strictly_increasing(
            np.minimum(self.clock.map(device_s), arrival), self._last_stamp
        )
        self._last_stamp = float(stamps[-1])
        kohm = gsr_raw_to_kohm(raw[:, 1], range_setting=self.gsr_range)
        data = np.empty((n, len(CHANNELS)), dtype=np.float32)
        data[:, 0] = kohm_to_us(kohm)
        data[:, 1] = kohm
        data[:, 2] = ppg_raw_to_mv(raw[:, 2])
        data[:, 3:6] = accel_raw_to_ms2(raw[:, 3:6])
        self._emit(data, stamps)
        self.stats.packets += n
        self.stats.pushed += n
        self._last_packet = time.monotonic()
        if self.on_chunk is not None:
            self.on_chunk(ticks, stamps, data)
        return n

    def _emit(self, data: np.ndarray, stamps: np.ndarray) -> None:
        """Push, or hold while the new outlet waits for its first consumer."""
        if self._held is not None:
            waited = time.monotonic() - self._outlet_created
            if (
                not self._outlet.have_consumers()
                and waited < self.consumer_wait
                and self._held_rows < MAX_HELD_ROWS
            ):
                self._held.append((data, stamps))
                self._held_rows += len(stamps)
                return
            held, self._held = self._held, None
            if held:
                data = np.concatenate([*(d for d, _ in held), data])
                stamps = np.concatenate([*(t for _, t in held), stamps])
            logger.info(
                "Shimmer: %d held samples pushed after %.2f s", self._held_rows, waited
            )
        self._outlet.push_chunk(data, stamps)

    # ------------------------------------------------------------ supervisor
    def _health_error(self) -> str | None:
        conn = self._conn
        if conn is None:
            return "not connected"
        if not conn.reader_alive():
            return "pyshimmer reader thread died (unexpected bytes or link lost)"
        stall = max(self.stall_timeout, 5.0 * self._period / TICKS_PER_SECOND)
        if time.monotonic() - self._last_packet > stall:
            return f"no packets for {stall:g} s"
        return None

    def _fail(self, msg: str) -> None:
        self.stats.errors.append(msg)
        logger.error("Shimmer on %s: %s; reconnecting", self.port, msg)

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            if self._conn is None:
                self.stats.reconnect_attempts += 1
                try:
                    self._connect()
                    delay = self.backoff[0]
                except ShimmerError as exc:
                    self._fail(f"reconnect failed: {exc}")
                    self._stop.wait(delay)
                    delay = min(delay * 2.0, self.backoff[1])
                continue
            self._stop.wait(self.push_interval)
            try:
                self._pump()
            except Exception as exc:  # keep the outlet alive
                logger.exception("Shimmer conversion/push failed: %s", exc)
            err = self._health_error()
            if err is not None and not self._stop.is_set():
                self._fail(err)
                self._disconnect()
        self._pump()
