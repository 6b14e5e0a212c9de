"""Session configs: the examples load, bad ones give one-line errors naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsl_session.config import load_config
from lsl_session.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["lab_session.toml", "eeg_only.json"])
def test_example_configs_are_valid(name):
    config = load_config(CONFIGS / name)
    assert config.streams


def test_tokens_and_devices():
    config = load_config(CONFIGS / "lab_session.toml")
    assert config.tokens() == {
        "phone_1": "change-me-phone-1",
        "phone_2": "change-me-phone-2",
    }
    assert config.root == CONFIGS / "../recordings"
    assert {d.device_type for d in config.devices} == {
        "android_phone",
        "shimmer_gsr",
        "pc_webcam",
    }


BAD = {
    "unknown_type.toml": ('[[devices]]\nid="x"\ntype="toaster"\n', "devices[0].type"),
    "missing_token.toml": (
        '[[devices]]\nid="p"\ntype="android_phone"\n',
        "devices[0].token",
    ),
    "bad_query.toml": ("[record]\nstreams=[\"name='x' and (\"]\n", "record.streams[0]"),
    "syntax.toml": ("[session\nname=1", "not valid"),
    "bad_id.toml": ('[[devices]]\nid="../x"\ntype="pc_webcam"\n', "devices[0].id"),
    "unknown_field.toml": ("[sesion]\nname='x'\n", "unknown field"),
    "bad.json": ('{"record": {"streams": "type=1"}}', "record.streams"),
    "caps.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\ncapabilities=["x"]\n',
        "capabilities",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_invalid_configs_name_file_and_field(tmp_path, name):
    text, field = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_record_cli_reports_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[devices]]\nid="x"\ntype="toaster"\n')
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsl_session",
            "record",
            "--root",
            str(tmp_path / "r"),
            "--config",
            str(path),
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert (
        len(errors) == 1 and str(path) in errors[0] and "devices[0].type" in errors[0]
    )
