"""Every command's --help: a one-line summary, help on every option, examples in one form."""

from __future__ import annotations

import re

import click
import pytest

from lsl_session.cli import main

#: The one example format: a ``\\b`` block, ``Examples:``, one command per line
#: (a long one continued after ``\\`` on lines indented further).
EXAMPLES = re.compile(
    r"\x08\nExamples:\n(  [^\n]*lsl-session [^\n]+\n?(      [^\n]+\n?)*)+\Z"
)


def _commands():
    def walk(cmd, path, ctx):
        yield " ".join(path), cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                sub_ctx = click.Context(sub, parent=ctx, info_name=name)
                yield from walk(sub, [*path, name], sub_ctx)

    return list(
        walk(main, ["lsl-session"], click.Context(main, info_name="lsl-session"))
    )


COMMANDS = _commands()


def test_every_command_is_checked():
    names = {name for name, _ in COMMANDS}
    assert {
        "lsl-session record",
        "lsl-session streams",
        "lsl-session outlet shimmer",
    } <= (names)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_texts(name, command):
    summary = (command.help or "").strip().splitlines()
    assert summary, f"{name}: no summary"
    first = summary[0]
    assert first.endswith("."), f"{name}: summary {first!r} is not one sentence"
    assert "``" not in first and len(first) <= 90, f"{name}: summary {first!r}"
    assert len(summary) == 1 or summary[1] == "", f"{name}: summary is not one line"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{name}: option {param.opts[0]} has no help"
    assert command.epilog, f"{name}: no examples"
    assert EXAMPLES.match(command.epilog), f"{name}: examples {command.epilog!r}"
