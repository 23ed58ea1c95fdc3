"""The ``hsiuu`` application: global options and the registry of subcommands.

Each subcommand lives in its own module and imports heavy libraries (torch, onnxruntime)
inside its function, so ``hsiuu --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import __version__
from . import convert, evaluate, fuse, info, simulate, superres, train, unmix
from .common import Command, ErrorReportingGroup, report_stop, set_common_options, stop_on_signals
from .options import Debug, Quiet, Verbose

app = typer.Typer(
    name="hsiuu",
    cls=ErrorReportingGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help (helptext.py) and plain usage errors, fit for logs
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hsiuu {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    quiet: Quiet = False,
    verbose: Verbose = False,
    debug: Debug = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Sharpen, unmix and fuse hyperspectral image cubes (ENVI and GeoTIFF).

    What a command produces (output paths, --json, info's description) goes to stdout;
    messages, warnings, errors and progress go to stderr.

    Examples:
      hsiuu info scene.hdr
      hsiuu superres scene.hdr --scale 4 -o scene_x4.hdr
    """
    set_common_options(quiet=quiet, verbose=verbose, debug=debug)


# Every command is a common.Command: -q/-v/--debug anywhere, the plain help of helptext.py.
app.command("info", cls=Command)(info.info_command)
app.command("convert", cls=Command)(convert.convert_command)
app.command("simulate", cls=Command)(simulate.simulate_command)
app.command("evaluate", cls=Command)(evaluate.evaluate_command)
app.command("unmix", cls=Command)(unmix.unmix_command)
app.command("fuse", cls=Command)(fuse.fuse_command)
app.command("superres", cls=Command)(superres.superres_command)
app.add_typer(train.train_app, name="train")


def main() -> None:
    stop_on_signals()
    try:
        app()
    except KeyboardInterrupt as exc:  # a stop outside a command (while Click parses, or before a handler)
        sys.exit(report_stop(exc))
