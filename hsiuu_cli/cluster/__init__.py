"""Scale-out on a Dask cluster (``--scheduler``): many scenes as tasks, one large scene as blocks.

* :func:`connect` — a ``distributed.Client`` on a running scheduler, a scheduler file or a
  ``LocalCluster`` (``local:N``); :func:`parse_scheduler` reads the ``--scheduler`` value.
* :func:`run_inputs` — each input one task (:mod:`.tasks`).
* :func:`super_resolve_blocks` — one scene's super-resolution as blocks of tiles written by the
  workers into one pre-allocated output (:mod:`.superres`).
* :func:`.unmix.write_blocks_on_cluster` — one scene's FCLS abundances as blocks of rows written
  by the workers into the pre-allocated abundance and residual cubes (:mod:`.unmix`).
* :func:`.fuse.cluster_map` — one pair's fusion, after the per-scene fit on the client, as passes
  over blocks of HR rows written by the workers into the pre-allocated output (:mod:`.fuse`).
* :func:`.simulate.cluster_runner` — one scene's simulation as blocks of rows, a pass over them
  as tasks: the survey (no-data, signal power), then the blocks written by the workers into the
  pre-allocated outputs (:mod:`.simulate`).

Dask is an optional extra (``pip install 'hsiuu[dask]'``): nothing here imports it at import time,
so commands run without ``--scheduler`` never load it. docs/scale.md says what each command
distributes and how to deploy on SLURM and Kubernetes.
"""

from .session import ENV_VAR, Run, RunTicket, SchedulerSpec, connect, import_distributed, parse_scheduler
from .tasks import TaskOutcome, run_input, run_inputs

__all__ = [
    "ENV_VAR",
    "Run",
    "RunTicket",
    "SchedulerSpec",
    "TaskOutcome",
    "connect",
    "import_distributed",
    "parse_scheduler",
    "run_input",
    "run_inputs",
]
