"""``streams``: the LSL streams visible on the network (LabRecorder's stream list)."""

from __future__ import annotations

import json

import click

from lsl_session.cli._options import json_option

_COLUMNS = (
    ("name", "name"),
    ("type", "type"),
    ("source_id", "source_id"),
    ("hostname", "host"),
    ("channel_count", "channels"),
    ("nominal_srate", "rate"),
    ("channel_format", "format"),
)


def _cell(key: str, value: object) -> str:
    if key == "nominal_srate":
        return "irregular" if not value else f"{value:g}"
    return str(value) if value not in (None, "") else "-"


def format_table(records: list[dict]) -> str:
    """A plain-text table of stream records, one stream per line."""
    rows = [[title for _, title in _COLUMNS]]
    rows += [[_cell(key, r.get(key)) for key, _ in _COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@click.command(
    "streams",
    epilog="\b\nExamples:\n  lsl-session streams\n"
    "  lsl-session streams 'type=\"EEG\"' --wait 10 --json",
)
@click.argument("query", required=False)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds to wait for streams to answer (ends early once answers settle).",
)
@json_option
def streams_command(query: str | None, wait: float, as_json: bool) -> None:
    """List the LSL streams visible now, optionally only those matching QUERY.

    QUERY is an LSL predicate as `record --stream` takes it (name="EEG").
    Exits with code 2 when QUERY matches no stream, naming the closest ones.
    """
    from lsl_session.lsl import explain_unmatched, find_streams, stream_record

    infos = find_streams(query, wait)
    records = [stream_record(i) for i in infos]
    from lsl_session.recorder.sources import shared_source_ids

    for line in shared_source_ids(infos):  # same name from several hosts, …
        click.echo(f"note: {line}", err=True)
    if as_json:
        click.echo(json.dumps(records, indent=2))
    elif records:
        click.echo(format_table(records))
    if records:
        return
    if query is None:
        click.echo("no LSL stream visible", err=True)
        return
    click.echo(f"Error: {explain_unmatched(query, find_streams(None, 0.5))}", err=True)
    raise SystemExit(2)
