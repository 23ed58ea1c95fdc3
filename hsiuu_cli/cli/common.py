"""Console, progress, error reporting and the batch conventions every processing command shares.

Human output goes to stderr through :data:`console`; machine output (paths, JSON) goes
to stdout through :func:`emit`.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import typer

try:  # typer >= 0.29 carries its own copy of click; its exceptions are the ones typer's main handles
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on the click package
    from click import exceptions as click_errors
from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import CubeWriteError, HsiuuError, ParameterError


@dataclass
class Settings:
    quiet: bool = False
    verbose: bool = False
    debug: bool = False


settings = Settings()
console = Console(stderr=True, highlight=False)
error_console = Console(stderr=True, highlight=False)
"""Errors are shown even with -q (which quiets ``console``): a failed run must say why."""


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


def emit(text: str) -> None:
    """Machine output on stdout (paths, JSON), flushed so pipelines see it at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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


@contextmanager
def progress(description: str, total: float | None) -> Iterator[Callable[[float], None]]:
    """A Rich progress bar on stderr; yields ``advance(n)``. Silent with -q or when stderr is no terminal."""
    if settings.quiet or not console.is_terminal:
        yield lambda _n=1: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


class ErrorReportingGroup(typer.core.TyperGroup):
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
        except KeyboardInterrupt:
            report_error("interrupted")
            raise typer.Exit(130) from None
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
            if settings.debug:
                raise
            report_error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
            raise typer.Exit(1) from None


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
    """A missing ``--out-dir`` made (with its parents) for the run, as ``mkdir -p`` would — the user
    named it as the place for the results — and taken away again if the run left it empty."""
    made: list[Path] = []
    if out_dir is not None:
        missing = out_dir
        while not missing.exists():
            made.append(missing)
            missing = missing.parent
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


def run_batch(
    jobs: Sequence[tuple[Path, Path]],
    process: Callable[[Path, Path], object],
    *,
    workers: int = 1,
    out_dir: Path | None = None,
    scheduler: str | None = None,
    report: Callable[[Path, object], Sequence[Path]] | None = None,
) -> None:
    """Run ``process(input, output)`` for each pair; print each written path on stdout.

    A failing input is reported and the others go on; the command exits 1 at the end if any failed.
    ``out_dir`` is made if missing (and removed if it stays empty), see :func:`output_directory`.
    With ``scheduler`` (``--scheduler``), each input is a task on that Dask cluster instead
    (:mod:`.cluster`). ``report(input, result)`` turns what ``process`` returned into the paths to
    print (default: the result is that list).
    """
    from ..io.atomic import allow_writing

    allow_writing()
    outcomes = BatchOutcomes(len(jobs), report)
    with output_directory(out_dir):
        if scheduler is not None:
            from .cluster import run_batch_on_cluster

            run_batch_on_cluster(scheduler, jobs, process, outcomes)
        else:
            _run_jobs(jobs, process, workers, outcomes)
    outcomes.close()


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
    if len(jobs) == 1:
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
