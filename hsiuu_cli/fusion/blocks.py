"""Fusing a scene's high-resolution grid a block of rows at a time, after the per-scene fit.

What needs the whole scene, and is done once by :func:`hsiuu_cli.fusion.plan_fusion` (the fit, at
LR scale or on a window/sample of the MSI): the MSI's validity, the sensor fit (PSF, phase, gain and
offset on a central window), the diagnosis (outliers, unreliable edges: the MSI taken to the LR grid,
read strip by strip), the noise and trust estimates, the LR-HSI's denoising, and SpectraMorph's
endmembers, network and prior (trained on the LR grid). CNMF (iterative over the whole HR grid) and
GSA (statistics of the whole HR grid) compute their HR result during the fit too.

What is local, computed here for each block of HR rows from the MSI's rows and LR-scale state: the
network's prediction (per pixel, with the enlarged LR-HSI as prior: bicubic reaches 3 LR rows
around the block, :class:`hsiuu_cli.fusion.bicubic.BicubicStrips`), the consistency step's
correction (:class:`hsiuu_cli.fusion.observation.ConsistencySolver`: its spatial inverse is solved
at LR scale, so a block's correction reads only the PSF's reach of LR rows), the guard's blend with
bicubic, the scaling back to the HSI's units, the no-data mask and bad bands (the HSI enlarged).

Two steps sum over the whole grid, so the blocks run in passes with a reduction on the client in
between, each pass keeping its result in the output (the next pass of a block reads its own rows
back, so the network runs once a round): :func:`first_pass` writes the method's result (the
network's first guess) and returns the consistency step's LR-scale sums, which the client adds in
row order and solves; :func:`consistency_pass` corrects the rows and returns the guard's sums, from
which the client decides (where SpectraMorph refits its networks, a first round of the two passes
makes the refit's targets, consistent with the LR-HSI alone: the first returns the networks' inputs
at a fixed lattice of HR pixels, the second their result there; then the two passes run again with
the refitted networks); :func:`final_pass` blends (when the guard asks for it), scales, masks and
writes the final rows. Sums are added strip by strip in row order, whatever order blocks finish in;
each strip is the same rows as a run without blocks (:data:`STRIP_BYTES` depends only on the scene's
shape); and blocks compute on one thread: the output is byte for byte the same whichever process
computes a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..device import one_thread
from ..io.scene_rows import SceneFile
from .bicubic import BicubicStrips
from .guard import CheckSums, Checks, StripChecks, blended, strip_checks
from .observation import SensorFit, SolverSums

STRIP_BYTES = 64 * 2**20
"""Working-set target per HR row strip; bounds memory whatever the size of the HR grid."""
BLOCK_VALUES = 32 * 2**20
"""Output values in one block of rows (128 MB of float32): a task's output, in whole strips."""


def strip_rows_for(ratio: int, cols: int, bands: int, endmembers: int, msi_bands: int) -> int:
    """HR rows per strip: a multiple of the ratio, about :data:`STRIP_BYTES` of working set."""
    return max(ratio, (STRIP_BYTES // max(1, cols * (bands + 2 * endmembers + msi_bands) * 4 * 4)) // ratio * ratio)


def row_blocks(rows: int, cols: int, bands: int, strip_rows: int) -> list[tuple[int, int]]:
    """The grid's blocks of rows, ``(start, stop)``: whole strips, about :data:`BLOCK_VALUES` values each."""
    strips = max(1, BLOCK_VALUES // max(1, strip_rows * cols * bands))
    step = strips * strip_rows
    return [(start, min(rows, start + step)) for start in range(0, rows, step)]


class MsiRows:
    """Rows of the MSI as stored (the gain fit absorbs any scale factor) and their validity
    (:meth:`Cube.valid_mask`, and finite in every band), from a window of a scene
    (:class:`hsiuu_cli.io.scene_rows.SceneFile`: with a path, a worker opens the file itself and
    maps only the rows of its block)."""

    def __init__(self, scene: SceneFile, window: tuple[int, int, int, int]):
        self.scene = scene
        self.window = tuple(int(v) for v in window)
        """First row, first column, rows, columns of the scene."""

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        row, col, rows, cols = self.window
        part = self.scene.rows(row + start, row + min(stop, rows))
        part = part.replace(data=part.data[:, col : col + cols])
        values = np.asarray(part.data)
        valid = part.valid_mask() & np.isfinite(values).all(axis=2)
        return values, valid


@dataclass
class Calibration:
    """The MSI in the HSI's (scaled) units: gain · MSI + offset per band, optionally projected on the
    HSI's signal subspace seen through the SRF; zero where it has no usable data."""

    gain: np.ndarray
    offset: np.ndarray
    projection: np.ndarray | None = None

    def __call__(self, values: np.ndarray, usable: np.ndarray, project: bool = True) -> np.ndarray:
        calibrated = np.asarray(values, dtype=np.float32) * self.gain.astype(np.float32) + self.offset.astype(np.float32)
        if project and self.projection is not None:
            calibrated = calibrated @ self.projection
        return np.where(usable[:, :, None], calibrated, 0.0).astype(np.float32)


@dataclass
class GuardInputs:
    """What the guard compares with: the scaled LR-HSI before denoising (its bicubic enlargement is
    the fallback), the LR pixels the checks use, the noise floors and the LR target."""

    lr: np.ndarray
    lr_valid: np.ndarray
    lr_noise: float
    msi_noise: np.ndarray | None
    lr_target: np.ndarray
    blend: bool
    bicubic: BicubicStrips
    """``lr`` enlarged by the ratio."""


@dataclass
class BadBands:
    """HSI bands left out of the fusion: written as the HSI's band enlarged (bicubic)."""

    good: np.ndarray
    bad: np.ndarray
    enlarged: BicubicStrips
    """The bad bands of the HSI (physical units), enlarged by the ratio."""


@dataclass
class Precomputed:
    """An HR result computed whole during the fit (CNMF, GSA), read a strip at a time."""

    fused: object
    abundances: np.ndarray | None = None

    def strip(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        return np.asarray(self.fused[start:stop], dtype=np.float32), None if self.abundances is None else self.abundances[start:stop]


@dataclass
class Sinks:
    """Where a block's rows go: the output (every band; it also holds the passes' intermediate
    results, read back by the block that wrote them) and the coefficient maps. Objects with
    ``write(row, col, values)`` and ``read_rows(start, stop)``: ``io.envi.EnviWindows``, or
    :class:`ArrayOut`."""

    values: object
    abundances: object | None = None
    scratch: object | None = None
    """Where passes alternate with the output (the same kind of object), so that no pass reads what
    it writes: a block rerun after its worker died reads its input unchanged. None: every pass reads
    and writes the output (one process, in turn)."""


class ArrayOut:
    """An array, or a :class:`hsiuu_cli.fusion.cubes.RowFile` (which other processes may open), as a sink."""

    def __init__(self, array):
        self.array = array

    def write(self, row: int, col: int, values: np.ndarray) -> None:
        self.array[row : row + values.shape[0]] = values

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop], dtype=np.float32)


@dataclass
class FusionPlan:
    """A fitted fusion of one scene: everything a block of HR rows needs, at LR scale (it pickles,
    to be a cluster task's input), and the blocks."""

    method: str
    shape: tuple[int, int, int]
    """HR rows, columns, and bands of the output (all of the HSI's, bad ones included)."""
    ratio: int
    strip_rows: int
    scale: float
    """The LR-HSI's peak: fusion runs on the HSI divided by it."""
    msi: object
    """The MSI's rows: ``read(start, stop)`` → (stored values, validity)."""
    lr_valid: np.ndarray
    msi_outliers: np.ndarray | None
    """LR grid: where the MSI disagrees grossly (its pixels there are gaps for the fusion)."""
    sensor: SensorFit | None
    srf: np.ndarray
    calibration: Calibration | None
    model: object = None
    """The method's strip source: a SpectraMorph model, an enlarged LR-HSI (bicubic), or the HR
    result computed during the fit (CNMF, GSA)."""
    guard: GuardInputs | None = None
    bad: BadBands | None = None
    with_abundances: bool = False
    alpha: float = 1.0
    """The fused share the guard returned (1 until it decides otherwise)."""
    sinks: Sinks | None = None
    """Where blocks write their rows."""
    pass_input: object | None = None
    pass_output: object | None = None
    """Where the current pass reads its rows from and writes them to (set by :func:`run_blocks`)."""
    refit_step: int = 0
    """While SpectraMorph's consistency pass collects the refit's pairs: every this-many-th pixel of the HR
    grid, in row order (0: not collecting)."""
    info: dict = field(default_factory=dict)

    @property
    def refits(self) -> bool:
        """Whether :func:`run_blocks` refits the model (SpectraMorph's networks) after a first round of its passes."""
        return self.consistency is not None and getattr(self.model, "refit_iterations", 0) > 0

    @property
    def counted_passes(self) -> int:
        """Passes over the HR rows that report progress (the method's and consistency passes)."""
        return 1 if self.consistency is None else 4 if self.refits else 2

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return row_blocks(self.shape[0], self.shape[1], self.shape[2], self.strip_rows)

    def strips(self, start: int, stop: int) -> list[tuple[int, int]]:
        return [(first, min(first + self.strip_rows, stop)) for first in range(start, stop, self.strip_rows)]

    def read_msi(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """HR rows start:stop of the MSI as stored, where it has data, and where the fusion uses it."""
        values, valid = self.msi.read(start, stop)
        usable = valid
        if self.msi_outliers is not None:
            usable = valid & ~np.repeat(np.repeat(self.msi_outliers[start // self.ratio : -(-stop // self.ratio)], self.ratio, axis=0),
                                        self.ratio, axis=1)[: stop - start]
        return values, valid, usable

    def output_valid(self, msi_valid: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Where the output has data: both inputs do."""
        lr_rows = np.repeat(np.repeat(self.lr_valid[start // self.ratio : -(-stop // self.ratio)], self.ratio, axis=0), self.ratio, axis=1)
        return msi_valid & lr_rows[: stop - start]

    @property
    def consistency(self):
        """SpectraMorph's consistency solver (None: the method has no such step)."""
        return getattr(self.model, "solver", None)

    def method_strip(self, start: int, stop: int, calibrated: np.ndarray, usable: np.ndarray,
                     picked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, object]:
        """The method's result for HR rows start:stop (scaled units) before the consistency step and
        the guard, its coefficient maps when it has them, and SpectraMorph's refit inputs at ``picked``."""
        if isinstance(self.model, BicubicStrips):
            return self.model.strip(start // self.ratio, stop // self.ratio), None, None
        if isinstance(self.model, Precomputed):
            return *self.model.strip(start, stop), None
        return self.model.predict(calibrated, usable, start, stop, picked)

    def refit_lattice(self, start: int, stop: int, valid: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """HR rows start:stop's pixels the refit learns from: every ``refit_step``-th pixel of the grid in row
        order, where the MSI is used and the output has data."""
        cols = self.shape[1]
        on_lattice = (np.arange(start * cols, stop * cols) % self.refit_step == 0).reshape(stop - start, cols)
        return on_lattice & usable & self.output_valid(valid, start, stop)

    def sampling(self):
        """The fitted sampling matrices (LR × HR rows, LR × HR columns)."""
        return self.sensor.spatial.matrices(self.lr_valid.shape[0], self.lr_valid.shape[1], self.shape[0], self.shape[1])

    def good_bands(self, values: np.ndarray) -> np.ndarray:
        """The fused bands of output rows (all of them when no band is bad)."""
        return values if self.bad is None else values[:, :, self.bad.good]

    def with_every_band(self, fused: np.ndarray) -> np.ndarray:
        """Fused bands placed in output rows of every band (bad ones still to fill)."""
        if self.bad is None:
            return fused
        rows = np.zeros(fused.shape[:2] + (self.shape[2],), dtype=np.float32)
        rows[:, :, self.bad.good] = fused
        return rows


@dataclass
class BlockSums:
    """What a block returns to the client: each strip's share of the consistency step's sums and of
    the guard's checks (empty where the pass has none)."""

    solver: list[SolverSums] = field(default_factory=list)
    checks: list[StripChecks] = field(default_factory=list)
    refit: list = field(default_factory=list)
    """SpectraMorph's refit lattice, strip by strip: its inputs (:class:`hsiuu_cli.fusion.spectramorph.RefitInputs`)
    from the first pass, its consistent result from the consistency pass."""


def first_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    """Pass 1 of a block: the method's result written to the output (scaled units, fused bands; the
    network's first guess for SpectraMorph) with the final coefficient maps; the consistency step's
    sums, or without that step the guard's."""
    with one_thread():
        return _first_pass(plan, start, stop)


def _first_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    from ..io.atomic import raise_if_stopped

    rows, cols = stop - start, plan.shape[1]
    values = np.empty((rows, cols, plan.shape[2]), dtype=np.float32)
    abundances = None
    sums = BlockSums()
    checks = plan.guard is not None and plan.consistency is None
    if checks:
        gr, gc = plan.sampling()
    for first, last in plan.strips(start, stop):
        raise_if_stopped()
        msi, valid, usable = plan.read_msi(first, last)
        calibrated = None if plan.calibration is None else plan.calibration(msi, usable)
        picked = plan.refit_lattice(first, last, valid, usable) if plan.refit_step else None
        fused, coefficients, lattice = plan.method_strip(first, last, calibrated, usable, picked)
        if lattice is not None:
            sums.refit.append(lattice)
        values[first - start : last - start] = plan.with_every_band(fused)
        if plan.consistency is not None:
            sums.solver.append(plan.consistency.strip_sums(fused, plan.model.msi_for_solve(fused, calibrated, usable, plan.srf),
                                                          first, last))
        if checks:
            sums.checks.append(_strip_checks(plan, fused, msi, usable, gr, gc, first, last))
        if coefficients is not None and plan.with_abundances:
            if abundances is None:
                abundances = np.empty((rows, cols, coefficients.shape[2]), dtype=np.float32)
            coefficients = coefficients.astype(np.float32, copy=True)
            coefficients[~plan.output_valid(valid, first, last)] = np.nan
            abundances[first - start : last - start] = coefficients
    plan.pass_output.write(start, 0, values)
    if abundances is not None and plan.sinks.abundances is not None:
        plan.sinks.abundances.write(start, 0, abundances)
    return sums


def _strip_checks(plan: FusionPlan, fused: np.ndarray, msi: np.ndarray, usable: np.ndarray, gr, gc, first: int,
                  last: int) -> StripChecks:
    bicubic = plan.guard.bicubic.strip(first // plan.ratio, last // plan.ratio)
    # the checks compare with the MSI as recorded (calibrated, not projected)
    return strip_checks(fused, bicubic, plan.calibration(msi, usable, project=False), usable, gr, gc, plan.srf, first, last)


def consistency_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    """Pass 2 of a block (SpectraMorph's consistency step, once the client solved it): the first
    guess read back, corrected and written again; the guard's sums."""
    with one_thread():
        return _consistency_pass(plan, start, stop)


def _consistency_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    from ..io.atomic import raise_if_stopped

    values = plan.pass_input.read_rows(start, stop)
    sums = BlockSums()
    checks = plan.guard is not None and not plan.refit_step  # the guard judges the refitted result only
    if checks:
        gr, gc = plan.sampling()
    for first, last in plan.strips(start, stop):
        raise_if_stopped()
        msi, valid, usable = plan.read_msi(first, last)
        calibrated = plan.calibration(msi, usable)
        part = values[first - start : last - start]
        first_guess = plan.good_bands(part)
        fused = plan.consistency.correct(first_guess, plan.model.msi_for_solve(first_guess, calibrated, usable, plan.srf),
                                         first, last)
        if checks:
            sums.checks.append(_strip_checks(plan, fused, msi, usable, gr, gc, first, last))
        if plan.refit_step:
            sums.refit.append(fused[plan.refit_lattice(first, last, valid, usable)])
        part[:] = plan.with_every_band(fused)
    plan.pass_output.write(start, 0, values)
    return sums


def final_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    """The last pass of a block: the fused rows read back, blended with bicubic by ``plan.alpha``,
    in the HSI's units, NaN without data, bad bands enlarged, written."""
    with one_thread():
        return _final_pass(plan, start, stop)


def _final_pass(plan: FusionPlan, start: int, stop: int) -> BlockSums:
    from ..io.atomic import raise_if_stopped

    values = plan.pass_input.read_rows(start, stop)
    for first, last in plan.strips(start, stop):
        raise_if_stopped()
        _, valid, _ = plan.read_msi(first, last)
        part = values[first - start : last - start]
        fused = plan.good_bands(part)
        if plan.alpha < 1.0:
            fused = blended(fused, plan.guard.bicubic.strip(first // plan.ratio, last // plan.ratio), plan.alpha)
        has_data = plan.output_valid(valid, first, last)
        scaled = fused * np.float32(plan.scale)
        scaled[~has_data] = np.nan
        if plan.bad is None:
            part[:] = scaled
        else:
            part[:, :, plan.bad.good] = scaled
            part[:, :, plan.bad.bad] = plan.bad.enlarged.strip(first // plan.ratio, last // plan.ratio)
            part[~has_data] = np.nan
    plan.pass_output.write(start, 0, values)
    return BlockSums()


MapBlocks = Callable[..., None]
"""``map_blocks(task, plan, on_result)``: ``task(plan, start, stop)`` for every block of the plan,
each result given to ``on_result(block index, result)`` as it comes, in any order."""


def in_turn(task, plan: FusionPlan, on_result: Callable[[int, object], None]) -> None:
    """Every block in this process, in order."""
    for index, (start, stop) in enumerate(plan.blocks):
        on_result(index, task(plan, start, stop))


class InOrder:
    """Results that arrive in any order, handed to ``use(index, result)`` in the order of their
    index as soon as they can be (floating-point sums depend on the order)."""

    def __init__(self, use: Callable[[int, object], None]):
        self.use, self.pending, self.following = use, {}, 0

    def __call__(self, index: int, result: object) -> None:
        self.pending[index] = result
        while self.following in self.pending:
            self.use(self.following, self.pending.pop(self.following))
            self.following += 1


def run_blocks(plan: FusionPlan, map_blocks: MapBlocks = in_turn, advance: Callable[[float], None] = lambda n: None) -> Checks | None:
    """Fuse every block of ``plan`` into ``plan.sinks`` through ``map_blocks`` (in this process, or
    as cluster tasks): the method's pass (with the consistency step's sums, or the guard's), the
    consistency solve on the LR grid and its pass (with the guard's sums), the guard's decision,
    and the final pass; where SpectraMorph refits, a first round of the first two passes and the refit
    before them (the model's networks are refitted in place: a second call refits them again).
    Returns the guard's checks (None without a guard)."""
    rows = [stop - start for start, stop in plan.blocks]
    guard, solver = plan.guard, plan.consistency
    refits = plan.refits
    passes = 5 if refits else 3 if solver is not None else 2
    # the last pass writes the output; with scratch, the passes before it alternate with it
    targets = [plan.sinks.values if (passes - 1 - index) % 2 == 0 else (plan.sinks.scratch or plan.sinks.values)
               for index in range(passes)]
    sums = None
    if guard is not None:
        fused_bands = plan.shape[2] if plan.bad is None else plan.bad.good.size
        sums = CheckSums(plan.lr_valid.shape, fused_bands, plan.srf.shape[1])
    gathered = []

    def add(index: int, block: BlockSums) -> None:
        for part in block.solver:
            plan.consistency.add(part)
        for part in block.checks:
            sums.add(part)
        gathered.extend(block.refit)
        advance(rows[index])

    if refits:
        _refit_round(plan, map_blocks, add, targets, gathered)
    plan.pass_input, plan.pass_output = None, targets[-3 if solver is not None else -2]
    map_blocks(first_pass, plan, InOrder(add))
    if solver is not None:
        plan.consistency.finish()
        plan.pass_input, plan.pass_output = targets[-3], targets[-2]
        map_blocks(consistency_pass, plan, InOrder(add))
    checks = None
    if sums is not None:
        checks = sums.checks(guard.lr, guard.lr_valid, blend=guard.blend, lr_noise=guard.lr_noise, msi_noise=guard.msi_noise,
                             lr_target=guard.lr_target)
        plan.alpha = checks.alpha
    plan.pass_input, plan.pass_output = targets[-2], targets[-1]
    map_blocks(final_pass, plan, lambda index, block: None)
    return checks


def _refit_round(plan: FusionPlan, map_blocks: MapBlocks, add: Callable[[int, BlockSums], None], targets: list,
                 gathered: list) -> None:
    """SpectraMorph's refit: the first two passes with the consistency step's LR term only (into ``targets``' first
    two), the networks' inputs at a lattice of HR pixels taken by the first and their result by the second (both
    ``gathered`` by ``add``), on which the networks are refitted."""
    from .spectramorph import RefitInputs

    model = plan.model
    rows_hr, cols_hr = plan.shape[:2]
    # the first round's result is only the refit's targets: consistent with the LR-HSI alone
    final_solver, model.solver = model.solver, model.target_solver
    plan.refit_step = -(-rows_hr * cols_hr // model.refit_pixels)
    try:
        plan.pass_input, plan.pass_output = None, targets[0]
        map_blocks(first_pass, plan, InOrder(add))
        lattice = RefitInputs.joined(gathered)
        gathered.clear()
        model.solver.finish()
        plan.pass_input, plan.pass_output = targets[0], targets[1]
        map_blocks(consistency_pass, plan, InOrder(add))
        fused = np.concatenate(gathered)
    finally:
        model.solver, plan.refit_step = final_solver, 0
    model.refit(lattice, fused)
