"""One scene's super-resolution as blocks of tiles on a cluster, written into one pre-allocated output.

The client reads the scene's header, learns what needs the whole scene (normalisation statistics,
no-data fill values, the residual gain of the self-check: :class:`~hsiuu_cli.superres.inference.SceneState`)
and cuts the LR grid into blocks: one strip of ``tile`` LR rows by a run of whole tiles of columns.
Each block is a task. A worker opens the scene itself (a memory map: it reads only the rows of
its strip, with the model's halo), computes the block's tiles exactly as a local run computes
them, and

* ENVI: writes them straight into the output, allocated at its full size under a temporary name
  by the client, at offsets computed from the layout (positional writes: blocks never overlap,
  so workers need no lock);
* GeoTIFF: returns them; the client is the one writer (GDAL cannot take writes from several
  processes), with a bounded number of blocks computed ahead of it.

A block rerun after its worker died writes the same bytes at the same offsets. Worker memory is
set by the block: the LR strip (whole width, ``tile`` + 2·halo rows) and the block's HR pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..cube import Cube
from ..io.atomic import raise_if_stopped, stop_when
from ..superres.inference import Plan, SceneState, SuperResolvedArray, SuperResolver, rows_of_strips, super_resolve_cube
from ..superres.registry import LoadedModel
from .session import Run, RunTicket, connected, import_distributed, result_of
from .tasks import cancel

BLOCK_BYTES = 128 * 2**20
"""Target HR size of one block (output pixels a task holds at once, besides its LR strip)."""
LOOKAHEAD_PER_WORKER = 2
"""GeoTIFF: blocks computed ahead of the client's writer, per worker (bounds what workers hold)..."""
LOOKAHEAD_BYTES = 2**30
"""... and no more than this many bytes of them (what the client may have to hold at once)."""


@dataclass(frozen=True)
class SceneJob:
    """What every block task of a scene needs (sent to each worker once)."""

    source: Path
    scale: int
    model: LoadedModel | None
    method: str
    tile: int
    device: str
    state: SceneState
    dtype: np.dtype
    scale_factor: float | None
    nodata: float | None


@dataclass(frozen=True)
class Block:
    """LR rows ``rows`` (one strip of whole tiles) and LR columns ``cols`` (whole tiles)."""

    rows: tuple[int, int]
    cols: tuple[int, int]

    def tiles(self, tile: int) -> int:
        return -(-(self.cols[1] - self.cols[0]) // tile)


@dataclass
class BlockResult:
    block: Block
    clipped: int
    converted: int
    seconds: float
    pieces: list[tuple[int, int, np.ndarray]] | None = None
    """GeoTIFF: the block's HR tiles (row, column, pixels), for the client to write."""


@dataclass
class BlocksReport:
    """What a scene's run on the cluster did."""

    plan: Plan
    blocks: int
    dtype: np.dtype
    """The output's data type."""
    clipped: int = 0
    converted: int = 0
    block_seconds: float = 0.0
    """Summed time the workers spent on blocks."""
    wall_seconds: float = 0.0


def plan_blocks(rows: int, cols: int, bands: int, scale: int, tile: int, itemsize: int, block_bytes: int = BLOCK_BYTES) -> list[Block]:
    """The scene's blocks, in row order: strips of ``tile`` LR rows, each cut into runs of whole
    tiles whose HR pixels hold about ``block_bytes``."""
    tile_bytes = (tile * scale) ** 2 * bands * itemsize
    per_block = max(1, block_bytes // max(1, tile_bytes))
    width = per_block * tile
    return [
        Block((r0, min(rows, r0 + tile)), (c0, min(cols, c0 + width)))
        for r0 in range(0, rows, tile)
        for c0 in range(0, cols, width)
    ]


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------

_resolvers: dict[str, SuperResolver] = {}
"""One resolver (model session, open scene) per run on each worker, reused by its blocks."""


def _resolver(job: SceneJob, run_id: str) -> SuperResolver:
    resolver = _resolvers.get(run_id)
    if resolver is None:
        from ..io import read_cube

        _resolvers.clear()  # the previous run's session and memory map go
        resolver = SuperResolver(
            read_cube(job.source), job.scale, job.model, method=job.method, tile=job.tile, device=job.device,
            calibrate=False, state=job.state,
        )
        _resolvers[run_id] = resolver
    return resolver


def render_block(job: SceneJob, block: Block, windows, ticket: RunTicket) -> BlockResult:
    """The task: a block's tiles, written into ``windows`` (an ``io.envi.EnviWindows``) or, without
    it, returned. Stops between tiles once the run is stopped."""
    started = time.perf_counter()
    array = SuperResolvedArray(_resolver(job, ticket.id), job.dtype, job.scale_factor, job.nodata)
    pieces = None if windows is not None else []
    with stop_when(ticket.stop_check()):
        for row, col, pixels in array.windows(*block.rows, *block.cols):
            raise_if_stopped()
            if windows is not None:
                windows.write(row, col, pixels)
            else:
                pieces.append((row, col, pixels))
    return BlockResult(block, array.clipped, array.converted, time.perf_counter() - started, pieces)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


def super_resolve_blocks(
    client,
    cube: Cube,
    source: Path,
    target: Path,
    scale: int,
    model: LoadedModel | None,
    *,
    method: str = "model",
    tile: int | None = None,
    device: str = "auto",
    dtype=None,
    calibrate: bool = True,
    format: str | None = None,
    creation_options: dict[str, str] | None = None,
    interleave: str = "bsq",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    block_bytes: int = BLOCK_BYTES,
    scheduler: object = "the scheduler",
    denoise: bool | None = None,
) -> BlocksReport:
    """Super-resolve ``cube`` (read from ``source``, which every worker must see at that path) on
    ``client``'s cluster into ``target``; the output's bytes equal those of a local
    ``write_cube(super_resolve_cube(...))`` with the same options.

    ``interleave`` and ``creation_options`` are those of :func:`hsiuu_cli.io.write_cube`;
    ``progress`` hears the number of tiles each finished block held. Ctrl-C, an error in a block or
    a lost scheduler (ClusterError) stops the run and leaves no output and no temporary file.
    """
    from ..io import open_envi_windows, output_format, write_cube

    started = time.perf_counter()
    advance = progress or (lambda _n=1: None)
    result, plan = super_resolve_cube(cube, scale, model, method=method, tile=tile, device=device, dtype=dtype, calibrate=calibrate,
                                      denoise=denoise)
    array: SuperResolvedArray = result.data
    job = SceneJob(
        Path(source).resolve(), scale, model, method, array.resolver.tile, device, array.resolver.state(),
        array.dtype, array.scale_factor, array.nodata,
    )
    blocks = plan_blocks(cube.rows, cube.cols, cube.bands, scale, job.tile, array.dtype.itemsize, block_bytes)
    report = BlocksReport(plan, len(blocks), array.dtype)
    run = Run(client, [Path(target).parent])
    distributed = import_distributed()
    # a task that returns the job rather than scattered data: should every worker holding it die,
    # the scheduler can make it again
    job_future = client.submit(_scene_job, job, key=f"hsiuu-scene-{run.id}", pure=False)

    def submit(index: int, windows):
        return client.submit(render_block, job_future, blocks[index], windows, run.ticket,
                             key=f"hsiuu-block-{index}-{run.id}", pure=False)

    def account(future) -> BlockResult:
        done: BlockResult = result_of(future, scheduler)
        report.clipped += done.clipped
        report.converted += done.converted
        report.block_seconds += done.seconds
        advance(done.block.tiles(job.tile))
        return done

    futures: list = []
    try:
        if output_format(target, format) == "ENVI":
            with open_envi_windows(result, target, overwrite=overwrite, creation_options=creation_options,
                                   interleave=interleave) as windows:
                futures = [submit(i, windows) for i in range(len(blocks))]
                for future in distributed.as_completed(futures):
                    account(future)
        else:
            workers = len(client.scheduler_info().get("workers", {}))
            lookahead = min(LOOKAHEAD_PER_WORKER * max(1, workers), max(2, LOOKAHEAD_BYTES // block_bytes))
            gathered = GatheredRows(result.shape, array.dtype, blocks, job.tile, scale, submit, account, lookahead=lookahead)
            futures = gathered.futures
            write_cube(result.replace(data=gathered), target, format=format, overwrite=overwrite,
                       creation_options=creation_options, interleave=interleave)
    except BaseException:
        run.stop()
        cancel(client, [*futures, job_future])
        raise
    finally:
        run.sweep()
        if connected(client):
            cancel(client, [job_future])
            _forget(client, run.id)
    report.wall_seconds = time.perf_counter() - started
    return report


def _drop_resolver(run_id: str) -> None:
    _resolvers.pop(run_id, None)


def _forget(client, run_id: str) -> None:
    """Workers let go of the run's model session and memory map."""
    try:
        client.run(_drop_resolver, run_id)
    except Exception:  # noqa: BLE001 - the scheduler is gone; so are the workers' ties to this run
        pass


def _scene_job(job: SceneJob) -> SceneJob:
    return job


class GatheredRows:
    """The super-resolved rows as an array-like for the GeoTIFF writer: each strip gathered from its
    blocks' tasks when the writer reaches it, with at most ``lookahead`` blocks submitted ahead."""

    ndim = 3

    def __init__(self, shape, dtype, blocks: list[Block], tile: int, scale: int, submit, account, *, lookahead: int):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.blocks, self.tile, self.scale = blocks, tile, scale
        self._submit, self._account, self.lookahead = submit, account, max(1, lookahead)
        self.futures: list = []
        self._done = 0
        self._strip: tuple[int, int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _top_up(self, needed: int) -> None:
        while len(self.futures) < min(len(self.blocks), max(needed, self._done + self.lookahead)):
            self.futures.append(self._submit(len(self.futures), None))

    def _strip_of(self, hr_row: int) -> tuple[int, int, np.ndarray]:
        if self._strip is not None and self._strip[0] <= hr_row < self._strip[1]:
            return self._strip
        self._strip = None
        lr_row = hr_row // self.scale // self.tile * self.tile
        indices = [i for i, b in enumerate(self.blocks) if b.rows[0] == lr_row]
        self._top_up(indices[-1] + 1)
        first = lr_row * self.scale
        last = min(self.shape[0], self.blocks[indices[0]].rows[1] * self.scale)
        strip = np.empty((last - first,) + self.shape[1:], self.dtype)
        for index in indices:
            done = self._account(self.futures[index])
            for row, col, pixels in done.pieces:
                strip[row - first : row - first + pixels.shape[0], col : col + pixels.shape[1]] = pixels
            self.futures[index].release()
            self._done = max(self._done, index + 1)
        self._top_up(0)
        self._strip = (first, last, strip)
        return self._strip

    def __getitem__(self, key) -> np.ndarray:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if not isinstance(rows, slice) or rows.indices(self.shape[0])[2] != 1:
            raise TypeError("GatheredRows is read a contiguous strip of rows at a time")
        start, stop, _ = rows.indices(self.shape[0])
        out = rows_of_strips(start, stop, self.shape, self.dtype, self._strip_of)
        return out[(slice(None),) + rest] if rest else out
