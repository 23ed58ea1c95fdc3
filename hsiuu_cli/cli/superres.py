"""`hsiuu superres SCENE... --scale s`: sharpen cubes with a shipped or trained model (or bicubic)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import click_errors, detail, expand_inputs, info, parse_creation_options, plan_outputs, progress, run_batch, warn
from .options import OUTPUT_DTYPES, CreationOptions, Device, Format, Inputs, Jobs, NameTemplate, OutDir, Output, Overwrite, Scheduler

DEFAULT_TEMPLATE = "{stem}_x{scale}{ext}"
FEW_BANDS = 10
"""Below this many bands a cube is multispectral, RGB or panchromatic, not hyperspectral: say so."""


def _default_extension(inputs: list[Path], format: str | None) -> str:
    from ..io import FORMAT_EXTENSIONS, GTIFF_SUFFIXES, format_name

    if format is not None:
        return FORMAT_EXTENSIONS.get(format_name(format), ".hdr")  # an unknown name fails when writing
    return ".tif" if all(p.suffix.lower() in GTIFF_SUFFIXES for p in inputs) else ".hdr"


def superres_command(
    inputs: Inputs,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Up-sampling factor: 2, 3, 4 or 8 with a model; any integer ≥ 2 with bicubic.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE", help="Shipped model name, or a model file (.onnx, its card .json, or the path without extension); default: the shipped model that fits the scene.")] = None,
    method: Annotated[str, typer.Option("--method", help="model, or bicubic (the baseline).")] = "model",
    tile: Annotated[Optional[int], typer.Option("--tile", min=8, show_default=False, help="Tile side in LR pixels (default 64); memory grows with it, not with the scene.")] = None,
    device: Device = "auto",
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate", help="Scale the model's detail by a gain (0–1) fitted on the scene degraded once more, so a model that does not suit the sensor falls back towards bicubic.")] = True,
    dtype: Annotated[Optional[str], typer.Option("--dtype", metavar="TYPE", help="Output data type (default: the input's; integer outputs are rounded and keep the scale factor).")] = None,
    output: Output = None,
    out_dir: OutDir = None,
    name: NameTemplate = None,
    format: Format = None,
    co: CreationOptions = None,
    overwrite: Overwrite = False,
    jobs: Jobs = 1,
    scheduler: Scheduler = None,
) -> None:
    """Super-resolve hyperspectral cubes by an integer factor (UnmixingSR, tiled, ONNX on CPU).

    Shipped models: aviris_x2 (145-228 good bands) and aviris_x4 (145-247) for AVIRIS-like VNIR-SWIR cubes,
    agnostic_x2 and agnostic_x4 for any other band count or sensor. Without --model, the first that
    fits the scene is used.

    Examples:
      Sharpen a scene 4 times with the shipped model that fits it:
        hsiuu superres scene.hdr --scale 4 -o scene_x4.hdr
      Every cube of a folder, two at a time, into sharp/ as GeoTIFF:
        hsiuu superres 'cubes/*.hdr' -s 2 --out-dir sharp/ -f GTiff -j 2
    """
    import numpy as np

    from ..errors import HsiuuError, ModelError, ParameterError
    from ..io import check_creation_options, check_not_input, check_output, input_files, read_cube, write_cube
    from ..superres import choose_model, load_model
    from ..superres.inference import DEFAULT_TILE, super_resolve_cube
    from ..superres.registry import check_scale

    if method not in ("model", "bicubic"):
        raise typer.BadParameter(f"'{method}' is not a method (use model or bicubic)", param_hint="--method")
    if method == "bicubic" and model is not None:
        raise click_errors.UsageError("--model goes with --method model (bicubic uses no model)")
    if method == "model":
        check_scale(scale)
    elif scale < 2:
        raise ParameterError(f"scale must be an integer of at least 2, got {scale}")
    out_dtype = None
    if dtype is not None:
        if dtype.lower() not in OUTPUT_DTYPES:
            raise typer.BadParameter(f"'{dtype}' is not one of {', '.join(OUTPUT_DTYPES)}", param_hint="--dtype")
        out_dtype = np.dtype(dtype.lower())
    creation_options = parse_creation_options(co)
    paths = expand_inputs(inputs)
    template = None if name is None else name.replace("{scale}", str(scale))
    targets = plan_outputs(
        paths,
        output=output,
        out_dir=out_dir,
        template=template,
        default_template=DEFAULT_TEMPLATE.replace("{scale}", str(scale)),
        default_ext=_default_extension(paths, format),
    )
    requested = load_model(model) if (model is not None and method == "model") else None

    def check(source: Path, target: Path) -> None:
        check_output(target, overwrite, format=format)
        check_not_input(input_files(source), target, format)

    def process(source: Path, target: Path, client=None) -> list[Path]:
        """One input; with ``client``, its blocks run on that Dask cluster."""
        cube = read_cube(source)
        check_creation_options(target, format, creation_options, dtype=out_dtype or cube.data.dtype, bands=cube.bands)
        if cube.bands < FEW_BANDS and method == "model":
            warn(f"{source.name} has {cube.bands} band{'s' if cube.bands != 1 else ''}: not a hyperspectral cube; "
                 "the models learnt from hyperspectral scenes (try --method bicubic to compare)")
        if out_dtype is not None and out_dtype.kind in "iu" and cube.data.dtype.kind == "f" and cube.scale_factor is None:
            # Reflectance in 0..1 would come out as 0s and 1s; radiance in large units may be fine.
            warn(f"{source.name}: float values without a scale factor are rounded to whole numbers in {out_dtype}")
        chosen = None
        if method == "model":
            try:
                chosen = choose_model(cube, scale, requested)
            except ModelError as exc:
                if exc.path is None:
                    raise ModelError(exc.message, source) from None
                raise
        side = DEFAULT_TILE if tile is None else tile
        tiles = -(-cube.rows // side) * -(-cube.cols // side)
        with progress(f"{source.name} ×{scale}", tiles) as advance:
            try:
                if client is not None:
                    from ..cluster.superres import super_resolve_blocks

                    counts = super_resolve_blocks(
                        client, cube, source, target, scale, chosen, method=method, tile=tile, device=device,
                        dtype=out_dtype, calibrate=calibrate, format=format, creation_options=creation_options,
                        overwrite=overwrite, progress=advance, scheduler=scheduler,
                    )
                    plan, written = counts.plan, target
                    detail(f"{source.name}: {counts.blocks} blocks of {tiles} tiles, {counts.block_seconds:.1f} s of worker "
                           f"time ({counts.block_seconds / max(1, tiles):.2f} s per tile), {counts.wall_seconds:.1f} s in all")
                else:
                    result, plan = super_resolve_cube(
                        cube, scale, chosen, method=method, tile=tile, device=device, dtype=out_dtype,
                        calibrate=calibrate, progress=advance,
                    )
                    counts = result.data
            except HsiuuError as exc:
                if exc.path is None:
                    raise type(exc)(exc.message, source) from None
                raise
            what = "bicubic" if chosen is None else f"{chosen.describe()} on {plan.backend}"
            gain = "" if chosen is None else f", detail gain {plan.gain:.2f} ({plan.gain_source})"
            info(f"{source.name}: ×{scale} with {what}, tiles of {plan.tile} + {plan.halo} LR px{gain}")
            if client is None:
                written = write_cube(result, target, format=format, overwrite=overwrite, creation_options=creation_options)
        if getattr(counts, "converted", 0) and counts.clipped / counts.converted >= 0.001:
            warn(f"{source.name}: {counts.clipped / counts.converted:.1%} of the values fell outside {counts.dtype}'s "
                 "range and were clipped; choose a wider --dtype")
        return [written]

    pairs = list(zip(paths, targets))
    if scheduler is not None and len(pairs) == 1 and _splits(paths[0]):
        # one scene: its blocks are the tasks (each worker reads its rows from the memory-mapped input)
        from ..cluster import connect
        from .cluster import workers_text

        with connect(scheduler) as client:
            info(f"{paths[0].name}: blocks on the Dask cluster at {scheduler} ({workers_text(client)})")
            run_batch(pairs, lambda source, target: process(source, target, client), out_dir=out_dir, check=check)
    else:
        run_batch(pairs, process, workers=jobs, out_dir=out_dir, check=check, scheduler=scheduler)


def _splits(path: Path) -> bool:
    """Whether a scene can be cut into blocks on a cluster: an ENVI input, which every worker maps
    and reads only its rows of (a GeoTIFF is read whole, so it runs as one task)."""
    from ..io import GTIFF_SUFFIXES

    return path.suffix.lower() not in GTIFF_SUFFIXES
