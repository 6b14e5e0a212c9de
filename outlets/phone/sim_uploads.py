"""Upload side of the phone simulator: tiny OpenCV videos, offer/chunks/end, resume."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pylsl

from lsl_session.errors import DeviceError
from outlets.phone import protocol as P
from outlets.phone.sim_signals import pulse_flags

logger = logging.getLogger(__name__)


class UploadMixin:
    """Uploads for `PhoneSimulator` (uses its ``request``, ``_send``, ``connect``)."""

    # --------------------------------------------------------------- uploads
    def _wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the reader saw the relay close the connection."""
        deadline = pylsl.local_clock() + timeout
        while self._sock is not None and pylsl.local_clock() < deadline:
            self._stop.wait(0.01)

    def _upload_all(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix=f"{self.device_id}-"))
        try:
            for kind in ("rgb", "thermal"):
                if f"{kind}_video" in self.capabilities:
                    bright = self._pulse_frames(f"{kind}_frames")
                    rate = self.rate(f"{kind}_frames")
                    video = make_video(
                        folder / f"{kind}_video.mp4", kind, len(bright), rate, bright
                    )
                    self.upload_file(video, kind)
        finally:
            self._uploads_pending.clear()

    def _pulse_frames(self, stream: str) -> np.ndarray:
        """One flag per generated frame (frame k = stream value k): a sync pulse."""
        true_t, _, _ = self.truth(stream)
        rate = self.rate(stream)
        return pulse_flags(
            np.asarray(self.pulses), true_t, self.pulse_length, stream, rate
        )

    def upload_file(self, path: Path, file_type: str) -> dict[str, Any]:
        """Upload ``path`` (offer, chunks, end) and resume after broken connections."""
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        record: dict[str, Any] = {
            "file_type": file_type,
            "name": Path(path).name,
            "size": len(data),
            "sha256": sha,
            "attempts": 0,
            "resumed_from": [],
        }
        for _ in range(20):
            record["attempts"] += 1
            try:
                reply = self.request(
                    {
                        "type": "upload_offer",
                        "name": Path(path).name,
                        "size": len(data),
                        "sha256": sha,
                        "file_type": file_type,
                    }
                )
                if reply.get("code") == "upload_busy":
                    self._stop.wait(0.2)
                    continue
                if reply.get("type") == "error" or reply.get("done"):
                    record["result"] = reply
                    break
                uid, off = reply["upload_id"], int(reply["have"])
                record["resumed_from"].append(off)
                while off < len(data):
                    chunk = data[off : off + self.upload_chunk]
                    if self.upload_bps:  # a real uplink's pace
                        self._stop.wait(len(chunk) / self.upload_bps)
                    if not self._send(
                        P.encode_binary(
                            {"type": "upload_chunk", "upload_id": uid, "offset": off},
                            chunk,
                        )
                    ):
                        raise ConnectionError("connection lost")
                    off += len(chunk)
                    if (
                        self.cut_upload_after is not None
                        and off >= self.cut_upload_after
                    ):
                        self.cut_upload_after = None
                        self.drop(graceful=True)
                        self._wait_closed()
                        raise ConnectionError("upload cut on purpose")
                reply = self.request({"type": "upload_end", "upload_id": uid})
                if reply.get("code") in ("incomplete", "bad_offset"):
                    continue
                record["result"] = reply
                break
            except (ConnectionError, TimeoutError, OSError):
                if not self.auto_reconnect:
                    self._stop.wait(0.3)
                    try:
                        self.connect()
                    except (OSError, DeviceError):
                        continue
                else:
                    self.connected.wait(10)
        self.uploads.append(record)
        return record


def make_video(
    path: Path,
    kind: str,
    frames: int = 12,
    fps: float = 10.0,
    bright: np.ndarray | None = None,
) -> Path:
    """Write a small mp4 (64×48) with OpenCV; ``bright`` frames are white sync flashes.

    Frame k of the video is frame k of the phone's frame stream, so the sync
    check can find the flashes at the stream's stamps. Without ``bright``, frame 5
    is the flash.
    """
    frames = max(int(frames), 1)
    if bright is None:
        bright = np.arange(frames) == 5
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    if not writer.isOpened():
        raise DeviceError(f"OpenCV cannot write {path}")
    ramp = np.tile(np.linspace(0, 120, 64, dtype=np.uint8), (48, 1))
    for i in range(frames):
        flash = i < len(bright) and bool(bright[i])
        gray = np.full((48, 64), 255, np.uint8) if flash else np.roll(ramp, 4 * i, 1)
        frame = (
            cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)
            if kind == "thermal"
            else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        )
        writer.write(frame)
    writer.release()
    return path
