"""``markers`` command: push one LSL marker per stdin line."""

from __future__ import annotations

import logging

import click
import pylsl

from outlets.markers.outlet import DEFAULT_NAME, MarkerOutlet

logger = logging.getLogger(__name__)

EPILOG = """\b
Examples:
  my_stimulus_program | lsl-session outlet markers
  lsl-session outlet markers --name Trials --wait-consumer 10 < events.txt
"""


@click.command("markers", epilog=EPILOG)
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Stream name.")
@click.option(
    "--source-id",
    default=None,
    help="Stream source id [default: lsl_session/markers/<name>].",
)
@click.option(
    "--wait-consumer",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for an inlet (e.g. the recorder) before reading stdin.",
)
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds to keep the stream open at EOF so inlets receive the last markers.",
)
def markers(
    name: str, source_id: str | None, wait_consumer: float, linger: float
) -> None:
    """Publish one marker per line read from stdin.

    Every line is one marker, stamped with the LSL clock when it is read; only the
    line terminator (\\n or \\r\\n) is removed, so an empty line is pushed as an
    empty marker and N lines always give N markers. When the outlet exists,
    "ready: ..." is written to stderr. At EOF the stream stays open --linger
    seconds if an inlet is connected (liblsl cannot confirm delivery), then closes.
    """
    try:
        outlet = MarkerOutlet(name, source_id=source_id)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    with outlet:
        click.echo(f"ready: {outlet.name} (source_id {outlet.source_id})", err=True)
        if wait_consumer > 0 and not outlet.wait_for_consumers(wait_consumer):
            click.echo(f"no consumer after {wait_consumer:g} s, continuing", err=True)
        stdin = click.get_text_stream("stdin")
        while True:
            line = stdin.readline()
            if not line:
                break
            stamp = pylsl.local_clock()
            outlet.push(line.removesuffix("\n").removesuffix("\r"), stamp)
        outlet.linger(linger)
        click.echo(f"pushed {outlet.count} markers", err=True)


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    markers()
