"""The phone-relay and phone-sim commands."""

from __future__ import annotations

import json
import threading

from click.testing import CliRunner
from lsl_helpers import wait_until

from outlets.phone import PhoneRelay
from outlets.phone.cli import phone_relay_command, phone_sim_command


def test_help_has_examples():
    runner = CliRunner()
    for cmd in (phone_relay_command, phone_sim_command):
        result = runner.invoke(cmd, ["--help"])
        assert result.exit_code == 0
        assert "Examples:" in result.output


def test_relay_runs_for_duration_with_tokens(tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"phone_1": "abc"}))
    result = CliRunner().invoke(
        phone_relay_command,
        [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tokens",
            str(tokens),
            "--duration",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "listening: 127.0.0.1:" in result.output


def test_relay_rejects_bad_token_file(tmp_path):
    bad = tmp_path / "tokens.json"
    bad.write_text("[1, 2]")
    result = CliRunner().invoke(
        phone_relay_command, ["--tokens", str(bad), "--port", "0"]
    )
    assert result.exit_code != 0
    assert "device_id" in result.output


def test_sim_connects_and_streams(uid):
    dev = f"phone_cli_{uid}"
    with PhoneRelay(tokens={dev: "t"}) as relay:
        result = {}

        def run() -> None:
            result["r"] = CliRunner().invoke(
                phone_sim_command,
                [
                    "--relay",
                    f"127.0.0.1:{relay.port}",
                    "--device-id",
                    dev,
                    "--token",
                    "t",
                    "--clock-offset",
                    "-3600",
                    "--drift-ppm",
                    "50",
                    "--jitter-ms",
                    "5",
                    "--duration",
                    "1.5",
                ],
            )

        t = threading.Thread(target=run)
        t.start()
        t.join(20)
        assert result["r"].exit_code == 0, result["r"].output
        # held until the clock fit is ready (~3 s), then pushed, even at close
        assert wait_until(
            lambda: relay.status()[dev]["samples"].get("gsr", 0) > 50, timeout=5
        )


def test_sim_queued_link_and_clock_step(uid):
    dev = f"phone_cli_q_{uid}"
    with PhoneRelay(tokens={dev: "t"}) as relay:
        result = {}

        def run() -> None:
            result["r"] = CliRunner().invoke(
                phone_sim_command,
                ["--relay", f"127.0.0.1:{relay.port}", "--device-id", dev,
                 "--token", "t", "--fifo", "--stalls", "0.5",
                 "--clock-step", "4.5", "0.05", "--duration", "7"],
            )  # fmt: skip

        t = threading.Thread(target=run)
        t.start()
        t.join(30)
        assert result["r"].exit_code == 0, result["r"].output
        assert relay.status()[dev]["samples"]["gsr"] > 100
        steps = [e for e in relay.history if e["event"] == "clock_step"]
        assert [e["device_id"] for e in steps] == [dev]


def test_sim_bad_relay_address():
    result = CliRunner().invoke(
        phone_sim_command, ["--relay", "nohost", "--device-id", "x"]
    )
    assert result.exit_code != 0
    assert "HOST:PORT" in result.output


def test_tokens_from_session_config():
    from pathlib import Path

    from outlets.phone.cli import _load_tokens

    config = Path(__file__).resolve().parents[2] / "configs" / "lab_session.toml"
    assert _load_tokens(config) == {
        "phone_1": "change-me-phone-1",
        "phone_2": "change-me-phone-2",
    }


def test_relay_rig_goes_into_every_source_id(uid):
    dev = f"phone_rig_{uid}"
    rig = f"room-{uid}"
    with PhoneRelay(tokens={dev: "t"}, rig=rig) as relay:
        result = CliRunner().invoke(
            phone_sim_command,
            ["--relay", f"127.0.0.1:{relay.port}", "--device-id", dev,
             "--token", "t", "--duration", "1.0"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        ids = relay.source_ids(dev)
    assert ids and all(s.startswith(f"lsl_session/{rig}/{dev}/") for s in ids.values())


def test_relay_refuses_an_invalid_rig():
    result = CliRunner().invoke(phone_relay_command, ["--rig", "a b", "--port", "0"])
    assert result.exit_code == 2
    assert "invalid rig 'a b'" in result.output
