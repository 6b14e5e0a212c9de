"""The LSL outlets of one phone (SPEC §6): stream info, desc metadata, fast pushes."""

from __future__ import annotations

import ctypes
import logging
import time
from typing import Any

import numpy as np
import pylsl

from outlets.phone.protocol import PROTOCOL_VERSION, STREAMS, StreamSpec

logger = logging.getLogger(__name__)

_FORMATS = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "string": pylsl.cf_string,
}
_DTYPES = {"float32": np.float32, "double64": np.float64}
#: Seconds a new stream holds its samples until an inlet (the recorder) connects.
CONSUMER_WAIT_S = 5.0
#: Rows a stream holds at most while waiting; more releases the hold at once.
MAX_HELD_ROWS = 65536


def source_id(device_id: str, stream: str, rig: str | None = None) -> str:
    """Return the stable source id ``lsl_session/[<rig>/]<device_id>/<stream>``."""
    prefix = f"lsl_session/{rig}" if rig else "lsl_session"
    return f"{prefix}/{device_id}/{stream}"


def stream_name(device_id: str, stream: str) -> str:
    """Return the stream name ``<device_id>_<stream>``."""
    return f"{device_id}_{stream}"


def make_info(
    device_id: str,
    spec: StreamSpec,
    *,
    hello: dict[str, Any],
    sync: dict[str, Any],
    rig: str | None = None,
) -> pylsl.StreamInfo:
    """Build a stream info with channels, acquisition and synchronization desc."""
    rate = float((hello.get("rates") or {}).get(spec.key, spec.nominal_rate))
    info = pylsl.StreamInfo(
        stream_name(device_id, spec.key),
        spec.lsl_type,
        spec.channel_count,
        rate,  # the rate the phone declared in its hello, else the typical one
        _FORMATS[spec.channel_format],
        source_id(device_id, spec.key, rig),
    )
    desc = info.desc()
    channels = desc.append_child("channels")
    for label, unit, kind in spec.channels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", str(hello.get("manufacturer", "unknown")))
    acq.append_child_value("model", str(hello.get("model", "unknown")))
    acq.append_child_value("device_id", device_id)
    acq.append_child_value("relay", "lsl_session phone relay")
    acq.append_child_value("protocol_version", str(PROTOCOL_VERSION))
    s = desc.append_child("synchronization")
    s.append_child_value("method", "ntp4-envelope")
    s.append_child_value(
        "description",
        "phone clock mapped to LSL local_clock by NTP-style four-timestamp "
        "exchanges; samples pushed with explicit mapped timestamps",
    )
    s.append_child_value("can_drop_samples", "false")
    for key, value in sync.items():
        s.append_child_value(key, str(value))
    return info


def _push_stamped(outlet: pylsl.StreamOutlet, data: np.ndarray, ts: np.ndarray) -> None:
    """Push a chunk with one timestamp per sample without per-sample Python work."""
    ts = np.ascontiguousarray(ts, dtype=np.float64)
    data = np.ascontiguousarray(data, dtype=outlet.np_dtype)
    rc = outlet.do_push_chunk_n(
        outlet.obj,
        ctypes.c_void_p(data.ctypes.data),
        ctypes.c_ulong(data.size),
        ctypes.c_void_p(ts.ctypes.data),
        ctypes.c_int(1),
    )
    if rc < 0:  # pragma: no cover - liblsl error
        raise RuntimeError(f"liblsl push_chunk failed with code {rc}")


class PhoneOutlets:
    """The outlets of one phone, kept alive across reconnects.

    Parameters
    ----------
    device_id : str
        The phone's device id.
    streams : list[str]
        Stream keys to publish (see `protocol.STREAMS`).
    hello : dict
        The phone's hello (manufacturer, model).
    sync : dict
        Written to ``desc/synchronization`` (schedule; fit quality if known).
    consumer_wait : float
        Seconds a new stream holds its samples until it has a consumer.
    rig : str | None
        The rig identity in the source_ids (see `source_id`).

    Notes
    -----
    Used from the relay's event loop only. ``last_time`` holds, per stream, the
    newest *phone* time pushed; older samples are dropped as duplicates (a
    resuming phone may resend).

    **No first-second loss.** liblsl delivers nothing pushed before an inlet is
    connected, and a recorder that is already running needs a resolve cycle to
    attach to a stream that just appeared. So the outlets are created at
    ``hello`` (discoverable while the clock fit converges), and each stream
    holds its samples until its outlet ``have_consumers()`` or
    ``consumer_wait`` seconds passed (at most `MAX_HELD_ROWS` rows), then pushes
    them in one chunk: a recorder running before the phone connects gets every
    sample from the first one on.
    """

    def __init__(
        self,
        device_id: str,
        streams: list[str],
        *,
        hello: dict[str, Any],
        sync: dict[str, Any],
        consumer_wait: float = CONSUMER_WAIT_S,
        rig: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.rig = rig
        self.hello, self.sync = hello, sync
        self.consumer_wait = float(consumer_wait)
        self.outlets: dict[str, pylsl.StreamOutlet] = {}
        self.last_time: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._created: dict[str, float] = {}
        self._held: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._held_rows: dict[str, int] = {}
        try:
            self.add(streams)
        except Exception:
            self.close()
            raise

    def add(self, streams: list[str]) -> list[str]:
        """Create the outlets of ``streams`` not published yet; return the new keys.

        A reconnect announcing a new capability gets its outlet; outlets of
        capabilities it no longer has stay open (idle) so their streams resume if
        the capability returns.
        """
        new = [key for key in streams if key not in self.outlets]
        for key in new:
            info = make_info(
                self.device_id,
                STREAMS[key],
                hello=self.hello,
                sync=self.sync,
                rig=self.rig,
            )
            self.outlets[key] = pylsl.StreamOutlet(info, 0, 360)
            self.counts[key] = 0
            self._created[key] = time.monotonic()
            self._held[key] = []
            self._held_rows[key] = 0
        return new

    def _holding(self, stream: str) -> bool:
        """Whether ``stream`` still waits for its first consumer."""
        if stream not in self._held:
            return False
        outlet = self.outlets[stream]
        waited = time.monotonic() - self._created[stream]
        if (
            outlet.have_consumers()
            or waited >= self.consumer_wait
            or self._held_rows[stream] >= MAX_HELD_ROWS
        ):
            self._release(stream, waited)
            return False
        return True

    def _release(self, stream: str, waited: float) -> None:
        held = self._held.pop(stream)
        rows = self._held_rows.pop(stream)
        outlet = self.outlets[stream]
        if stream == "events":  # strings, and rare: one push per marker
            for labels, stamps in held:
                outlet.push_sample([str(labels[0])], float(stamps[0]))
        elif held:
            data = np.concatenate([d for d, _ in held])
            stamps = np.concatenate([t for _, t in held])
            _push_stamped(outlet, data, stamps)
        logger.info(
            "%s %s: %d held samples pushed after %.2f s (%s)",
            self.device_id,
            stream,
            rows,
            waited,
            "consumer connected" if outlet.have_consumers() else "no consumer",
        )

    def _emit(self, stream: str, data: np.ndarray, stamps: np.ndarray) -> None:
        if self._holding(stream):
            self._held[stream].append((data, stamps))
            self._held_rows[stream] += len(stamps)
        else:
            _push_stamped(self.outlets[stream], data, stamps)

    def push(
        self, stream: str, phone_t: np.ndarray, lsl_t: np.ndarray, values: np.ndarray
    ) -> int:
        """Push samples newer than the last pushed; return how many were accepted."""
        outlet = self.outlets.get(stream)
        if outlet is None:
            return 0
        last = self.last_time.get(stream, -np.inf)
        # strictly later than the last pushed row and than the row before it in the
        # batch: a row at the same phone time as another is a duplicate (docs §5)
        before = np.maximum.accumulate(np.concatenate(([last], phone_t[:-1])))
        keep = phone_t > before
        if not keep.all():
            phone_t, lsl_t, values = phone_t[keep], lsl_t[keep], values[keep]
        if len(phone_t) == 0:
            return 0
        data = np.ascontiguousarray(values, dtype=outlet.np_dtype)
        self._emit(stream, data, np.asarray(lsl_t, dtype=np.float64))
        self.last_time[stream] = float(phone_t.max())
        self.counts[stream] += len(phone_t)
        return len(phone_t)

    def push_event(self, label: str, phone_t: float, lsl_t: float) -> None:
        """Push one marker on the events stream."""
        if "events" not in self.outlets:
            return
        if self._holding("events"):
            self._held["events"].append(
                (np.array([label], dtype=object), np.array([lsl_t]))
            )
            self._held_rows["events"] += 1
        else:
            self.outlets["events"].push_sample([label], lsl_t)
        self.counts["events"] += 1
        self.last_time["events"] = max(self.last_time.get("events", -np.inf), phone_t)

    def flush_holds(self) -> None:
        """Release every hold whose wait is over (call periodically)."""
        for stream in list(self._held):
            self._holding(stream)

    def source_ids(self) -> dict[str, str]:
        """Return stream key → source id."""
        return {k: source_id(self.device_id, k, self.rig) for k in self.outlets}

    def close(self) -> None:
        """Destroy the outlets; safe to call twice."""
        outlets, self.outlets = self.outlets, {}
        self._held.clear()
        for outlet in outlets.values():
            del outlet
