"""Unmixing a scene a block of rows at a time, so that it never has to be in memory at once.

Endmembers come from a sample of the scene's pixels: every valid pixel up to
:data:`SAMPLE_PIXELS`, beyond that those of a regular grid (every s-th row and column), read
row by row. Abundances are then solved by FCLS one block of rows at a time: FCLS solves each
pixel on its own, so the blocks change nothing but the rounding of the shared matrix products
(about 1e-13). The blocks depend only on the scene's shape, not on where they run, so a run on
one machine and a run whose blocks are tasks on a Dask cluster (:mod:`hsiuu_cli.cluster.unmix`)
give the same bytes; and a scene of one block (up to :data:`BLOCK_VALUES` values) gives what
unmixing all its pixels at once gave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..errors import InvalidDataError, ParameterError
from ..io.scene_rows import SceneFile
from .fcls import fcls

SAMPLE_PIXELS = 512 * 512
"""Endmembers and ``-k auto`` look at no more pixels than this (the client's memory: a sample of
400-band pixels in float64 is 0.85 GB, and VCA/N-FINDR hold a few copies of it)."""
BLOCK_VALUES = 8 * 2**20
"""Pixel values (float64) in one block of rows: 64 MB, plus the block's abundances."""


class ArrayRows:
    """Rows of an in-memory cube (values as given) with its valid pixels: finite in every band and
    inside ``mask``."""

    def __init__(self, values: np.ndarray, mask: np.ndarray | None = None):
        if values.ndim != 3:
            raise ParameterError(f"a cube must be rows × cols × bands, got shape {values.shape}")
        self.values, self.mask = values, mask
        self.rows, self.cols, self.band_count = values.shape

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        values = self.values[start:stop]
        valid = np.isfinite(values).all(axis=2)
        if self.mask is not None:
            valid &= np.asarray(self.mask[start:stop], dtype=bool)
        return values, valid


class SceneRows:
    """Rows of a scene in physical units, on the bands ``bands``, with its valid pixels (as
    :meth:`Cube.valid_mask` and finite on those bands), read from ``scene``
    (:class:`hsiuu_cli.io.scene_rows.SceneFile`: a worker opens a scene file itself and maps it
    afresh for each block)."""

    def __init__(self, scene: SceneFile, bands: np.ndarray):
        self.scene, self.bands = scene, np.asarray(bands, dtype=np.int64)

    @property
    def band_count(self) -> int:
        return int(self.bands.size)

    @property
    def rows(self) -> int:
        return self.scene.cube.rows

    @property
    def cols(self) -> int:
        return self.scene.cube.cols

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        part = self.scene.rows(start, stop)
        values = part.physical()[:, :, self.bands]
        valid = part.valid_mask() & np.isfinite(values).all(axis=2)
        return values, valid


def sample_stride(rows: int, cols: int) -> int:
    """Every how many rows and columns the endmember sample takes a pixel (1: all of them)."""
    return max(1, math.ceil(math.sqrt(rows * cols / SAMPLE_PIXELS)))


def row_blocks(rows: int, cols: int, bands: int) -> list[tuple[int, int]]:
    """The scene's blocks of rows, ``(start, stop)``, each of about :data:`BLOCK_VALUES` values."""
    step = max(1, BLOCK_VALUES // max(1, cols * bands))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


@dataclass
class Sample:
    pixels: np.ndarray
    """(N, B) float64, the sampled valid pixels in row-major order."""
    positions: np.ndarray
    """(N, 2) their (row, column) in the scene."""
    stride: int


def read_sample(source, stride: int) -> Sample:
    """The valid pixels of every ``stride``-th row and column; errors for a scene with none, or
    whose sampled pixels are all the same spectrum."""
    if stride == 1:  # whole blocks: the same pixels, in the same order, as unmixing all at once
        pieces = ((start, *source.read(start, stop)) for start, stop in row_blocks(source.rows, source.cols, source.band_count))
    else:
        pieces = ((row, *_strided(source.read(row, row + 1), stride)) for row in range(0, source.rows, stride))
    pixels, positions = [], []
    for start, values, valid in pieces:
        pixels.append(np.asarray(values[valid], dtype=np.float64))
        r, c = np.nonzero(valid)
        positions.append(np.stack([start + r, c * stride], axis=1))
    sample = Sample(np.concatenate(pixels), np.concatenate(positions), stride)
    if sample.pixels.shape[0] == 0:
        raise InvalidDataError("every pixel is no-data or NaN: nothing to unmix")
    spread = np.ptp(sample.pixels, axis=0).max()
    if spread <= 1e-12 * max(float(np.abs(sample.pixels).max()), 1e-30):
        raise InvalidDataError("the scene is constant (every valid pixel has the same spectrum): nothing to unmix")
    return sample


def _strided(read: tuple[np.ndarray, np.ndarray], stride: int) -> tuple[np.ndarray, np.ndarray]:
    values, valid = read
    return values[:, ::stride], valid[:, ::stride]


@dataclass
class BlockAbundances:
    """One block's FCLS result."""

    start: int
    abundances: np.ndarray | None
    """(rows, cols, K) float32, NaN at skipped pixels (None once written out)."""
    residual: np.ndarray | None
    """(rows, cols) float32 reconstruction RMSE, NaN at skipped pixels (None once written out)."""
    residual_sum: float
    pixels: int
    """Valid pixels in the block."""
    max_kkt_violation: float = 0.0


def solve_block(source, endmembers: np.ndarray, start: int, stop: int) -> BlockAbundances:
    """FCLS abundances and reconstruction RMSE of the rows ``start:stop`` of ``source``."""
    values, valid = source.read(start, stop)
    k = endmembers.shape[0]
    abundances = np.full(valid.shape + (k,), np.nan, dtype=np.float32)
    residual = np.full(valid.shape, np.nan, dtype=np.float32)
    count = int(valid.sum())
    if count == 0:
        return BlockAbundances(start, abundances, residual, 0.0, 0)
    pixels = np.asarray(values[valid], dtype=np.float64)
    solved, report = fcls(pixels, endmembers, return_report=True)
    errors = np.sqrt(np.mean((pixels - solved @ endmembers) ** 2, axis=1))
    abundances[valid] = solved
    residual[valid] = errors
    return BlockAbundances(start, abundances, residual, float(errors.sum()), count, report.max_kkt_violation)


def write_block(source, endmembers: np.ndarray, start: int, stop: int, abundances_out, residual_out) -> BlockAbundances:
    """Solve the rows ``start:stop`` and write them into ``abundances_out`` and ``residual_out``
    (``io.envi.EnviWindows``, which any process may write); the block comes back without its pixels."""
    block = solve_block(source, endmembers, start, stop)
    abundances_out.write(start, 0, block.abundances)
    residual_out.write(start, 0, block.residual[:, :, None])
    block.abundances = block.residual = None
    return block


@dataclass
class BlockTotals:
    """What the blocks add up to, summed in block order (so every run sums alike)."""

    pixels: int = 0
    residual_sum: float = 0.0
    max_kkt_violation: float = 0.0
    _pending: dict = field(default_factory=dict)
    _next: int = 0

    def add(self, index: int, block: BlockAbundances) -> None:
        """Blocks may arrive in any order; they are summed in the order of their index."""
        self._pending[index] = (block.pixels, block.residual_sum, block.max_kkt_violation)
        while self._next in self._pending:
            pixels, residual_sum, kkt = self._pending.pop(self._next)
            self.pixels += pixels
            self.residual_sum += residual_sum
            self.max_kkt_violation = max(self.max_kkt_violation, kkt)
            self._next += 1

    @property
    def mean_residual(self) -> float:
        return self.residual_sum / max(1, self.pixels)


def solve_blocks(source, endmembers: np.ndarray, blocks: list[tuple[int, int]]) -> Iterator[tuple[int, BlockAbundances]]:
    """Each block's abundances, in order, on this process."""
    for index, (start, stop) in enumerate(blocks):
        yield index, solve_block(source, endmembers, start, stop)


def write_blocks(
    source, endmembers: np.ndarray, blocks: list[tuple[int, int]], abundances_out, residual_out,
    progress: Callable[[int], None] | None = None,
) -> BlockTotals:
    """Every block solved on this process and written as :func:`write_block` does, in order."""
    from ..io.atomic import raise_if_stopped

    totals = BlockTotals()
    for index, (start, stop) in enumerate(blocks):
        raise_if_stopped()
        totals.add(index, write_block(source, endmembers, start, stop, abundances_out, residual_out))
        if progress is not None:
            progress(1)
    return totals
