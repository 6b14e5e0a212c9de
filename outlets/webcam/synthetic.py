"""Synthetic video: a moving hand-like blob, frame numbers and white sync flashes."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: BGR colour of the hand. In YCrCb it is (173, 161, 98): inside the usual skin
#: range (Cr 133-173, Cb 77-127).
SKIN_BGR: tuple[int, int, int] = (120, 160, 220)
#: BGR colour of the background (Cr ~104, Cb ~160: far from skin, even with noise).
BACKGROUND_BGR: tuple[int, int, int] = (140, 90, 50)
#: Peak amplitude of the per-pixel background noise.
NOISE_AMPLITUDE = 8
#: Height of the band at the top that holds the frame number; the hand stays below.
TEXT_BAND = 24


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a synthetic frame shows.

    Attributes
    ----------
    frame_index : int
        Index of the frame (0-based).
    time : float
        Frame time in seconds since the first frame (``frame_index / fps``).
    bbox : tuple[int, int, int, int] | None
        Hand bounding box ``(x, y, w, h)`` in pixels (inclusive of every hand pixel);
        None on flash frames, where the hand is not drawn.
    area : int
        Number of hand pixels.
    flash : bool
        Whether the frame is a white sync flash.
    """

    frame_index: int
    time: float
    bbox: tuple[int, int, int, int] | None
    area: int
    flash: bool


class SyntheticVideo:
    """Deterministic BGR frames with known hand position and sync flashes.

    Frame ``i`` shows a uniform bluish, slightly noisy background, the frame number
    in white at the top left, and a skin-coloured hand (ellipse palm, four finger
    ellipses and a thumb) moving on a Lissajous path. Flash frames are entirely
    white except the frame number in black. Every frame is a pure function of the
    constructor arguments and ``i``.

    Parameters
    ----------
    width, height : int
        Frame size in pixels (at least 64 x 64).
    fps : float
        Frame rate; frame ``i`` is at ``i / fps`` seconds.
    flash_times : Sequence[float] | None
        Times (s) of the flashes; each starts at frame ``round(t * fps)``.
    flash_every : float | None
        Period (s) of the flashes instead of ``flash_times``, rounded to a whole
        number of frames; the first flash is one period after frame 0.
    flash_frames : int
        Number of consecutive white frames per flash.
    seed : int
        Seed for the path phases and the background noise.

    Raises
    ------
    ValueError
        If a size, rate or flash argument is invalid, or both flash options are set.
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 30.0,
        *,
        flash_times: Sequence[float] | None = None,
        flash_every: float | None = None,
        flash_frames: int = 1,
        seed: int = 0,
    ) -> None:
        if width < 64 or height < 64:
            raise ValueError(
                f"Frame size must be at least 64x64, {width}x{height} is invalid."
            )
        if not fps > 0:
            raise ValueError(
                f"The argument 'fps' must be positive, {fps!r} is invalid."
            )
        if flash_times is not None and flash_every is not None:
            raise ValueError("Pass either 'flash_times' or 'flash_every', not both.")
        if flash_every is not None and not flash_every > 0:
            raise ValueError(
                "The argument 'flash_every' must be positive, "
                f"{flash_every!r} is invalid."
            )
        if flash_frames < 1:
            raise ValueError(
                "The argument 'flash_frames' must be >= 1, "
                f"{flash_frames!r} is invalid."
            )
        if flash_times is not None and any(t < 0 for t in flash_times):
            raise ValueError(
                f"Flash times must be >= 0, {list(flash_times)!r} is invalid."
            )
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.flash_frames = int(flash_frames)
        self.seed = int(seed)
        self._flash_starts = (
            None
            if flash_times is None
            else sorted({round(t * self.fps) for t in flash_times})
        )
        self._flash_period = (
            None if flash_every is None else max(1, round(flash_every * self.fps))
        )
        rng = np.random.default_rng(self.seed)
        self._phase = rng.uniform(0.0, 2.0 * math.pi, size=3)
        scale = min(self.width, self.height) / 240.0
        self._palm = (max(6, round(22 * scale)), max(8, round(27 * scale)))
        self._finger = (max(2, round(5 * scale)), max(5, round(17 * scale)))
        self._reach = self._palm[1] + 2 * self._finger[1]  # max extent from centre
        self._background = np.empty((self.height, self.width, 3), np.uint8)
        self._background[:] = BACKGROUND_BGR

    def __iter__(self) -> Iterator[np.ndarray]:
        i = 0
        while True:
            yield self.frame(i)
            i += 1

    def flash_indices(self, n_frames: int) -> list[int]:
        """Return the flash frame indices among the first ``n_frames`` frames.

        Parameters
        ----------
        n_frames : int
            Number of frames to consider.

        Returns
        -------
        list of int
            Sorted indices ``< n_frames`` of white frames.
        """
        return [i for i in range(n_frames) if self.is_flash(i)]

    def frame(self, index: int) -> np.ndarray:
        """Render frame ``index``.

        Parameters
        ----------
        index : int
            Frame index (>= 0).

        Returns
        -------
        numpy.ndarray
            ``(height, width, 3)`` uint8 BGR image.
        """
        index = self._check_index(index)
        if self.is_flash(index):
            img = np.full((self.height, self.width, 3), 255, np.uint8)
            self._draw_number(img, index, (0, 0, 0))
            return img
        rng = np.random.default_rng((self.seed, index))
        noise = rng.integers(
            -NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=(self.height, self.width, 1)
        )
        img = (self._background.astype(np.int16) + noise).astype(np.uint8)
        self._draw_number(img, index, (255, 255, 255))
        img[self._hand_mask(index) > 0] = SKIN_BGR
        return img

    def frames(self, n_frames: int, start: int = 0) -> Iterator[np.ndarray]:
        """Yield ``n_frames`` frames from ``start``.

        Parameters
        ----------
        n_frames : int
            Number of frames.
        start : int
            First frame index.

        Yields
        ------
        numpy.ndarray
            BGR frames.
        """
        for i in range(start, start + n_frames):
            yield self.frame(i)

    def ground_truth(self, index: int) -> GroundTruth:
        """Return what frame ``index`` shows.

        Parameters
        ----------
        index : int
            Frame index (>= 0).

        Returns
        -------
        GroundTruth
            Hand bbox and area (exactly the skin-coloured pixels), flash flag.
        """
        index = self._check_index(index)
        if self.is_flash(index):
            return GroundTruth(index, index / self.fps, None, 0, True)
        mask = self._hand_mask(index)
        x, y, w, h = cv2.boundingRect(mask)
        return GroundTruth(
            index, index / self.fps, (x, y, w, h), int(np.count_nonzero(mask)), False
        )

    def is_flash(self, index: int) -> bool:
        """Return whether frame ``index`` is a white sync-flash frame.

        Parameters
        ----------
        index : int
            Frame index.

        Returns
        -------
        bool
            True for flash frames.
        """
        if self._flash_period is not None:
            return (
                index >= self._flash_period
                and index % self._flash_period < self.flash_frames
            )
        if self._flash_starts is not None:
            return any(s <= index < s + self.flash_frames for s in self._flash_starts)
        return False

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            raise ValueError(f"Frame index must be >= 0, {index} is invalid.")
        return index

    def _draw_number(
        self, img: np.ndarray, index: int, color: tuple[int, int, int]
    ) -> None:
        cv2.putText(
            img,
            str(index),
            (4, TEXT_BAND - 6),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            color,
            1,
            cv2.LINE_8,
        )

    def _hand_mask(self, index: int) -> np.ndarray:
        """Draw the hand of frame ``index`` into a uint8 mask (255 = hand)."""
        t = index / self.fps
        ph = self._phase
        margin = self._reach + 2
        x_lo, x_hi = margin, self.width - 1 - margin
        y_lo, y_hi = TEXT_BAND + margin, self.height - 1 - margin
        # Centres stay inside [lo, hi] when the frame is big enough; otherwise the
        # hand is clipped by the frame (the bbox is computed from the pixels anyway).
        cx = (x_lo + x_hi) / 2 + max(0.0, (x_hi - x_lo) / 2) * math.sin(
            0.5 * 2 * math.pi * t + ph[0]
        )
        cy = (y_lo + y_hi) / 2 + max(0.0, (y_hi - y_lo) / 2) * math.sin(
            0.31 * 2 * math.pi * t + ph[1]
        )
        tilt = 25.0 * math.sin(0.2 * 2 * math.pi * t + ph[2])  # degrees
        spread = 13.0 + 5.0 * math.sin(0.7 * 2 * math.pi * t)  # finger fan, degrees
        mask = np.zeros((self.height, self.width), np.uint8)
        centre = (round(cx), round(cy))
        cv2.ellipse(mask, centre, self._palm, tilt, 0, 360, 255, -1, cv2.LINE_8)
        fw, fl = self._finger
        base = self._palm[1] + 0.6 * fl  # distance palm centre -> finger centre
        for j, length in enumerate((0.9, 1.0, 0.95, 0.8)):
            ang = math.radians(tilt + (j - 1.5) * spread)
            d = base * (0.9 + 0.1 * length)
            fx = cx + d * math.sin(ang)
            fy = cy - d * math.cos(ang)
            axes = (fw, max(2, round(fl * length)))
            cv2.ellipse(
                mask,
                (round(fx), round(fy)),
                axes,
                math.degrees(ang),
                0,
                360,
                255,
                -1,
                cv2.LINE_8,
            )
        thumb_ang = math.radians(tilt - 70.0)
        tx = cx + self._palm[0] * 1.1 * math.sin(thumb_ang)
        ty = cy - self._palm[0] * 1.1 * math.cos(thumb_ang) + self._palm[1] * 0.3
        cv2.ellipse(
            mask,
            (round(tx), round(ty)),
            (fw + 1, round(fl * 0.8)),
            math.degrees(thumb_ang) + 20.0,
            0,
            360,
            255,
            -1,
            cv2.LINE_8,
        )
        return mask
