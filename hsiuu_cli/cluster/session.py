"""Connecting to a Dask cluster, and what every run on it shares: a run id, the stop signal, the sweep.

``--scheduler`` (or ``HSIUU_SCHEDULER``) takes:

* ``tcp://host:8786`` (or ``host:8786``, ``tls://…``): a running ``dask scheduler``;
* a scheduler file (``dask scheduler --scheduler-file FILE``, as dask-jobqueue and HPC scripts write);
* ``local:N``: a ``LocalCluster`` of N single-threaded worker processes on this machine, for the
  run only (``local`` alone: one per core).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import ClusterError, MissingExtraError, ParameterError
from ..io.atomic import remove_temporaries

ENV_VAR = "HSIUU_SCHEDULER"
CONNECT_TIMEOUT_S = float(os.environ.get("HSIUU_CONNECT_TIMEOUT", 10))
"""How long to try a scheduler's address before giving up (and how long a lost one is retried)."""
WORKER_WAIT_S = float(os.environ.get("HSIUU_WORKER_WAIT", 120))
"""How long to wait for a first worker to join a scheduler that has none."""
STOP_POLL_S = 0.5
"""A task asks whether its run was stopped at most this often (each ask is a message to the scheduler)."""


@dataclass(frozen=True)
class SchedulerSpec:
    kind: str
    """``local``, ``address`` or ``file``."""
    target: str | None = None
    """The address or scheduler file."""
    workers: int | None = None
    """``local``: how many worker processes (None: one per core)."""

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.workers}" if self.workers else "local"
        return str(self.target)


def parse_scheduler(value: str) -> SchedulerSpec:
    """A ``--scheduler`` value as a :class:`SchedulerSpec`; ParameterError for one that cannot be."""
    text = value.strip()
    if not text:
        raise ParameterError("the scheduler address is empty")
    lowered = text.lower()
    if lowered == "local" or lowered.startswith("local:"):
        count = text.partition(":")[2].strip()
        if not count:
            return SchedulerSpec("local")
        if not count.isdigit() or int(count) < 1:
            raise ParameterError(f"'{text}': local:N takes a number of workers of at least 1")
        return SchedulerSpec("local", workers=int(count))
    if "://" not in text and (text.endswith(".json") or Path(text).is_file()):
        return SchedulerSpec("file", target=text)
    if "://" not in text:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ParameterError(f"'{text}' is not a scheduler address (tcp://HOST:PORT), a scheduler file or local:N")
        text = f"tcp://{text}"
    return SchedulerSpec("address", target=text)


def import_distributed():
    """The ``distributed`` module, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            "--scheduler needs Dask, which is not installed: pip install 'hsiuu[dask]' (or dask[distributed])"
        ) from None
    return distributed


@contextmanager
def connect(spec: SchedulerSpec | str) -> Iterator:
    """A ``distributed.Client`` on the cluster ``spec`` names, closed (with any LocalCluster) at the end.

    ClusterError when the scheduler cannot be reached or no worker joins it in time.
    """
    spec = parse_scheduler(spec) if isinstance(spec, str) else spec
    distributed = import_distributed()
    _quiet_logs()
    cluster = None
    try:
        if spec.kind == "local":
            # one thread per worker process: hsiuu's tasks hold the GIL in numpy/ONNX calls for long
            # stretches, and Dask's nannies set OMP_NUM_THREADS=1 so each process keeps to its core
            # the scheduler's HTTP server on any free port: the default 8787 may be taken (by another
            # run), which Dask reports with a warning that would land in the middle of hsiuu's output
            cluster = distributed.LocalCluster(
                n_workers=spec.workers or _cores(), threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,
            )
            client = distributed.Client(cluster, timeout=CONNECT_TIMEOUT_S)
        elif spec.kind == "file":
            if not Path(spec.target).is_file():
                raise ClusterError("scheduler file not found", spec.target)
            client = distributed.Client(scheduler_file=spec.target, timeout=CONNECT_TIMEOUT_S)
        else:
            client = distributed.Client(spec.target, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        if isinstance(exc, ClusterError):
            raise
        raise ClusterError(f"cannot reach the Dask scheduler at {spec} ({_one_line(exc)})") from None
    try:
        _wait_for_workers(client, spec)
        yield client
    finally:
        _close(client, cluster)
        # a LocalCluster's workers were killed with it, perhaps in the middle of a write
        for run in _runs.pop(id(client), []):
            run.sweep()


def _wait_for_workers(client, spec: SchedulerSpec) -> None:
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler at {spec} within {WORKER_WAIT_S:g} s") from None


def _close(client, cluster) -> None:
    try:
        client.close(timeout=CONNECT_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - a lost scheduler cannot be closed politely; nothing is left to do
        pass
    if cluster is not None:
        try:
            cluster.close(timeout=CONNECT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - same
            pass


def _quiet_logs() -> None:
    """Dask's own log lines (reconnection attempts, worker restarts) would cut through the progress
    bar; hsiuu reports what matters itself. ``--debug`` users can raise the level again."""
    for name in ("distributed", "distributed.client", "distributed.core", "distributed.comm", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def result_of(future, scheduler: object):
    """A finished future's result; its own error if its task failed; ClusterError if it was
    cancelled under us (the scheduler is gone: Dask cancels every future of a lost connection)."""
    distributed = import_distributed()
    try:
        distributed.wait([future])
    except Exception:  # noqa: BLE001 - Dask raises on cancelled futures; the status says what happened
        pass
    if future.status == "finished":
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - its data went with the scheduler
            raise lost_scheduler(scheduler) from None
    if future.status == "error":
        try:
            error = future.exception(timeout=CONNECT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the scheduler went while we asked
            raise lost_scheduler(scheduler) from None
        raise error
    raise lost_scheduler(scheduler)


def connected(client) -> bool:
    """Whether the client still talks to its scheduler (after a loss, every call would wait for a timeout)."""
    return getattr(client, "status", "running") == "running"


def lost_scheduler(spec: object) -> ClusterError:
    return ClusterError(f"lost the connection to the Dask scheduler at {spec}; the run was abandoned and nothing was left half-written")


# ---------------------------------------------------------------------------------------------
# One run: its id, its stop signal, its temporaries
# ---------------------------------------------------------------------------------------------


_runs: dict[int, list["Run"]] = {}
"""The runs made on each open client (by ``id``), swept once more when :func:`connect` closes it."""


class Run:
    """One command's work on the cluster.

    Its id tags every temporary file its tasks make (``io.atomic.temporary_tag``), so files a killed
    worker left behind are found and removed (:meth:`sweep`); its stop signal (a Dask ``Event``)
    tells running tasks to give up at their next block of output (:meth:`stop`).
    """

    def __init__(self, client, directories: Iterable[Path]):
        self.client = client
        self.id = secrets.token_hex(6)
        self.directories = sorted({Path(d).absolute() for d in directories}, key=str)
        _runs.setdefault(id(client), []).append(self)

    @property
    def ticket(self) -> "RunTicket":
        """What a task needs to know about its run (picklable)."""
        return RunTicket(self.id, os.getcwd())

    def stop(self) -> None:
        """Tell the run's tasks to stop (they remove their temporaries as they go)."""
        distributed = import_distributed()
        if not connected(self.client):
            return
        try:
            distributed.Event(self.ticket.event, client=self.client).set()
        except Exception:  # noqa: BLE001 - a lost scheduler cannot pass the signal on; the sweep still runs
            pass

    def sweep(self) -> list[Path]:
        """Remove the temporaries of this run left in the output directories (by killed workers)."""
        removed = []
        for directory in self.directories:
            if directory.is_dir():
                removed += remove_temporaries(directory, self.id)
        return removed


@dataclass(frozen=True)
class RunTicket:
    """A task's view of its run: the id that tags its temporaries, the name of its stop signal and
    the client's working directory."""

    id: str
    directory: str

    @property
    def event(self) -> str:
        return f"hsiuu-stop-{self.id}"

    def stop_check(self):
        """A cheap ``() -> bool`` for ``io.atomic.stop_when``: true once the run was stopped, or once
        this worker is closing (its scheduler gone); the scheduler is asked at most every
        :data:`STOP_POLL_S` seconds."""
        distributed = import_distributed()
        last = [0.0, False]

        def stopped() -> bool:
            now = time.monotonic()
            if last[1] or now - last[0] < STOP_POLL_S:
                return last[1]
            last[0] = now
            try:
                worker = distributed.get_worker()
                if worker.status.name not in ("running", "paused", "closing_gracefully"):
                    last[1] = True
                else:
                    last[1] = distributed.Event(self.event).is_set()
            except ValueError:  # not on a worker (a task run in the client's process)
                last[1] = False
            except Exception:  # noqa: BLE001 - the scheduler is unreachable: the run is over
                last[1] = True
            return last[1]

        return stopped
