"""Many scenes on a cluster: each input is one task, run by a worker, outputs written by that worker;
and the blocks of one scene as tasks (:func:`run_block_tasks`).

The worker writes to the same paths a local run would (a file system shared by the client and
the workers is assumed), through the same atomic writes, so an output appears whole or not at
all. A failing input comes back as its exception and the others go on; an input whose worker
dies is rerun by the scheduler on another worker (Dask's own retry of lost tasks).
"""

from __future__ import annotations

import os
import pickle
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io.atomic import stop_when, temporary_tag
from ..errors import ClusterError
from .session import Run, RunTicket, connected, import_distributed, result_of


class RemoteError(Exception):
    """A worker's exception that could not travel back as itself (its class does not pickle)."""


@dataclass
class TaskOutcome:
    """What one input's task gave back."""

    value: Any = None
    """The return value of the process (None when it failed or stopped)."""
    error: BaseException | None = None
    traceback: str = ""
    stopped: bool = False
    """The task gave up because its run was stopped."""
    messages: str = ""
    """What the task printed for users (see ``capture`` of :func:`run_inputs`)."""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return RemoteError(f"{type(exc).__name__}: {exc}")


def enter_client_directory(directory: str) -> None:
    """Relative paths in a task mean what they mean to the client: the task runs in the client's
    working directory (the shared file system makes it the same path on every worker). Every task
    of a run moves to the same directory, so a worker's threads agree on it."""
    if os.getcwd() != directory and os.path.isdir(directory):
        os.chdir(directory)


def run_input(
    process: Callable[[Path, Path], Any], source: Path, target: Path, ticket: RunTicket,
    capture: Callable[[], Any] | None = None,
) -> TaskOutcome:
    """The task: ``process(source, target)`` with the run's stop signal and temporary tag, on a worker."""
    import time

    started = time.perf_counter()
    enter_client_directory(ticket.directory)
    outcome = TaskOutcome()
    with (capture() if capture is not None else nullcontext(lambda: "")) as messages:
        with stop_when(ticket.stop_check()), temporary_tag(ticket.id):
            try:
                outcome.value = process(source, target)
            except KeyboardInterrupt:
                outcome.stopped = True
            except Exception as exc:  # noqa: BLE001 - reported per input, the batch goes on
                outcome.error = _portable(exc)
                outcome.traceback = traceback.format_exc()
    outcome.messages = messages()
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_inputs(
    client,
    jobs: Sequence[tuple[Path, Path]],
    process: Callable[[Path, Path], Any],
    *,
    on_done: Callable[[Path, TaskOutcome], None],
    capture: Callable[[], Any] | None = None,
    scheduler: object = "the scheduler",
) -> None:
    """Run ``process(source, target)`` for every pair as a task on ``client``'s cluster and call
    ``on_done(source, outcome)`` on this side as each finishes (in the order they finish).

    ``capture``, if given, is a picklable callable returning a context manager that yields a
    ``() -> str`` of what the task printed; the text comes back in the outcome. Ctrl-C stops the
    run: queued tasks are cancelled, running ones stop at their next block of output, and the
    temporaries of the run are removed. A lost scheduler raises ClusterError.
    """
    distributed = import_distributed()
    # temporaries go beside each output, or inside it where the output is a folder (unmix)
    directories = {Path(target).parent for _, target in jobs} | {Path(target) for _, target in jobs}
    run = Run(client, directories)
    futures = {}
    try:
        for index, (source, target) in enumerate(jobs):
            future = client.submit(
                run_input, process, source, target, run.ticket, capture,
                key=f"hsiuu-input-{index}-{run.id}", pure=False, retries=0,
            )
            futures[future] = source
        for future in distributed.as_completed(futures):
            try:
                outcome = result_of(future, scheduler)
            except ClusterError:
                raise
            except Exception as exc:  # noqa: BLE001 - failed outside the process: it killed every worker that tried it
                outcome = TaskOutcome(error=_portable(exc))
            on_done(futures[future], outcome)
    except KeyboardInterrupt:
        run.stop()
        cancel(client, futures)
        raise
    finally:
        run.sweep()


def cancel(client, futures) -> None:
    """Cancel tasks, queued or running (a lost scheduler has nothing left to cancel)."""
    if not connected(client):
        return
    try:
        client.cancel(list(futures), force=True)
    except Exception:  # noqa: BLE001 - lost while cancelling
        pass


def _job(payload):
    return payload


def _run_block(task: Callable, job, ticket: RunTicket, *args):
    # every block stops with its run: the stop signal is checked at each block of output it writes
    with stop_when(ticket.stop_check()):
        return task(job, *args)


def run_block_tasks(
    client, name: str, payload, task: Callable, calls: Sequence[tuple], on_result: Callable[[int, Any], None],
    directories: Sequence[Path], scheduler: object = "the scheduler",
) -> None:
    """One scene's blocks as tasks: ``task(job, *calls[i])`` for each block ``i``, stopped with the
    run, where ``job`` is ``payload`` (sent once, as a task that returns it rather than scattered
    data: should every worker holding it die, the scheduler can make it again); each result goes to
    ``on_result(i, result)`` as it comes. Ctrl-C, a failed block or a lost scheduler (ClusterError)
    stops every task of the run; the run's temporaries in ``directories`` are swept at the end."""
    distributed = import_distributed()
    run = Run(client, directories)
    job = client.submit(_job, payload, key=f"hsiuu-{name}-scene-{run.id}", pure=False)
    futures = {
        client.submit(_run_block, task, job, run.ticket, *args, key=f"hsiuu-{name}-block-{index}-{run.id}", pure=False): index
        for index, args in enumerate(calls)
    }
    try:
        for future in distributed.as_completed(futures):
            on_result(futures[future], result_of(future, scheduler))
    except BaseException:
        run.stop()
        cancel(client, [*futures, job])
        raise
    finally:
        run.sweep()
        if connected(client):
            cancel(client, [job])
