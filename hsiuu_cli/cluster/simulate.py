"""One scene's simulation as blocks of rows on a cluster (:mod:`hsiuu_cli.simulate`).

The client plans the blocks; each pass over them is one task per block. The survey's tasks return
their no-data counts and signal power, which the client sums into the noise levels; the writing
tasks map the scene, read their rows with the PSF's halo, degrade them exactly as a local run does
(:func:`hsiuu_cli.simulate.write_block`) and write them at their offsets in the outputs the client
allocated (ENVI): blocks never overlap, so workers need no lock, and a block rerun after its worker
died writes the same bytes again. For a GeoTIFF output the tasks return their rows and the client
puts them together and writes the file (GDAL takes no writes from several processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from ..io.atomic import stop_when
from .session import Run, RunTicket, connected, import_distributed, result_of
from .tasks import cancel


def _plan_job(plan):
    return plan


def _block_task(task: Callable, plan, index: int, args: tuple, ticket: RunTicket):
    with stop_when(ticket.stop_check()):
        return task(plan, index, *args)


def cluster_runner(client, directories: Iterable[Path], *, scheduler: object = "the scheduler"):
    """A :data:`hsiuu_cli.simulate.Runner` whose blocks are tasks on ``client``'s cluster (the
    outputs' temporaries in ``directories``). Ctrl-C, a failed block or a lost scheduler
    (ClusterError) stops every task of the pass."""
    distributed = import_distributed()
    directories = list(directories)

    def run(task: Callable, plan, on_result: Callable[[int, object], None], *args) -> None:
        pass_run = Run(client, directories)
        # a task that returns the plan rather than scattered data: should every worker holding it
        # die, the scheduler can make it again
        name = task.__name__.replace("_", "-")
        job = client.submit(_plan_job, plan, key=f"hsiuu-simulate-{name}-plan-{pass_run.id}", pure=False)
        futures = {
            client.submit(_block_task, task, job, index, args, pass_run.ticket, key=f"hsiuu-simulate-{name}-{index}-{pass_run.id}",
                          pure=False): index
            for index in range(len(plan.blocks))
        }
        try:
            for future in distributed.as_completed(futures):
                on_result(futures[future], result_of(future, scheduler))
        except BaseException:
            pass_run.stop()
            cancel(client, [*futures, job])
            raise
        finally:
            pass_run.sweep()
            if connected(client):
                cancel(client, [job])

    return run
