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

import itertools
from typing import Callable

from ..io.atomic import stop_when
from .session import Run, RunTicket, connected, import_distributed, result_of
from .tasks import cancel


def _plan_job(plan):
    return plan


def fuse_task(task: Callable, plan, start: int, stop: int, args: tuple, ticket: RunTicket):
    """The task: one block of one pass (``task(plan, start, stop, *args)``), stopped with its run."""
    with stop_when(ticket.stop_check()):
        return task(plan, start, stop, *args)


def cluster_map(client, run: Run, scheduler: object = "the scheduler"):
    """A ``map_blocks`` for :func:`hsiuu_cli.fusion.blocks.run_blocks` whose blocks are tasks on
    ``client``'s cluster. Ctrl-C, a failed block or a lost scheduler (ClusterError) stops every task
    of the run."""
    distributed = import_distributed()
    passes = itertools.count()

    def map_blocks(task: Callable, plan, *args):
        number = next(passes)
        # a task that returns the plan rather than scattered data: should every worker holding it
        # die, the scheduler can make it again (each pass sends the plan as the last one left it)
        job = client.submit(_plan_job, plan, key=f"hsiuu-fuse-plan-{number}-{run.id}", pure=False)
        futures = {
            client.submit(fuse_task, task, job, start, stop, args, run.ticket,
                          key=f"hsiuu-fuse-block-{number}-{index}-{run.id}", pure=False): index
            for index, (start, stop) in enumerate(plan.blocks)
        }
        try:
            for future in distributed.as_completed(futures):
                yield futures[future], result_of(future, scheduler)
        except BaseException:
            run.stop()
            cancel(client, [*futures, job])
            raise
        finally:
            if connected(client):
                cancel(client, [job])

    return map_blocks
