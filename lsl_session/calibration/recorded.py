"""A device's recorded videos in a session as calibration sources.

Phones upload ``devices/<id>/rgb_videos/`` and ``thermal_videos/``; webcams
write ``webcam/<id>_<stamp>.mp4``. Frame k of a video gets the LSL time of the
sample of its frame stream (``<prefix>_frames``) whose value is k, so RGB and
thermal frames are paired by the times the recorder wrote.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from lsl_session.calibration.sources import VIDEO_SUFFIXES, SourceError, VideoSource
from lsl_session.errors import LslSessionError


def device_videos(root: Path, device: str, kind: str) -> list[Path]:
    """The device's videos of ``kind`` (``rgb`` or ``thermal``), oldest first."""
    folders = [root / "devices" / device / f"{kind}_videos"]
    if kind == "rgb":
        folders.append(root / "webcam")
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in VIDEO_SUFFIXES or p.name.startswith("."):
                continue
            if folder.name == "webcam" and not p.name.startswith(f"{device}_"):
                continue
            found.append(p)
    return found


def recorded_sources(
    root: Path, device: str, cameras: list[str], *, realtime: bool = False
) -> dict[str, VideoSource]:
    """One `VideoSource` per camera, with frame times from the session's XDF.

    The newest video of each kind is used.

    Raises
    ------
    SourceError
        When a video is missing, or (stereo) its frame stream was not recorded.
    """
    from lsl_session.processing.session_data import load_session
    from lsl_session.processing.video import frame_stream_name, frame_times

    videos = {}
    for cam in cameras:
        found = device_videos(root, device, cam)
        if not found:
            raise SourceError(
                f"{device} has no recorded {cam} video in {root.name} "
                f"(devices/{device}/{cam}_videos/); use --from PATH or --camera N"
            )
        videos[cam] = found[-1]
    try:
        data = load_session(root)
    except (OSError, ValueError, LslSessionError) as exc:
        if len(cameras) > 1:
            raise SourceError(
                f"stereo pairs need the recording's frame times: {exc}"
            ) from None
        data = None
    out = {}
    for cam, video in videos.items():
        name = frame_stream_name(video)
        stream = None
        if data is not None:
            stream = next((s for s in data.streams if s.name == name), None)
        if stream is None and len(cameras) > 1:
            raise SourceError(
                f"no frame stream {name!r} in the recording of {root.name}"
            )
        cap = cv2.VideoCapture(str(video))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        times = frame_times(stream, n) if stream is not None else None
        out[cam] = VideoSource(video, times=times, realtime=realtime)
    return out
