"""`hsiuu fuse LR_HSI HR_MSI --srf NAME -o OUT`: HSI–MSI fusion onto the high-resolution grid."""

from __future__ import annotations

from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import CreationOptions, Device, Format, Json, Overwrite, Quicklook, Scheduler, Seed


class Method(str, Enum):
    spectramorph = "spectramorph"
    cnmf = "cnmf"
    gsa = "gsa"
    bicubic = "bicubic"


def fuse_command(
    lr_hsi: Annotated[Path, typer.Argument(help="Low-resolution hyperspectral cube (ENVI or GeoTIFF).", show_default=False)],
    hr_msi: Annotated[
        Path,
        typer.Argument(help="High-resolution multispectral, RGB or panchromatic image of the same place.", show_default=False),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Fused cube (.hdr/.img ENVI or .tif GeoTIFF).")],
    srf: Annotated[
        Optional[str],
        typer.Option(
            "--srf",
            metavar="NAME|FILE",
            help="The MSI's spectral responses: built-in name (sentinel2a, landsat8, pleiades1a, ikonos, nikon_d700; "
            "'name:band,...' picks bands in the MSI's order) or a CSV wavelength_nm,<band>,...",
        ),
    ] = None,
    srf_matrix: Annotated[
        Optional[Path],
        typer.Option(
            "--srf-matrix",
            help="Instead of --srf: CSV matrix with one row per HSI band and one column per MSI band "
            "(weights; each column is normalised to sum 1). Needed when the HSI has no wavelengths.",
        ),
    ] = None,
    method: Annotated[Method, typer.Option("--method", "-m", help="Fusion method.")] = Method.spectramorph,
    endmembers: Annotated[
        Optional[str],
        typer.Option(
            "--endmembers",
            "-k",
            metavar="N|auto",
            help="Number of endmembers K, or 'auto' (spectramorph, cnmf).",
            show_default="spectramorph 8, cnmf min(30, bands)",
        ),
    ] = None,
    psf_sigma: Annotated[
        Optional[float],
        typer.Option(
            "--psf-sigma",
            min=0.0,
            help="Gaussian PSF sigma in MSI pixels: compared with the PSF estimated from the data, and used "
            "unless the data fit the estimate clearly better.",
            show_default="estimated from the data",
        ),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="SpectraMorph training iterations (full batch, L-BFGS); by default 150, or chosen by cross-validation on LR grids too small for the coarse prior.", show_default="150 / cross-validated")] = None,
    seed: Seed = 0,
    device: Device = "auto",
    save_abundances: Annotated[
        bool, typer.Option("--save-abundances", help="Also write the coefficient maps as <output>_abundances (same format).")
    ] = False,
    save_endmembers: Annotated[
        bool,
        typer.Option("--save-endmembers", help="Also write the endmember spectra as <output>_endmembers.sli (+.hdr) and .csv."),
    ] = False,
    no_resample: Annotated[
        bool,
        typer.Option(
            "--no-resample",
            help="Refuse pairs whose grids do not nest (instead of resampling the MSI onto the nearest grid that does).",
        ),
    ] = False,
    quicklook: Quicklook = False,
    json_output: Json = False,
    format: Format = None,
    co: CreationOptions = None,
    overwrite: Overwrite = False,
    scheduler: Scheduler = None,
) -> None:
    """Fuse a low-resolution hyperspectral cube with a high-resolution multispectral/RGB/pan image.

    The output is on the MSI's grid with the HSI's bands, wavelengths and band metadata; pixels
    without data in either input are NaN. Prints the output path (or, with --json, a summary).

    Examples:
      A hyperspectral cube sharpened by a Sentinel-2 image of the same place:
        hsiuu fuse lr_hsi.hdr hr_msi.tif --srf sentinel2a -o fused.tif
      An RGB photo, with the abundance maps and a preview:
        hsiuu fuse hsi.hdr rgb.tif --srf nikon_d700 -o fused.hdr \\
            --save-abundances --quicklook
    """
    blocks_on_cluster = False
    if scheduler is not None:
        from .cluster import run_command_on_cluster, splits_into_blocks

        # the fit here, blocks of HR rows on the workers, which map the MSI (an ENVI file); CNMF and
        # GSA compute their whole HR result in the fit, and a GeoTIFF MSI is read whole: one task
        blocks_on_cluster = method in (Method.spectramorph, Method.bicubic) and splits_into_blocks(hr_msi)
        if not blocks_on_cluster:
            return run_command_on_cluster(scheduler, fuse_command)
    import numpy as np

    from ..fusion import cubes
    from ..fusion.blocks import ArrayOut, Sinks
    from ..fusion.quicklook import panel_labels, write_quicklook
    from ..io import (
        check_creation_options, check_not_input, check_output, input_files, open_envi_windows, output_files, output_format,
        output_set, read_cube, write_cube, write_library,
    )
    from ..io.atomic import check_outputs, scratch_directory
    from .common import detail, emit, emit_json, info, output_folder, parse_creation_options, progress, warn

    if srf is None and srf_matrix is None:
        raise typer.BadParameter("give the MSI's spectral response with --srf NAME|FILE.csv or --srf-matrix FILE.csv")
    if srf is not None and srf_matrix is not None:
        raise typer.BadParameter("give either --srf or --srf-matrix, not both")
    k_value: int | str | None = None
    if endmembers is not None:
        if endmembers.strip().lower() == "auto":
            k_value = "auto"
        else:
            try:
                k_value = int(endmembers)
            except ValueError:
                raise typer.BadParameter(f"'{endmembers}' is not a number or 'auto'", param_hint="--endmembers") from None
            if k_value < 1:
                raise typer.BadParameter("must be at least 1", param_hint="--endmembers")
    creation = parse_creation_options(co)

    kind = output_format(output, format)
    ext = ".tif" if kind == "GTiff" else ".hdr"
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    abundance_path = output.with_name(f"{stem}_abundances{ext}")
    library_paths = [output.with_name(f"{stem}_endmembers{s}") for s in (".sli", ".hdr", ".csv")]
    quicklook_path = output.with_name(f"{stem}_quicklook.png")
    if save_endmembers or save_abundances:
        if method in (Method.gsa, Method.bicubic):
            raise typer.BadParameter(f"--method {method.value} has no endmembers or abundances to save")
    output_folder(output.parent)
    check_output(output, overwrite, format=kind)
    if save_abundances:
        check_output(abundance_path, overwrite, format=kind)
    if save_endmembers:
        check_outputs(library_paths, overwrite)
    if quicklook:
        check_outputs([quicklook_path], overwrite)
    sources = input_files(lr_hsi) + input_files(hr_msi)
    for path in [output] + ([abundance_path] if save_abundances else []):
        check_not_input(sources, path, kind)

    lr_cube, msi_cube = read_cube(lr_hsi), read_cube(hr_msi)
    check_creation_options(output, kind, creation, bands=lr_cube.bands)
    cubes.check_order(lr_cube, msi_cube, hr_msi)
    matrix, srf_name = cubes.resolve_srf(lr_cube, msi_cube, srf=srf, matrix_path=srf_matrix, lr_path=lr_hsi, msi_path=hr_msi,
                                         notice=lambda message: warn(f"{hr_msi}: {message}"))
    pair = cubes.align_pair(lr_cube, msi_cube, lr_hsi, hr_msi, resample=not no_resample, srf=matrix)
    if pair.resampled:
        info(f"the grids do not nest: {pair.resampled}")
    if pair.cropped:
        detail(f"using the overlap of the two grids: HSI {pair.lr.rows}×{pair.lr.cols}, MSI {pair.hr.rows}×{pair.hr.cols}")
    detail(
        f"fusing {lr_hsi.name} ({pair.lr.rows}×{pair.lr.cols}×{pair.lr.bands}) with {hr_msi.name} "
        f"({pair.hr.rows}×{pair.hr.cols}×{pair.hr.bands}, {srf_name}), ratio {pair.ratio}, method {method.value}"
    )
    if method is Method.cnmf and pair.hr.bands == 1:
        # one band cannot separate K abundances at full resolution (docs/benchmarks.md: below bicubic on 3 of 4 pan cases)
        warn(f"CNMF with a one-band MSI ({hr_msi.name}) is often worse than bicubic; "
             "spectramorph (the default) or gsa suit a panchromatic image")
    passes = 2 if method is Method.spectramorph else 1
    written: list[Path] = []  # outputs, as reported; output_set's list holds every file behind them
    with ExitStack() as stack:
        client = None
        if blocks_on_cluster:
            from ..cluster import connect
            from .cluster import workers_text

            client = stack.enter_context(connect(scheduler))
            info(f"{hr_msi.name}: the fit here, blocks of rows on the Dask cluster at {scheduler} ({workers_text(client)})")
        scratch = Path(stack.enter_context(scratch_directory(output.parent)))
        with progress("fusing", passes * pair.hr.rows) as advance:
            fit = cubes.plan_cubes(
                pair.lr,
                pair.hr,
                matrix,
                lr_path=lr_hsi,
                msi_path=hr_msi,
                msi_rows=cubes.msi_rows(pair, msi_cube, hr_msi, scratch if client is not None else None),
                scratch=scratch,
                method=method.value,
                endmembers=k_value,
                psf_sigma=psf_sigma,
                epochs=epochs,
                seed=seed,
                device=device,
                return_abundances=save_abundances,
            )
            plan = fit.plan
            advance.set_total(plan.counted_passes * pair.hr.rows)
            # only the shape, type and header of these are used: the blocks write the pixels
            fused_header = cubes.output_cube(pair.lr, pair.hr, np.broadcast_to(np.float32(np.nan), plan.shape), fit, lr_hsi, hr_msi)
            maps_header = None
            if save_abundances:
                k = fit.endmembers.shape[0]
                maps_header = fused_header.with_bands(np.broadcast_to(np.float32(np.nan), plan.shape[:2] + (k,)),
                                                      band_names=[f"endmember {i + 1}" for i in range(k)])
                maps_header = maps_header.replace(nodata=fused_header.nodata, description=f"{fused_header.description}: coefficient maps")
            with output_set() as files:
                if kind == "ENVI":
                    # pre-allocated and written in place, a block of rows at a time, by this process or the workers
                    with ExitStack() as windows:
                        plan.sinks = Sinks(windows.enter_context(open_envi_windows(fused_header, output, overwrite=overwrite,
                                                                                   creation_options=creation)))
                        if maps_header is not None:
                            plan.sinks.abundances = windows.enter_context(open_envi_windows(
                                maps_header, abundance_path, overwrite=overwrite, creation_options=creation))
                        plan.sinks.scratch = _pass_scratch(plan, client, scratch)
                        checks = _run_blocks(plan, client, scheduler, output, advance)
                    fused_cube = read_cube(output)
                    maps = None
                else:
                    # a GeoTIFF is written by one writer: the blocks' rows gathered first, in a scratch
                    # file when large or written by the workers
                    on_disk = client is not None
                    fused_data = cubes.allocate(plan.shape, scratch, on_disk=on_disk)
                    maps = None if maps_header is None else cubes.allocate(maps_header.shape, scratch, "abundances.f32", on_disk)
                    plan.sinks = Sinks(ArrayOut(fused_data), None if maps is None else ArrayOut(maps),
                                       _pass_scratch(plan, client, scratch))
                    checks = _run_blocks(plan, client, scheduler, output, advance)
                    fused_cube = fused_header.replace(data=fused_data)
                    write_cube(fused_cube, output, format=kind, overwrite=overwrite, creation_options=creation)
                written.append(output)
                files.extend(output_files(output, kind))
                result = fit.result(None, None, checks)
                if save_abundances:
                    if maps is not None:
                        write_cube(maps_header.replace(data=maps), abundance_path, format=kind, overwrite=overwrite,
                                   creation_options=creation)
                    written.append(abundance_path)
                    files.extend(output_files(abundance_path, kind))
                if save_endmembers:
                    library = cubes.endmember_library(result, pair.lr)
                    for path in (library_paths[0], library_paths[2]):
                        files.extend(write_library(library, path, overwrite=overwrite))
                        written.append(path)
                if quicklook:
                    labels = panel_labels(pair.lr, pair.hr, method.value, lr_hsi.name, hr_msi.name)
                    written.append(write_quicklook(quicklook_path, pair.lr, pair.hr, fused_cube, result.valid, overwrite=overwrite,
                                                   labels=labels))
                    files.append(quicklook_path)
            for stored in (fused_cube.data, maps, getattr(plan.sinks.scratch, "array", None)):
                if isinstance(stored, cubes.RowFile):
                    stored.close()  # before its scratch folder goes
            fused_cube = maps = None
    summary = dict(result.info)
    summary.update(output=str(output), inputs=[str(lr_hsi), str(hr_msi)], srf=srf_name, outputs=[str(p) for p in written])
    if pair.resampled:
        summary["resampled"] = pair.resampled
    for warning in summary.get("model_warnings", []):
        warn(f"{warning['part']}: {warning['message']}")
    if json_output:
        emit_json(summary)
    else:
        loss = summary.get("training_loss")
        extra = f", K={summary['endmembers']}" if "endmembers" in summary else ""
        extra += f", training loss {loss:.3g}" if isinstance(loss, float) else ""
        info(f"done in {summary['seconds']:.1f} s{extra}; PSF σ={summary.get('psf_sigma', '-')} px")
        if "psf_model" in summary:
            shift = summary["misregistration"]
            info(f"sampling model: {summary['psf_model']}; LR pixels {shift[0]:+.2f}, {shift[1]:+.2f} MSI pixels from their "
                 f"blocks' centres; MSI trust {min(summary['msi_trust']):.2f}–{max(summary['msi_trust']):.2f}; "
                 f"check against bicubic: {summary['guard']}")
        for path in written:
            emit(str(path))


def _run_blocks(plan, client, scheduler, output: Path, advance):
    """Every block of ``plan``: in turn here, or (with ``client``) as tasks on its cluster."""
    from ..fusion.blocks import run_blocks

    if client is None:
        return run_blocks(plan, advance=advance)
    from ..cluster.fuse import cluster_map

    return run_blocks(plan, cluster_map(client, [output.parent], scheduler), advance=advance)


def _pass_scratch(plan, client, scratch: Path):
    """On a cluster, a scratch file the passes alternate with the output, so that a block rerun on
    another worker reads what its pass read (hsiuu_cli.fusion.blocks.Sinks); none for a local run."""
    from ..fusion import cubes
    from ..fusion.blocks import ArrayOut

    return None if client is None else ArrayOut(cubes.allocate(plan.shape, scratch, "passes.f32", on_disk=True))
