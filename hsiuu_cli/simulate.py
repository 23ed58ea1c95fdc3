"""Test cases made from a high-resolution cube the way papers make them, as ``hsiuu simulate`` does
(docs/simulate.md).

:func:`simulate_pair` returns the low-resolution cube (on the coarsened grid), the multispectral
image (a sensor's SRF applied on the high-resolution grid) and the high-resolution reference cut to
whole ratio × ratio blocks, each a :class:`Cube` ready to write. This module decides the crop, the
bands and the no-data pixels and builds the outputs' metadata; the degradations themselves come
from :mod:`hsiuu_cli.degrade`.

The work is cut into blocks of whole low-resolution rows (:func:`simulation_blocks`, about
:data:`BLOCK_BYTES` of high-resolution values each), so that a scene never has to be in memory at
once: a block reads its rows with the PSF's halo (:class:`CubeRows` maps a scene file), degrades
them with the functions of :mod:`hsiuu_cli.degrade` and gives its rows of every output. The PSF
is local, so a block's rows are the bytes the whole-scene degradation gives (the borders of the
scene are the blocks' borders too). Noise needs two things a block alone cannot give: the signal
power of the whole image (summed from every block's :func:`hsiuu_cli.degrade.band_power` in a
first pass, :func:`survey_scene`) and a random stream that does not depend on the other blocks
(one per block, seeded by ``[seed, block index]``). The blocks depend only on the scene's shape,
so they give the same bytes run in turn here or as tasks on a Dask cluster
(:mod:`hsiuu_cli.cluster.simulate`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import degrade
from .cube import Cube
from .errors import InvalidDataError, ParameterError
from .grid import coarsened_transform
from .io.scene_rows import SceneFile
from .srf import SpectralResponse, load_srf, srf_matrix

BLOCK_BYTES = 64 * 2**20
"""High-resolution values (float32, every band) of one block, its halo aside."""


@dataclass
class Simulation:
    """The outputs of :func:`simulate_pair`, float32 in physical units, no-data pixels as NaN."""

    hr: Cube
    """The input on the whole-block grid: the reference the other two line up with."""
    lr: Cube | None
    """The low-resolution cube (with a ratio), on the input's grid coarsened by the ratio."""
    msi: Cube | None
    """The multispectral image (with an SRF); wavelengths are the bands' response-weighted means."""
    response: SpectralResponse | None
    """The SRF the MSI was made with."""
    cropped: bool
    """Whether ``hr`` is smaller than the input (its size is not a multiple of the ratio)."""


def whole_blocks(rows: int, cols: int, ratio: int | None) -> tuple[int, int]:
    """The size cut to whole ratio × ratio blocks (the size itself without a ratio)."""
    if ratio is None:
        return rows, cols
    cut = (rows // ratio) * ratio, (cols // ratio) * ratio
    if 0 in cut:
        raise ParameterError(f"a {rows}×{cols} cube is smaller than the ratio {ratio}")
    return cut


class CubeRows:
    """Rows of a cube's whole-block grid: physical values (float32, every band) and the valid
    pixels (:meth:`Cube.valid_mask` on the bands ``good``), read from ``scene``
    (:class:`hsiuu_cli.io.scene_rows.SceneFile`: a worker opens a scene file itself)."""

    def __init__(self, scene: SceneFile, cols: int, good: np.ndarray):
        self.scene, self.cols, self.good = scene, cols, good

    @property
    def cube(self) -> Cube:
        return self.scene.cube

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        part = self.scene.rows(start, stop)
        part = part.replace(data=part.data[:, : self.cols])
        return part.physical(), part.valid_mask(self.good)


@dataclass
class SimulationPlan:
    """What every block needs: decided once (:func:`plan_simulation`, then :func:`survey_scene`)
    and sent to each block."""

    source: CubeRows
    rows: int
    cols: int
    """The whole-block grid."""
    ratio: int | None
    spatial: dict
    """The keywords of :func:`hsiuu_cli.degrade.spatial_degrade` besides the ratio."""
    shifted: np.ndarray | None
    """With a shift: the whole reference moved, which the LR cube is made from (the spline of
    :func:`hsiuu_cli.degrade.shift` is not local, so that scene is in memory)."""
    matrix: np.ndarray | None
    """The SRF on the good bands (float32)."""
    response: SpectralResponse | None
    snr: float | None
    msi_snr: float | None
    seed: int
    blocks: list[tuple[int, int]]
    """Rows of the LR grid (of the HR grid without a ratio), ``(start, stop)``."""
    halo: int
    """LR rows read above and below a block for the PSF."""
    lr_sigma: np.ndarray | None = None
    msi_sigma: np.ndarray | None = None
    """Per-band noise levels, from the whole image's signal power (:func:`survey_scene`)."""
    invalid: int = 0
    """No-data pixels of the whole-block grid (:func:`survey_scene`)."""

    @property
    def step(self) -> int:
        """HR rows per block row."""
        return self.ratio or 1

    @property
    def cropped(self) -> bool:
        return (self.rows, self.cols) != (self.source.cube.rows, self.source.cube.cols)

    def needs_power(self) -> bool:
        return (self.snr is not None and self.ratio is not None) or (self.msi_snr is not None and self.matrix is not None)


def simulation_blocks(rows: int, cols: int, bands: int, ratio: int | None) -> list[tuple[int, int]]:
    """The blocks of a ``rows`` × ``cols`` × ``bands`` whole-block grid: runs of LR rows (HR rows
    without a ratio) of about :data:`BLOCK_BYTES` of HR values each."""
    step = ratio or 1
    count = rows // step
    per_block = max(1, BLOCK_BYTES // max(1, step * cols * bands * 4))
    return [(start, min(count, start + per_block)) for start in range(0, count, per_block)]


def psf_halo(ratio: int | None, psf: str, sigma: float | None, kernel_size: int | None) -> int:
    """LR rows a block reads beyond its own on each side, so that the PSF sees every HR row it
    reaches: the Gaussian kernel's radius; antialiased bicubic reaches 2 LR pixels from a centre."""
    if ratio is None:
        return 0
    if psf == "bicubic":
        return 2
    if sigma is None and kernel_size is None:
        sigma = degrade.default_sigma(ratio)
    radius = degrade.gaussian_psf(sigma, kernel_size).shape[0] // 2
    return math.ceil(radius / ratio)


def plan_simulation(
    cube: Cube,
    *,
    path: str | Path | None = None,
    ratio: int | None = None,
    psf: str = "gaussian",
    sigma: float | None = None,
    kernel_size: int | None = None,
    offset: int | None = None,
    shift: tuple[float, float] | None = None,
    srf: str | Path | SpectralResponse | None = None,
    snr: float | None = None,
    msi_snr: float | None = None,
    seed: int = 0,
    notice: Callable[[str, str], None] | None = None,
) -> SimulationPlan:
    """The blocks of :func:`simulate_pair` (same arguments) and what they share; ``path``: the
    file ``cube`` was read from, which the blocks then read their rows from. Tells ``notice``
    the SRF's coverage."""
    if ratio is None and srf is None:
        raise ParameterError("give a ratio (low-resolution cube) and/or an SRF (multispectral image)")
    if ratio is None and (sigma is not None or kernel_size is not None or offset is not None or shift is not None):
        raise ParameterError("sigma, kernel size, offset and shift need a ratio")
    for level in (snr, msi_snr):
        if level is not None:
            degrade.check_snr(level)
    tell = notice or _warn_coverage
    rows, cols = whole_blocks(cube.rows, cube.cols, ratio)
    good = cube.good_band_indices()
    response = matrix = None
    if srf is not None:
        response = srf if isinstance(srf, SpectralResponse) else load_srf(srf)
        wavelengths = None if cube.wavelengths is None else cube.wavelengths[good]
        fwhm = None if cube.fwhm is None else cube.fwhm[good]
        matrix = srf_matrix(response, wavelengths, fwhm, warn=lambda message: tell("coverage", message)).astype(np.float32)
    spatial = {}
    if ratio is not None:
        spatial = dict(method=psf, sigma=sigma, kernel_size=kernel_size, offset=offset)
        # checked here, before any block: a block's strip is a whole-block grid too
        degrade.spatial_degrade(np.zeros((ratio, ratio, 1), np.float32), ratio, **spatial)
    source = CubeRows(SceneFile(cube, path), cols, good)
    shifted = None
    if shift is not None and tuple(shift) != (0, 0):
        hr, valid = source.read(0, rows)
        _check_finite(hr, good)
        hr = np.where(valid[:, :, None], hr, np.float32(np.nan))
        shifted = degrade.shift(hr, -shift[0], -shift[1])
    return SimulationPlan(
        source=source, rows=rows, cols=cols, ratio=ratio, spatial=spatial, shifted=shifted, matrix=matrix,
        response=response, snr=snr, msi_snr=msi_snr, seed=seed,
        blocks=simulation_blocks(rows, cols, cube.bands, ratio), halo=psf_halo(ratio, psf, sigma, kernel_size),
    )


@dataclass
class BlockPixels:
    """One block's rows of every output (None where that output is not made)."""

    lr: np.ndarray | None
    msi: np.ndarray | None
    hr: np.ndarray
    invalid: int
    """No-data pixels among the block's HR rows."""
    infinite: int
    """Pixels holding an infinite value among the block's HR rows."""


def degrade_block(plan: SimulationPlan, index: int, noisy: bool = True) -> BlockPixels:
    """The block's rows of the LR cube, the MSI and the reference; with ``noisy``, the noise of
    the block's own stream (``default_rng([seed, index])``, LR first) at the plan's levels."""
    step = plan.step
    start, stop = plan.blocks[index]
    # the strip starts on a multiple of the ratio, so its decimation keeps the scene's pixels
    low, high = max(0, (start - plan.halo) * step), min(plan.rows, (stop + plan.halo) * step)
    values, valid = plan.source.read(low, high)
    own = slice(start * step - low, stop * step - low)
    infinite = int(np.isinf(values[own][:, :, plan.source.good]).any(axis=2).sum())
    invalid = int((~valid[own]).sum())
    if not valid.all():
        values = np.where(valid[:, :, None], values, np.float32(np.nan))
    rng = np.random.default_rng([plan.seed, index]) if noisy else None
    lr = msi = None
    if plan.ratio is not None:
        strip = values if plan.shifted is None else plan.shifted[low:high]
        first = start - low // step
        lr = degrade.spatial_degrade(strip, plan.ratio, **plan.spatial)[first : first + stop - start]
        if noisy and plan.lr_sigma is not None:
            lr = degrade.add_noise(lr, plan.snr, rng, sigma=plan.lr_sigma)
    hr = values[own]
    if plan.matrix is not None:
        msi = degrade.spectral_degrade(hr[:, :, plan.source.good], plan.matrix)
        if noisy and plan.msi_sigma is not None:
            msi = degrade.add_noise(msi, plan.msi_snr, rng, sigma=plan.msi_sigma)
    return BlockPixels(lr, msi, hr, invalid, infinite)


@dataclass
class BlockSurvey:
    invalid: int
    infinite: int
    lr_power: tuple[np.ndarray, np.ndarray] | None
    msi_power: tuple[np.ndarray, np.ndarray] | None
    """:func:`hsiuu_cli.degrade.band_power` of the block's noiseless outputs, where noise is asked for."""


def survey_block(plan: SimulationPlan, index: int) -> BlockSurvey:
    """The block's no-data and infinite pixels and, for noise, its outputs' signal power."""
    if not plan.needs_power():
        step = plan.step
        start, stop = plan.blocks[index]
        values, valid = plan.source.read(start * step, stop * step)
        infinite = int(np.isinf(values[:, :, plan.source.good]).any(axis=2).sum())
        return BlockSurvey(int((~valid).sum()), infinite, None, None)
    pixels = degrade_block(plan, index, noisy=False)
    lr_power = degrade.band_power(pixels.lr) if plan.snr is not None and pixels.lr is not None else None
    msi_power = degrade.band_power(pixels.msi) if plan.msi_snr is not None and pixels.msi is not None else None
    return BlockSurvey(pixels.invalid, pixels.infinite, lr_power, msi_power)


Runner = Callable[..., None]
"""``run(task, plan, on_result, *args)`` runs ``task(plan, index, *args)`` for every block of
``plan`` and hands each result to ``on_result(index, result)``, in any order: :func:`run_here`, or
on a cluster (:func:`hsiuu_cli.cluster.simulate.cluster_runner`)."""


def run_here(task: Callable, plan: SimulationPlan, on_result: Callable[[int, object], None], *args) -> None:
    """The blocks in turn, on this process."""
    from .io.atomic import raise_if_stopped

    for index in range(len(plan.blocks)):
        raise_if_stopped()
        on_result(index, task(plan, index, *args))


def survey_scene(plan: SimulationPlan, run: Runner = run_here, notice: Callable[[str, str], None] | None = None) -> None:
    """Every block's survey, summed in block order (so every run sums alike): errors for infinite
    values or a scene of no-data, the no-data count into ``plan`` (and ``notice``'s ``"nodata"``),
    and the noise levels of the whole image, as :func:`hsiuu_cli.degrade.noise_sigma` measures them."""
    surveys: dict[int, BlockSurvey] = {}
    run(survey_block, plan, surveys.__setitem__)
    ordered = [surveys[index] for index in range(len(plan.blocks))]
    infinite = sum(survey.infinite for survey in ordered)
    if infinite:
        raise InvalidDataError(f"{infinite} pixels hold infinite values")
    plan.invalid = sum(survey.invalid for survey in ordered)
    if plan.invalid == plan.rows * plan.cols:
        raise InvalidDataError("every pixel is no-data")
    if plan.invalid:
        (notice or _warn_coverage)("nodata", f"{plan.invalid} no-data pixels are left out and written as NaN")
    for name, level, powers in (("lr_sigma", plan.snr, [s.lr_power for s in ordered]),
                                ("msi_sigma", plan.msi_snr, [s.msi_power for s in ordered])):
        if level is not None and powers[0] is not None:
            squares, counts = powers[0]
            for more_squares, more_counts in powers[1:]:
                squares, counts = squares + more_squares, counts + more_counts
            setattr(plan, name, degrade.sigma_for_power(squares, counts, level))


def output_roles(plan: SimulationPlan) -> list[str]:
    """The outputs made: ``lr`` (with a ratio), ``msi`` (with an SRF), ``hr`` (when cut to whole blocks)."""
    return [role for role, made in (("lr", plan.ratio is not None), ("msi", plan.matrix is not None), ("hr", plan.cropped)) if made]


def output_row(plan: SimulationPlan, role: str, index: int) -> int:
    """The first row of block ``index`` in output ``role``."""
    start = plan.blocks[index][0]
    return start if role == "lr" else start * plan.step


def output_cubes(cube: Cube, plan: SimulationPlan, data: dict[str, np.ndarray]) -> dict[str, Cube]:
    """The output cubes (``lr``, ``msi``, ``hr``) of ``cube`` around their pixels ``data`` (for an
    output written a block at a time, arrays of the right shape whose values are not used)."""
    nodata = float("nan") if plan.invalid else None
    cubes = {}
    if "lr" in data:
        cubes["lr"] = cube.regridded(
            data["lr"],
            None if cube.transform is None else coarsened_transform(cube.transform, plan.ratio),
            nodata=nodata,
            scale_factor=None,
            metadata=cube.physical_metadata(),
        )
    if "msi" in data:
        response = plan.response
        centroids = np.round((response.wavelengths @ response.responses) / response.responses.sum(axis=0), 2)
        msi = cube.with_bands(data["msi"], band_names=list(response.band_names)).replace(
            wavelengths=centroids, nodata=nodata, scale_factor=None
        )
        if cube.description:
            msi.description = f"{cube.description} — simulated {response.name}"
        cubes["msi"] = msi
    if "hr" in data:
        cubes["hr"] = cube.replace(data=data["hr"], nodata=nodata, scale_factor=None, metadata=cube.physical_metadata())
    return cubes


def output_shapes(plan: SimulationPlan) -> dict[str, tuple[int, int, int]]:
    bands = plan.source.cube.bands
    shapes = {"hr": (plan.rows, plan.cols, bands)}
    if plan.ratio is not None:
        shapes["lr"] = (plan.rows // plan.ratio, plan.cols // plan.ratio, bands)
    if plan.matrix is not None:
        shapes["msi"] = (plan.rows, plan.cols, plan.matrix.shape[1])
    return shapes


def gather_blocks(plan: SimulationPlan, run: Runner = run_here, roles: list[str] | None = None) -> dict[str, np.ndarray]:
    """Every block's rows of the outputs ``roles`` (default: all made), put together in memory."""
    shapes = output_shapes(plan)
    arrays = {role: np.empty(shapes[role], np.float32) for role in (roles or output_roles(plan))}

    def place(index: int, pieces: dict[str, np.ndarray]) -> None:
        for role, values in pieces.items():
            row = output_row(plan, role, index)
            arrays[role][row : row + values.shape[0]] = values

    run(block_rows, plan, place, list(arrays))
    return arrays


def block_rows(plan: SimulationPlan, index: int, roles: list[str]) -> dict[str, np.ndarray]:
    """The block's rows of the outputs ``roles`` (what a cluster task sends back, and no more)."""
    pixels = degrade_block(plan, index)
    return {role: getattr(pixels, role) for role in roles}


def write_block(plan: SimulationPlan, index: int, outputs: dict) -> None:
    """The block degraded and its rows written into ``outputs`` (role → ``io.envi.EnviWindows``,
    which any process may write)."""
    from .io.atomic import raise_if_stopped

    pixels = degrade_block(plan, index)
    raise_if_stopped()  # a task of a run stopped while it computed writes nothing
    for role, windows in outputs.items():
        windows.write(output_row(plan, role, index), 0, getattr(pixels, role))


def simulate_pair(
    cube: Cube,
    *,
    ratio: int | None = None,
    psf: str = "gaussian",
    sigma: float | None = None,
    kernel_size: int | None = None,
    offset: int | None = None,
    shift: tuple[float, float] | None = None,
    srf: str | Path | SpectralResponse | None = None,
    snr: float | None = None,
    msi_snr: float | None = None,
    seed: int = 0,
    notice: Callable[[str, str], None] | None = None,
) -> Simulation:
    """The low-resolution cube (``ratio``) and/or the multispectral image (``srf``) of a cube.

    ``psf``, ``sigma``, ``kernel_size`` and ``offset`` are those of
    :func:`hsiuu_cli.degrade.spatial_degrade`; ``shift`` (rows, columns of HR pixels) misregisters
    the pair: the LR cube's pixels are centred that far down/right of where its grid puts them on
    the MSI's (and the reference's) grid, so the MSI and the reference stay aligned and a fusion
    result is scored against the reference as usual; ``srf`` is a loaded response or a name for
    :func:`hsiuu_cli.srf.load_srf`, applied to the bands not flagged bad. Noise at ``snr`` dB goes
    on the LR cube and at ``msi_snr`` dB on the MSI, the level from the whole image's signal power,
    the values from each block's own stream, ``numpy.random.default_rng([seed, block index])``, LR
    first. Errors carry no path unless an SRF file is at fault.

    ``notice(kind, message)`` hears, in this order and before any degradation: ``"coverage"``, an
    SRF band partly outside the cube's range (by default a :func:`warnings.warn`); ``"nodata"``,
    how many pixels are left out; ``"crop"``, the cut to whole blocks.
    """
    plan = plan_simulation(
        cube, ratio=ratio, psf=psf, sigma=sigma, kernel_size=kernel_size, offset=offset, shift=shift, srf=srf,
        snr=snr, msi_snr=msi_snr, seed=seed, notice=notice,
    )
    survey_scene(plan, notice=notice)
    if plan.cropped:
        (notice or _warn_coverage)("crop", crop_text(cube, plan))
    # the reference too, cut or not: the others line up with it
    cubes = output_cubes(cube, plan, gather_blocks(plan, roles=sorted({*output_roles(plan), "hr"})))
    return Simulation(hr=cubes["hr"], lr=cubes.get("lr"), msi=cubes.get("msi"), response=plan.response, cropped=plan.cropped)


def crop_text(cube: Cube, plan: SimulationPlan) -> str:
    return f"{cube.rows}×{cube.cols} is not a multiple of {plan.ratio}; using the first {plan.rows}×{plan.cols} pixels"


def _check_finite(values: np.ndarray, good: np.ndarray) -> None:
    infinite = int(np.isinf(values[:, :, good]).any(axis=2).sum())
    if infinite:
        raise InvalidDataError(f"{infinite} pixels hold infinite values")


def _warn_coverage(kind: str, message: str) -> None:
    if kind == "coverage":
        warnings.warn(message, stacklevel=3)
