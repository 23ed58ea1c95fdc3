"""Stopping a run: SIGTERM and SIGHUP as Ctrl-C (nothing half-written, exit 128 + signal), and what a
killed run leaves is cleared by the next run writing the same output. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import write_cube
from hsiuu_cli.io.atomic import remove_stale_temporaries, scratch_directory, temporary_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


@pytest.fixture
def cube(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.random((64, 64, 16), dtype=np.float32)
    return write_cube(Cube(data, wavelengths=np.linspace(400, 1000, 16)), tmp_path / "scene.hdr")


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".hsiuu-tmp-" in p.name)


def written_bytes(folder: Path) -> int:
    total = 0
    for path in temporaries(folder):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # the empty probe of a writability check, gone again
            pass
    return total


def start_superres(cube: Path, output: Path) -> subprocess.Popen:
    """A ×4 run slow enough to catch mid-write: small tiles, each a separate model call."""
    command = [sys.executable, "-m", "hsiuu_cli", "superres", str(cube), "-s", "4", "-o", str(output),
               "--no-calibrate", "--tile", "8"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_temporary(process: subprocess.Popen, folder: Path, timeout: float = 300) -> None:
    """Until the output's data is being written (not the empty probe of the writability check)."""
    deadline = time.monotonic() + timeout
    while not written_bytes(folder):
        if process.poll() is not None:
            pytest.fail(f"the run ended before it started writing: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no temporary file appeared")
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_mid_write_leaves_nothing_and_exits_128_plus_signal(tmp_path, cube, signum):
    output = tmp_path / "scene_x4.hdr"
    process = start_superres(cube, output)
    wait_for_temporary(process, tmp_path)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.hdr", "scene.img"]  # no output, no temporary
    assert "Traceback" not in stderr and stdout == ""
    assert stderr.strip().splitlines()[-1] in ("error: interrupted", f"error: stopped by {signal.Signals(signum).name}")


def test_the_next_run_clears_what_a_killed_run_left(tmp_path, cube, runner):
    """SIGKILL cannot be handled: its temporary stays until a run writing the same output removes it."""
    output = tmp_path / "scene_x4.hdr"
    process = start_superres(cube, output)
    wait_for_temporary(process, tmp_path)
    process.kill()
    process.communicate(timeout=60)
    left = temporaries(tmp_path)
    assert left and str(process.pid) in left[0].name

    result = runner.invoke(app, ["convert", str(cube), str(output)])
    assert result.exit_code == 0, result.output
    assert temporaries(tmp_path) == [] and output.exists()


def dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_only_temporaries_of_gone_processes_are_removed(tmp_path):
    output = tmp_path / "out.hdr"
    mine = temporary_path(output)  # this process: still at work
    dead = tmp_path / f".out.hsiuu-tmp-{dead_pid()}-0123abcd.img"
    alive = tmp_path / f".out.hsiuu-tmp-{os.getppid()}-0123abcd.img"  # another running process
    old_unnamed = tmp_path / ".out.hsiuu-tmp-89abcdef.img"  # from hsiuu before process ids, long untouched
    new_unnamed = tmp_path / ".out.hsiuu-tmp-456789ab.hdr"  # the same, but changed just now
    other_output = tmp_path / f".other.hsiuu-tmp-{dead_pid()}-0123abcd.img"
    for path in (mine, dead, alive, old_unnamed, new_unnamed, other_output):
        path.write_bytes(b"x")
    os.utime(old_unnamed, (time.time() - 3600, time.time() - 3600))

    removed = remove_stale_temporaries(output)
    assert sorted(removed) == sorted([dead, old_unnamed])
    assert all(p.exists() for p in (mine, alive, new_unnamed, other_output))


def test_scratch_folders_of_killed_runs_are_removed(tmp_path):
    stale = tmp_path / f".hsiuu-scratch-{dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "fused.f32").write_bytes(b"x")
    alive = tmp_path / f".hsiuu-scratch-{os.getppid()}-0123abcd"
    alive.mkdir()
    with scratch_directory(tmp_path) as scratch:
        assert scratch.is_dir() and str(os.getpid()) in scratch.name
        assert not stale.exists() and alive.exists()
    assert not scratch.exists()


def test_sigterm_stops_a_parallel_batch_without_leftovers(tmp_path):
    """--jobs 2: the running jobs stop at their next block; the batch's folder, left empty, goes too."""
    rng = np.random.default_rng(1)
    for i in range(3):
        write_cube(Cube(rng.random((64, 64, 16), dtype=np.float32), wavelengths=np.linspace(400, 1000, 16)),
                   tmp_path / f"c{i}.hdr")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hsiuu_cli", "superres", str(tmp_path / "c*.hdr"), "-s", "4", "--out-dir", str(out),
               "-j", "2", "--no-calibrate", "--tile", "8"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out.is_dir() and written_bytes(out)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "nothing was being written"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"c{i}{s}" for i in range(3) for s in (".hdr", ".img")]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(), reason="Linux /proc children")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_cross_validation_stops_the_fold_processes_too(tmp_path, signum):
    """A ×8 pair with a 12 × 12 LR grid: the network's iterations are chosen by cross-validation in
    forked fold processes. SIGTERM to the run (``kill``), or SIGINT to its process group (Ctrl-C in a
    terminal): exit 128 + signal, no fold process left, nothing written."""
    from conftest import gaussian_srf, make_mixture

    from hsiuu_cli import degrade

    cube, _, _, wavelengths = make_mixture(96, 96, 40, 3, seed=3)
    srf = gaussian_srf(wavelengths, [500, 800, 1300, 2000], 150.0)
    write_cube(Cube(degrade.spatial_degrade(cube, 8, sigma=4.0), wavelengths=wavelengths), tmp_path / "lr.hdr")
    write_cube(Cube(degrade.spectral_degrade(cube, srf)), tmp_path / "msi.hdr")
    np.savetxt(tmp_path / "srf.csv", srf, delimiter=",")
    command = [sys.executable, "-m", "hsiuu_cli", "fuse", str(tmp_path / "lr.hdr"), str(tmp_path / "msi.hdr"),
               "--srf-matrix", str(tmp_path / "srf.csv"), "-o", str(tmp_path / "fused.hdr")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(children := _children(process.pid)) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no fold processes appeared"
        time.sleep(0.01)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert not any(_running(child) for child in children)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.hdr", "lr.img", "msi.hdr", "msi.img", "srf.csv"]
