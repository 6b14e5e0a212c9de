"""``phone-relay`` and ``phone-sim`` commands (SPEC §12)."""

from __future__ import annotations

import json
import logging
import ssl
from pathlib import Path

import click

from lsl_session.signals import stop_on_signals
from outlets.phone.relay import PhoneRelay
from outlets.phone.simulator import PhoneSimulator

logger = logging.getLogger(__name__)

RELAY_EPILOG = """\b
Examples:
  lsl-session outlet phone-relay --port 9000 --tokens tokens.json --session recordings/s1
  lsl-session outlet phone-relay --certfile relay.pem --keyfile relay.key --tokens t.json
"""
SIM_EPILOG = """\b
Examples:
  lsl-session outlet phone-sim --relay 127.0.0.1:9000 --device-id phone_1 --token s3cret
  lsl-session outlet phone-sim --relay 127.0.0.1:9000 --device-id phone_2 \\
      --clock-offset -3600 --drift-ppm 50 --jitter-ms 30 --duration 20
"""


def _wait(duration: float | None) -> None:
    """Block until ``duration`` seconds pass or SIGINT/SIGTERM arrives."""
    with stop_on_signals() as done:
        done.wait(duration)


def _load_tokens(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    if path.suffix.lower() == ".toml":  # a session config: its devices' tokens
        from lsl_session.config import load_config

        return load_config(path).tokens()
    try:
        tokens = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--tokens") from None
    if not isinstance(tokens, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()
    ):
        raise click.BadParameter(
            f"{path}: must be a JSON object {{device_id: token}}", param_hint="--tokens"
        )
    return tokens


@click.command("phone-relay", epilog=RELAY_EPILOG)
@click.option(
    "--host",
    default=None,
    help="Listen address [default: 0.0.0.0 with --tokens, else 127.0.0.1; "
    "a non-loopback address needs --tokens].",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    show_default=True,
    help="TCP port (0 = any free port).",
)
@click.option(
    "--tokens",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file {device_id: token}, or a session config (.toml) whose devices carry"
    " tokens; without it any device is accepted.",
)
@click.option(
    "--session",
    type=click.Path(file_okay=False, path_type=Path),
    help="Session folder for uploads and events (uploads refused without); phones"
    " get start_record/stop_record when a recorder starts/stops in it.",
)
@click.option(
    "--certfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TLS certificate chain (PEM); enables TLS.",
)
@click.option(
    "--keyfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TLS private key (PEM), if not inside --certfile.",
)
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(0.1, 3.0),
    default=2.5,
    show_default=True,
    help="Seconds of silence before a phone is dropped.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@click.option(
    "--web",
    is_flag=True,
    help="Also serve the phone page over HTTPS + WebSocket: any phone's browser"
    " becomes a phone (prints a pairing URL and QR code per device).",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=9443,
    show_default=True,
    help="HTTPS port of the phone page (0 = any free port).",
)
@click.option(
    "--web-plain",
    is_flag=True,
    help="Serve the page over plain HTTP (browsers allow sensors only on localhost).",
)
@click.option(
    "--rig",
    default=None,
    help="Rig identity put into every phone stream's source_id"
    " (lsl_session/<rig>/<device>/<stream>; docs/rigs.md).",
)
def phone_relay_command(
    host: str | None,
    port: int,
    tokens: Path | None,
    session: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    heartbeat_timeout: float,
    duration: float | None,
    web: bool,
    web_port: int,
    web_plain: bool,
    rig: str | None,
) -> None:
    """Accept phones over TCP and publish their streams to LSL (SPEC §10).

    The protocol is described in docs/phone-protocol.md. "listening: HOST:PORT"
    is written to stderr once the relay accepts connections. With --session,
    the relay follows that session: when a recorder in another process starts
    recording into it (`lsl-session record --session DIR`) every phone gets
    start_record with the session id, and stop_record when it stops.
    """
    ctx = None
    if certfile is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
    elif keyfile is not None:
        raise click.UsageError("--keyfile needs --certfile")
    if rig is not None:
        from lsl_session.errors import ConfigError
        from lsl_session.rig import validate_rig

        try:
            validate_rig(rig)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
    token_map = _load_tokens(tokens)
    if host is None:
        host = "127.0.0.1" if token_map is None else "0.0.0.0"
    try:
        relay = PhoneRelay(
            host,
            port,
            tokens=token_map,
            session=session,
            ssl_context=ctx,
            heartbeat_timeout=heartbeat_timeout,
            rig=rig,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with relay:
        click.echo(f"listening: {host}:{relay.port}{' (TLS)' if ctx else ''}", err=True)
        follower = None
        if session is not None:  # record commands follow the session's recorder
            from outlets.phone.follow import SessionFollower

            follower = SessionFollower(relay, session).start()
        front = None
        if web:
            front = _start_web(relay, host, web_port, certfile, keyfile, web_plain)
            from outlets.phone.web.pairing import pairing_lines

            for line in pairing_lines(front, token_map):
                click.echo(line, err=True)
        try:
            _wait(duration)
        finally:
            if front is not None:
                front.stop()
            if follower is not None:
                follower.stop()


def _start_web(
    relay: PhoneRelay,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    plain: bool,
):
    from outlets.phone.web import WebFront
    from outlets.phone.web.cert import page_context

    context = None if plain else page_context(certfile, keyfile)
    try:
        return WebFront(relay, host, port, ssl_context=context).start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve the phone page on {host}:{port}: {exc.strerror or exc}"
        ) from None


def _parse_relay(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--relay")
    return host.strip("[]"), int(port)


@click.command("phone-sim", epilog=SIM_EPILOG)
@click.option("--relay", "relay_addr", required=True, help="Relay address HOST:PORT.")
@click.option("--device-id", required=True, help="Device id sent in hello.")
@click.option("--token", default=None, help="Pairing token.")
@click.option(
    "--clock-offset",
    type=float,
    default=0.0,
    show_default=True,
    help="Phone clock offset from LSL time, seconds.",
)
@click.option(
    "--drift-ppm",
    type=float,
    default=0.0,
    show_default=True,
    help="Phone clock drift, ppm (+ = fast).",
)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Max simulated one-way delay; delays are uniform in [1, J] ms.",
)
@click.option(
    "--fifo",
    is_flag=True,
    help="Deliver in order both ways, as TCP does (a slow message delays the next).",
)
@click.option(
    "--stalls",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Wi-Fi stalls per second: the link delivers nothing for 20-80 ms.",
)
@click.option(
    "--clock-step",
    type=(float, float),
    default=None,
    metavar="AFTER_S STEP_S",
    help="Step the phone clock once by STEP_S seconds, AFTER_S seconds after start.",
)
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@click.option(
    "--cafile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA/certificate file to verify the relay.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
@click.option("--seed", type=int, default=None, help="Random seed of the jitter.")
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="STREAM=HZ",
    help="Sample STREAM at HZ (e.g. gsr=64), declared in hello (repeatable).",
)
@click.option(
    "--undeclared-rates",
    is_flag=True,
    help="Do not declare --rate in hello (an older app).",
)
def phone_sim_command(
    relay_addr: str,
    device_id: str,
    token: str | None,
    clock_offset: float,
    drift_ppm: float,
    jitter_ms: float,
    fifo: bool,
    stalls: float,
    clock_step: tuple[float, float] | None,
    tls: bool,
    cafile: Path | None,
    duration: float | None,
    seed: int | None,
    rates: tuple[str, ...],
    undeclared_rates: bool,
) -> None:
    """Simulate a phone: clock offset/drift, jitter, streams, sync pulses, uploads.

    The phone reconnects by itself after a broken connection and uploads small
    rgb and thermal mp4 files when the relay sends stop_record.
    """
    host, port = _parse_relay(relay_addr)
    jitter = (min(1.0, jitter_ms), jitter_ms)
    link = {"delay_ms": jitter, "fifo": fifo, "stall_rate": stalls}
    sim = PhoneSimulator(
        host,
        port,
        device_id,
        token,
        clock_offset=clock_offset,
        drift_ppm=drift_ppm,
        jitter_ms=jitter,
        up_link=link,
        down_link=link,
        clock_step=clock_step,
        tls=tls or bool(cafile),
        cafile=str(cafile) if cafile else None,
        auto_reconnect=True,
        seed=seed,
        rates=_parse_rates(rates),
        declare_rates=not undeclared_rates,
    )
    sim.start()
    click.echo(f"connected: {device_id} -> {host}:{port}", err=True)
    try:
        _wait(duration)
    finally:
        sim.stop()


def _parse_rates(items: tuple[str, ...]) -> dict[str, float]:
    """``("gsr=64", …)`` → ``{"gsr": 64.0}``; a clear error for anything else."""
    from outlets.phone.protocol import NUMERIC_STREAMS

    out: dict[str, float] = {}
    for item in items:
        stream, _, hz = item.partition("=")
        try:
            value = float(hz)
        except ValueError:
            value = -1.0
        if stream not in NUMERIC_STREAMS or not 0 < value <= 10_000:
            raise click.BadParameter(
                f"{item!r}: expected STREAM=HZ with STREAM one of"
                f" {', '.join(NUMERIC_STREAMS)} and 0 < HZ <= 10000",
                param_hint="--rate",
            )
        out[stream] = value
    return out
