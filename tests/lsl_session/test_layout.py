"""Session ids, sanitizing and the §2 tree."""

from __future__ import annotations

import gc
import os
import random
import signal
import time
from datetime import datetime

import pytest

from lsl_session import layout
from lsl_session.errors import InvalidNameError
from lsl_session.session import create_session_folder

WHEN = datetime(2025, 7, 31, 14, 30, 22)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("exp A/1", "exp_A_1"),
        ("experiment_A", "experiment_A"),
        ("../../etc", "etc"),
        ("a\0b", "a_b"),
        ("__x--", "x"),
        ("Müller épreuve", "M_ller_preuve"),
        ("a  b//c", "a_b_c"),
        ("a-_-b", "a-b"),
    ],
)
def test_sanitize_name(name, expected):
    assert layout.sanitize_name(name) == expected


@pytest.mark.parametrize("name", ["", "///", "..", "  ", "日本語", "\0\0", "__--__"])
def test_name_empty_after_sanitizing_is_clear_error(name):
    with pytest.raises(InvalidNameError, match="empty after sanitizing"):
        layout.sanitize_name(name)


def test_long_name_is_cut_to_64():
    cleaned = layout.sanitize_name("x" * 300)
    assert cleaned == "x" * 64
    assert not layout.sanitize_name("a" * 63 + "_" + "b" * 10).endswith("_")


def test_session_id_format():
    assert layout.session_id_for("exp A/1", WHEN) == "exp_A_1_20250731_143022"
    assert layout.session_id_for(None, WHEN) == "session_20250731_143022"
    assert layout.parse_session_id("exp_A_1_20250731_143022_2") == (
        "exp_A_1",
        "20250731_143022",
    )
    assert layout.parse_session_id("not-a-session") is None


def test_device_file_names_and_folders(tmp_path):
    assert (
        layout.device_file_name("phone_1", "rgb", WHEN, "mp4")
        == "phone_1_rgb_20250731_143022.mp4"
    )
    assert layout.webcam_file_name(1, WHEN) == "webcam_1_20250731_143022.mp4"
    paths = layout.SessionPaths(tmp_path / "s_20250731_143022")
    assert paths.device_folder("phone_1", "thermal").name == "thermal_videos"
    assert paths.device_folder("phone_1", "gsr").name == "sensor_data"
    assert paths.xdf(2).name == "s_20250731_143022_part002.xdf"
    for bad in ("../x", "a/b", "", "a\0b", "x" * 65, "phone_1\n", None):
        with pytest.raises(InvalidNameError):
            layout.validate_device_id(bad)
    with pytest.raises(InvalidNameError) as err:
        layout.validate_device_id("Q" * 100000)
    assert len(str(err.value)) < 200  # the id is not quoted in full
    with pytest.raises(InvalidNameError, match="unknown file type"):
        layout.folder_for_file_type("bogus")


def test_create_session_whole_tree(session_root):
    folder = create_session_folder(session_root, "exp A/1", WHEN)
    assert folder.name == "exp_A_1_20250731_143022"
    for sub in layout.SESSION_SUBDIRS:
        assert (folder / sub).is_dir(), sub
    assert (folder / "session_metadata.json").is_file()
    assert (folder / "exp_A_1_20250731_143022_log.json").read_text() == "[\n]\n"


def test_same_second_gets_suffix_and_never_reuses(session_root):
    first = create_session_folder(session_root, None, WHEN)
    second = create_session_folder(session_root, None, WHEN)
    third = create_session_folder(session_root, None, WHEN)
    assert first.name == "session_20250731_143022"
    assert second.name == "session_20250731_143022_2"
    assert third.name == "session_20250731_143022_3"
    assert (second / "session_20250731_143022_2_log.json").exists()


def test_non_ascii_and_hostile_names(session_root):
    for name in ("Müller", "../../x", "a/b", "x" * 300):
        folder = create_session_folder(session_root, name, WHEN)
        assert folder.parent == session_root
    with pytest.raises(InvalidNameError):
        create_session_folder(session_root, "日本", WHEN)
    assert not any(p.name.startswith(".") for p in session_root.iterdir())


def _child_creates_sessions(root) -> None:
    while True:
        create_session_folder(root, "crash", datetime.now())


def _kill_trials(session_root, trials: int) -> int:
    """Fork a child that creates sessions; SIGKILL it at a random moment."""
    rng = random.Random(1234)
    for _ in range(trials):
        # garbage of earlier tests (liblsl inlets) must not be finalised in the
        # forked child, where liblsl's threads do not exist: it would segfault
        gc.collect()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            gc.disable()
            try:
                _child_creates_sessions(session_root)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    complete = 0
    for folder in session_root.iterdir():
        if folder.name.startswith("."):
            continue  # a temporary build, never a session name
        for sub in layout.SESSION_SUBDIRS:
            assert (folder / sub).is_dir(), f"half tree: {folder}/{sub}"
        assert (folder / "session_metadata.json").is_file()
        assert (folder / f"{folder.name}_log.json").is_file()
        complete += 1
    return complete


def test_kill_during_creation_never_leaves_half_tree(session_root):
    assert _kill_trials(session_root, 50) > 0


@pytest.mark.slow
def test_kill_during_creation_many_trials(session_root):
    assert _kill_trials(session_root, 500) > 0
