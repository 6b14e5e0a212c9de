"""SyntheticVideo: determinism, flash frames, ground-truth hand boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from outlets.webcam.synthetic import SKIN_BGR, TEXT_BAND, SyntheticVideo


def _skin_mask(frame: np.ndarray) -> np.ndarray:
    """The classic YCrCb skin threshold a hand segmenter would use."""
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
    return cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))


@pytest.mark.parametrize(("width", "height"), [(320, 240), (640, 480), (96, 80)])
def test_ground_truth_matches_skin_pixels(width, height):
    video = SyntheticVideo(width, height, fps=30, flash_every=1.0, seed=3)
    for i in range(150):
        frame = video.frame(i)
        truth = video.ground_truth(i)
        assert frame.shape == (height, width, 3)
        assert frame.dtype == np.uint8
        mask = _skin_mask(frame)
        if truth.flash:
            assert truth.bbox is None
            assert not mask.any()
            continue
        exact = np.all(frame == SKIN_BGR, axis=2)
        assert np.array_equal(mask > 0, exact), i
        assert cv2.boundingRect(mask) == truth.bbox, i
        assert int(np.count_nonzero(mask)) == truth.area
        y = truth.bbox[1]
        assert y >= TEXT_BAND or height < 120  # below the frame number
        assert truth.time == pytest.approx(i / 30)


def test_hand_moves():
    video = SyntheticVideo()
    boxes = {video.ground_truth(i).bbox for i in range(0, 90, 3)}
    assert len(boxes) > 20


def test_deterministic_and_seeded():
    a = SyntheticVideo(seed=7, flash_every=0.5)
    b = SyntheticVideo(seed=7, flash_every=0.5)
    c = SyntheticVideo(seed=8, flash_every=0.5)
    for i in (0, 1, 14, 15, 16, 99):
        assert np.array_equal(a.frame(i), b.frame(i))
        assert a.ground_truth(i) == b.ground_truth(i)
    assert not np.array_equal(a.frame(1), c.frame(1))
    assert [f.sum() for f in a.frames(3, start=5)] == [
        a.frame(i).sum() for i in (5, 6, 7)
    ]


def test_frame_number_is_drawn():
    video = SyntheticVideo(seed=1)
    band_1 = video.frame(1)[:TEXT_BAND].astype(int)
    band_2 = video.frame(2)[:TEXT_BAND].astype(int)
    white_1 = np.all(band_1 == 255, axis=2)
    white_2 = np.all(band_2 == 255, axis=2)
    assert white_1.any()
    assert not np.array_equal(white_1, white_2)


def test_flash_every():
    video = SyntheticVideo(fps=30, flash_every=1.0, flash_frames=2)
    assert video.flash_indices(100) == [30, 31, 60, 61, 90, 91]
    brightness = [float(video.frame(i).mean()) for i in range(100)]
    flashes = [i for i, b in enumerate(brightness) if b > 200]
    assert flashes == video.flash_indices(100)
    assert max(b for i, b in enumerate(brightness) if i not in flashes) < 150


def test_flash_times():
    video = SyntheticVideo(fps=25, flash_times=[0.0, 1.01, 2.5])
    assert video.flash_indices(80) == [0, 25, 62]
    assert video.ground_truth(25).flash
    assert not video.ground_truth(26).flash


def test_no_flash_by_default():
    video = SyntheticVideo()
    assert video.flash_indices(200) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 10}, "64x64"),
        ({"fps": 0}, "fps"),
        ({"flash_times": [1.0], "flash_every": 1.0}, "either"),
        ({"flash_every": -1.0}, "flash_every"),
        ({"flash_frames": 0}, "flash_frames"),
        ({"flash_times": [-1.0]}, "Flash times"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticVideo(**kwargs)


def test_negative_index():
    with pytest.raises(ValueError, match="index"):
        SyntheticVideo().frame(-1)
