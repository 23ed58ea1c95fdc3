"""`hsiuu simulate HR_CUBE`: build test cases the way papers do, with the one degradation model.

Writes ``<prefix>_lr.<ext>`` (PSF blur + decimation, or antialiased bicubic, on the coarsened
grid) and, with ``--srf``, ``<prefix>_msi.<ext>`` (the SRF applied on the high-resolution grid).
When the cube's size is not a multiple of the ratio, the high-resolution grid is cut to whole
blocks and that cut reference is written too, as ``<prefix>_hr.<ext>``, so all outputs line up.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import CreationOptions, Format, Inputs, Jobs, NameTemplate, OutDir, Overwrite, Seed



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
    srf: Annotated[
        Optional[str],
        typer.Option(
            "--srf",
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
) -> None:
    """Degrade a high-resolution cube into a low-resolution cube (correct georeference, wavelengths
    kept) and, with --srf, a multispectral/RGB/pan image on the high-resolution grid.

    Prints each written path on stdout. Default format: the input's (ENVI or GeoTIFF).
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
        srf=srf,
        snr=snr,
        msi_snr=msi_snr if msi_snr is not None else snr,
        seed=seed,
        format=format,
        creation_options=options,
        overwrite=overwrite,
    )
    run_batch(list(zip(sources, prefixes)), lambda source, prefix: simulate_file(source, prefix, **settings), workers=jobs)


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
    srf: str | None = None,
    snr: float | None = None,
    msi_snr: float | None = None,
    seed: int = 0,
    format: str | None = None,
    creation_options: dict[str, str] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Simulate the low-resolution cube and/or the multispectral image of one input; returns written paths."""
    import numpy as np

    from .. import degrade
    from ..errors import HsiuuError, InvalidDataError, ParameterError, SpectralResponseError
    from ..grid import coarsened_transform
    from ..io import check_output, output_files, output_set, read_cube, write_cube
    from ..srf import WARN_COVERAGE, load_srf, srf_coverage, srf_matrix
    from .common import info

    cube = read_cube(source)
    kind, paths = output_paths(source, prefix, format)

    rows, cols = cube.rows, cube.cols
    if ratio is not None:
        rows, cols = (cube.rows // ratio) * ratio, (cube.cols // ratio) * ratio
        if rows == 0 or cols == 0:
            raise ParameterError(f"a {cube.rows}×{cube.cols} cube is smaller than the ratio {ratio}", source)
    cropped = (rows, cols) != (cube.rows, cube.cols)
    planned = [role for role, wanted in (("lr", ratio is not None), ("msi", srf is not None), ("hr", cropped)) if wanted]
    for role in planned:
        check_output(paths[role], overwrite, format=kind)

    response = matrix = None
    good = cube.good_band_indices()
    if srf is not None:
        try:
            response = load_srf(srf)
        except SpectralResponseError as exc:
            raise SpectralResponseError(exc.message, exc.path or source) from None
        wavelengths = None if cube.wavelengths is None else cube.wavelengths[good]
        fwhm = None if cube.fwhm is None else cube.fwhm[good]
        try:
            matrix = srf_matrix(response, wavelengths, fwhm)
        except SpectralResponseError as exc:
            raise SpectralResponseError(exc.message, source) from None
        for band, share in srf_coverage(response, wavelengths, fwhm).items():
            if share < WARN_COVERAGE:
                info(f"[yellow]warning:[/yellow] {source}: {100 * share:.0f}% of SRF band '{band}' lies within the cube's range; simulated from that part")

    hr = cube.physical()[:rows, :cols]
    infinite = int(np.isinf(hr[:, :, good]).any(axis=2).sum())
    if infinite:
        raise InvalidDataError(f"{infinite} pixels hold infinite values", source)
    valid = cube.valid_mask(good)[:rows, :cols]
    if not valid.any():
        raise InvalidDataError("every pixel is no-data", source)
    has_nodata = not valid.all()
    if has_nodata:
        hr = hr.copy()
        hr[~valid] = np.nan
        info(f"{source}: {int((~valid).sum())} no-data pixels are left out and written as NaN")
    if cropped:
        info(f"{source}: {cube.rows}×{cube.cols} is not a multiple of {ratio}; using the first {rows}×{cols} pixels (written as {paths['hr']})")

    rng = np.random.default_rng(seed)
    nodata = float("nan") if has_nodata else None
    try:
        if ratio is not None:
            lr = degrade.spatial_degrade(hr, ratio, method=psf, sigma=sigma, kernel_size=kernel_size, offset=offset)
            if snr is not None:
                lr = degrade.add_noise(lr, snr, rng)
        if matrix is not None:
            msi = degrade.spectral_degrade(hr[:, :, good], matrix.astype(np.float32))
            if msi_snr is not None:
                msi = degrade.add_noise(msi, msi_snr, rng)
    except HsiuuError as exc:
        raise type(exc)(exc.message, source) from None

    written: list[Path] = []
    with output_set() as files:
        if ratio is not None:
            lr_cube = cube.regridded(
                lr.astype(np.float32),
                None if cube.transform is None else coarsened_transform(cube.transform, ratio),
                nodata=nodata,
                scale_factor=None,
            )
            written.append(write_cube(lr_cube, paths["lr"], format=kind, overwrite=overwrite, creation_options=creation_options))
            files.extend(output_files(paths["lr"], kind))
        if matrix is not None:
            centroids = np.round((response.wavelengths @ response.responses) / response.responses.sum(axis=0), 2)
            msi_cube = cube.with_bands(msi.astype(np.float32), band_names=list(response.band_names)).replace(
                wavelengths=centroids, nodata=nodata, scale_factor=None
            )
            if cube.description:
                msi_cube.description = f"{cube.description} — simulated {response.name}"
            written.append(write_cube(msi_cube, paths["msi"], format=kind, overwrite=overwrite, creation_options=creation_options))
            files.extend(output_files(paths["msi"], kind))
        if cropped:
            hr_cube = cube.replace(data=hr.astype(np.float32), nodata=nodata, scale_factor=None)
            written.append(write_cube(hr_cube, paths["hr"], format=kind, overwrite=overwrite, creation_options=creation_options))
            files.extend(output_files(paths["hr"], kind))
    summary = []
    if ratio is not None:
        spatial = "bicubic" if psf == "bicubic" else _psf_text(ratio, sigma, kernel_size, offset)
        summary.append(f"LR {lr.shape[0]}×{lr.shape[1]}×{lr.shape[2]} ({spatial})")
    if matrix is not None:
        summary.append(f"MSI {msi.shape[0]}×{msi.shape[1]}×{msi.shape[2]} ({response.name})")
    if snr is not None or msi_snr is not None:
        summary.append(f"noise SNR {snr if snr is not None else '-'} / {msi_snr if msi_snr is not None else '-'} dB, seed {seed}")
    info(f"{source}: " + "; ".join(summary))
    return written


def _psf_text(ratio: int, sigma: float | None, kernel_size: int | None, offset: int | None) -> str:
    from .. import degrade

    if sigma is None:
        sigma = degrade.default_sigma(ratio) if kernel_size is None else degrade.sigma_for_kernel_size(kernel_size)
    size = kernel_size if kernel_size is not None else degrade.kernel_size_for_sigma(sigma)
    start = degrade.default_offset(ratio) if offset is None else offset
    return f"Gaussian PSF σ={sigma:g} px, {size}×{size}, 1 pixel in {ratio} from {start}"
