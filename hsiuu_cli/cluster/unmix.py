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

import numpy as np

from ..io.atomic import stop_when
from ..unmixing.blocks import BlockAbundances, BlockTotals, write_block
from .session import Run, RunTicket, connected, import_distributed, result_of
from .tasks import cancel


def _scene_job(source, endmembers: np.ndarray):
    return source, endmembers


def unmix_block(job, start: int, stop: int, abundances_out, residual_out, ticket: RunTicket) -> BlockAbundances:
    """The task: one block of rows solved and written (see :func:`write_block`)."""
    source, endmembers = job
    with stop_when(ticket.stop_check()):
        return write_block(source, endmembers, start, stop, abundances_out, residual_out)


def write_blocks_on_cluster(
    client, plan, abundances_out, residual_out, *, progress: Callable[[int], None] | None = None,
    scheduler: object = "the scheduler",
) -> BlockTotals:
    """Every block of ``plan`` (an ``UnmixingPlan`` on a scene file every worker sees) as a task on
    ``client``'s cluster, written into ``abundances_out`` and ``residual_out`` (``EnviWindows``).
    Ctrl-C, a failed block or a lost scheduler (ClusterError) stops every task of the run."""
    distributed = import_distributed()
    run = Run(client, [abundances_out.output.parent])
    # a task that returns the scene and endmembers rather than scattered data: should every worker
    # holding it die, the scheduler can make it again
    job = client.submit(_scene_job, plan.source, plan.endmembers, key=f"hsiuu-unmix-scene-{run.id}", pure=False)
    futures = {
        client.submit(unmix_block, job, start, stop, abundances_out, residual_out, run.ticket,
                      key=f"hsiuu-unmix-block-{index}-{run.id}", pure=False): index
        for index, (start, stop) in enumerate(plan.blocks)
    }
    totals = BlockTotals()
    try:
        for future in distributed.as_completed(futures):
            totals.add(futures[future], result_of(future, scheduler))
            if progress is not None:
                progress(1)
    except BaseException:
        run.stop()
        cancel(client, [*futures, job])
        raise
    finally:
        run.sweep()
        if connected(client):
            cancel(client, [job])
    return totals
