"""``archive``: copy finished sessions to shared storage (any fsspec URL)."""

from __future__ import annotations

from pathlib import Path

import click

from lsl_session.cli._options import root_option


@click.command(
    "archive",
    epilog="\b\nExamples:\n"
    "  lsl-session archive recordings/pilot_20250731_143022 /mnt/lab-share/study\n"
    "  lsl-session archive --root recordings s3://lab-bucket/study\n"
    "  lsl-session archive SESSION sftp://user@nas/data/study",
)
@click.argument("args", nargs=-1, required=True)
@root_option
@click.option(
    "--verify",
    type=click.Choice(["checksum", "readback"]),
    default=None,
    help="s3://: checksum (default; the server checks each part's SHA-256) or "
    "readback (also read every object back and hash it). Others: readback.",
)
@click.option(
    "--endpoint-url",
    default=None,
    envvar="AWS_ENDPOINT_URL",
    help="S3-compatible server (env AWS_ENDPOINT_URL).",
)
@click.option(
    "--part-mb",
    type=click.FloatRange(5, 512),
    default=8,
    show_default=True,
    help="s3://: multipart part size; a cut loses at most --concurrency parts.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 32),
    default=8,
    show_default=True,
    help="s3://: parts in flight at once.",
)
def archive_command(
    args: tuple[str, ...],
    root: Path,
    verify: str | None,
    endpoint_url: str | None,
    part_mb: float,
    concurrency: int,
) -> None:
    """Copy SESSION… (without SESSION: every session under --root) to URL.

    URL is any fsspec URL: a local path, s3://bucket/prefix, sftp://host/path.
    Each session goes to URL/<session_id>/. Resumable: run it again after a
    cut; files already there (same size and sha256) are not sent again. A
    session still recording is refused. The status and URL are written into
    each session's metadata (``archives``).
    """
    from lsl_session.catalog import session_folders
    from lsl_session.errors import LslSessionError
    from lsl_session.storage.archive import archive_session
    from lsl_session.storage.backends import public_url

    *sessions, url = args
    folders = [Path(s) for s in sessions] if sessions else session_folders(root)
    if not folders:
        raise click.ClickException(f"no sessions under {root}")
    failed = 0
    for folder in folders:
        click.echo(f"{folder.name} → {public_url(url)}", err=True)
        try:
            result = archive_session(
                folder, url, verify=verify, endpoint_url=endpoint_url,
                part_mb=part_mb, concurrency=concurrency, say=lambda line: click.echo(line, err=True),
            )  # fmt: skip
        except LslSessionError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed += 1
            continue
        rate = result.sent_bytes / max(result.seconds, 1e-9) / 1e6
        click.echo(
            f"{result.session_id}: {result.files} files, {result.total_bytes / 1e6:.1f}"
            f" MB; sent {result.sent_bytes / 1e6:.1f} MB ({rate:.1f} MB/s),"
            f" {result.skipped} already there",
            err=True,
        )
        click.echo(f"{result.url.rstrip('/')}/{result.session_id}")
    if failed:
        raise SystemExit(1)
