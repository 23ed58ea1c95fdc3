"""One scene's fusion as blocks of HR rows on a cluster, after the per-scene fit on the client.

The client fits the scene (:func:`hsiuu_cli.fusion.plan_fusion`: LR scale, and the MSI read strip
by strip) and allocates the output under a temporary name (ENVI; for a GeoTIFF, a scratch file
beside it that the client, the one writer, converts at the end); each pass over the blocks
(:func:`hsiuu_cli.fusion.blocks.run_blocks`) makes every block of rows a task. A worker maps the
MSI, reads its rows, fuses them exactly as a local run does and writes them at their offsets:
blocks never overlap, so the workers need no lock. The passes alternate between the output and a
scratch file, so a block rerun after its worker died reads what the first try read and writes the
same bytes. What a pass sums (the consistency step's right-hand side, the guard's checks) comes back
to the client, which adds it in row order. A worker holds the plan (LR-scale state) and one block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from .tasks import run_block_tasks


def fuse_task(job, start: int, stop: int):
    """The task: one block of one pass (``job``: the pass's function and the plan as that pass
    sees it)."""
    task, plan = job
    return task(plan, start, stop)


def cluster_map(client, directories: Sequence[Path], scheduler: object = "the scheduler"):
    """A ``map_blocks`` for :func:`hsiuu_cli.fusion.blocks.run_blocks` whose blocks are tasks on
    ``client``'s cluster, each pass a run of its own (:func:`hsiuu_cli.cluster.tasks.run_block_tasks`:
    the run's temporaries in ``directories`` swept; Ctrl-C, a failed block or a lost scheduler stops
    every task)."""

    def map_blocks(task: Callable, plan, on_result: Callable) -> None:
        # each pass sends the plan as the client left it (the consistency solve, the guard's share)
        run_block_tasks(client, f"fuse-{task.__name__}", (task, plan), fuse_task, plan.blocks, on_result, directories, scheduler)

    return map_blocks
