"""Options shared by several subcommands, declared once (as rasterio's ``rio`` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

OUTPUT_DTYPES = ("uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
"""The data types ``--dtype`` accepts: what ENVI and GeoTIFF both store."""

Inputs = Annotated[
    list[str],
    typer.Argument(
        metavar="CUBE...",
        help="Input cubes: files, shell globs, @list.txt (one path per line) or - (paths on stdin).",
        show_default=False,
    ),
]
Output = Annotated[
    Optional[Path],
    typer.Option("-o", "--output", help="Output path (one input only). Format from the extension unless --format."),
]
OutDir = Annotated[
    Optional[Path],
    typer.Option("--out-dir", help="Directory for outputs when processing several inputs (created if missing)."),
]
NameTemplate = Annotated[
    Optional[str],
    typer.Option(
        "--name",
        metavar="TEMPLATE",
        help="Output name template with --out-dir: {stem} (input name without extension) and {ext} "
        "(output extension), and in superres {scale}, e.g. '{stem}_x{scale}{ext}'.",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
Format = Annotated[
    Optional[str],
    typer.Option("-f", "--format", help="Output format: ENVI or GTiff (default: from the output extension)."),
]
CreationOptions = Annotated[
    Optional[list[str]],
    typer.Option("--co", metavar="KEY=VALUE", help="GeoTIFF creation option, e.g. COMPRESS=DEFLATE."),
]
Jobs = Annotated[int, typer.Option("-j", "--jobs", min=1, help="Inputs processed in parallel.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
def _device_choice(value: str) -> str:
    from ..device import DEVICES

    choice = value.strip().lower()
    if choice not in DEVICES:
        raise typer.BadParameter(f"'{value}' is not {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    return choice


Device = Annotated[
    str,
    typer.Option("--device", callback=_device_choice, help="auto, cpu or cuda (auto: cuda when available)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
Quicklook = Annotated[bool, typer.Option("--quicklook", help="Also write a PNG preview beside the output.")]

# The common options: before the command name (app.py) or after it (common.Command), one declaration.
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No messages or progress on stderr (errors still show).")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="More detail on stderr.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]

def _scheduler_value(value: Optional[str]) -> Optional[str]:
    if value is None or not value.strip():
        return None  # an empty HSIUU_SCHEDULER means: run here
    from ..cluster.session import parse_scheduler  # no Dask import: only the syntax is checked
    from ..errors import ParameterError

    try:
        parse_scheduler(value)
    except ParameterError as exc:
        raise typer.BadParameter(exc.message) from None
    return value.strip()


Scheduler = Annotated[
    Optional[str],
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        envvar="HSIUU_SCHEDULER",
        show_envvar=False,
        callback=_scheduler_value,
        help="Run on a Dask cluster: tcp://HOST:8786, a scheduler file, or local:N (N worker processes "
        "here); default $HSIUU_SCHEDULER. Needs hsiuu[dask] (docs/scale.md).",
    ),
]
