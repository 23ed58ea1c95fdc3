"""One scene's unmixing as blocks of rows on a cluster, written into pre-allocated outputs.

The client finds the endmembers on the scene's sample (:func:`hsiuu_cli.unmixing.plan_unmixing`)
and allocates the abundance and residual cubes (ENVI) under temporary names; each block of rows is
a task. A worker maps the scene, reads its rows, solves their FCLS abundances exactly as a local
run does (:func:`hsiuu_cli.unmixing.blocks.write_block`) and writes them at their offsets: blocks
never overlap, so the workers need no lock, and a block rerun after its worker died writes the same
bytes again. A worker holds one block: about 64 MB of pixels and their abundances.
"""

from __future__ import annotations

from typing import Callable

from ..unmixing.blocks import BlockAbundances, BlockTotals, write_block
from .tasks import run_block_tasks


def unmix_block(job, start: int, stop: int, abundances_out, residual_out) -> BlockAbundances:
    """The task: one block of rows solved and written (see :func:`write_block`)."""
    source, endmembers = job
    return write_block(source, endmembers, start, stop, abundances_out, residual_out)


def write_blocks_on_cluster(
    client, plan, abundances_out, residual_out, *, progress: Callable[[int], None] | None = None,
    scheduler: object = "the scheduler",
) -> BlockTotals:
    """Every block of ``plan`` (an ``UnmixingPlan`` on a scene file every worker sees) as a task on
    ``client``'s cluster, written into ``abundances_out`` and ``residual_out`` (``EnviWindows``).
    Ctrl-C, a failed block or a lost scheduler (ClusterError) stops every task of the run."""
    totals = BlockTotals()

    def add(index: int, block: BlockAbundances) -> None:
        totals.add(index, block)
        if progress is not None:
            progress(1)

    run_block_tasks(client, "unmix", (plan.source, plan.endmembers), unmix_block,
                    [(start, stop, abundances_out, residual_out) for start, stop in plan.blocks], add,
                    [abundances_out.output.parent], scheduler)
    return totals
