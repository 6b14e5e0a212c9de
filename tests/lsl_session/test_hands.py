"""Hand segmentation: skin mask, regions, frame → LSL time, the processor's CSVs."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from lsl_session.layout import SessionPaths
from lsl_session.processing.hands import (
    REGION_FIELDS,
    HandSegmentationProcessor,
    hand_regions,
    skin_mask,
)
from lsl_session.processing.model import ProcessingContext, SyncedStream
from lsl_session.processing.video import (
    find_videos,
    frame_stream_name,
    frame_times,
    video_prefix,
)
from outlets.webcam.synthetic import SyntheticVideo

FPS = 30.0
N_FRAMES = 150
T0 = 1000.0


def frame_stream(name: str, frames: np.ndarray, stamps: np.ndarray) -> SyncedStream:
    return SyncedStream(
        stream_id=1,
        name=name,
        type="VideoFrames",
        source_id=f"test/{name}",
        channel_format="double64",
        channel_count=1,
        nominal_srate=FPS,
        effective_srate=FPS,
        time_stamps=np.asarray(stamps, float),
        time_series=np.asarray(frames, float).reshape(-1, 1),
        channel_labels=["frame_index"],
        channel_units=["count"],
        channel_types=["FrameIndex"],
    )


def write_video(path, video: SyntheticVideo, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path),
        cv2.VideoWriter.fourcc(*"mp4v"),
        video.fps,
        (video.width, video.height),
    )
    for frame in video.frames(n):
        writer.write(frame)
    writer.release()


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def test_skin_mask_and_regions_on_raw_frame():
    video = SyntheticVideo(seed=1)
    frame = video.frame(10)
    regions = hand_regions(skin_mask(frame))
    assert regions.shape == (1, len(REGION_FIELDS))
    truth = video.ground_truth(10)
    assert iou(truth.bbox, regions[0, :4]) > 0.9
    assert regions[0, 4] == pytest.approx(truth.area, rel=0.1)
    assert 0 < regions[0, 5] <= 1


def test_regions_sorted_by_area_and_small_ones_dropped():
    mask = np.zeros((240, 320), np.uint8)
    mask[10:30, 10:30] = 255  # 400 px
    mask[100:160, 100:160] = 255  # 3600 px
    mask[200:203, 200:203] = 255  # 9 px: noise
    regions = hand_regions(mask)
    assert regions[:, 4].tolist() == [3600, 400]
    assert regions[0, :4].tolist() == [100, 100, 60, 60]
    assert regions[0, 5] == 1.0


def test_flash_frame_has_no_hand():
    video = SyntheticVideo(flash_times=[0.5])
    assert hand_regions(skin_mask(video.frame(15))).shape[0] == 0


def test_names_map_videos_to_frame_streams():
    assert video_prefix("webcam_1_20250731_143022.mp4") == "webcam_1"
    assert (
        frame_stream_name("a/phone_1_rgb_20250731_143022.mp4") == "phone_1_rgb_frames"
    )
    assert (
        frame_stream_name("phone_2_rgb_20250731_143022_2.mp4") == "phone_2_rgb_frames"
    )


def test_frames_before_and_after_the_recording_are_not_missing_inside():
    from lsl_session.processing.video import frame_coverage
    from lsl_session.report.build import frame_notes

    nan = np.nan
    lsl = np.array([nan, nan, 1.0, 1.1, nan, 1.3, nan, nan, nan])
    assert frame_coverage(lsl) == (2, 3, 1)
    assert frame_coverage(np.full(4, nan)) == (0, 0, 4)
    assert frame_coverage(np.arange(3.0)) == (0, 0, 0)

    def run_with(**video):
        return {"steps": {"hand_segmentation": {"report": {"result": {"videos": [
            {"video": "webcam/w.mp4", "n_frames": 726, **video}]}}}}}  # fmt: skip

    healthy = run_with(n_frames_without_time=124, n_frames_outside_recording=124,
                       n_frames_unstamped_inside=0)  # fmt: skip
    assert frame_notes(healthy) == []  # the camera ran while recording started/stopped
    lost = run_with(n_frames_without_time=130, n_frames_outside_recording=124,
                    n_frames_unstamped_inside=6)  # fmt: skip
    assert frame_notes(lost) == [
        "webcam/w.mp4: 6 of 726 frames inside the recording have no LSL time: their"
        " frame-index samples are missing"
    ]


def test_frame_times_missing_and_duplicate_samples():
    stream = frame_stream(
        "webcam_1_frames", [0, 1, 1, 3, 7, -1], [10.0, 10.1, 10.15, 10.3, 10.7, 11.0]
    )
    got = frame_times(stream, 5)
    np.testing.assert_array_equal(got[[0, 1, 3]], [10.0, 10.1, 10.3])
    assert np.isnan(got[[2, 4]]).all()
    assert np.isnan(frame_times(None, 3)).all()


@pytest.fixture
def session(session_root):
    root = session_root / "S_20250731_143022"
    (root / "processing" / "hand_segmentation").mkdir(parents=True)
    return SessionPaths(root)


def test_processor_writes_csv_with_lsl_time_and_iou(session):
    video = SyntheticVideo(fps=FPS, flash_every=1.0, seed=7)
    webcam = session.webcam / "webcam_1_20250731_143022.mp4"
    write_video(webcam, video, N_FRAMES)
    phone = (
        session.devices / "phone_1" / "rgb_videos" / "phone_1_rgb_20250731_143022.mp4"
    )
    write_video(phone, SyntheticVideo(fps=FPS, seed=8), 40)
    assert find_videos(session.root) == [webcam, phone]
    # Frame k stamped at capture time; frames 5 and 6 lost their samples.
    frames = np.array([k for k in range(N_FRAMES) if k not in (5, 6)])
    stamps = T0 + 0.25 + frames / FPS + 0.003 * np.sin(frames)
    ctx = ProcessingContext(
        paths=session,
        streams=[frame_stream("webcam_1_frames", frames, stamps)],
        output_dir=session.hand_segmentation,
        t0=T0,
        options={"mask_video": True},
    )
    report = HandSegmentationProcessor().run(ctx)

    assert report["backend"] == "opencv"
    by_video = {v["video"]: v for v in report["videos"]}
    web = by_video["webcam/webcam_1_20250731_143022.mp4"]
    assert web["n_frames"] == N_FRAMES
    assert web["n_frames_without_time"] == 2
    assert web["n_frames_unstamped_inside"] == 2  # 5 and 6: between recorded ones
    assert web["n_frames_outside_recording"] == 0
    assert web["n_flash_frames"] == len(video.flash_indices(N_FRAMES))
    assert (session.root / web["mask_video"]).stat().st_size > 0
    phone_report = by_video[
        "devices/phone_1/rgb_videos/phone_1_rgb_20250731_143022.mp4"
    ]
    assert phone_report["stream"] is None
    assert phone_report["n_frames_without_time"] == 40

    table = pd.read_csv(session.root / web["csv"])
    assert list(table.columns[:7]) == [
        "frame",
        "lsl_time",
        "time",
        "n_hands",
        "mask_fraction",
        "brightness",
        "flash",
    ]
    assert "hand1_coverage" in table.columns
    np.testing.assert_allclose(table["lsl_time"].to_numpy()[frames], stamps, atol=1e-6)
    assert table["lsl_time"].isna().sum() == 2
    np.testing.assert_allclose(table["time"], table["lsl_time"] - T0, atol=1e-6)
    flash = np.array([video.is_flash(k) for k in range(N_FRAMES)])
    np.testing.assert_array_equal(table["flash"].to_numpy().astype(bool), flash)

    ious = []
    for k, row in table.iterrows():
        truth = video.ground_truth(k)
        if truth.flash:  # no hand drawn: excluded from the IoU figure
            assert row["n_hands"] == 0
            continue
        box = (row["hand0_x"], row["hand0_y"], row["hand0_w"], row["hand0_h"])
        ious.append(iou(truth.bbox, box) if row["n_hands"] else 0.0)
    ious = np.array(ious)
    assert (ious >= 0.7).mean() >= 0.9, (ious.min(), np.median(ious))


def test_processor_without_videos_reports_nothing(session):
    ctx = ProcessingContext(
        paths=session, streams=[], output_dir=session.hand_segmentation, t0=0.0
    )
    assert HandSegmentationProcessor().run(ctx)["videos"] == []
