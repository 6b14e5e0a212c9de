"""Hand segmentation processor: skin-colour hand regions per video frame (SPEC §8).

For every video in ``webcam/`` and ``devices/*/rgb_videos/`` the processor writes
``processing/hand_segmentation/<video_stem>_hands.csv`` with **one row per frame**
(wide layout, so the table lines up with the frame stream one to one):

``frame``
    Frame index in the video (0-based).
``lsl_time``
    LSL time of the frame on the recorder's clock: the time stamp of the frame
    stream sample whose value is ``frame`` (stream ``<prefix>_frames`` for a video
    ``<prefix>_YYYYMMDD_HHMMSS.mp4``). NaN when no sample carries the frame (counted
    as ``n_frames_without_time`` in the report).
``time``
    ``lsl_time - context.t0`` in seconds.
``n_hands``
    Number of skin regions at least ``min_area`` pixels large.
``mask_fraction``
    Fraction of the frame's pixels in the (cleaned) skin mask.
``brightness``, ``flash``
    Mean grey level (0-255) and whether the frame is a sync flash (a brightness
    jump, see `lsl_session.processing.pulses.detect_flashes`). On flash frames
    the scene is washed out; regions found there are still reported, but should be
    ignored (the synthetic video draws no hand on them and none is detected).
``hand<i>_x, hand<i>_y, hand<i>_w, hand<i>_h, hand<i>_area, hand<i>_coverage``
    For ``i = 0 … max_hands - 1``, regions sorted by area, largest first: bounding
    box in pixels (``x, y`` top-left, inclusive of every region pixel), pixel area,
    and coverage = area / (w · h), how much of the box the mask fills. Empty (NaN)
    when fewer regions were found.

``hand<i>_thermal_mean, hand<i>_thermal_mean_c``
    Only when the video's device has an RGB↔thermal calibration
    (``processing/calibration/<device>.json`` with ``stereo``) and a thermal
    video: the mean thermal grey level (0-255) over the hand's skin pixels, in the
    thermal frame nearest in LSL time registered to the RGB view (see
    `lsl_session.calibration.register`), and the same in °C when the thermal
    frame stream carries each frame's range (NaN otherwise, and when no thermal
    frame lies within ``thermal_tolerance_s``).

Segmentation (OpenCV, vectorised per frame): YCrCb skin range AND a loose HSV
range, a 3x3 opening and a 7x7 closing, then 8-connected components. When
``mediapipe`` is importable and ``hands_backend`` is ``"auto"`` or
``"mediapipe"``, MediaPipe Hands landmarks give the boxes instead (area and
coverage then come from the landmarks' convex hull).

Options read from ``context.options``: ``mask_video`` (bool, default False: also
write ``<video_stem>_mask.mp4``), ``hands_max`` (int, default 2),
``hands_backend`` (``"auto"``, ``"opencv"``, ``"mediapipe"``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lsl_session.fsutil import atomic_write_bytes
from lsl_session.processing.model import ProcessingContext
from lsl_session.processing.pulses import detect_flashes
from lsl_session.processing.video import (
    find_videos,
    frame_coverage,
    frame_stream_name,
    frame_times,
    iter_frames,
)

logger = logging.getLogger(__name__)

#: YCrCb skin range (Y, Cr, Cb), inclusive.
YCRCB_LOW: tuple[int, int, int] = (0, 133, 77)
YCRCB_HIGH: tuple[int, int, int] = (255, 173, 127)
#: Loose HSV range (OpenCV H in 0-179): red-orange-yellow hues, not grey or dark.
HSV_LOW: tuple[int, int, int] = (0, 25, 40)
HSV_HIGH: tuple[int, int, int] = (30, 255, 255)
#: Smallest region kept, as a fraction of the frame area.
MIN_AREA_FRACTION = 0.002
REGION_FIELDS: tuple[str, ...] = ("x", "y", "w", "h", "area", "coverage")

_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def skin_mask(frame: np.ndarray) -> np.ndarray:
    """Return the cleaned skin mask of a BGR frame.

    Parameters
    ----------
    frame : numpy.ndarray
        ``(h, w, 3)`` uint8 BGR image.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` uint8 mask, 255 on skin.
    """
    ycrcb = cv2.inRange(cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb), YCRCB_LOW, YCRCB_HIGH)
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    hue_ok = cv2.bitwise_or(
        cv2.inRange(hsv, HSV_LOW, HSV_HIGH),
        cv2.inRange(hsv, (165, HSV_LOW[1], HSV_LOW[2]), (179, 255, 255)),
    )
    mask = cv2.bitwise_and(ycrcb, hue_ok)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _CLOSE)


def hand_regions(mask: np.ndarray, *, min_area: int | None = None) -> np.ndarray:
    """Return the connected regions of a mask, largest first.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(h, w)`` uint8 mask (non-zero = skin).
    min_area : int | None
        Smallest region kept in pixels; default ``MIN_AREA_FRACTION`` of the frame.

    Returns
    -------
    numpy.ndarray
        ``(n, 6)`` float array of ``x, y, w, h, area, coverage`` rows.
    """
    if min_area is None:
        min_area = max(1, round(MIN_AREA_FRACTION * mask.size))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = stats[1:]  # label 0 is the background
    stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_area]
    stats = stats[np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")]
    out = np.empty((len(stats), 6))
    out[:, :5] = stats[:, :5]
    out[:, 5] = stats[:, 4] / np.maximum(stats[:, 2] * stats[:, 3], 1)
    return out


def segment_video(
    path: Path | str,
    *,
    max_hands: int = 2,
    mask_path: Path | None = None,
    backend: str = "opencv",
    thermal: Callable[[int], tuple[np.ndarray, np.ndarray | None] | None] | None = None,
) -> pd.DataFrame:
    """Segment hands in every frame of a video.

    Parameters
    ----------
    path : pathlib.Path | str
        Video file.
    max_hands : int
        Number of ``hand<i>_*`` column groups (largest regions kept).
    mask_path : pathlib.Path | None
        Also write the skin mask as an mp4 here.
    backend : str
        ``"opencv"`` or ``"mediapipe"``.
    thermal : callable | None
        Frame index → ``(grey, celsius | None)`` thermal images registered to
        this video's view (NaN outside the thermal view), or None for a frame
        without one; adds the ``hand<i>_thermal_mean[_c]`` columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``frame, n_hands, mask_fraction, brightness`` and the
        ``hand<i>_*`` groups (no time columns, no flash flag).
    """
    if max_hands < 1:
        raise ValueError(
            f"The argument 'max_hands' must be >= 1, {max_hands} is invalid."
        )
    detect = _MediaPipeHands(max_hands) if backend == "mediapipe" else None
    rows: list[np.ndarray] = []
    writer = None
    try:
        for frame in iter_frames(path):
            mask = skin_mask(frame)
            regions = detect(frame) if detect is not None else hand_regions(mask)
            width = 4 + 6 * max_hands
            row = np.full(width + (2 * max_hands if thermal else 0), np.nan)
            row[0] = len(rows)
            row[1] = len(regions)
            row[2] = np.count_nonzero(mask) / mask.size
            row[3] = cv2.mean(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[0]
            kept = regions[:max_hands]
            row[4 : 4 + kept.size] = kept.ravel()
            if thermal is not None and len(kept):  # registered only when needed
                row[width:] = _thermal_means(thermal(len(rows)), mask, kept, max_hands)
            rows.append(row)
            if mask_path is not None:
                if writer is None:
                    h, w = mask.shape
                    writer = cv2.VideoWriter(
                        str(mask_path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (w, h)
                    )
                writer.write(cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))
    finally:
        if writer is not None:
            writer.release()
        if detect is not None:
            detect.close()
    columns = ["frame", "n_hands", "mask_fraction", "brightness"]
    columns += [f"hand{i}_{f}" for i in range(max_hands) for f in REGION_FIELDS]
    if thermal is not None:
        columns += [
            f"hand{i}_{f}" for i in range(max_hands)
            for f in ("thermal_mean", "thermal_mean_c")
        ]  # fmt: skip
    table = pd.DataFrame(np.array(rows).reshape(-1, len(columns)), columns=columns)
    table[["frame", "n_hands"]] = table[["frame", "n_hands"]].astype(np.int64)
    return table


def _thermal_means(
    images: tuple[np.ndarray, np.ndarray | None] | None, mask: np.ndarray,
    regions: np.ndarray, max_hands: int,
) -> np.ndarray:  # fmt: skip
    """Per hand: mean registered thermal grey and °C over its skin pixels."""
    out = np.full(2 * max_hands, np.nan)
    if images is None:
        return out
    grey, celsius = images
    for i, (x, y, w, h) in enumerate(regions[:, :4].astype(int)):
        box = (slice(y, y + h), slice(x, x + w))
        skin = mask[box] > 0
        if not skin.any():
            skin = np.ones_like(skin)
        for j, img in enumerate((grey, celsius)):
            if img is None:
                continue
            vals = img[box][skin]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                out[2 * i + j] = float(vals.mean())
    return out


def write_csv_atomic(table: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically (temp + fsync + rename)."""
    atomic_write_bytes(path, table.to_csv(index=False, float_format="%.6f").encode())


def mediapipe_available() -> bool:
    """Return whether MediaPipe can be imported."""
    return importlib.util.find_spec("mediapipe") is not None


class HandSegmentationProcessor:
    """Processor ``hand_segmentation``: per-frame hand regions of every session video.

    See the module docstring for the CSV layout and the options.
    """

    name = "hand_segmentation"

    def run(self, context: ProcessingContext) -> dict[str, Any]:
        """Segment every video and write one CSV per video.

        Parameters
        ----------
        context : ProcessingContext
            Session, synced streams, output folder, ``t0`` and options.

        Returns
        -------
        dict
            ``{"backend": str, "videos": [per-video report, ...]}``; a per-video
            report holds ``video``, ``stream`` (None when not recorded), ``csv``,
            ``mask_video``, ``n_frames``, ``n_frames_without_time`` (of which
            ``n_frames_outside_recording`` were captured before or after the
            frame stream was recorded, ``n_frames_unstamped_inside`` between),
            ``frames_with_hands``, ``n_flash_frames`` (or ``error``).
        """
        opts = context.options
        backend = str(opts.get("hands_backend", "auto"))
        if backend == "mediapipe" and not mediapipe_available():
            logger.warning("MediaPipe is not installed: using the OpenCV backend")
            backend = "opencv"
        elif backend == "auto":
            backend = "mediapipe" if mediapipe_available() else "opencv"
        max_hands = int(opts.get("hands_max", 2))
        out_dir = Path(context.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        root = context.paths.root
        videos: list[dict[str, Any]] = []
        for video in find_videos(root):
            stream_name = frame_stream_name(video)
            stream = context.stream(stream_name)
            mask_path = (
                out_dir / f"{video.stem}_mask.mp4" if opts.get("mask_video") else None
            )
            rel = video.relative_to(root).as_posix()
            thermal, thermal_report = _hand_thermal(context, video)
            try:
                table = segment_video(
                    video, max_hands=max_hands, mask_path=mask_path, backend=backend,
                    thermal=thermal,
                )  # fmt: skip
            except OSError as err:
                logger.warning("Hand segmentation skipped %s: %s", rel, err)
                videos.append({"video": rel, "stream": stream_name, "error": str(err)})
                continue
            finally:
                if thermal is not None:
                    thermal.close()
                    thermal_report["frames_with_thermal"] = thermal.frames_with_thermal
            lsl = frame_times(stream, len(table))
            table.insert(1, "lsl_time", lsl)
            table.insert(2, "time", lsl - context.t0)
            flashes = np.zeros(len(table), bool)
            flashes[detect_flashes(table["brightness"].to_numpy())] = True
            table.insert(6, "flash", flashes.astype(np.int8))
            csv = out_dir / f"{video.stem}_hands.csv"
            write_csv_atomic(table, csv)
            missing = int(np.isnan(lsl).sum())
            before, after, inside = frame_coverage(lsl)
            if stream is None:
                logger.warning("No stream %r for %s: lsl_time is NaN", stream_name, rel)
            elif inside:
                logger.warning("%s: %d frames inside the recording have no LSL time",
                               rel, inside)  # fmt: skip
            if before or after:
                logger.info("%s: %d frames before and %d after the recording of its "
                            "frame stream (no LSL time)", rel, before, after)  # fmt: skip
            videos.append(
                {
                    "video": rel,
                    "stream": stream_name if stream is not None else None,
                    "csv": csv.relative_to(root).as_posix(),
                    "mask_video": (
                        mask_path.relative_to(root).as_posix() if mask_path else None
                    ),
                    "n_frames": len(table),
                    "n_frames_without_time": missing,
                    "n_frames_outside_recording": before + after,
                    "n_frames_unstamped_inside": inside,
                    "frames_with_hands": int((table["n_hands"] > 0).sum()),
                    "n_flash_frames": int(flashes.sum()),
                    "thermal": thermal_report,
                }
            )
        logger.info("Hand segmentation (%s): %d videos", backend, len(videos))
        return {"backend": backend, "videos": videos}


def _hand_thermal(context: ProcessingContext, video: Path) -> tuple[Any, dict | None]:
    """The registered thermal source of a video's device, if it is calibrated.

    A broken calibration or thermal video is reported, never fatal.
    """
    from lsl_session.calibration.thermal import hand_thermal_for

    try:
        thermal = hand_thermal_for(context, video)
    except Exception as exc:  # a damaged calibration must not stop segmentation
        logger.warning("thermal means skipped for %s: %s", video.name, exc)
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    if thermal is None:
        return None, None
    root = context.paths.root
    return thermal, {
        "device": thermal.device,
        "thermal_video": thermal.thermal_video.relative_to(root).as_posix(),
        "depth_mm": thermal.depth_mm,
    }


class _MediaPipeHands:  # pragma: no cover - mediapipe is an optional extra
    """Boxes from MediaPipe Hands landmarks, in the `hand_regions` row format."""

    def __init__(self, max_hands: int) -> None:
        import mediapipe as mp

        self._hands = mp.solutions.hands.Hands(
            static_image_mode=False, max_num_hands=max_hands
        )

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        result = self._hands.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        rows = []
        for hand in result.multi_hand_landmarks or ():
            pts = np.array([(p.x * w, p.y * h) for p in hand.landmark], np.float32)
            pts = np.clip(pts, 0, [w - 1, h - 1])
            x, y, bw, bh = cv2.boundingRect(pts)
            area = cv2.contourArea(cv2.convexHull(pts))
            rows.append((x, y, bw, bh, area, area / max(bw * bh, 1)))
        out = np.array(rows, float).reshape(-1, 6)
        return out[np.argsort(-out[:, 4], kind="stable")]

    def close(self) -> None:
        self._hands.close()
