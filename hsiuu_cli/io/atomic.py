"""Atomic outputs: refuse existing files unless asked, write to temporaries, rename on success.

A temporary lives in the output's own directory (so ``os.replace`` is a rename on one file
system) and keeps the output's suffix (so libraries that choose a format from the extension,
such as Pillow, still do the right thing). Any exception, KeyboardInterrupt included, removes
the temporaries, so an interrupted run leaves no half-written file behind.

A run killed outright (SIGKILL, power loss) cannot clean up; its temporaries carry its process id
(``.NAME.hsiuu-tmp-PID-XXXXXXXX.EXT``), and the next run that checks or writes the same output
removes those whose process is gone (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextvars
import errno
import os
import re
import secrets
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import CubeWriteError, OutputExistsError


_stopped = threading.Event()


def stop_writing() -> None:
    """Make every write in this process, running or still to come, fail as interrupted: after Ctrl-C
    the jobs of a batch still running on other threads must leave no output behind."""
    _stopped.set()


def allow_writing() -> None:
    """Undo :func:`stop_writing` (a new batch starts)."""
    _stopped.clear()


_stop_check: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar("hsiuu_stop_check", default=None)
_temporary_tag: contextvars.ContextVar[str] = contextvars.ContextVar("hsiuu_temporary_tag", default="")


@contextmanager
def stop_when(check: Callable[[], bool]) -> Iterator[None]:
    """Within the block, writes also stop (as interrupted) once ``check()`` is true: a task on a
    cluster worker learns this way that its run was cancelled, as a thread learns it from
    :func:`stop_writing`."""
    token = _stop_check.set(check)
    try:
        yield
    finally:
        _stop_check.reset(token)


def raise_if_stopped() -> None:
    check = _stop_check.get()
    if _stopped.is_set() or (check is not None and check()):
        raise KeyboardInterrupt


TEMPORARY_MARK = ".hsiuu-tmp-"
LEGACY_STALE_SECONDS = 600
"""A temporary without a process id (hsiuu before it named them so) counts as stale when it has
not changed for this long."""


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def temporary_path(path: Path) -> Path:
    """A hidden, unique name beside ``path`` with the same suffix, naming this process (and the
    cluster run's tag, :func:`temporary_tag`, within one)."""
    tag = _temporary_tag.get()
    owner = f"{tag}-{os.getpid()}" if tag else str(os.getpid())
    return path.with_name(f".{_stem(path)}{TEMPORARY_MARK}{owner}-{secrets.token_hex(4)}{path.suffix}")


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


def _is_stale(path: Path, pid: str | None) -> bool:
    if pid is not None:
        return int(pid) != os.getpid() and _process_is_gone(int(pid))
    try:
        return time.time() - path.stat().st_mtime > LEGACY_STALE_SECONDS
    except OSError:
        return False


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what interrupted runs that could not clean up left of the output ``path`` (hidden
    temporaries of the same name whose process no longer runs); returns what was removed."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(_stem(path))}{re.escape(TEMPORARY_MARK)}(?:[0-9a-f]{{12}}-)?(?:(\d+)-)?[0-9a-f]{{8}}(\..*)?")
    removed = []
    try:
        candidates = [p for p in directory.iterdir() if p.name.startswith(f".{_stem(path)}{TEMPORARY_MARK}")]
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match and _is_stale(candidate, match.group(1)):
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass
    return removed


@contextmanager
def temporary_tag(tag: str) -> Iterator[None]:
    """Within the block, temporaries carry ``tag`` in their name, so that the run that owns them can
    find and remove those a killed process left behind (:func:`remove_temporaries`)."""
    token = _temporary_tag.set(tag)
    try:
        yield
    finally:
        _temporary_tag.reset(token)


def remove_temporaries(directory: Path, tag: str) -> list[Path]:
    """Remove the temporaries named with ``tag`` (see :func:`temporary_tag`) in ``directory``; returns them."""
    removed = []
    for leftover in Path(directory).glob(f".*{TEMPORARY_MARK}{tag}*"):
        try:
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            pass
    return removed


def check_directory(path: Path) -> None:
    """CubeWriteError unless ``path``'s directory exists and accepts new files."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.exists():
        raise CubeWriteError(f"output directory {directory} does not exist", path)
    if not directory.is_dir():
        raise CubeWriteError(f"{directory} is not a directory", path)
    if path.is_dir():
        raise CubeWriteError("output is an existing directory", path)
    # os.access says yes to root and on read-only mounts, so try to create a file.
    probe = temporary_path(path)
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise CubeWriteError(f"output directory is not writable ({os.strerror(exc.errno or errno.EACCES)})", path) from None
    finally:  # also when Ctrl-C or a signal lands right after the probe was made
        probe.unlink(missing_ok=True)


def check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Check several files that make one output (an ENVI header and its data file), and clear
    away the temporaries that killed runs left of them."""
    for path in paths:
        path = Path(path)
        if path.exists() and not overwrite:
            raise OutputExistsError("output exists; use --overwrite to replace it", path)
    for path in paths:
        check_directory(Path(path))
        remove_stale_temporaries(Path(path))


@contextmanager
def atomic_files(paths: Sequence[Path], overwrite: bool) -> Iterator[list[Path]]:
    """Yield one temporary path per target; rename them all onto the targets on success."""
    targets = [Path(p) for p in paths]
    check_outputs(targets, overwrite)
    temporaries = [temporary_path(p) for p in targets]
    try:
        yield temporaries
        raise_if_stopped()
        for temporary, target in zip(temporaries, targets):
            if not temporary.exists():
                raise CubeWriteError("nothing was written", target)
        for temporary, target in zip(temporaries, targets):
            try:
                os.replace(temporary, target)
            except OSError as exc:
                raise CubeWriteError(f"cannot write output ({exc.strerror})", target) from None
    except BaseException:
        for temporary in temporaries:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass
        raise


@contextmanager
def atomic_write(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Context manager yielding a temporary path for ``path``; renamed onto it on success.

    >>> with atomic_write("preview.png", overwrite=False) as tmp:
    ...     image.save(tmp)
    """
    with atomic_files([Path(path)], overwrite) as (temporary,):
        yield temporary


@contextmanager
def output_set() -> Iterator[list[Path]]:
    """Outputs that belong together (a fused cube and its abundances, an unmixing folder…).

    The caller adds every file it writes to the yielded list; if the block fails, KeyboardInterrupt
    included, they are removed again, so a run never leaves part of a set behind.
    """
    files: list[Path] = []
    try:
        yield files
    except BaseException:
        for path in files:
            path.unlink(missing_ok=True)
        raise


SCRATCH_MARK = ".hsiuu-scratch-"


@contextmanager
def scratch_directory(parent: Path) -> Iterator[Path]:
    """A hidden working folder in ``parent`` (beside the output, on its file system), removed at
    the end however the run ends; those of killed runs in ``parent`` are removed first."""
    parent = Path(parent) if str(parent) else Path(".")
    try:
        leftovers = [p for p in parent.iterdir() if p.name.startswith(SCRATCH_MARK) and p.is_dir()]
    except OSError:
        leftovers = []
    for leftover in leftovers:
        pid = leftover.name[len(SCRATCH_MARK):].split("-", 1)[0]
        if pid.isdigit() and _is_stale(leftover, pid):
            shutil.rmtree(leftover, ignore_errors=True)
    directory = parent / f"{SCRATCH_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    directory.mkdir()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
