"""The ``hsiuu`` application: global options and the registry of subcommands.

Each subcommand lives in its own module and imports heavy libraries (torch, onnxruntime)
inside its function, so ``hsiuu --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import convert, evaluate, fuse, info, simulate, superres, train, unmix
from .common import ErrorReportingGroup, console, settings

app = typer.Typer(
    name="hsiuu",
    cls=ErrorReportingGroup,
    help="Sharpen, unmix and fuse hyperspectral image cubes (ENVI and GeoTIFF).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hsiuu {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No messages or progress bars on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More detail on stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    settings.quiet = quiet
    settings.verbose = verbose
    settings.debug = debug
    console.quiet = quiet


app.command("info")(info.info_command)
app.command("convert")(convert.convert_command)
app.command("simulate")(simulate.simulate_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("unmix")(unmix.unmix_command)
app.command("fuse")(fuse.fuse_command)
app.command("superres")(superres.superres_command)
app.add_typer(train.train_app, name="train")


def main() -> None:
    app()
