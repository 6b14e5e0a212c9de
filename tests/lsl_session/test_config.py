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


def test_demo_toml_is_the_demo_config():
    from lsl_session.lab import demo_config, demo_toml

    assert (CONFIGS / "demo.toml").read_text() == demo_toml()
    shipped = load_config(CONFIGS / "demo.toml", simulate=True)
    embedded = demo_config()
    assert shipped.devices == embedded.devices
    assert shipped.markers == embedded.markers
    assert all(d.simulate for d in shipped.devices)


def test_lab_fields_and_defaults():
    config = load_config(CONFIGS / "lab_session.toml")
    assert config.relay.port == 9000 and config.relay.host == "0.0.0.0"
    assert config.wait_s == 30.0 and config.upload_timeout_s == 60.0
    shimmer = config.devices_of("shimmer_gsr")[0]
    assert shimmer.options["port"] == "/dev/rfcomm0"
    webcam = config.devices_of("pc_webcam")[0]
    assert webcam.options["device"] == 0 and webcam.options["index"] == 1
    assert not any(d.simulate for d in config.devices)
    assert all(d.simulate for d in load_config(CONFIGS / "lab_session.toml",
                                               simulate=True).devices)  # fmt: skip


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
    "typo_field.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\ndevice=0\nrequird=true\n',
        "devices[0]: unknown field(s) 'requird'",
    ),
    "port_range.toml": ("[relay]\nport=70000\n", "relay.port"),
    "port_type.toml": ('[relay]\nport="9000"\n', "relay.port"),
    "heartbeat.toml": (
        "[relay]\nheartbeat_timeout_s=10\n",
        "relay.heartbeat_timeout_s",
    ),
    "tls_missing.toml": ('[relay]\ncertfile="nope.pem"\n', "relay.certfile"),
    "key_alone.toml": ('[relay]\nkeyfile="x.key"\n', "relay.keyfile"),
    "rate.toml": (
        '[[devices]]\nid="s"\ntype="shimmer_gsr"\nport="/dev/x"\nrate="fast"\n',
        "devices[0].rate",
    ),
    "no_port.toml": ('[[devices]]\nid="s"\ntype="shimmer_gsr"\n', "devices[0].port"),
    "no_source.toml": ('[[devices]]\nid="w"\ntype="pc_webcam"\n', "devices[0].device"),
    "both.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\ndevice=0\nfile="x.mp4"\n',
        "devices[0].file",
    ),
    "no_file.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\nfile="missing.mp4"\n',
        "devices[0].file",
    ),
    "required.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\ndevice=0\nrequired="yes"\n',
        "devices[0].required",
    ),
    "wait.toml": ("[record]\nwait_s=-1\n", "record.wait_s"),
    "nan.toml": ("[record]\nupload_timeout_s=nan\n", "record.upload_timeout_s"),
    "duration.toml": ("[record]\nduration_s=0\n", "record.duration_s"),
    "markers.toml": ("[markers]\nsync_every_s=0.01\n", "markers.sync_every_s"),
    "markers_table.toml": ('markers="x"\n', "markers must be a table"),
    "dup.toml": (
        '[[devices]]\nid="w"\ntype="pc_webcam"\ndevice=0\n'
        '[[devices]]\nid="w"\ntype="pc_webcam"\ndevice=1\n',
        "duplicate device id w",
    ),
    "phone_field.toml": (
        '[[devices]]\nid="p"\ntype="android_phone"\ntoken="t"\nport="/dev/x"\n',
        "devices[0]: unknown field(s) 'port'",
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
