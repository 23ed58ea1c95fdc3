"""`hsiuu simulate HR_CUBE`: build test cases the way papers do, with the one degradation model.

Writes ``<prefix>_lr.<ext>`` (PSF blur + decimation, or antialiased bicubic, on the coarsened
grid) and, with ``--srf``, ``<prefix>_msi.<ext>`` (the SRF applied on the high-resolution grid).
When the cube's size is not a multiple of the ratio, the high-resolution grid is cut to whole
blocks and that cut reference is written too, as ``<prefix>_hr.<ext>``, so all outputs line up.
"""

from __future__ import annotations

import functools
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cluster import splits_into_blocks
from .options import CreationOptions, Format, Inputs, Jobs, NameTemplate, OutDir, Overwrite, Scheduler, Seed



class Psf(str, Enum):
    gaussian = "gaussian"
    bicubic = "bicubic"


def simulate_command(
    inputs: Inputs,
    ratio: Annotated[
        Optional[int],
        typer.Option("--ratio", "-r", min=1, help="Integer down-sampling ratio for the low-resolution cube."),
    ] = None,
    psf: Annotated[Psf, typer.Option("--psf", help="Spatial degradation: Gaussian PSF + decimation, or antialiased bicubic.")] = Psf.gaussian,
    sigma: Annotated[
        Optional[float],
        typer.Option("--sigma", min=0.0, help="Gaussian PSF sigma in high-res pixels.", show_default="ratio / 2"),
    ] = None,
    kernel_size: Annotated[
        Optional[int],
        typer.Option("--kernel-size", min=1, help="Odd PSF kernel size in pixels; alone it sets sigma = (size - 1) / 6."),
    ] = None,
    offset: Annotated[
        Optional[int],
        typer.Option(
            "--offset", min=0, help="Pixel kept in each ratio×ratio block.", show_default="(ratio - 1) // 2, the centre"
        ),
    ] = None,
    shift: Annotated[
        Optional[str],
        typer.Option(
            "--shift",
            metavar="ROWS,COLS",
            help="Misregister the pair: the low-res cube's pixels are centred this many high-res pixels down, right "
            "of their nominal place (fractions allowed; the MSI stays on the reference's grid).",
        ),
    ] = None,
    srf: Annotated[
        Optional[str],
        typer.Option(
            "--srf",
            metavar="NAME|FILE",
            help="Also write a multispectral image on the high-res grid: built-in SRF name (sentinel2a, landsat8, "
            "pleiades1a, ikonos, nikon_d700; 'name:band,...' picks bands) or a CSV wavelength_nm,<band>,...",
        ),
    ] = None,
    snr: Annotated[
        Optional[float], typer.Option("--snr", help="Add Gaussian noise at this SNR in dB (per band) to every output.")
    ] = None,
    msi_snr: Annotated[
        Optional[float], typer.Option("--msi-snr", help="SNR in dB for the multispectral image.", show_default="--snr")
    ] = None,
    seed: Seed = 0,
    output: Annotated[
        Optional[str],  # not Path: Path("cases/") drops the slash that marks a directory
        typer.Option(
            "-o",
            "--output",
            metavar="PREFIX|DIR",
            help="Output prefix (outputs are <prefix>_lr.<ext>, <prefix>_msi.<ext>) or an existing directory "
            "(or a path ending in /) for <dir>/<input stem>_lr.<ext>. A cube extension on the prefix sets the format.",
        ),
    ] = None,
    out_dir: OutDir = None,
    name: NameTemplate = None,
    format: Format = None,
    co: CreationOptions = None,
    overwrite: Overwrite = False,
    jobs: Jobs = 1,
    scheduler: Scheduler = None,
) -> None:
    """Degrade a high-resolution cube into a low-resolution cube (correct georeference, wavelengths
    kept) and, with --srf, a multispectral/RGB/pan image on the high-resolution grid.

    Prints each written path on stdout. Default format: the input's (ENVI or GeoTIFF).

    Examples:
      A test case for fusion: case/truth_lr.hdr (4 times coarser) and
      case/truth_msi.hdr (Sentinel-2 bands):
        hsiuu simulate truth.hdr --ratio 4 --srf sentinel2a -o case/
      A noisy low-resolution cube for super-resolution, as GeoTIFF:
        hsiuu simulate truth.hdr -r 2 --snr 35 -o noisy.tif
    """
    from .common import expand_inputs, parse_creation_options, plan_outputs, run_batch

    if ratio is None and srf is None:
        raise typer.BadParameter("give --ratio (low-resolution cube) and/or --srf (multispectral image)")
    if psf is Psf.bicubic and (sigma is not None or kernel_size is not None or offset is not None):
        raise typer.BadParameter("--sigma, --kernel-size and --offset apply to --psf gaussian only", param_hint="--psf")
    if ratio is None and (sigma is not None or kernel_size is not None or offset is not None):
        raise typer.BadParameter("--sigma, --kernel-size and --offset need --ratio")
    if kernel_size is not None and kernel_size % 2 == 0:
        raise typer.BadParameter(f"the kernel size must be odd, got {kernel_size}", param_hint="--kernel-size")
    if ratio is not None and offset is not None and offset >= ratio:
        raise typer.BadParameter(f"the offset must be below the ratio ({ratio})", param_hint="--offset")
    shift_value = None
    if shift is not None:
        if ratio is None:
            raise typer.BadParameter("--shift needs --ratio")
        shift_value = _parse_shift(shift)
    options = parse_creation_options(co)
    sources = expand_inputs(inputs)
    prefix = None if output is None else Path(output)
    if prefix is not None and len(sources) == 1 and (prefix.is_dir() or output.endswith(("/", "\\"))):
        out_dir, prefix = prefix, None
    prefixes = plan_outputs(sources, output=prefix, out_dir=out_dir, template=name, default_template="{stem}", default_ext="")
    settings = dict(
        ratio=ratio,
        psf=psf.value,
        sigma=sigma,
        kernel_size=kernel_size,
        offset=offset,
        shift=shift_value,
        srf=srf,
        snr=snr,
        msi_snr=msi_snr if msi_snr is not None else snr,
        seed=seed,
        format=format,
        creation_options=options,
        overwrite=overwrite,
    )
    pairs = list(zip(sources, prefixes))
    if scheduler is not None and len(pairs) == 1 and shift_value is None and splits_into_blocks(sources[0]):
        # one scene: its blocks of rows are the tasks (a shift's spline needs the whole scene)
        from ..cluster import connect
        from .cluster import workers_text
        from .common import info

        with connect(scheduler) as client:
            info(f"{sources[0].name}: blocks of rows on the Dask cluster at {scheduler} ({workers_text(client)})")
            run_batch(pairs, functools.partial(simulate_file, **settings, client=client), out_dir=out_dir)
    else:
        run_batch(pairs, functools.partial(simulate_file, **settings), workers=jobs, out_dir=out_dir, scheduler=scheduler)


def output_paths(source: Path, prefix: Path, format: str | None) -> tuple[str, dict[str, Path]]:
    """Output format and the paths of the ``lr``, ``msi`` and ``hr`` outputs for a prefix."""
    from ..io import CUBE_SUFFIXES, output_format

    stem = prefix.name
    suffix = prefix.suffix.lower()
    if suffix in CUBE_SUFFIXES:
        stem = prefix.name[: -len(suffix)]
    elif suffix:
        suffix = ""  # a dot inside a prefix name ("case.v2") is part of the name
    if format is not None:
        kind = output_format(prefix, format)
    elif suffix:
        kind = output_format(prefix)
    else:
        kind = "GTiff" if source.suffix.lower() in (".tif", ".tiff") else "ENVI"
    ext = ".tif" if kind == "GTiff" else ".hdr"
    return kind, {role: prefix.with_name(f"{stem}_{role}{ext}") for role in ("lr", "msi", "hr")}


def simulate_file(
    source: Path,
    prefix: Path,
    *,
    ratio: int | None,
    psf: str = "gaussian",
    sigma: float | None = None,
    kernel_size: int | None = None,
    offset: int | None = None,
    shift: tuple[float, float] | None = None,
    srf: str | None = None,
    snr: float | None = None,
    msi_snr: float | None = None,
    seed: int = 0,
    format: str | None = None,
    creation_options: dict[str, str] | None = None,
    overwrite: bool = False,
    client=None,
) -> list[Path]:
    """Simulate the low-resolution cube and/or the multispectral image of one input; returns written paths.

    The scene is degraded a block of rows at a time (:mod:`hsiuu_cli.simulate`): an ENVI input is
    read a block at a time and ENVI outputs are written a block at a time, so neither is held whole;
    with ``client``, the blocks are tasks on that Dask cluster.
    """
    from contextlib import ExitStack

    import numpy as np

    from ..errors import HsiuuError
    from ..io import (
        check_creation_options, check_not_input, check_output, open_envi_windows, output_files, output_set, read_cube, write_cube,
    )
    from ..simulate import (
        crop_text, gather_blocks, output_cubes, output_roles, output_shapes, plan_simulation, run_here, survey_scene,
        whole_blocks, write_block,
    )
    from .common import info, progress, warn

    cube = read_cube(source)
    kind, paths = output_paths(source, prefix, format)

    def notice(what: str, message: str) -> None:
        if what == "coverage":
            warn(f"{source}: {message}")
        elif what == "crop":
            info(f"{source}: {message} (written as {paths['hr']})")
        else:
            info(f"{source}: {message}")

    if client is None:
        run_blocks = run_here
    else:
        from ..cluster.simulate import cluster_runner

        run_blocks = cluster_runner(client, {path.parent for path in paths.values()})

    def in_blocks(what: str, task, plan, on_result, *args) -> None:
        with progress(f"{source.name}: {what}", len(plan.blocks)) as advance:

            def counted(index: int, result) -> None:
                on_result(index, result)
                advance(1)

            run_blocks(task, plan, counted, *args)

    try:
        # the outputs are checked before any work, and whether `hr` is one depends on the crop
        cropped = whole_blocks(cube.rows, cube.cols, ratio) != (cube.rows, cube.cols)
        planned = [role for role, wanted in (("lr", ratio is not None), ("msi", srf is not None), ("hr", cropped)) if wanted]
        for role in planned:
            check_output(paths[role], overwrite, format=kind)
            check_not_input(cube, paths[role], kind)
            check_creation_options(paths[role], kind, creation_options, bands=cube.bands)

        plan = plan_simulation(
            cube,
            # an ENVI scene is a memory map, which each block reads its rows of (on a cluster, by its path)
            path=source if isinstance(cube.data, np.memmap) else None,
            ratio=ratio,
            psf=psf,
            sigma=sigma,
            kernel_size=kernel_size,
            offset=offset,
            shift=shift,
            srf=srf,
            snr=snr,
            msi_snr=msi_snr,
            seed=seed,
            notice=notice,
        )
        survey_scene(plan, lambda *arguments: in_blocks("survey", *arguments), notice)
        if plan.cropped:
            notice("crop", crop_text(cube, plan))
    except HsiuuError as exc:
        if exc.path is None:
            raise type(exc)(exc.message, source) from None
        raise

    roles = output_roles(plan)
    shapes = output_shapes(plan)
    written: list[Path] = []
    with output_set() as files:
        if kind == "ENVI":
            # only the shape and metadata of these are used: the blocks write the pixels
            headers = output_cubes(cube, plan, {role: np.broadcast_to(np.float32(np.nan), shapes[role]) for role in roles})
            with ExitStack() as stack:
                outputs = {
                    role: stack.enter_context(
                        open_envi_windows(headers[role], paths[role], overwrite=overwrite, creation_options=creation_options)
                    )
                    for role in roles
                }
                in_blocks("blocks", write_block, plan, lambda index, result: None, outputs)
            for role in roles:
                written.append(paths[role])
                files.extend(output_files(paths[role], kind))
        else:
            arrays = gather_blocks(plan, lambda *arguments: in_blocks("blocks", *arguments), roles)
            for role, out in output_cubes(cube, plan, arrays).items():
                written.append(write_cube(out, paths[role], format=kind, overwrite=overwrite, creation_options=creation_options))
                files.extend(output_files(paths[role], kind))
    summary = []
    if ratio is not None:
        spatial = "bicubic" if psf == "bicubic" else _psf_text(ratio, sigma, kernel_size, offset)
        if shift is not None:
            spatial += f", shifted {shift[0]:g}, {shift[1]:g} px"
        summary.append("LR {}×{}×{} ({})".format(*shapes["lr"], spatial))
    if srf is not None:
        summary.append("MSI {}×{}×{} ({})".format(*shapes["msi"], plan.response.name))
    if snr is not None or msi_snr is not None:
        summary.append(f"noise SNR {snr if snr is not None else '-'} / {msi_snr if msi_snr is not None else '-'} dB, seed {seed}")
    info(f"{source}: " + "; ".join(summary))
    return written


def _parse_shift(text: str) -> tuple[float, float]:
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(abs(v) < 1e6 for v in values):
        raise typer.BadParameter(f"'{text}' is not ROWS,COLS (two numbers of high-res pixels, e.g. 1.5,-1)", param_hint="--shift")
    return values[0], values[1]


def _psf_text(ratio: int, sigma: float | None, kernel_size: int | None, offset: int | None) -> str:
    from .. import degrade

    if sigma is None:
        sigma = degrade.default_sigma(ratio) if kernel_size is None else degrade.sigma_for_kernel_size(kernel_size)
    size = kernel_size if kernel_size is not None else degrade.kernel_size_for_sigma(sigma)
    start = degrade.default_offset(ratio) if offset is None else offset
    return f"Gaussian PSF σ={sigma:g} px, {size}×{size}, 1 pixel in {ratio} from {start}"
