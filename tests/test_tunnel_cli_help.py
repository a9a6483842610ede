"""``pq-tunnel --help``: every subcommand has a description and examples, every option has
help.

The help used to be thin (``--json`` and ``--ha-connections`` had none, ``run`` had no
description, ``create``'s said "(or ID for delete)"). The test walks what argparse formats,
through a formatter that records every argument it is given (argparse's public
``HelpFormatter.add_argument``), so an option added later without help fails here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

from pq_quic_plugin.tunnel.cli import build_parser

COMMANDS = ["edge", "create", "route", "list", "info", "delete", "run"]


class Recording(argparse.RawDescriptionHelpFormatter):
    """Remembers every argument it formats."""

    seen: list[argparse.Action] = []

    def add_argument(self, action: argparse.Action) -> None:
        Recording.seen.append(action)
        super().add_argument(action)


def _help(*argv: str) -> tuple[str, list[argparse.Action]]:
    Recording.seen = []
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser(formatter_class=Recording).parse_args([*argv, "--help"])
    return out.getvalue(), list(Recording.seen)


def test_the_top_level_help_lists_every_command_with_help() -> None:
    text, actions = _help()
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\w", text, re.M), (command, text)
    assert all(a.help for a in actions), [a.option_strings for a in actions if not a.help]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_has_help_and_the_command_examples(command: str) -> None:
    text, actions = _help(command)
    options = [a for a in actions if a.option_strings != ["-h", "--help"]]
    assert options, command
    missing = [a.option_strings or a.dest for a in options if not a.help or not a.help.strip()]
    assert missing == [], f"{command}: options without help: {missing}"
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 8, f"{command} has no real description: {description!r}"
    examples = text.split("examples:\n", 1)
    assert len(examples) == 2, f"{command}: no examples in --help"
    lines = [line.strip() for line in examples[1].splitlines() if line.strip()]
    assert lines and all(f"pq-tunnel {command}" in line for line in lines), lines


def test_run_help_names_each_variable_and_the_precedence() -> None:
    text, actions = _help("run")
    assert "a flag beats a variable, which beats the file" in " ".join(text.split())
    for action in actions:
        if action.option_strings and action.option_strings[0] not in ("-h", "--config"):
            assert "[env: TUNNEL_" in str(action.help), action.option_strings
