"""``--scheduler``: the CLI's side of running on a Dask cluster (the work itself is :mod:`hsiuu_cli.cluster`).

The client shows one progress bar fed by the tasks' futures; what a task prints on its worker
(the lines a local run prints) comes back with its result and is printed here, so a run on a
cluster reads like a local one.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .common import BatchOutcomes, console, error_console, info, progress, settings


@dataclass(frozen=True)
class WorkerConsole:
    """Runs around each task on a worker: this client's -q/-v/--debug, and the task's messages
    recorded instead of printed on the worker's stderr (they come back with its result)."""

    quiet: bool
    verbose: bool
    debug: bool

    @classmethod
    def here(cls) -> "WorkerConsole":
        return cls(settings.quiet, settings.verbose, settings.debug)

    @contextmanager
    def __call__(self) -> Iterator[Callable[[], str]]:
        saved = (settings.quiet, settings.verbose, settings.debug, console.quiet)
        settings.quiet, settings.verbose, settings.debug = self.quiet, self.verbose, self.debug
        console.quiet = self.quiet
        text: list[str] = []
        try:
            with console.capture() as captured, error_console.capture() as errors:
                yield lambda: "".join(text)
        finally:
            settings.quiet, settings.verbose, settings.debug, console.quiet = saved
        text.append(captured.get() + errors.get())


def splits_into_blocks(path: Path) -> bool:
    """Whether a scene can be cut into blocks on a cluster: an ENVI input, which every worker maps
    and reads only its rows of (a GeoTIFF is read whole, so it runs as one task)."""
    from ..io import GTIFF_SUFFIXES

    return path.suffix.lower() not in GTIFF_SUFFIXES


def workers_text(client) -> str:
    count = len(client.scheduler_info().get("workers", {}))
    return f"{count} worker{'s' if count != 1 else ''}"


def relay(messages: str) -> None:
    """Print what a task printed on its worker."""
    if messages:
        console.print(messages, end="", markup=False, highlight=False, soft_wrap=True)


def run_batch_on_cluster(
    scheduler: str, jobs: Sequence[tuple[Path, Path]], process: Callable[[Path, Path], object], outcomes: BatchOutcomes
) -> None:
    """Each input a task on the cluster; outcomes reported as for a local batch."""
    from ..cluster import connect, parse_scheduler, run_inputs
    from ..errors import ClusterError

    spec = parse_scheduler(scheduler)
    with connect(spec) as client:
        info(f"{len(jobs)} input{'s' if len(jobs) != 1 else ''} on the Dask cluster at {spec} ({workers_text(client)})")
        with progress("inputs", len(jobs)) as advance:

            def done(source: Path, outcome) -> None:
                relay(outcome.messages)
                advance(1)
                if outcome.stopped:  # its worker was shutting down under it
                    outcome.error = ClusterError("the task was stopped on its worker (the worker shut down)", source)
                if outcome.error is not None:
                    if len(jobs) == 1:
                        raise outcome.error  # one input fails like any command
                    outcomes.failed(source, outcome.error, lambda: error_console.print(outcome.traceback, markup=False))
                else:
                    outcomes.finish(source, outcome.value)

            run_inputs(client, jobs, process, on_done=done, capture=WorkerConsole.here(), scheduler=spec)


@dataclass
class CommandOutcome:
    stdout: str
    messages: str
    exit_code: int
    error: BaseException | None = None
    usage_error: str | None = None


def run_command_task(command: Callable[..., None], params: dict, ticket, console_settings: WorkerConsole) -> CommandOutcome:
    """On a worker: the whole command, its stdout and messages recorded."""
    import contextlib
    import io

    import typer

    from ..cluster.tasks import _portable, enter_client_directory
    from ..io.atomic import stop_when, temporary_tag
    from .common import click_errors

    enter_client_directory(ticket.directory)
    stdout = io.StringIO()
    code, error, usage = 0, None, None
    with console_settings() as messages:
        with contextlib.redirect_stdout(stdout), stop_when(ticket.stop_check()), temporary_tag(ticket.id):
            try:
                command(**params)
            except typer.Exit as exc:
                code = exc.exit_code
            except click_errors.ClickException as exc:
                code, usage = exc.exit_code, exc.format_message()
            except KeyboardInterrupt:
                code = 130
            except Exception as exc:  # noqa: BLE001 - travels back and is reported as locally
                code, error = 1, _portable(exc)
    return CommandOutcome(stdout.getvalue(), messages(), code, error, usage)


def run_command_on_cluster(scheduler: str, command: Callable[..., None]) -> None:
    """The running command (fuse, evaluate: not cut into blocks) as one task on a worker of the
    cluster, with the parameters it was given: the work runs there, its output and messages are
    shown here as a local run shows them."""
    import sys

    try:  # typer >= 0.29 carries its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context

    import typer

    from ..cluster import Run, connect, parse_scheduler
    from ..cluster.session import result_of
    from ..cluster.tasks import cancel
    from .common import click_errors

    spec = parse_scheduler(scheduler)
    with connect(spec) as client:
        info(f"running on the Dask cluster at {spec}")
        params = dict(get_current_context().params, scheduler=None)
        run = Run(client, [Path(p).parent for p in _paths(params)])
        future = client.submit(run_command_task, command, params, run.ticket, WorkerConsole.here(),
                               key=f"hsiuu-command-{run.id}", pure=False)
        try:
            outcome: CommandOutcome = result_of(future, spec)
        except KeyboardInterrupt:
            run.stop()
            cancel(client, [future])
            raise
        finally:
            run.sweep()
    relay(outcome.messages)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout)
        sys.stdout.flush()
    if outcome.error is not None:
        raise outcome.error
    if outcome.usage_error is not None:
        raise click_errors.UsageError(outcome.usage_error)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _paths(params: dict) -> list[Path]:
    """The paths among a command's parameters (where its outputs and their temporaries go)."""
    return [value for value in params.values() if isinstance(value, Path)]
