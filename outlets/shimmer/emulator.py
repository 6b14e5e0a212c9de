"""Shimmer3 GSR+ emulator on a pseudo-terminal (LogAndStream byte protocol).

Lets the real pyserial + pyshimmer stack run without hardware: point
``serial.Serial`` at `ShimmerEmulator.port`. The emulator answers the commands
pyshimmer 1.0.0 sends, streams data packets stamped with a 24-bit 32768 Hz
counter from a device clock with configurable offset and drift, delivers them
in Bluetooth-like bursts, auto-ranges GSR, emits sync pulses as GSR steps and
records ground truth. Faults can be injected for tests.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import struct
import threading
import tty
from collections.abc import Callable, Sequence

import numpy as np

from outlets.shimmer.clock import COUNTER_MODULUS, TICKS_PER_SECOND
from outlets.shimmer.conversion import (
    GSR_RANGE_AUTO,
    accel_ms2_to_raw,
    gsr_auto_range,
    gsr_kohm_to_raw,
    ppg_mv_to_raw,
)

logger = logging.getLogger(__name__)

ACK = b"\xff"
# opcode -> fixed argument length; -1 = variable length (<len><bytes>)
_ARG_LEN = {0x05: 2, 0x08: 3, 0xA3: 1, 0x21: 1, 0x5E: 1, 0x79: -1, 0x7C: -1}
# sensor bitfield bit -> BT channel ids (in firmware ADC order)
_SENSOR_CHANNELS = {
    (0, 0x80): (0x00, 0x01, 0x02),  # ACCEL_LN
    (1, 0x20): (0x03,),  # BATTERY
    (1, 0x01): (0x12,),  # CH_A13 (PPG)
    (0, 0x04): (0x1C,),  # GSR
}
_CHANNEL_DTYPE = {0x00: "<i2", 0x01: "<i2", 0x02: "<i2", 0x03: "<i2"}
_STATUS_STREAMING = 0b0011_0110  # sensing, rtc set, streaming, sd present
_TRUTH_KEYS = (
    "lsl_time",
    "sent_time",
    "counter",
    "ticks",
    "gsr_us",
    "gsr_kohm",
    "gsr_range",
    "gsr_raw",
    "ppg_mv",
    "accel_x",
    "accel_y",
    "accel_z",
)


def default_gsr_us(t: np.ndarray) -> np.ndarray:
    """Return the default GSR waveform (µS) at ``t`` s after streaming starts.

    Sweeps 1-9 µS with a 16-s period, crossing range 3→2→1 in the first 4 s.
    """
    return 5.0 - 4.0 * np.cos(2.0 * np.pi * t / 16.0)


class ShimmerEmulator:
    """A Shimmer3 GSR+ (LogAndStream 0.16.0) on a pty.

    Parameters
    ----------
    rate : float
        Initial sampling rate in Hz (the host may change it with ``05``).
    clock_offset : float
        Device clock reading, in seconds, at emulator start (added to
        ``start_counter``).
    drift_ppm : float
        Device crystal error: the device clock runs ``1 + drift_ppm·1e-6``
        times as fast as the host clock.
    start_counter : int
        24-bit counter value at emulator start; use ``2**24 - n`` to roll over
        soon after streaming starts.
    burst_ms : tuple of float
        Packets are written in bursts every U(lo, hi) ms.
    sync_pulse_times : sequence of float
        Seconds after streaming starts at which a GSR step of
        ``sync_pulse_us`` lasting ``sync_pulse_width`` s begins.
    gsr_us : callable, optional
        True conductance (µS) as a function of seconds since streaming start.
    clock : callable, optional
        Host clock; defaults to ``pylsl.local_clock``.
    seed : int, optional
        Seed for burst timing.

    Notes
    -----
    Two threads: one answers commands, one streams. Both write whole frames
    under one lock, so an ACK never lands inside a data packet. Ground truth
    (`truth`) holds one row per packet sent: true LSL sampling time, counter,
    true GSR µS/kΩ, range, PPG mV, accel m/s².
    """

    def __init__(
        self,
        rate: float = 128.0,
        *,
        clock_offset: float = 0.0,
        drift_ppm: float = 0.0,
        start_counter: int = 0,
        burst_ms: tuple[float, float] = (10.0, 40.0),
        sync_pulse_times: Sequence[float] = (),
        sync_pulse_us: float = 2.0,
        sync_pulse_width: float = 0.25,
        gsr_us: Callable[[np.ndarray], np.ndarray] = default_gsr_us,
        device_name: str = "Shimmer_EMU0",
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
    ) -> None:
        if clock is None:
            import pylsl

            clock = pylsl.local_clock
        self._clock = clock
        self._ticks = max(1, round(TICKS_PER_SECOND / rate))
        self.clock_offset = float(clock_offset)
        self.drift = float(drift_ppm) * 1e-6
        self.start_counter = int(start_counter) % COUNTER_MODULUS
        self.burst_ms = burst_ms
        self.sync_pulse_times = np.asarray(sorted(sync_pulse_times), dtype=float)
        self.sync_pulse_us, self.sync_pulse_width = sync_pulse_us, sync_pulse_width
        self._gsr_us = gsr_us
        self.device_name = device_name
        self._rng = np.random.default_rng(seed)
        self._sensors = bytes((0x84, 0x01, 0x00))  # GSR + A13 + LN accel
        self.gsr_range_setting = GSR_RANGE_AUTO
        self.commands: list[int] = []
        self._drop_acks: list[int | None] = []
        self._lock = threading.Lock()  # guards state and every write
        self._stop = threading.Event()
        self._streaming = False
        self._k = 0
        self._n0 = 0
        self._t_start = 0.0
        self._channels: tuple[int, ...] = ()
        self._truth: list[np.ndarray] = []
        self._master = self._slave = -1
        self._threads: list[threading.Thread] = []
        self.port = ""
        self.closed = True

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ShimmerEmulator:
        """Open the pty and start the command and streaming threads."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._epoch = self._clock()
        self.closed = False
        for target, name in ((self._rx_loop, "rx"), (self._tx_loop, "tx")):
            th = threading.Thread(
                target=target, name=f"shimmer-emu-{name}", daemon=True
            )
            th.start()
            self._threads.append(th)
        logger.info("Shimmer emulator on %s", self.port)
        return self

    def close(self) -> None:
        """Stop the threads and close the pty; can be called twice."""
        self._stop.set()
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(timeout=2.0)
        self._threads.clear()
        with self._lock:
            self._streaming = False
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:  # pragma: no cover
                        pass
            self._master = self._slave = -1
            self.closed = True

    def __enter__(self) -> ShimmerEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- fault injection
    def vanish(self) -> None:
        """Make the port disappear (close the pty master and slave)."""
        logger.info("Shimmer emulator: port %s vanishes", self.port)
        self.close()

    def inject_status(self, *, ack_prefix: bool = True) -> None:
        """Push a status message; with ``ack_prefix`` an unexpected ``FF`` leads it."""
        self._write(
            (ACK if ack_prefix else b"") + bytes((0x8A, 0x71, _STATUS_STREAMING))
        )

    def inject_bytes(self, data: bytes) -> None:
        """Write arbitrary bytes between packets."""
        self._write(data)

    def drop_ack(self, opcode: int | None = None) -> None:
        """Ignore the next command (with this opcode): no ACK, no response."""
        with self._lock:
            self._drop_acks.append(opcode)

    # -------------------------------------------------------------- properties
    @property
    def rate(self) -> float:
        """Current sampling rate in Hz."""
        return TICKS_PER_SECOND / self._ticks

    @property
    def streaming(self) -> bool:
        """Whether packets are being sent."""
        return self._streaming

    @property
    def packets_sent(self) -> int:
        """Number of packets written so far."""
        with self._lock:
            return sum(len(a) for a in self._truth)

    def truth(self) -> dict[str, np.ndarray]:
        """Return ground truth, one entry per packet sent (see class Notes)."""
        with self._lock:
            rows = np.concatenate(self._truth) if self._truth else np.empty((0, 12))
        return {k: rows[:, i] for i, k in enumerate(_TRUTH_KEYS)}

    def schedule_sync_pulses(self, lsl_times: np.ndarray | list[float]) -> None:
        """Emit sync pulses at these LSL times (call after streaming started)."""
        rel = np.asarray(sorted(lsl_times), dtype=float) - self._t_start
        self.sync_pulse_times = rel[rel >= 0]

    def sync_pulse_lsl_times(self) -> np.ndarray:
        """LSL times of the first sample of each emitted sync pulse."""
        tr = self.truth()
        if tr["lsl_time"].size == 0:
            return np.empty(0)
        rel = tr["lsl_time"] - self._t_start
        idx = np.searchsorted(rel, self.sync_pulse_times)
        return tr["lsl_time"][idx[idx < rel.size]]

    def device_ticks(self, t: float) -> float:
        """Device clock (ticks since counter zero, before wrap) at host time ``t``."""
        secs = self.clock_offset + (t - self._epoch) * (1.0 + self.drift)
        return self.start_counter + secs * TICKS_PER_SECOND

    def _host_time(self, ticks: np.ndarray) -> np.ndarray:
        secs = (ticks - self.start_counter) / TICKS_PER_SECOND - self.clock_offset
        return self._epoch + secs / (1.0 + self.drift)

    # ------------------------------------------------------------------ writer
    def _write(self, data: bytes) -> None:
        with self._lock:
            self._write_locked(data)

    def _write_locked(self, data: bytes, timeout: float = 1.0) -> None:
        view = memoryview(data)
        while view and self._master >= 0:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                _, w, _ = select.select([], [self._master], [], timeout)
                if not w:
                    logger.warning("Shimmer emulator: host not reading, dropping data")
                    return
            except OSError as exc:  # pragma: no cover - pty torn down
                logger.debug("Shimmer emulator write failed: %s", exc)
                return

    # ---------------------------------------------------------- command thread
    def _rx_loop(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self._master], [], [], 0.05)
                if not r:
                    continue
                chunk = os.read(self._master, 256)
            except (OSError, ValueError) as exc:
                if getattr(exc, "errno", None) in (errno.EAGAIN,):
                    continue
                return
            buf += chunk
            while buf:
                op = buf[0]
                n = _ARG_LEN.get(op, 0)
                if n < 0:
                    if len(buf) < 2 or len(buf) < 2 + buf[1]:
                        break
                    n = 1 + buf[1]
                if len(buf) < 1 + n:
                    break
                args = bytes(buf[1 : 1 + n])
                del buf[: 1 + n]
                self._handle(op, args)

    def _handle(self, op: int, args: bytes) -> None:
        with self._lock:
            self.commands.append(op)
            for i, want in enumerate(self._drop_acks):
                if want is None or want == op:
                    del self._drop_acks[i]
                    logger.info("Shimmer emulator: dropping command 0x%02X", op)
                    return
            reply = ACK
            if op == 0x2E:  # firmware version: LogAndStream 0.16.0
                reply += b"\x2f" + struct.pack("<HHBB", 3, 0, 16, 0)
            elif op == 0x03:
                reply += b"\x04" + struct.pack("<H", self._ticks)
            elif op == 0x05:
                self._ticks = max(1, struct.unpack("<H", args)[0])
            elif op == 0x08:
                self._sensors = args
            elif op == 0x01:
                chans = self._enabled_channels()
                cfg3 = (self.gsr_range_setting & 0x7) << 1 | 0x01
                reply += (
                    b"\x02"
                    + struct.pack("<HBBBBBB", self._ticks, 0, 0, 0, cfg3, len(chans), 1)
                    + bytes(chans)
                )
            elif op == 0x07:
                self._start_streaming()
            elif op == 0x20:
                self._streaming = False
            elif op == 0x72:
                reply += bytes(
                    (0x8A, 0x71, _STATUS_STREAMING if self._streaming else 0x24)
                )
            elif op == 0x95:
                reply += bytes((0x8A, 0x94, 0x2E, 0x0B, 0x80))
            elif op == 0x7B:
                name = self.device_name.encode()
                reply += bytes((0x7A, len(name))) + name
            elif op == 0x79:
                self.device_name = args[1:].decode(errors="replace")
            elif op == 0x7E:
                reply += b"\x7d\x00"
            elif op == 0x21:
                self.gsr_range_setting = args[0]
            elif op == 0x23:
                reply += bytes((0x22, self.gsr_range_setting))
            elif op not in (0xA3, 0x5E, 0x7C, 0x96):
                logger.warning("Shimmer emulator: unknown command 0x%02X ignored", op)
                return
            self._write_locked(reply)

    def _enabled_channels(self) -> tuple[int, ...]:
        chans: list[int] = []
        for (byte, bit), ids in _SENSOR_CHANNELS.items():
            if self._sensors[byte] & bit:
                chans.extend(ids)
        return tuple(sorted(chans))

    def _start_streaming(self) -> None:
        now = self._clock()
        self._channels = self._enabled_channels()
        self._n0 = int(np.ceil(self.device_ticks(now)))
        self._k = 0
        self._t_start = float(self._host_time(np.array([self._n0]))[0])
        self._streaming = True

    # --------------------------------------------------------- streaming thread
    def _tx_loop(self) -> None:
        lo, hi = self.burst_ms
        while not self._stop.wait(self._rng.uniform(lo, hi) / 1000.0):
            with self._lock:
                if not self._streaming or self._master < 0:
                    continue
                now = self._clock()
                ticks_now = self.device_ticks(now)
                n_due = int((ticks_now - self._n0) // self._ticks) + 1 - self._k
                if n_due <= 0:
                    continue
                ks = np.arange(self._k, self._k + n_due)
                payload, rows = self._packets(ks, now)
                self._k += n_due
                self._truth.append(rows)
                self._write_locked(payload)

    def _packets(self, ks: np.ndarray, now: float) -> tuple[bytes, np.ndarray]:
        ticks = self._n0 + ks * self._ticks
        t = self._host_time(ticks.astype(np.float64))
        rel = t - self._t_start
        gsr_us = np.asarray(self._gsr_us(rel), dtype=np.float64)
        if self.sync_pulse_times.size:
            i = np.searchsorted(self.sync_pulse_times, rel, side="right") - 1
            since = rel - self.sync_pulse_times[np.maximum(i, 0)]
            on = (i >= 0) & (since < self.sync_pulse_width)
            gsr_us = gsr_us + self.sync_pulse_us * on
        kohm = 1000.0 / gsr_us
        if self.gsr_range_setting == GSR_RANGE_AUTO:
            rng = gsr_auto_range(kohm)
        else:
            rng = np.full(ks.size, self.gsr_range_setting & 0x3)
        gsr_raw = gsr_kohm_to_raw(kohm, rng)
        ppg = 1500.0 + 400.0 * np.sin(2 * np.pi * 1.2 * rel)
        acc = np.stack(
            [
                0.3 * np.sin(np.pi * rel),
                0.2 * np.cos(np.pi * rel),
                9.81 + 0.05 * np.sin(2 * np.pi * 0.7 * rel),  # a worn sensor sways
            ],
            axis=1,
        )
        counter = ticks % COUNTER_MODULUS
        fields = [("hdr", "u1"), ("ts", "u1", (3,))]
        fields += [(f"c{c}", _CHANNEL_DTYPE.get(c, "<u2")) for c in self._channels]
        pk = np.zeros(ks.size, dtype=np.dtype(fields))
        pk["ts"] = np.stack([(counter >> s) & 0xFF for s in (0, 8, 16)], axis=1)
        values = {
            0x00: accel_ms2_to_raw(acc[:, 0]),
            0x01: accel_ms2_to_raw(acc[:, 1]),
            0x02: accel_ms2_to_raw(acc[:, 2]),
            0x03: 2800,
            0x12: ppg_mv_to_raw(ppg),
            0x1C: gsr_raw,
        }
        for c in self._channels:
            pk[f"c{c}"] = values[c]
        rows = np.column_stack(
            [
                t,
                np.full(ks.size, now),
                counter,
                ticks,
                gsr_us,
                kohm,
                rng,
                gsr_raw,
                ppg,
                acc,
            ]
        )
        return pk.tobytes(), rows
