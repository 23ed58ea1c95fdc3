"""Console, progress, error reporting and the batch conventions every processing command shares.

One rule for every command: what it produces goes to stdout — the paths it wrote (:func:`emit`),
its ``--json`` document instead of anything else (:func:`emit_json`), the description or scores
of ``info`` and ``evaluate`` (:func:`emit_table`) — and messages, warnings, progress and errors go
to stderr (:data:`console`, silenced by -q except errors).
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import typer

try:  # typer >= 0.29 carries its own copy of click; its exceptions are the ones typer's main handles
    from typer._click import exceptions as click_errors
    from typer._click.globals import get_current_context
except ImportError:  # older typer runs on the click package
    from click import exceptions as click_errors
    from click import get_current_context
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import CubeWriteError, HsiuuError, ParameterError
from ..stopping import STOPPING_SIGNALS
from .options import Debug, Quiet, Verbose


@dataclass
class Settings:
    quiet: bool = False
    verbose: bool = False
    debug: bool = False


settings = Settings()
console = Console(stderr=True, highlight=False)
error_console = Console(stderr=True, highlight=False)
"""Errors are shown even with -q (which quiets ``console``): a failed run must say why."""
output_console = Console(highlight=False, soft_wrap=True)
"""stdout, for a command's report (``info``, ``evaluate``); -q does not silence what was asked for."""


def info(message: str) -> None:
    """A human message on stderr, silenced by ``-q``; one line however narrow the terminal (logs are
    grepped), and plain text: a path such as ``scene[1].hdr`` is not read as Rich markup."""
    if not settings.quiet:
        console.print(message, soft_wrap=True, markup=False)


def warn(message: str) -> None:
    """``info`` with a yellow ``warning:`` in front."""
    if not settings.quiet:
        console.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)


def detail(message: str) -> None:
    """A message shown only with ``-v``."""
    if settings.verbose and not settings.quiet:
        console.print(message, soft_wrap=True, markup=False, style="dim")


class LibraryMessages(logging.Handler):
    """What the library logs (logger ``hsiuu_cli``: a file read with extra bytes, a mask it cannot
    keep…): warnings through :func:`warn`, details through :func:`detail` (``-v``)."""

    def emit(self, record: logging.LogRecord) -> None:
        (warn if record.levelno >= logging.WARNING else detail)(record.getMessage())


_library_logger = logging.getLogger("hsiuu_cli")
_library_logger.setLevel(logging.INFO)
_library_logger.addHandler(LibraryMessages())


def emit(text: str) -> None:
    """Machine output on stdout (paths, JSON), flushed so pipelines see it at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_table(renderable) -> None:
    """A command's report as a Rich table on stdout; redirected to a file or a pipe, plain text
    without the trailing blanks of the table's columns."""
    if output_console.is_terminal:
        output_console.print(renderable)
        return
    with output_console.capture() as captured:
        output_console.print(renderable)
    emit("\n".join(line.rstrip() for line in captured.get().rstrip("\n").splitlines()))


def emit_json(payload: object) -> None:
    emit(json.dumps(payload, indent=2, default=json_default))


def json_default(value: object) -> object:
    """numpy values and paths for ``json.dumps``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def report_error(message: str) -> None:
    error_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


PLAIN_PROGRESS_SECONDS = 60.0
"""How often long work reports on stderr when it is not a terminal (batch logs, pipes)."""


class Advance:
    """What :func:`progress` yields: ``advance(n=1)`` counts work done; ``advance.set_total(n)``
    gives the total once it is known."""

    def __init__(self, total: float | None = None) -> None:
        self.total = total
        self.completed = 0.0

    def __call__(self, n: float = 1) -> None:
        self.completed += n

    def set_total(self, total: float | None) -> None:
        self.total = total


class _RichAdvance(Advance):
    def __init__(self, bar: Progress, task, total: float | None) -> None:
        super().__init__(total)
        self._bar, self._task = bar, task

    def __call__(self, n: float = 1) -> None:
        super().__call__(n)
        self._bar.advance(self._task, n)

    def set_total(self, total: float | None) -> None:
        super().set_total(total)
        self._bar.update(self._task, total=total)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _plain_line(description: str, advance: Advance, elapsed: float, done: bool = False) -> str:
    when = f"done in {_duration(elapsed)}" if done else f"{_duration(elapsed)} elapsed"
    if advance.total:
        when = f"{advance.completed:g}/{advance.total:g} ({min(advance.completed / advance.total, 1):.0%}), {when}"
    elif advance.completed:
        when = f"{advance.completed:g} steps, {when}"
    return f"{description}: {when}"


@contextmanager
def progress(description: str, total: float | None) -> Iterator[Advance]:
    """Progress of long work on stderr; yields an :class:`Advance`.

    In a terminal, a Rich bar. Elsewhere (a log file, a pipe) one plain line every
    :data:`PLAIN_PROGRESS_SECONDS` while the stage runs and one when a stage that reported ends,
    so a long batch run shows life and a short one adds nothing. Nothing with -q.
    """
    if settings.quiet:
        yield Advance(total)
        return
    if console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            yield _RichAdvance(bar, bar.add_task(description, total=total), total)
        return
    import threading
    import time

    advance = Advance(total)
    start = time.monotonic()
    finished = threading.Event()
    reported = threading.Event()

    def report_every_interval() -> None:
        while not finished.wait(PLAIN_PROGRESS_SECONDS):
            info(_plain_line(description, advance, time.monotonic() - start))
            reported.set()

    reporter = threading.Thread(target=report_every_interval, name="hsiuu-progress", daemon=True)
    reporter.start()
    try:
        yield advance
    finally:
        finished.set()
        reporter.join()
    if reported.is_set():
        info(_plain_line(description, advance, time.monotonic() - start, done=True))


# ---------------------------------------------------------------------------------------------
# Commands: common options anywhere on the line, plain help pages
# ---------------------------------------------------------------------------------------------

COMMON_OPTIONS = ("quiet", "verbose", "debug")


def set_common_options(*, quiet: bool, verbose: bool, debug: bool) -> None:
    settings.quiet = quiet
    settings.verbose = verbose
    settings.debug = debug
    console.quiet = quiet


@functools.cache
def common_option_params() -> list:
    """-q, -v and --debug as parameters of every command, so they work after its name too
    (``hsiuu superres x.hdr -s 2 -q``); declared once in :mod:`.options`, built by Typer."""
    declaration = typer.Typer()

    @declaration.command()
    def common(quiet: Quiet = False, verbose: Verbose = False, debug: Debug = False) -> None:
        """Only its parameters are used."""

    return [p for p in typer.main.get_command(declaration).params if p.name in COMMON_OPTIONS]


class PlainHelp:
    """The help page of :mod:`.helptext` instead of Typer's Rich panels (which cut option names at
    80 columns and show Python types); its usage line also in usage errors."""

    def format_help(self, ctx, formatter) -> None:
        from . import helptext

        common = common_option_params() if isinstance(self, CommonOptions) else ()
        helptext.format_help(self, ctx, formatter, common_options=common)

    def collect_usage_pieces(self, ctx) -> list[str]:
        from . import helptext

        return helptext.usage_pieces(self, ctx)


class CommonOptions:
    """Accepts -q/-v/--debug among the command's own options; given there, they add to those
    given before the command name."""

    def get_params(self, ctx) -> list:
        params = super().get_params(ctx)
        own = {name for p in params for name in (*p.opts, *p.secondary_opts)}
        extra = [p for p in common_option_params() if not own & set(p.opts)]
        help_option = self.get_help_option(ctx)
        if help_option is not None and params and params[-1] is help_option:
            return params[:-1] + extra + [help_option]
        return params + extra

    def invoke(self, ctx):
        given = {name: ctx.params.pop(name, False) for name in COMMON_OPTIONS}
        set_common_options(**{name: given[name] or getattr(settings, name) for name in COMMON_OPTIONS})
        return super().invoke(ctx)


class Command(PlainHelp, CommonOptions, typer.core.TyperCommand):
    """The class of every hsiuu command (``app.command(name, cls=Command)``)."""


class Group(PlainHelp, CommonOptions, typer.core.TyperGroup):
    """The class of every group of commands below the top level (``typer.Typer(cls=Group)``)."""


class ErrorReportingGroup(PlainHelp, typer.core.TyperGroup):
    """Turns library errors into one-line messages with exit code 1 (tracebacks only with --debug)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click_errors.ClickException):
            raise
        except HsiuuError as exc:
            if settings.debug:
                raise
            report_error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            # every temporary is gone by now (atomic.py cleans up on any exception)
            raise typer.Exit(report_stop(exc)) from None
        except BrokenPipeError:
            # The reader of stdout went away (`hsiuu evaluate --help | head`): stop quietly with
            # Click's own code for this, and keep the final flush from failing on the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except MemoryError:
            if settings.debug:
                raise
            report_error("out of memory; try a smaller --tile or fewer --jobs")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence, re-raised with --debug
            if received_stop is not None:
                raise typer.Exit(report_stop(exc)) from None
            if settings.debug:
                raise
            report_error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
            raise typer.Exit(1) from None


class Terminated(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (job schedulers, ``timeout``, ``kill``, a closed terminal): the run stops
    through one clean-up and exits with 128 + the signal's number, as shells expect."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The signal that stopped this run, once one has: an interrupt that lands inside a C extension's
# initialisation surfaces as some other exception (ImportError), which is still a stop, not a failure.
received_stop: int | None = None


def stop_on_signals() -> None:
    """Turn Ctrl-C, SIGTERM and SIGHUP into :class:`Terminated` in the main thread (the CLI's entry point)."""

    def stop(signum: int, _frame) -> None:
        global received_stop
        for number in STOPPING_SIGNALS:  # the clean-up runs once, undisturbed by a repeated signal
            signal.signal(number, signal.SIG_IGN)
        received_stop = signum
        raise Terminated(signum)

    for number in STOPPING_SIGNALS:
        signal.signal(number, stop)


def report_stop(exc: BaseException) -> int:
    """Say why the run stopped; return the exit code, 128 + the signal's number."""
    signum = getattr(exc, "signum", received_stop or signal.SIGINT)
    try:
        report_error("interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}")
    except OSError:  # SIGHUP: the terminal may be gone
        pass
    return 128 + signum


# ---------------------------------------------------------------------------------------------
# Batch conventions
# ---------------------------------------------------------------------------------------------


def expand_inputs(items: Sequence[str]) -> list[Path]:
    """Expand globs, ``@list.txt`` files and ``-`` (paths on stdin) into paths, in order, without repeats."""
    paths: list[Path] = []
    for item in items:
        if item == "-":
            names = [line.strip() for line in sys.stdin if line.strip()]
        elif item.startswith("@"):
            list_file = Path(item[1:])
            try:
                names = [
                    line.strip()
                    for line in list_file.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")
                ]
            except OSError as exc:
                raise ParameterError(f"cannot read input list: {exc.strerror}", list_file) from None
        elif glob.has_magic(item):
            names = sorted(glob.glob(item))
            if not names:
                raise ParameterError(f"no file matches the pattern '{item}'")
        else:
            names = [item]
        for name in names:
            path = Path(name)
            if path not in paths:
                paths.append(path)
    if not paths:
        raise ParameterError("no input given")
    return paths


def input_stem(path: Path) -> str:
    """File name without its cube extension (``scene.hdr`` → ``scene``)."""
    from ..io import CUBE_SUFFIXES

    name = path.name
    for suffix in CUBE_SUFFIXES + (".sli", ".csv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _check_template(pattern: str) -> None:
    """A --name template names a file in the output directory from plain ``{stem}`` and ``{ext}``
    fields: no format specs or attribute lookups (Python's format syntax is not ours to expose),
    and no folders (those belong to --out-dir)."""
    import string

    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise click_errors.UsageError(f"bad --name template '{pattern}': {exc}") from None
    for name, spec, conversion in fields:
        if name not in ("stem", "ext") or spec or conversion:
            raise click_errors.UsageError(f"bad --name template '{pattern}': use {{stem}} and {{ext}} (and {{scale}} in superres) as they are")
    if "/" in pattern or "\\" in pattern:
        raise click_errors.UsageError(f"bad --name template '{pattern}': it names a file; put folders in --out-dir")


def plan_outputs(
    inputs: Sequence[Path],
    *,
    output: Path | None,
    out_dir: Path | None,
    template: str | None,
    default_template: str,
    default_ext: str,
) -> list[Path]:
    """One output path per input, following ``-o`` (single input) or ``--out-dir`` + ``--name``
    (a missing ``--out-dir`` is made by :func:`run_batch`)."""
    if output is not None and out_dir is not None:
        raise click_errors.UsageError("give either -o/--output or --out-dir, not both")
    if output is not None:
        if len(inputs) > 1:
            raise click_errors.UsageError(f"-o/--output takes one input; got {len(inputs)}: use --out-dir")
        return [output]
    pattern = template or default_template
    _check_template(pattern)
    directory = out_dir if out_dir is not None else Path(".")
    if out_dir is None and len(inputs) == 1 and template is None:
        directory = inputs[0].parent
    outputs: list[Path] = []
    for path in inputs:
        outputs.append(directory / pattern.format(stem=input_stem(path), ext=default_ext))
    duplicates = {p for p in outputs if outputs.count(p) > 1}
    if duplicates:
        raise click_errors.UsageError(f"several inputs map to the same output {sorted(duplicates)[0]}; change --name")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CubeWriteError("--out-dir is an existing file, not a directory", out_dir)
    return outputs


@contextmanager
def output_directory(out_dir: Path | None) -> Iterator[None]:
    """A missing output folder (``--out-dir``, or the folder of ``-o``) made with its parents for
    the run, as ``mkdir -p`` would — the user named it as the place for the results — and taken
    away again if the run left it empty (failed, interrupted)."""
    made: list[Path] = []
    if out_dir is not None:
        missing = out_dir
        while not missing.exists():
            made.append(missing)
            missing = missing.parent
        if out_dir.exists() and not out_dir.is_dir():
            raise CubeWriteError("is a file, not a directory", out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CubeWriteError(f"cannot create the output directory ({exc.strerror})", out_dir) from None
    try:
        yield
    finally:
        for directory in made:  # deepest first
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


def output_folder(path: Path) -> None:
    """Make the folder of a command's output if missing, for the rest of the command: it goes
    again at the end if the command left it empty (see :func:`output_directory`)."""
    context = get_current_context(silent=True)
    if context is None:  # called from Python, not from the command line
        path.mkdir(parents=True, exist_ok=True)
    else:
        context.with_resource(output_directory(path))


def run_batch(
    jobs: Sequence[tuple[Path, Path]],
    process: Callable[[Path, Path], object],
    *,
    workers: int = 1,
    out_dir: Path | None = None,
    check: Callable[[Path, Path], None] | None = None,
    scheduler: str | None = None,
    report: Callable[[Path, object], Sequence[Path]] | None = None,
) -> None:
    """Run ``process(input, output)`` for each pair; print each written path on stdout.

    ``check(input, output)`` runs for every pair before any of them is processed: the refusals
    that need no computation (output exists, output is the input…) come at once, not after hours
    of other inputs. A failing input is reported and the others go on; the command exits 1 at the
    end if any failed. ``out_dir`` and the folders of the outputs are made if missing (and removed
    if they stay empty), see :func:`output_directory`. With ``scheduler`` (``--scheduler``), each
    input is a task on that Dask cluster instead (:mod:`.cluster`). ``report(input, result)`` turns
    what ``process`` returned into the paths to print (default: the result is that list).
    """
    from contextlib import ExitStack

    from ..io.atomic import allow_writing

    allow_writing()
    outcomes = BatchOutcomes(len(jobs), report)
    folders = {target.parent for _, target in jobs} | ({out_dir} if out_dir is not None else set())
    with ExitStack() as stack:
        for folder in sorted(folders):
            stack.enter_context(output_directory(folder))
        jobs = _checked(jobs, check, outcomes)
        if scheduler is not None:
            from .cluster import run_batch_on_cluster

            run_batch_on_cluster(scheduler, jobs, process, outcomes)
        else:
            _run_jobs(jobs, process, workers, outcomes)
    outcomes.close()


def _checked(
    jobs: Sequence[tuple[Path, Path]], check: Callable[[Path, Path], None] | None, outcomes: "BatchOutcomes"
) -> Sequence[tuple[Path, Path]]:
    """The pairs that pass ``check``; a single input's refusal is raised as any command's error."""
    if check is None:
        return jobs
    if len(jobs) == 1:
        check(*jobs[0])
        return jobs
    checked = []
    for pair in jobs:
        try:
            check(*pair)
            checked.append(pair)
        except Exception as exc:  # noqa: BLE001 - reported per input, batch goes on
            outcomes.failed(pair[0], exc)
    return checked


class BatchOutcomes:
    """What a batch prints as its inputs finish: written paths on stdout, failures on stderr."""

    def __init__(self, total: int, report: Callable[[Path, object], Sequence[Path]] | None = None):
        self.total = total
        self.failures = 0
        self.report = report or (lambda _source, result: result)

    def failed(self, source: Path, error: BaseException, show_traceback: Callable[[], None] | None = None) -> None:
        self.failures += 1
        if isinstance(error, HsiuuError) and not settings.debug:
            report_error(str(error))
        elif settings.debug:
            (show_traceback or console.print_exception)()
        else:
            report_error(f"{source}: {type(error).__name__}: {error} (run with --debug for the traceback)")

    def finish(self, source: Path, result: object) -> None:
        if isinstance(result, BaseException):
            self.failed(source, result)
            return
        for written in self.report(source, result):
            emit(str(written))

    def close(self) -> None:
        """Exit 1 if any input failed."""
        if self.failures:
            if not settings.quiet:
                console.print(f"{self.failures} of {self.total} inputs failed")
            raise typer.Exit(1)


def _run_jobs(jobs: Sequence[tuple[Path, Path]], process: Callable[[Path, Path], object], workers: int, outcomes: BatchOutcomes) -> None:
    finish = outcomes.finish
    if outcomes.total == 1 and len(jobs) == 1:
        # A single input fails like any command: the error handler of the app reports it.
        source, target = jobs[0]
        finish(source, process(source, target))
        return

    def guarded(pair: tuple[Path, Path]) -> object:
        try:
            return process(*pair)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported per input, batch goes on
            return exc

    if workers <= 1:
        for pair in jobs:
            finish(pair[0], guarded(pair))
    else:
        from ..io.atomic import stop_writing

        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(guarded, pair): pair[0] for pair in jobs}
            try:
                for future in as_completed(futures):
                    finish(futures[future], future.result())
            except KeyboardInterrupt:
                # Threads cannot be killed: inputs not started are dropped, and the running ones
                # stop at their next block of output, their temporaries removed, so Ctrl-C leaves nothing.
                stop_writing()
                pool.shutdown(cancel_futures=True)
                raise


def parse_creation_options(items: Sequence[str] | None) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click_errors.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--co")
        options[key.strip().upper()] = value.strip()
    return options
