"""The LSL outlets of one phone (SPEC §6): stream info, desc metadata, fast pushes."""

from __future__ import annotations

import ctypes
import logging
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


def source_id(device_id: str, stream: str) -> str:
    """Return the stable source id ``lsl_session/<device_id>/<stream>``."""
    return f"lsl_session/{device_id}/{stream}"


def stream_name(device_id: str, stream: str) -> str:
    """Return the stream name ``<device_id>_<stream>``."""
    return f"{device_id}_{stream}"


def make_info(
    device_id: str,
    spec: StreamSpec,
    *,
    hello: dict[str, Any],
    sync: dict[str, Any],
) -> pylsl.StreamInfo:
    """Build a stream info with channels, acquisition and synchronization desc."""
    info = pylsl.StreamInfo(
        stream_name(device_id, spec.key),
        spec.lsl_type,
        spec.channel_count,
        spec.nominal_rate,
        _FORMATS[spec.channel_format],
        source_id(device_id, spec.key),
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
        Fit quality at creation, written to ``desc/synchronization``.

    Notes
    -----
    Used from the relay's event loop only. ``last_time`` holds, per stream, the
    newest *phone* time pushed; older samples are dropped as duplicates (a
    resuming phone may resend).
    """

    def __init__(
        self,
        device_id: str,
        streams: list[str],
        *,
        hello: dict[str, Any],
        sync: dict[str, Any],
    ) -> None:
        self.device_id = device_id
        self.outlets: dict[str, pylsl.StreamOutlet] = {}
        self.last_time: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        try:
            for key in streams:
                info = make_info(device_id, STREAMS[key], hello=hello, sync=sync)
                self.outlets[key] = pylsl.StreamOutlet(info, 0, 360)
                self.counts[key] = 0
        except Exception:
            self.close()
            raise

    def push(
        self, stream: str, phone_t: np.ndarray, lsl_t: np.ndarray, values: np.ndarray
    ) -> int:
        """Push samples newer than the last pushed; return how many were pushed."""
        outlet = self.outlets.get(stream)
        if outlet is None:
            return 0
        last = self.last_time.get(stream, -np.inf)
        keep = phone_t > last
        if not keep.all():
            phone_t, lsl_t, values = phone_t[keep], lsl_t[keep], values[keep]
        if len(phone_t) == 0:
            return 0
        _push_stamped(outlet, values, lsl_t)
        self.last_time[stream] = float(phone_t.max())
        self.counts[stream] += len(phone_t)
        return len(phone_t)

    def push_event(self, label: str, phone_t: float, lsl_t: float) -> None:
        """Push one marker on the events stream."""
        outlet = self.outlets.get("events")
        if outlet is not None:
            outlet.push_sample([label], lsl_t)
            self.counts["events"] += 1
            self.last_time["events"] = max(
                self.last_time.get("events", -np.inf), phone_t
            )

    def source_ids(self) -> dict[str, str]:
        """Return stream key → source id."""
        return {k: source_id(self.device_id, k) for k in self.outlets}

    def close(self) -> None:
        """Destroy the outlets; safe to call twice."""
        outlets, self.outlets = self.outlets, {}
        for outlet in outlets.values():
            del outlet
