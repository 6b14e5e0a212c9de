"""Which BIDS file each stream (or each channel of it) goes to.

- string streams → ``_events.tsv`` (markers and the session's event stream);
- a stream whose type (or most of whose channels) is EEG → ``eeg/`` via mne-bids;
- accelerometer, gyroscope, magnetometer, orientation, position, velocity
  channels → BIDS motion (``tracksys-<stream>``);
- every other channel of a regularly sampled numeric stream (GSR, PPG, resistance,
  temperature, respiration …) → ``_physio.tsv.gz`` (``recording-<stream>``);
- video frame-index streams, irregular numeric streams and empty streams are not
  mapped (they stay in ``sourcedata/``), each with the reason.

A stream of mixed channels (a Shimmer: GSR, PPG and an accelerometer) is split:
its motion channels become a motion file, the others a physio file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream

#: LSL channel or stream type (lower case) → BIDS motion channel type.
MOTION_TYPES = {
    "acc": "ACCEL", "accel": "ACCEL", "accelerometer": "ACCEL", "acceleration": "ACCEL",
    "gyro": "GYRO", "gyroscope": "GYRO", "angularvelocity": "GYRO",
    "mag": "MAGN", "magn": "MAGN", "magnetometer": "MAGN",
    "ornt": "ORNT", "orientation": "ORNT", "quaternion": "ORNT", "euler": "ORNT",
    "pos": "POS", "position": "POS", "mocap": "POS", "vel": "VEL", "velocity": "VEL",
}  # fmt: skip
#: MNE channel types kept inside an EEG recording (others there become misc).
EEG_STREAM_TYPES = {"eeg": "eeg", "eog": "eog", "ecg": "ecg", "emg": "emg",
                    "trig": "stim", "trigger": "stim", "stim": "stim"}  # fmt: skip
_VIDEO = {"videoframes", "framestamps", "video", "frameindex"}
_COMPONENT = re.compile(r"(?:^|[_\-. ])(x|y|z|w)$", re.IGNORECASE)
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def bids_label(text: str) -> str:
    """Letters and digits of ``text`` (a ``recording-``/``tracksys-`` label)."""
    return _NOT_ALNUM.sub("", text)[:64] or "stream"


@dataclass(slots=True)
class StreamPlan:
    """What becomes of one stream."""

    stream: SyncedStream
    kind: str  # "eeg", "split" (physio and/or motion), "events", "skip"
    physio: list[int] = field(default_factory=list)  # channel indices
    motion: list[int] = field(default_factory=list)
    reason: str = ""

    @property
    def label(self) -> str:
        return bids_label(self.stream.name)


def _kind(stream: SyncedStream, k: int) -> str:
    text = stream.channel_types[k] if k < len(stream.channel_types) else ""
    return (text or stream.type or "").strip().lower().replace(" ", "")


def motion_type(stream: SyncedStream, k: int) -> str | None:
    """The BIDS motion type of channel ``k`` (None: not a motion channel)."""
    kind = _kind(stream, k)
    if kind in MOTION_TYPES:
        return MOTION_TYPES[kind]
    label = stream.channel_labels[k].lower() if k < len(stream.channel_labels) else ""
    stem = _COMPONENT.sub("", label).rstrip("_-. ")
    if kind in ("", "misc", "accelerometer") and stem in MOTION_TYPES:
        return MOTION_TYPES[stem]
    return None


def component(label: str, motion: str) -> str:
    """``x``/``y``/``z`` (``quat_x`` … for orientation) from a channel label."""
    match = _COMPONENT.search(label.strip())
    if not match:
        return "n/a"
    axis = match.group(1).lower()
    return f"quat_{axis}" if motion == "ORNT" else ("n/a" if axis == "w" else axis)


def is_eeg(stream: SyncedStream) -> bool:
    """An EEG stream: its type is EEG, or most channels say EEG."""
    if (stream.type or "").strip().lower() == "eeg":
        return True
    kinds = [(t or "").strip().lower() for t in stream.channel_types]
    return bool(kinds) and sum(k == "eeg" for k in kinds) > len(kinds) / 2


def plan_stream(stream: SyncedStream) -> StreamPlan:
    """Map one stream (see the module docstring)."""
    if stream.is_string:
        if not len(stream.time_stamps):
            return StreamPlan(stream, "skip", reason="no samples")
        return StreamPlan(stream, "events")
    if not tables.is_numeric(stream):
        return StreamPlan(stream, "skip", reason="no samples")
    if stream.nominal_srate <= 0:
        return StreamPlan(
            stream, "skip",
            reason="irregular numeric stream: BIDS physio and motion need a "
            "sampling frequency",
        )  # fmt: skip
    kinds = {_kind(stream, k) for k in range(stream.channel_count)}
    if (stream.type or "").strip().lower() in _VIDEO or kinds <= _VIDEO:
        return StreamPlan(
            stream, "skip",
            reason="video frame indices: BIDS has no video datatype; the video "
            "files and this stream stay in sourcedata",
        )  # fmt: skip
    if is_eeg(stream):
        return StreamPlan(stream, "eeg")
    plan = StreamPlan(stream, "split")
    for k in range(stream.channel_count):
        if _kind(stream, k) in _VIDEO:
            continue
        (plan.motion if motion_type(stream, k) else plan.physio).append(k)
    return plan


def plan_streams(streams: list[SyncedStream]) -> list[StreamPlan]:
    """The plan of every stream, in order (see `unique_labels` for their labels)."""
    return [plan_stream(s) for s in streams]


def unique_labels(plans: list[StreamPlan]) -> dict[int, str]:
    """One distinct BIDS label per plan, by position (``label``, ``label2`` …)."""
    seen: dict[str, int] = {}
    out = {}
    for i, plan in enumerate(plans):
        base = plan.label
        n = seen.get(base, 0) + 1
        seen[base] = n
        out[i] = base if n == 1 else f"{base}{n}"
    return out
