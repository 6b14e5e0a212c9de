"""``replay``: republish a recording as LSL streams, to test a pipeline without devices."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    "replay",
    epilog="\b\nExamples:\n  lsl-session replay pilot.xdf\n"
    "  lsl-session replay pilot.xdf --speed 2 --loop --stream \"type='EEG'\"\n"
    "  lsl-session replay recordings/pilot_20250731_143022 --wait-for-consumers 10",
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--speed", type=float, default=1.0, show_default=True,
    help="Playback rate (2 = twice as fast; stamps compressed alike).",
)  # fmt: skip
@click.option("--loop", is_flag=True, help="Repeat until interrupted.")
@click.option(
    "--stream", "queries", multiple=True, metavar="QUERY",
    help="Replay only streams matching this LSL predicate (repeatable).",
)  # fmt: skip
@click.option(
    "--wait-for-consumers", type=float, default=0.0, show_default=True,
    metavar="SECONDS",
    help="Start once every stream has a consumer (a recorder), waiting at most this.",
)  # fmt: skip
def replay_command(
    path: Path, speed: float, loop: bool, queries: tuple[str, ...],
    wait_for_consumers: float,
) -> None:  # fmt: skip
    """Republish the XDF recording PATH (or a session folder) as LSL streams.

    Every stream gets an outlet with its recorded header (name, type, source_id,
    channels and their labels/units, desc), and the synced samples are pushed with
    their recorded timing on this host's clock. Ends after the last sample (or on
    Ctrl-C / SIGTERM); prints the samples sent per stream.
    """
    from lsl_session.replay import Player
    from lsl_session.signals import stop_on_signals

    player = Player(path, speed=speed, loop=loop, queries=list(queries) or None)
    for s in player.streams:
        click.echo(
            f"replaying {s.name} ({s.type}, {s.channel_count} ch @ {s.nominal_srate:g}"
            f" Hz, {len(s.time_stamps)} samples, source_id {s.source_id or '-'})",
            err=True,
        )
    # the stop is set from the wake-up thread, never from the handler (no lock there)
    try:
        with stop_on_signals(player.stop):
            if wait_for_consumers > 0 and not player.wait_for_consumers(
                wait_for_consumers
            ):
                click.echo(
                    "warning: not every stream has a consumer; starting", err=True
                )
            sent = player.run()
    finally:
        player.close()
    for name, n in sent.items():
        click.echo(f"{name}: {n} samples sent")


COMMANDS = [replay_command]
