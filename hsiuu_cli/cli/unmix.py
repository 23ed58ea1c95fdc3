"""`hsiuu unmix SCENE... -o DIR`: endmember spectra and abundance maps (SMILE, VCA/N-FINDR + FCLS, NMF, library)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cluster import splits_into_blocks
from .common import click_errors, detail, emit_json, expand_inputs, info, json_default, plan_outputs, progress, run_batch
from .options import Device, Inputs, Jobs, Json, NameTemplate, OutDir, Overwrite, Quicklook, Scheduler, Seed

DEFAULT_TEMPLATE = "{stem}_unmix"
OutputDirectory = Annotated[
    Optional[Path], typer.Option("-o", "--output", metavar="DIR", help="Output directory (one input only); created if missing.")
]
# -o is a directory here, so the format cannot come from an extension
CubesFormat = Annotated[
    Optional[str], typer.Option("-f", "--format", metavar="NAME", help="Format of the output cubes: ENVI or GTiff.", show_default="ENVI")
]


def unmix_command(
    inputs: Inputs,
    endmembers: Annotated[
        Optional[str],
        typer.Option("--endmembers", "-k", metavar="N|auto", help="Number of endmembers, or 'auto' (estimated from the scene).", show_default="auto"),
    ] = None,
    method: Annotated[
        Optional[str],
        typer.Option(
            "--method", metavar="NAME", help="smile (SR-guided network), vca-fcls, nfindr-fcls or nmf.", show_default="smile"
        ),
    ] = None,
    library: Annotated[
        Optional[Path],
        typer.Option(
            "--library", metavar="FILE", help="Known endmember spectra (.sli or .csv): supervised unmixing with FCLS."
        ),
    ] = None,
    sparse: Annotated[
        bool, typer.Option("--sparse", help="With --library: sparse unmixing (SUnSAL, ℓ1) for large libraries.")
    ] = False,
    scale: Annotated[
        Optional[int],
        typer.Option("--scale", metavar="N", help="SMILE: also write abundances on an N× finer grid (abundances_xN)."),
    ] = None,
    output: OutputDirectory = None,
    out_dir: OutDir = None,
    name: NameTemplate = None,
    format: CubesFormat = None,
    quicklook: Quicklook = False,
    seed: Seed = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_output: Json = False,
    jobs: Jobs = 1,
    scheduler: Scheduler = None,
) -> None:
    """Unmix hyperspectral cubes into endmember spectra and abundance maps.

    -o DIR receives abundances (one band per endmember, ENVI .hdr/.img or --format GTiff .tif), endmembers.sli + endmembers.csv, residual (per-pixel reconstruction RMSE), summary.json, and with --scale s abundances_x<s>, with --quicklook quicklook.png.

    No-data and NaN pixels are skipped and written as NaN; bands flagged bad are left out. Several inputs: --out-dir DIR, one directory per input named by --name (default {stem}_unmix).

    Examples:
      Four endmembers and their abundance maps:
        hsiuu unmix scene.hdr -k 4 -o scene_unmix
      Abundances of known spectra from a large library (sparse unmixing):
        hsiuu unmix scene.hdr --library usgs.sli --sparse -o scene_minerals
    """
    from ..io import CUBE_SUFFIXES
    from ..unmixing import METHODS

    if library is not None:
        for given, flag in ((endmembers, "--endmembers"), (method, "--method"), (scale, "--scale")):
            if given is not None:
                raise click_errors.UsageError(f"{flag} does not apply with --library (the library gives the endmembers)")
    elif sparse:
        raise click_errors.UsageError("--sparse needs --library")
    method = method or "smile"
    if method not in METHODS:
        raise typer.BadParameter(f"'{method}' is not a method (use {', '.join(METHODS)})", param_hint="--method")
    count = _endmember_count(endmembers)
    if scale is not None:
        if scale < 2:
            raise typer.BadParameter(f"the scale must be an integer of at least 2, got {scale}", param_hint="--scale")
        if method != "smile":
            raise click_errors.UsageError("--scale needs --method smile (the SR branch of the network gives the finer grid)")
    extension = _extension(format)
    paths = expand_inputs(inputs)
    if output is not None and output.suffix.lower() in CUBE_SUFFIXES:
        raise click_errors.UsageError(f"-o takes a directory for the unmixing outputs, not a file name ({output})")
    targets = plan_outputs(
        paths, output=output, out_dir=out_dir, template=name, default_template=DEFAULT_TEMPLATE, default_ext=""
    )
    summaries: list[dict] = []

    def process(source: Path, directory: Path, client=None) -> tuple[dict, list[Path]]:
        """One input; with ``client``, its blocks of rows run on that Dask cluster."""
        return _unmix_one(
            source, directory, count=count, method=method, library=library, sparse=sparse, scale=scale,
            format=format, extension=extension, quicklook=quicklook, seed=seed, device=device, overwrite=overwrite,
            client=client,
        )

    def report(_source: Path, result: tuple[dict, list[Path]]) -> list[Path]:
        # here, not in process: on a cluster, process runs on a worker
        summary, written = result
        summaries.append(summary)
        return [] if json_output else written

    if jobs > 1 and len(paths) > 1 and method == "smile" and library is None:
        import torch

        # PyTorch's thread count is one setting for the whole process, which SMILE adjusts per
        # scene; jobs running side by side would race on it and results would vary run to run.
        # One thread each, set once here, keeps every job reproducible (the jobs share the cores).
        torch.set_num_threads(1)
    pairs = list(zip(paths, targets))
    try:
        if scheduler is not None and len(pairs) == 1 and _by_blocks(method, library, sparse) and extension == ".hdr" \
                and splits_into_blocks(paths[0]):
            # one scene: endmembers found here on its sample, its blocks of rows the tasks
            from ..cluster import connect
            from .cluster import workers_text

            with connect(scheduler) as client:
                info(f"{paths[0].name}: blocks of rows on the Dask cluster at {scheduler} ({workers_text(client)})")
                run_batch(pairs, lambda source, target: process(source, target, client), out_dir=out_dir, report=report)
        else:
            run_batch(pairs, process, workers=jobs, out_dir=out_dir, scheduler=scheduler, report=report)
    finally:
        if json_output and summaries:
            # in the inputs' order, however the jobs (threads or cluster tasks) finished
            order = {str(path): index for index, path in enumerate(paths)}
            summaries.sort(key=lambda summary: order.get(summary["input"], len(order)))
            emit_json(summaries[0] if len(paths) == 1 else summaries)


def _by_blocks(method: str, library: Path | None, sparse: bool) -> bool:
    """Whether the abundances are solved a block of rows at a time (FCLS: each pixel on its own)."""
    from ..unmixing import BLOCK_METHODS

    return (library is None and method in BLOCK_METHODS) or (library is not None and not sparse)


def _endmember_count(value: str | None) -> int | str:
    if value is None or value.strip().lower() == "auto":
        return "auto"
    try:
        count = int(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not a number or 'auto'", param_hint="--endmembers") from None
    if count < 2:
        raise typer.BadParameter(f"at least 2 endmembers are needed, got {count}", param_hint="--endmembers")
    return count


def _extension(format: str | None) -> str:
    from ..io import FORMAT_EXTENSIONS, format_name

    name = "ENVI" if format is None else format_name(format)
    if name is None:
        raise typer.BadParameter(f"'{format}' is not an output format (use ENVI or GTiff)", param_hint="--format")
    return FORMAT_EXTENSIONS[name]


def _unmix_one(
    source: Path, directory: Path, *, count, method, library, sparse, scale, format, extension, quicklook, seed,
    device, overwrite, client=None,
) -> tuple[dict, list[Path]]:
    import numpy as np

    from ..cube import Cube
    from ..device import resolve_device
    from ..errors import CubeWriteError, HsiuuError
    from ..grid import scaled_transform
    from ..io import (
        SpectralLibrary, atomic_write, check_not_input, check_output, input_files, open_envi_windows, output_files,
        output_format, output_set, read_cube, read_library, write_cube, write_library,
    )
    from ..io.atomic import check_outputs
    from ..unmixing import (
        UnmixingResult, fit_library, plan_unmixing, progress_total, solve_in_memory, unmix, unmix_with_library,
        usable_bands,
    )
    from ..io.scene_rows import SceneFile
    from ..unmixing.blocks import SceneRows, sample_stride, write_blocks
    from ..unmixing.quicklook import render_quicklook

    cubes = {"abundances": directory / f"abundances{extension}", "residual": directory / f"residual{extension}"}
    if scale:
        cubes[f"abundances_x{scale}"] = directory / f"abundances_x{scale}{extension}"
    others = [directory / "endmembers.sli", directory / "endmembers.hdr", directory / "endmembers.csv", directory / "summary.json"]
    if quicklook:
        others.append(directory / "quicklook.png")
    if directory.exists() and not directory.is_dir():
        raise CubeWriteError("output exists and is not a directory", directory)
    if not directory.parent.is_dir():
        raise CubeWriteError(f"output directory's parent {directory.parent} does not exist", directory)
    created_directory = not directory.exists()
    if not created_directory:
        for path in cubes.values():
            check_output(path, overwrite, format=format)
            check_not_input(input_files(source), path, format)
        check_outputs(others, overwrite)

    by_blocks = _by_blocks(method, library, sparse)
    # blocks written in place need an ENVI output; a GeoTIFF's abundances are gathered here first
    in_place = by_blocks and output_format(cubes["abundances"], format) == "ENVI"
    plan = result = None
    started = time.perf_counter()
    try:
        cube = read_cube(source)
        stride = sample_stride(cube.rows, cube.cols) if by_blocks else 1
        bands = usable_bands(cube, stride)
        wavelengths = None if cube.wavelengths is None else cube.wavelengths[bands]
        torch_device = resolve_device(device) if (library is None and method == "smile") else "cpu"
        spectra = names = None
        if library is not None:
            reference = read_library(library)
            spectra, inside = fit_library(reference.spectra, reference.wavelengths, wavelengths, bands.size, path=library)
            bands, names = bands[inside], reference.names
            wavelengths = None if wavelengths is None else wavelengths[inside]
        if by_blocks:
            with progress(f"{source.name}: endmembers", 1) as advance:
                plan = plan_unmixing(SceneRows(SceneFile(cube, source), bands), count, method=method, seed=seed, library=spectra, names=names)
                advance(1)
            if not in_place:
                with progress(f"{source.name}: abundances", 1) as advance:
                    result = solve_in_memory(plan)
                    result.info["seconds"] = time.perf_counter() - started
                    advance(1)
        else:
            data = cube.physical()[:, :, bands]
            mask = cube.valid_mask()
            with progress(f"{source.name}: unmixing", 1 if library is not None else progress_total(method)) as advance:
                if library is not None:
                    result = unmix_with_library(data, spectra, names, sparse=sparse, mask=mask)
                    advance(1)
                else:
                    done = [0]

                    def step(current: int, total: int) -> None:
                        advance(current - done[0])
                        done[0] = current

                    result = unmix(data, count, method=method, mask=mask, scale=scale, seed=seed, device=torch_device, progress=step)
    except HsiuuError as exc:
        if exc.path is None:
            raise type(exc)(exc.message, source) from None
        raise
    method_name = (plan or result).method
    endmember_names = list((plan or result).names)
    endmembers = (plan or result).endmembers

    def as_cube(values: np.ndarray, names: list[str] | None, factor: int = 1, what: str = "") -> Cube:
        transform = cube.transform if (cube.transform is None or factor == 1) else scaled_transform(cube.transform, factor)
        return Cube(
            data=values if values.dtype == np.float32 else values.astype(np.float32),
            band_names=names,
            nodata=float("nan"),
            crs=cube.crs,
            transform=transform,
            description=f"hsiuu unmix ({method_name}) {what} of {source.name}",
            # the scene's own map info keeps projections that have no CRS here (State Plane, …)
            metadata={k: v for k, v in cube.metadata.items() if k in ("map info", "coordinate system string")},
        )

    if created_directory:
        directory.mkdir()
    try:
        with output_set() as written:
            if in_place:
                # only the shape, type and header of these are used: the blocks write the pixels
                shape = (cube.rows, cube.cols)
                abundance_header = as_cube(np.broadcast_to(np.float32(np.nan), shape + (len(endmember_names),)), endmember_names, what="abundances")
                residual_header = as_cube(np.broadcast_to(np.float32(np.nan), shape + (1,)), ["reconstruction_rmse"], what="residual")
                with progress(f"{source.name}: abundances", len(plan.blocks)) as advance, \
                        open_envi_windows(abundance_header, cubes["abundances"], overwrite=overwrite) as abundances_out, \
                        open_envi_windows(residual_header, cubes["residual"], overwrite=overwrite) as residual_out:
                    if client is not None:
                        from ..cluster.unmix import write_blocks_on_cluster

                        totals = write_blocks_on_cluster(client, plan, abundances_out, residual_out, progress=advance)
                    else:
                        totals = write_blocks(plan.source, plan.endmembers, plan.blocks, abundances_out, residual_out, progress=advance)
                written += output_files(cubes["abundances"], format) + output_files(cubes["residual"], format)
                result = UnmixingResult(
                    endmembers=endmembers, abundances=None, names=endmember_names, residual=None, method=method_name,
                    skipped_pixels=cube.rows * cube.cols - totals.pixels,
                    info=dict(plan.info, fcls_max_kkt_violation=totals.max_kkt_violation, mean_residual_rmse=totals.mean_residual,
                              seconds=time.perf_counter() - started),
                )
            else:
                write_cube(as_cube(result.abundances, result.names, what="abundances"), cubes["abundances"], format=format, overwrite=overwrite)
                written += output_files(cubes["abundances"], format)
                write_cube(as_cube(result.residual[:, :, None], ["reconstruction_rmse"], what="residual"), cubes["residual"], format=format, overwrite=overwrite)
                written += output_files(cubes["residual"], format)
            if scale:
                fine = cubes[f"abundances_x{scale}"]
                write_cube(as_cube(result.abundances_hr, result.names, scale, f"abundances ×{scale}"), fine, format=format, overwrite=overwrite)
                written += output_files(fine, format)
            skipped = result.skipped_pixels
            if skipped:
                info(f"{source.name}: {skipped} no-data/NaN pixels skipped (written as NaN)")
            if count == "auto" and library is None:
                info(f"{source.name}: {len(endmember_names)} endmembers estimated from the scene (-k N sets the number)")
            endmember_library = SpectralLibrary(endmembers.astype(np.float32), endmember_names, wavelengths)
            written += write_library(endmember_library, directory / "endmembers.sli", overwrite=overwrite)
            written += write_library(endmember_library, directory / "endmembers.csv", overwrite=overwrite)
            if quicklook:
                # a large scene's maps are drawn from every s-th row and column, as its endmembers were found
                maps = result.abundances
                if maps is None:
                    step = sample_stride(cube.rows, cube.cols)
                    maps = np.asarray(read_cube(cubes["abundances"]).data[::step, ::step])
                with atomic_write(directory / "quicklook.png", overwrite) as temporary:
                    render_quicklook(
                        maps, endmembers, endmember_names, wavelengths, temporary,
                        title=f"{source.name}: {method_name}, {len(endmember_names)} endmembers", band_numbers=bands + 1,
                    )
                written.append(directory / "quicklook.png")
            summary = {
                "input": str(source),
                "output_directory": str(directory),
                "method": method_name,
                "endmembers": len(endmember_names),
                "names": endmember_names,
                "seed": seed,
                "scale": scale,
                "library": None if library is None else str(library),
                "device": torch_device,
                "pixels": int(cube.rows * cube.cols),
                "skipped_pixels": skipped,
                "bands_used": int(bands.size),
                "bands_total": int(cube.bands),
                "wavelength_range_nm": None if wavelengths is None else [float(wavelengths.min()), float(wavelengths.max())],
                "mean_residual_rmse": result.info.get("mean_residual_rmse"),
                "details": {k: v for k, v in result.info.items() if k != "mean_residual_rmse"},
            }
            summary["outputs"] = [str(p) for p in written] + [str(directory / "summary.json")]
            with atomic_write(directory / "summary.json", overwrite) as temporary:
                import json

                temporary.write_text(json.dumps(summary, indent=2, default=json_default) + "\n", encoding="utf-8")
            written.append(directory / "summary.json")
    except BaseException:
        # all or nothing: output_set took back the files, and a folder this run made goes too
        if created_directory:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    detail(f"{source.name}: {result.info.get('seconds', 0):.1f} s")
    info(f"{source.name}: {len(endmember_names)} endmembers ({method_name}) → {directory}")
    return summary, written
