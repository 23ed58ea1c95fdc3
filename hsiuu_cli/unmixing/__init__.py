"""Hyperspectral unmixing: endmember spectra and abundance maps.

>>> from hsiuu_cli.unmixing import unmix
>>> result = unmix(cube, 4, method="vca-fcls", seed=0)      # cube: rows × cols × bands
>>> result.endmembers.shape, result.abundances.shape        # (4, bands), (rows, cols, 4)

Methods (:data:`METHODS`):

* ``smile`` — the SR-guided multi-task network (:mod:`.smile`), the default;
* ``vca-fcls`` — VCA endmembers, exact FCLS abundances;
* ``nfindr-fcls`` — N-FINDR endmembers (ATGP start), exact FCLS abundances;
* ``nmf`` — NMF with sum-to-one abundances started from N-FINDR (:mod:`.nmf`).

Supervised unmixing with known spectra: :func:`unmix_with_library` (FCLS, or SUnSAL with
``sparse=True`` for large libraries). ``n_endmembers="auto"`` estimates the number from the
noise-whitened signal variance (:mod:`.count`).
Pixels that are non-finite in any band, or outside ``mask``, are skipped and come back as NaN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..cube import Cube
from ..errors import InvalidDataError, ParameterError
from .blocks import ArrayRows, BlockTotals, read_sample, row_blocks, sample_stride, solve_blocks
from .count import count_endmembers
from .fcls import fcls, nnls
from .hysime import estimate_endmember_count, hysime
from .library import fit_library
from .nfindr import atgp, nfindr
from .nmf import nmf_sum_to_one
from .purity import refine_pure_centroids
from .smile import SmileConfig, smile
from .sparse import sunsal
from .vca import vca

METHODS = ("smile", "vca-fcls", "nfindr-fcls", "nmf")
BLOCK_METHODS = ("vca-fcls", "nfindr-fcls")
"""Methods that find endmembers on a sample and solve abundances a block of rows at a time
(:mod:`.blocks`): they unmix scenes larger than memory, and their blocks can run on a cluster."""

SPARSE_KEEP_ABUNDANCE = 0.01
"""Sparse unmixing keeps the library spectra whose abundance reaches this somewhere."""

__all__ = [
    "BLOCK_METHODS",
    "METHODS",
    "UnmixingPlan",
    "SmileConfig",
    "UnmixingResult",
    "atgp",
    "count_endmembers",
    "estimate_endmember_count",
    "fcls",
    "fit_library",
    "hysime",
    "nfindr",
    "nmf_sum_to_one",
    "nnls",
    "plan_unmixing",
    "progress_total",
    "refine_pure_centroids",
    "smile",
    "sunsal",
    "unmix",
    "unmix_with_library",
    "usable_bands",
    "valid_pixels",
    "vca",
]


@dataclass
class UnmixingResult:
    endmembers: np.ndarray
    """(K, B) float64 spectra in the scene's units."""
    abundances: np.ndarray
    """(rows, cols, K) float32, NaN at skipped pixels."""
    names: list[str]
    residual: np.ndarray
    """(rows, cols) float32: per-pixel RMSE of the reconstruction over bands, NaN at skipped pixels."""
    method: str
    abundances_hr: np.ndarray | None = None
    """(rows·s, cols·s, K) float32 with ``scale`` s (SMILE only)."""
    scale: int | None = None
    skipped_pixels: int = 0
    info: dict = field(default_factory=dict)


def usable_bands(cube: Cube, stride: int = 1) -> np.ndarray:
    """Indices of the bands to unmix: not flagged bad (ENVI ``bbl``) and finite somewhere (among
    every ``stride``-th row and column: the endmember sample of a large scene, :mod:`.blocks`)."""
    good = cube.good_band_indices()
    if good.size == 0:
        raise InvalidDataError("every band is flagged bad: nothing to unmix")
    data = np.asarray(cube.data[::stride, ::stride])
    if np.issubdtype(data.dtype, np.floating):
        good = good[np.isfinite(data).any(axis=(0, 1))[good]]
        if good.size == 0:
            raise InvalidDataError("every pixel is no-data or NaN: nothing to unmix")
    return good


def valid_pixels(cube: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows × cols boolean: finite in every band and inside ``mask``; errors for unusable scenes."""
    if cube.ndim != 3:
        raise ParameterError(f"a cube must be rows × cols × bands, got shape {cube.shape}")
    valid = np.isfinite(cube).all(axis=2)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if not valid.any():
        raise InvalidDataError("every pixel is no-data or NaN: nothing to unmix")
    pixels = cube[valid]
    if np.ptp(pixels, axis=0).max() <= 1e-12 * max(float(np.abs(pixels).max()), 1e-30):
        raise InvalidDataError("the scene is constant (every valid pixel has the same spectrum): nothing to unmix")
    return valid


def unmix(
    cube: np.ndarray,
    n_endmembers: int | str = "auto",
    *,
    method: str = "smile",
    mask: np.ndarray | None = None,
    scale: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    smile_config: SmileConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> UnmixingResult:
    """Unsupervised unmixing of ``cube`` (rows × cols × bands) into ``n_endmembers`` (or ``"auto"``)."""
    started = time.perf_counter()
    if method not in METHODS:
        raise ParameterError(f"unknown unmixing method '{method}' (use {', '.join(METHODS)})")
    if scale is not None and method != "smile":
        raise ParameterError("abundances on a finer grid (scale) come from the SMILE network: use method 'smile'")
    if scale is not None and (not isinstance(scale, (int, np.integer)) or scale < 2):
        raise ParameterError(f"scale must be an integer of at least 2, got {scale}")
    cube = np.asarray(cube)
    total = progress_total(method, smile_config)
    if method in BLOCK_METHODS:
        plan = plan_unmixing(ArrayRows(cube, mask), n_endmembers, method=method, seed=seed)
        if progress is not None:
            progress(1, total)
        result = solve_in_memory(plan)
        if progress is not None:
            progress(total, total)
        result.info["seconds"] = time.perf_counter() - started
        return result
    valid = valid_pixels(cube, mask)
    pixels = np.asarray(cube[valid], dtype=np.float64)
    info: dict = {}
    k = _endmember_count(n_endmembers, pixels, info)

    abundances_hr = None
    if method == "smile":
        def training_step(step: int, _steps: int) -> None:
            if progress is not None:
                progress(1 + step, total)

        result = smile(
            np.asarray(cube, dtype=np.float32), valid, k,
            scale=scale, seed=seed, device=device, config=smile_config, progress=training_step,
            on_endmembers=None if progress is None else lambda: progress(1, total),
        )
        endmembers, abundance_pixels, abundances_hr = result.endmembers, result.abundances[valid], result.abundances_hr
        info.update(result.info)
    else:  # NMF, started from N-FINDR (deterministic, and 9° instead of 18° on Jasper Ridge for VCA)
        endmembers, indices = nfindr(pixels, k)
        info["endmember_pixels"] = _pixel_positions(valid, indices)
        if progress is not None:
            progress(1, total)
        refined = nmf_sum_to_one(pixels, endmembers)
        endmembers, abundance_pixels = refined.endmembers, refined.abundances
        info["nmf_iterations"] = refined.iterations
    if progress is not None:  # SMILE may stop early: its last steps are not needed
        progress(total, total)
    names = [f"endmember_{i + 1}" for i in range(k)]
    info["seconds"] = time.perf_counter() - started
    return _result(cube.shape, valid, pixels, endmembers, abundance_pixels, names, method, abundances_hr, scale, info)


def _endmember_count(n_endmembers: int | str, pixels: np.ndarray, info: dict) -> int:
    """The number asked for, or for ``"auto"`` the one estimated on ``pixels`` (noted in ``info``)."""
    if isinstance(n_endmembers, str):
        if n_endmembers != "auto":
            raise ParameterError(f"the number of endmembers must be an integer or 'auto', got '{n_endmembers}'")
        k = count_endmembers(pixels).n_endmembers
        info["endmembers_estimated_by"] = "noise-whitened signal variance (99 %)"
    else:
        k = int(n_endmembers)
    _check_endmember_count(k, pixels.shape[1], pixels.shape[0])
    return k


@dataclass
class UnmixingPlan:
    """A scene's unmixing by blocks (:data:`BLOCK_METHODS`, or FCLS with a library) before its
    abundances: the endmembers found on the sample and the blocks of rows left to solve."""

    source: object
    """Where the blocks read their rows: :class:`.blocks.ArrayRows` or :class:`.blocks.SceneRows`."""
    endmembers: np.ndarray
    names: list[str]
    method: str
    blocks: list[tuple[int, int]]
    info: dict = field(default_factory=dict)


def plan_unmixing(
    source, n_endmembers: int | str = "auto", *, method: str = "vca-fcls", seed: int = 0,
    library: np.ndarray | None = None, names: list[str] | None = None,
) -> UnmixingPlan:
    """Endmembers of ``source`` found on its sample (or the given ``library``, solved by FCLS),
    and its blocks of rows."""
    sample = read_sample(source, sample_stride(source.rows, source.cols))
    pixels = sample.pixels
    info: dict = {}
    if sample.stride > 1:
        info["endmember_sample"] = f"one pixel of every {sample.stride} × {sample.stride} ({pixels.shape[0]} valid pixels)"
    if library is not None:
        endmembers = np.asarray(library, dtype=np.float64)
        _check_endmember_count(endmembers.shape[0], pixels.shape[1], pixels.shape[0], supervised=True)
        method, names = "fcls", list(names or [])
    else:
        k = _endmember_count(n_endmembers, pixels, info)
        if method == "vca-fcls":
            endmembers, indices = vca(pixels, k, rng=seed)
        else:
            endmembers, indices = nfindr(pixels, k)
        info["endmember_pixels"] = [[int(r), int(c)] for r, c in sample.positions[indices]]
        names = [f"endmember_{i + 1}" for i in range(k)]
    blocks = row_blocks(source.rows, source.cols, pixels.shape[1])
    return UnmixingPlan(source, np.asarray(endmembers, dtype=np.float64), names, method, blocks, info)


def solve_in_memory(plan: UnmixingPlan) -> UnmixingResult:
    """Every block of ``plan`` solved here, gathered into one result."""
    source, k = plan.source, plan.endmembers.shape[0]
    abundances = np.empty((source.rows, source.cols, k), dtype=np.float32)
    residual = np.empty((source.rows, source.cols), dtype=np.float32)
    totals = BlockTotals()
    for index, block in solve_blocks(source, plan.endmembers, plan.blocks):
        rows = slice(block.start, block.start + block.residual.shape[0])
        abundances[rows], residual[rows] = block.abundances, block.residual
        totals.add(index, block)
    info = dict(plan.info, fcls_max_kkt_violation=totals.max_kkt_violation, mean_residual_rmse=totals.mean_residual)
    return UnmixingResult(
        endmembers=plan.endmembers, abundances=abundances, names=list(plan.names), residual=residual,
        method=plan.method, skipped_pixels=source.rows * source.cols - totals.pixels, info=info,
    )


def progress_total(method: str, smile_config: SmileConfig | None = None) -> int:
    """The units of work :func:`unmix` reports to its ``progress(done, total)``: one for the endmembers,
    then one per SMILE training step (at most ``max_steps``; an early stop jumps to the end), or one
    for the abundances of the other methods."""
    return 1 + ((smile_config or SmileConfig()).max_steps if method == "smile" else 1)


def unmix_with_library(
    cube: np.ndarray,
    library: np.ndarray,
    names: list[str],
    *,
    sparse: bool = False,
    mask: np.ndarray | None = None,
    regularisation: float = 1e-3,
) -> UnmixingResult:
    """Abundances of known spectra ``library`` (m, bands on the cube's bands; see :func:`fit_library`).

    FCLS (non-negative, summing to one) by default; with ``sparse``, SUnSAL (non-negative,
    ℓ1-regularised, no sum-to-one) keeping the spectra whose abundance reaches
    :data:`SPARSE_KEEP_ABUNDANCE` somewhere.
    """
    started = time.perf_counter()
    cube = np.asarray(cube)
    library = np.asarray(library, dtype=np.float64)
    if library.ndim != 2 or library.shape[1] != cube.shape[-1]:
        raise ParameterError(f"the library must be spectra × {cube.shape[-1]} bands, got shape {library.shape}")
    if not sparse:
        result = solve_in_memory(plan_unmixing(ArrayRows(cube, mask), library=library, names=names))
        result.info["seconds"] = time.perf_counter() - started
        return result
    valid = valid_pixels(cube, mask)
    pixels = np.asarray(cube[valid], dtype=np.float64)
    info: dict = {}
    solution = sunsal(pixels, library, regularisation=regularisation)
    info.update(
        library_spectra=library.shape[0],
        admm_iterations=solution.iterations,
        admm_primal_residual=solution.primal_residual,
        admm_dual_residual=solution.dual_residual,
        regularisation=regularisation,
    )
    residual = np.sqrt(np.mean((pixels - solution.abundances @ library) ** 2, axis=1))
    keep = np.flatnonzero(solution.abundances.max(0) >= SPARSE_KEEP_ABUNDANCE)
    if keep.size == 0:
        keep = np.array([int(np.argmax(solution.abundances.max(0)))])
    info["kept_spectra"] = int(keep.size)
    method = "sunsal"
    result = _result(
        cube.shape, valid, pixels, library[keep], solution.abundances[:, keep],
        [names[i] for i in keep], method, None, None, info, residual=residual,
    )
    result.info["seconds"] = time.perf_counter() - started
    return result


def _check_endmember_count(k: int, bands: int, pixels: int, *, supervised: bool = False) -> None:
    what = "library spectra" if supervised else "endmembers"
    if k < 2 and not supervised:
        raise ParameterError(f"at least 2 endmembers are needed, got {k}")
    if k < 1:
        raise ParameterError("the library holds no spectrum")
    if k > bands:
        raise ParameterError(
            f"{k} {what} need at least {k} bands, the scene has {bands}"
            + ("; use --sparse for large libraries" if supervised else "")
        )
    if k > pixels and not supervised:  # a known spectrum needs no pixel of its own
        raise ParameterError(f"{k} {what} need at least {k} valid pixels, the scene has {pixels}")


def _pixel_positions(valid: np.ndarray, indices: np.ndarray) -> list[list[int]]:
    rows, cols = np.nonzero(valid)
    return [[int(rows[i]), int(cols[i])] for i in indices]


def _result(shape, valid, pixels, endmembers, abundance_pixels, names, method, abundances_hr, scale, info, residual=None):
    rows, cols, _ = shape
    k = endmembers.shape[0]
    abundances = np.full((rows, cols, k), np.nan, dtype=np.float32)
    abundances[valid] = abundance_pixels
    if residual is None:
        residual = np.sqrt(np.mean((pixels - abundance_pixels @ endmembers) ** 2, axis=1))
    residual_map = np.full((rows, cols), np.nan, dtype=np.float32)
    residual_map[valid] = residual
    info.setdefault("mean_residual_rmse", float(np.mean(residual)))
    return UnmixingResult(
        endmembers=np.asarray(endmembers, dtype=np.float64),
        abundances=abundances,
        names=names,
        residual=residual_map,
        method=method,
        abundances_hr=None if abundances_hr is None else abundances_hr.astype(np.float32),
        scale=scale,
        skipped_pixels=int((~valid).sum()),
        info=info,
    )
