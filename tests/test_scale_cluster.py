"""--scheduler on real Dask clusters: `dask scheduler` / `dask worker` processes on 127.0.0.1 and a
LocalCluster, on small cubes. Outputs are compared byte for byte with local runs; faults (a worker
killed, the scheduler killed, Ctrl-C) are caused for real."""

from __future__ import annotations

import importlib
import json
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
from hsiuu_cli.io import read_cube, write_cube

from conftest import make_mixture
from test_superres_inference import make_model

# CI installs the test extra, which carries Dask: there a missing Dask is a failure, not a skip
distributed = importlib.import_module("distributed") if os.environ.get("CI") else pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Clusters made of real processes
# ---------------------------------------------------------------------------------------------


class ProcessCluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1 (workers single-threaded, no
    nanny, so a killed worker stays dead)."""

    def __init__(self, directory: Path, workers: int, preload: tuple[str, ...] = ()):
        self.directory = directory
        scheduler_file = directory / "scheduler.json"
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(scheduler_file)], "scheduler")
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("the dask scheduler did not start: " + (directory / "scheduler.log").read_text())
            time.sleep(0.1)
        time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [
            self._start(["worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                         "--local-directory", str(directory), "--name", f"w{i}",
                         *(arg for module in preload for arg in ("--preload", module))], f"worker{i}")
            for i in range(workers)
        ]
        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        # OMP_NUM_THREADS=1 as Dask's nannies set it: one thread per worker process
        env = dict(os.environ, OMP_NUM_THREADS="1")
        log = open(self.directory / f"{name}.log", "w")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=self.directory)

    def client(self):
        return distributed.Client(self.address, timeout=30)

    def close(self) -> None:
        for process in self.workers + [self.scheduler]:
            if process.poll() is None:
                process.kill()  # nothing to save: a graceful close only costs time
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = ProcessCluster(tmp_path_factory.mktemp("dask"), workers=2)
    yield running
    running.close()


@pytest.fixture
def own_cluster(tmp_path_factory):
    """A cluster a test may break (kill a worker or the scheduler)."""
    running = ProcessCluster(tmp_path_factory.mktemp("dask-own"), workers=2)
    yield running
    running.close()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def make_scenes(directory: Path, count: int, rows: int = 24, cols: int = 20, bands: int = 8) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        cube, _, _, wavelengths = make_mixture(rows=rows, cols=cols, bands=bands, seed=seed)
        cube[seed % rows, 3] = np.nan
        paths.append(write_cube(Cube(cube, wavelengths=wavelengths, nodata=float("nan")), directory / f"scene{seed}.hdr"))
    return paths


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    _, paths = make_model(tmp_path_factory.mktemp("model"), scale=2)
    return paths["onnx"]


def large_scene(directory: Path, rows: int = 160, cols: int = 40) -> Path:
    cube, _, _, wavelengths = make_mixture(rows=rows, cols=cols, bands=6, seed=7)
    cube[10:14, 5:9] = np.nan
    return write_cube(Cube(cube, wavelengths=wavelengths, nodata=float("nan")), directory / "large.hdr")


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def leftovers(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.rglob("*hsiuu-tmp*")]


# ---------------------------------------------------------------------------------------------
# Many scenes: each input a task
# ---------------------------------------------------------------------------------------------


def test_many_scenes_like_local_with_a_failure_reported(runner, cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, as users give them: the workers resolve them the same way
    make_scenes(tmp_path / "in", 5)
    (tmp_path / "in" / "broken.hdr").write_text("ENVI\nsamples = 4\nlines = 4\nbands = 2\ndata type = 4\n")
    (tmp_path / "in" / "broken.img").write_bytes(b"\0" * 10)
    common = ["superres", "in/*.hdr", "-s", "2", "--method", "bicubic"]
    local = invoke(runner, *common, "--out-dir", "local")
    remote = invoke(runner, *common, "--out-dir", "remote", "--scheduler", cluster.address)
    assert local.exit_code == remote.exit_code == 1
    assert "broken.img" in remote.stderr and "1 of 6 inputs failed" in remote.stderr
    assert sorted(remote.stdout.split()) == sorted(local.stdout.replace("local/", "remote/").split())
    assert len(remote.stdout.split()) == 5
    assert files(tmp_path / "remote") == files(tmp_path / "local")
    assert leftovers(tmp_path) == []


def test_unmix_and_simulate_many_scenes(runner, cluster, tmp_path):
    scenes = make_scenes(tmp_path / "in", 3)
    outputs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", cluster.address])):
        unmix = invoke(runner, "unmix", *scenes, "-k", 3, "--method", "vca-fcls", "--out-dir", tmp_path / where / "u", "--json", *extra)
        assert unmix.exit_code == 0, unmix.output
        simulate = invoke(runner, "simulate", *scenes, "-r", 2, "--snr", 30, "--out-dir", tmp_path / where / "s", *extra)
        assert simulate.exit_code == 0, simulate.output
        summaries = json.loads(unmix.stdout)
        for summary in summaries:
            summary["details"].pop("seconds")
            summary["output_directory"] = Path(summary["output_directory"]).name
            summary["outputs"] = [Path(p).name for p in summary["outputs"]]
        outputs[where] = (summaries, {p.relative_to(tmp_path / where): p.read_bytes() for p in (tmp_path / where).rglob("*")
                                      if p.is_file() and p.name != "summary.json"})
    assert outputs["remote"] == outputs["local"]
    assert len(outputs["local"][1]) == 3 * 7 + 3 * 2  # unmix: 2 cubes, a library, its CSV; simulate: the LR cube


def test_evaluate_and_fuse_run_as_one_task(runner, cluster, tmp_path):
    scene = make_scenes(tmp_path, 1, rows=24, cols=24, bands=60)[0]
    simulate = invoke(runner, "simulate", scene, "-r", 2, "--srf", "landsat8:blue,green,red", "-o", tmp_path / "case")
    assert simulate.exit_code == 0, simulate.output
    results = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", cluster.address])):
        fused = invoke(runner, "fuse", tmp_path / "case_lr.hdr", tmp_path / "case_msi.hdr", "--srf", "landsat8:blue,green,red",
                       "--method", "gsa", "-o", tmp_path / f"{where}.hdr", *extra)
        assert fused.exit_code == 0, fused.output
        assert fused.stdout.strip() == str(tmp_path / f"{where}.hdr")
        scored = invoke(runner, "evaluate", tmp_path / f"{where}.hdr", "-r", scene, "--scale", 2, "--json", *extra)
        assert scored.exit_code == 0, scored.output
        results[where] = (json.loads(scored.stdout)["metrics"], (tmp_path / f"{where}.img").read_bytes())
    assert results["remote"] == results["local"]
    missing = invoke(runner, "evaluate", tmp_path / "nope.hdr", "-r", scene, "--scheduler", cluster.address)
    assert missing.exit_code == 1 and "nope.hdr: file not found" in missing.stderr


def test_preloaded_worker_has_the_task_modules_before_its_first_task(tmp_path):
    from hsiuu_cli.cluster.preload import TASK_MODULES

    def loaded() -> list[str]:
        return [name for name in TASK_MODULES if name in sys.modules]

    running = ProcessCluster(tmp_path, workers=1, preload=("hsiuu_cli.cluster.preload",))
    try:
        with running.client() as client:
            assert list(client.run(loaded).values()) == [list(TASK_MODULES)]
    finally:
        running.close()


def test_local_cluster(runner, tmp_path):
    scenes = make_scenes(tmp_path / "in", 3)
    local = invoke(runner, "superres", *scenes, "-s", "3", "--method", "bicubic", "--out-dir", tmp_path / "local")
    remote = invoke(runner, "superres", *scenes, "-s", "3", "--method", "bicubic", "--out-dir", tmp_path / "remote",
                    "--scheduler", "local:2", "--json")
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert files(tmp_path / "remote") == files(tmp_path / "local")
    # the summaries made on the workers come back to the client, in the inputs' order
    summaries = json.loads(remote.stdout)
    assert [s["input"] for s in summaries] == [str(scene) for scene in scenes]
    assert all(s["result"] == "bicubic" for s in summaries)


# ---------------------------------------------------------------------------------------------
# One scene: blocks written into one output
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".hdr", ".tif"])
def test_one_scene_in_blocks_equals_local(runner, cluster, tmp_path, tiny_model, ext):
    scene = large_scene(tmp_path, rows=60, cols=40)
    # --no-calibrate: the tiny random model fails its self-check, and a gain of 0 would leave
    # only bicubic in every block; the network (and the scene state it needs) must run on the workers
    common = ["superres", scene, "-s", "2", "--model", tiny_model, "--tile", "8", "--no-calibrate"]
    local = invoke(runner, *common, "-o", tmp_path / f"local{ext}")
    remote = invoke(runner, *common, "-o", tmp_path / f"remote{ext}", "--scheduler", cluster.address)
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert "blocks on the Dask cluster" in remote.stderr
    data = ".img" if ext == ".hdr" else ext
    assert (tmp_path / f"remote{data}").read_bytes() == (tmp_path / f"local{data}").read_bytes()
    if ext == ".hdr":
        assert (tmp_path / "remote.hdr").read_text() == (tmp_path / "local.hdr").read_text()
    assert leftovers(tmp_path) == []


def test_blocks_of_several_tiles_across_columns(cluster, tmp_path, tiny_model):
    from hsiuu_cli.cluster.superres import super_resolve_blocks
    from hsiuu_cli.superres import load_model
    from hsiuu_cli.superres.inference import super_resolve_cube

    scene = large_scene(tmp_path, rows=40, cols=70)
    cube, model = read_cube(scene), load_model(tiny_model)
    result, _ = super_resolve_cube(cube, 2, model, tile=8)
    write_cube(result, tmp_path / "local.hdr", interleave="bil")
    with cluster.client() as client:
        # 2 tiles' worth of bytes per block: each strip of 9 tiles is cut into 5 blocks
        report = super_resolve_blocks(client, cube, scene, tmp_path / "remote.hdr", 2, model, tile=8,
                                      block_bytes=2 * (16 * 16 * 6 * 4), creation_options={}, interleave="bil")
    assert report.blocks == 5 * 5
    assert (tmp_path / "remote.img").read_bytes() == (tmp_path / "local.img").read_bytes()


def test_a_noisy_scene_is_denoised_alike_in_blocks(cluster, tmp_path, tiny_model):
    from hsiuu_cli.cluster.superres import super_resolve_blocks
    from hsiuu_cli.degrade import add_noise
    from hsiuu_cli.superres import load_model
    from hsiuu_cli.superres.inference import super_resolve_cube

    cube, _, _, wavelengths = make_mixture(rows=40, cols=24, bands=24, seed=8)
    scene = write_cube(Cube(add_noise(cube, 25.0, 0).astype(np.float32), wavelengths=wavelengths), tmp_path / "noisy.hdr")
    noisy, model = read_cube(scene), load_model(tiny_model)
    result, plan = super_resolve_cube(noisy, 2, model, tile=8, calibrate=False)
    assert plan.noise.applied  # the workers must get the denoiser with the scene state
    write_cube(result, tmp_path / "local.hdr")
    with cluster.client() as client:
        super_resolve_blocks(client, noisy, scene, tmp_path / "remote.hdr", 2, model, tile=8, calibrate=False,
                             block_bytes=2 * (16 * 16 * 24 * 4), creation_options={})
    assert (tmp_path / "remote.img").read_bytes() == (tmp_path / "local.img").read_bytes()

@pytest.mark.parametrize("ext", [".hdr", ".tif"])
def test_one_pair_fused_in_blocks_equals_local(runner, cluster, tmp_path, monkeypatch, ext):
    import hsiuu_cli.fusion.blocks as blocks

    from hsiuu_cli import degrade

    cube, _, _, wavelengths = make_mixture(rows=64, cols=32, bands=6, seed=7)
    srf = np.kron(np.eye(3), np.ones((2, 1)))  # 3 broad bands over the 6
    np.savetxt(tmp_path / "srf.csv", srf, delimiter=",")
    write_cube(Cube(degrade.spatial_degrade(cube, 4, sigma=2.0), wavelengths=wavelengths), tmp_path / "case_lr.hdr")
    msi = degrade.spectral_degrade(cube, srf)
    msi[10:14, 5:9] = np.nan
    write_cube(Cube(msi, nodata=float("nan")), tmp_path / "case_msi.hdr")
    # the plan is made on the client: strips of 4 rows, blocks of 3 strips (6 blocks, the last of 4 rows)
    monkeypatch.setattr(blocks, "STRIP_BYTES", 1)
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 12 * 32 * 6)
    runs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", cluster.address])):
        result = invoke(runner, "fuse", tmp_path / "case_lr.hdr", tmp_path / "case_msi.hdr", "--srf-matrix", tmp_path / "srf.csv",
                        "--epochs", 20, "--save-abundances", "--json", "-o", tmp_path / f"{where}{ext}", *extra)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        for key in ("seconds", "output", "outputs"):
            summary.pop(key)
        runs[where] = (summary, {name.replace(where, ""): data for name, data in files(tmp_path).items() if name.startswith(where)})
    assert "blocks of rows on the Dask cluster" in result.stderr
    assert runs["remote"] == runs["local"]
    assert len(runs["local"][1]) == (4 if ext == ".hdr" else 2)  # the cube and its abundances
    assert runs["local"][0]["checks"]["fused_share"] == 1.0
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["vca-fcls", "library"])
def test_one_scene_unmixed_in_blocks_equals_local(runner, cluster, tmp_path, monkeypatch, how):
    from hsiuu_cli.io import SpectralLibrary, write_library
    from hsiuu_cli.unmixing import blocks

    scene = large_scene(tmp_path, rows=160, cols=40)
    if how == "library":
        _, endmembers, _, wavelengths = make_mixture(rows=160, cols=40, bands=6, seed=7)
        write_library(SpectralLibrary(endmembers.astype(np.float32), ["a", "b", "c"], wavelengths), tmp_path / "known.sli")
        args = ["--library", tmp_path / "known.sli"]
    else:
        args = ["--method", "vca-fcls", "-k", 3]
    # the plan is made on the client: ten blocks of 16 rows, endmembers from every 2nd row and column
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 16 * 40 * 6)
    monkeypatch.setattr(blocks, "SAMPLE_PIXELS", 2000)
    runs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", cluster.address])):
        result = invoke(runner, "unmix", scene, *args, "-o", tmp_path / where, "--json", *extra)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        summary["details"].pop("seconds")
        for key in ("output_directory", "outputs"):
            summary.pop(key)
        runs[where] = (summary, {k: v for k, v in files(tmp_path / where).items() if k != "summary.json"})
    assert "blocks of rows on the Dask cluster" in result.stderr
    assert runs["remote"] == runs["local"]
    assert runs["local"][0]["skipped_pixels"] == 16
    if how != "library":
        assert "one pixel of every 2 × 2" in runs["local"][0]["details"]["endmember_sample"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("ext", [".hdr", ".tif"])
def test_one_scene_simulated_in_blocks_equals_local(runner, cluster, tmp_path, monkeypatch, ext):
    from hsiuu_cli import simulate

    scene = large_scene(tmp_path, rows=162, cols=42)  # not a multiple of 4: the cut reference is written too
    # the plan is made on the client: ten blocks of 4 LR rows, each reading 2 more above and below
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 4 * 4 * 42 * 6 * 4)
    args = ["simulate", scene, "-r", 4, "--srf", "ikonos:blue,green,red,nir", "--snr", 30, "--seed", 5]
    runs = {}
    for where, extra in (("local", []), ("remote", ["--scheduler", cluster.address])):
        (tmp_path / where).mkdir()
        result = invoke(runner, *args, "-o", tmp_path / where / f"case{ext}", *extra)
        assert result.exit_code == 0, result.output
        runs[where] = files(tmp_path / where)
    assert "blocks of rows on the Dask cluster" in result.stderr and "16 no-data pixels" in result.stderr
    assert runs["remote"] == runs["local"]
    assert len(runs["local"]) == (6 if ext == ".hdr" else 3)
    assert read_cube(tmp_path / "remote" / f"case_lr{ext}").shape == (40, 10, 6)
    assert leftovers(tmp_path) == []


def start_cli(args: list, cwd: Path, **env) -> subprocess.Popen:
    # SIGINT back to its default: a test run started in the background inherits it ignored, and
    # Python then installs no KeyboardInterrupt handler
    return subprocess.Popen([sys.executable, "-m", "hsiuu_cli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **env),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def hsiuu_keys(client) -> set[str]:
    return {str(k) for keys in client.processing().values() for k in keys if str(k).startswith("hsiuu-")}


def running_block(client, before: set[str] = frozenset(), deadline_s: float = 60) -> str:
    """The address of a worker running one of hsiuu's block tasks (not one of ``before``), as soon as there is one."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            if any(str(k).startswith("hsiuu-block-") and str(k) not in before for k in keys):
                return address
        time.sleep(0.02)
    raise AssertionError("no hsiuu block task ever ran")


def test_worker_killed_mid_run_output_still_identical(runner, own_cluster, tmp_path, tiny_model):
    scene = large_scene(tmp_path, rows=240, cols=40)
    args = ["superres", scene, "-s", "2", "--model", tiny_model, "--tile", "8", "--no-calibrate"]
    assert invoke(runner, *args, "-o", tmp_path / "local.hdr").exit_code == 0
    with own_cluster.client() as client:
        pids = client.run(os.getpid)
        cli = start_cli([*args, "-o", tmp_path / "remote.hdr", "--scheduler", own_cluster.address], tmp_path)
        victim = running_block(client)
        os.kill(pids[victim], signal.SIGKILL)
        assert cli.poll() is None  # killed while the run was going on
        out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert (tmp_path / "remote.img").read_bytes() == (tmp_path / "local.img").read_bytes()
    assert leftovers(tmp_path) == []


def test_worker_killed_while_fusing_blocks_output_still_identical(own_cluster, tmp_path, monkeypatch):
    import threading

    import hsiuu_cli.fusion.blocks as blocks
    from hsiuu_cli import degrade
    from hsiuu_cli.cluster.fuse import cluster_map
    from hsiuu_cli.fusion import fuse, plan_fusion
    from hsiuu_cli.fusion.blocks import ArrayOut, MsiRows, Sinks, run_blocks
    from hsiuu_cli.fusion.cubes import RowFile
    from hsiuu_cli.io.scene_rows import SceneFile

    cube, _, _, _ = make_mixture(rows=192, cols=48, bands=6, seed=7)
    srf = np.kron(np.eye(3), np.ones((2, 1)))
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi_path = write_cube(Cube(degrade.spectral_degrade(cube, srf)), tmp_path / "msi.hdr")
    monkeypatch.setattr(blocks, "STRIP_BYTES", 1)
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 8 * 48 * 6)  # 24 blocks of 8 rows, two passes
    local = fuse(lr, read_cube(msi_path).data, srf, epochs=10).fused
    fit = plan_fusion(lr, read_cube(msi_path).data, srf, epochs=10, msi_rows=MsiRows(SceneFile(path=msi_path), (0, 0, 192, 48)))
    out = RowFile(tmp_path / "out.f32", fit.plan.shape)
    fit.plan.sinks = Sinks(ArrayOut(out), scratch=ArrayOut(RowFile(tmp_path / "passes.f32", fit.plan.shape)))
    killed = []

    def kill_a_worker() -> None:
        with own_cluster.client() as watcher:
            pids = watcher.run(os.getpid)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                for address, keys in watcher.processing().items():
                    if any(str(k).startswith("hsiuu-fuse-consistency_pass-block-") for k in keys):
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(address)
                        break
                time.sleep(0.01)

    watcher = threading.Thread(target=kill_a_worker)
    with own_cluster.client() as client:
        watcher.start()
        run_blocks(fit.plan, cluster_map(client, [tmp_path]))
    watcher.join()
    assert killed, "no block of the consistency pass was ever seen running"
    assert out[0:192].tobytes() == local.tobytes()


def test_scheduler_gone_is_one_line_and_leaves_nothing(own_cluster, tmp_path, tiny_model):
    scene = large_scene(tmp_path, rows=240, cols=40)
    with own_cluster.client() as client:
        cli = start_cli(["superres", scene, "-s", "2", "--model", tiny_model, "--tile", "8", "-o", tmp_path / "out.hdr",
                         "--scheduler", own_cluster.address], tmp_path, HSIUU_CONNECT_TIMEOUT="2")
        running_block(client)
        own_cluster.scheduler.kill()
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "scheduler" in lines[-1]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.hdr", "large.img"]


def test_ctrl_c_cancels_and_leaves_nothing(cluster, tmp_path, tiny_model):
    scene = large_scene(tmp_path, rows=240, cols=40)
    with cluster.client() as client:
        before = hsiuu_keys(client)  # tasks of earlier tests, perhaps still winding down
        cli = start_cli(["superres", scene, "-s", "2", "--model", tiny_model, "--tile", "8", "-o", tmp_path / "out.hdr",
                         "--scheduler", cluster.address], tmp_path)
        running_block(client, before)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 130, err
        assert "interrupted" in err
        deadline = time.monotonic() + 30
        while hsiuu_keys(client) - before:
            assert time.monotonic() < deadline, "tasks still running after Ctrl-C"
            time.sleep(0.1)
    time.sleep(0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.hdr", "large.img"]


def test_ctrl_c_on_a_local_cluster_batch_keeps_only_whole_outputs(runner, tmp_path, tiny_model):
    make_scenes(tmp_path / "in", 12, rows=48, cols=48)
    cli = start_cli(["superres", "in/*.hdr", "-s", "2", "--model", tiny_model, "--tile", "8", "--out-dir", "out",
                     "--scheduler", "local:2"], tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out/scene*.img")):  # an output is done (temporaries start with a dot)
        assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
        time.sleep(0.05)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err
    assert leftovers(tmp_path) == []
    written = sorted(p.name for p in tmp_path.glob("out/scene*.img"))
    assert 0 < len(written) < 12
    for name in written:
        stem = name[: -len("_x2.img")]
        local = invoke(runner, "superres", tmp_path / "in" / f"{stem}.hdr", "-s", "2", "--model", tiny_model, "--tile", "8",
                       "-o", tmp_path / "local.hdr", "--overwrite")
        assert local.exit_code == 0
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "local.img").read_bytes()
