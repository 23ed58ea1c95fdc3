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

from .tasks import run_block_tasks


def _block_task(plan, index: int, task: Callable, args: tuple):
    return task(plan, index, *args)


def cluster_runner(client, directories: Iterable[Path], *, scheduler: object = "the scheduler"):
    """A :data:`hsiuu_cli.simulate.Runner` whose blocks are tasks on ``client``'s cluster (the
    outputs' temporaries in ``directories``). Ctrl-C, a failed block or a lost scheduler
    (ClusterError) stops every task of the pass."""
    directories = list(directories)

    def run(task: Callable, plan, on_result: Callable[[int, object], None], *args) -> None:
        run_block_tasks(client, "simulate-" + task.__name__.replace("_", "-"), plan, _block_task,
                        [(index, task, args) for index in range(len(plan.blocks))], on_result, directories, scheduler)

    return run
