"""Every help page reads at 80 columns without Python jargon, names every option whole, and shows examples."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer

from hsiuu_cli.cli.app import app
from hsiuu_cli.cli.common import Command, Group

JARGON = [
    r"<(bool|int|float|str|path|text|[a-z]+ range|list\[[^>]*\])>",  # Typer's type labels
    r"list\[",
    r"\[x\s*[<>]=",  # [x>=1]
    r"\b(INTEGER|FLOAT|BOOLEAN|TEXT|PATH)\b",
    r"\{[a-z_]+\}\.\.\.",  # {inputs}...
    "…",  # a name or text cut short
]


def command_paths() -> list[tuple[list[str], object]]:
    """Every command and group below the top level, with its words on the command line."""
    root = typer.main.get_command(app)
    found: list[tuple[list[str], object]] = []

    def walk(command, words: list[str]) -> None:
        found.append((words, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*words, name])

    walk(root, [])
    return found


PATHS = [words for words, _ in command_paths()]


def render(runner, words: list[str]) -> str:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("words", PATHS, ids=[" ".join(w) or "hsiuu" for w in PATHS])
def test_help_reads_at_80_columns_without_jargon(runner, words):
    page = render(runner, words)
    assert page.startswith(f"Usage: {' '.join(['hsiuu', *words])} [OPTIONS]")
    for line in page.splitlines():
        assert len(line) <= 80, line
    for pattern in JARGON:
        assert not re.search(pattern, page), (pattern, re.search(pattern, page))
    command = dict((tuple(w), c) for w, c in command_paths())[tuple(words)]
    for param in command.params:
        for name in (*param.opts, *param.secondary_opts):
            if name.startswith("-"):
                assert re.search(rf"(^|[\s,]){re.escape(name)}([\s,]|$)", page, re.M), f"{name} missing or cut"
    for name in ("--quiet", "--verbose", "--debug", "--help"):
        assert name in page  # the common options are listed on every page


@pytest.mark.parametrize("words", [w for w, c in command_paths() if w and not hasattr(c, "commands")],
                         ids=lambda w: " ".join(w))
def test_every_command_shows_examples_that_name_it(runner, words):
    page = render(runner, words)
    examples = page.split("\nExamples:\n", 1)
    assert len(examples) == 2, "no Examples section"
    assert f"hsiuu {' '.join(words)} " in examples[1]


def test_every_command_uses_the_shared_command_classes():
    """New commands get the conventions (plain help, -q/-v/--debug anywhere) only through these classes."""
    for words, command in command_paths():
        if words:
            assert isinstance(command, (Command, Group)), f"hsiuu {' '.join(words)} is a {type(command).__name__}"


class Colour(str, Enum):
    red = "red"
    blue = "blue"


def test_new_options_get_plain_value_names(runner):
    """The convention is central: an option added anywhere reads right without a metavar of its own."""
    demo = typer.Typer(rich_markup_mode=None)

    @demo.command(cls=Command)
    def run(
        source: Annotated[Path, typer.Argument(help="A cube.")],
        count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many.")] = 3,
        share: Annotated[float, typer.Option("--share", min=0.0, max=1.0, help="A share.")] = 0.5,
        table: Annotated[Optional[Path], typer.Option("--table", help="A CSV.")] = None,
        work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Scratch space.")] = None,
        tags: Annotated[Optional[list[str]], typer.Option("--tag", help="A tag.")] = None,
        colour: Annotated[Colour, typer.Option("--colour", help="A colour.")] = Colour.red,
        scheduler: Annotated[str, typer.Option("--scheduler", help="How jobs run.")] = "local",
        fast: Annotated[bool, typer.Option("--fast/--careful", help="Speed.")] = False,
        dry: Annotated[bool, typer.Option("--dry-run", help="Only say what would run.")] = False,
    ) -> None:
        """Do something.

        Examples:
          demo in.hdr -n 2
        """

    @demo.command(cls=Command)
    def other() -> None:
        """Another."""

    result = runner.invoke(demo, ["run", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    page = " ".join(result.stdout.split())
    for text in (
        "Usage: root run [OPTIONS] SOURCE",
        "-n, --count N How many. [default: 3; at least 1]",
        "--share X A share. [default: 0.5; 0 to 1]",
        "--table FILE",
        "--work-dir DIR",
        "--tag TAG A tag. [repeatable]",
        "--colour red|blue A colour. [default: red]",
        "--scheduler SCHEDULER How jobs run. [default: local]",
        "--fast / --careful Speed. [default: --careful]",
        "--dry-run Only say what would run.",
        "Examples: demo in.hdr -n 2",
    ):
        assert text in page, text
    assert "Only say what would run. [" not in page  # a plain flag has no default to show


def test_usage_errors_show_the_plain_usage_line(runner):
    result = runner.invoke(app, ["superres", "x.hdr"])
    assert result.exit_code == 2
    assert "Usage: hsiuu superres [OPTIONS] CUBE..." in result.stderr
    assert "Missing option '--scale'" in result.stderr
