"""Benchmark of `--scheduler` (issue 13): many scenes as tasks, one large scene as blocks, the
overhead of Dask, and the start-up of commands that do not use it. Figures are printed side by
side as Markdown tables, with the load average, since the targets compare runs on one machine.

Run from the repository root (needs `pip install -e ".[dask]"`):

    python bench/scale.py many                # ≥ 24 small real cubes, superres ×4: local, 1 and 2 workers
    python bench/scale.py large               # one scene ×4 in blocks over 2 workers: RSS per worker, bytes, wall
    python bench/scale.py large --lr-rows 1000   # the issue's full 1000 × 1000 LR → 4000 × 4000 × 100 output
    python bench/scale.py unmix               # one 1500 × 1500 × 198 scene unmixed in blocks: local, 2 workers, old code
    python bench/scale.py fuse                # one 4000 × 4000 × 4 MSI + 500 × 500 × 31 HSI fused in blocks: old code
                                              # (local, one task), local blocks, 2 workers (--fuse-side 512: a quick check)
    python bench/scale.py simulate            # one 2000 × 2000 × 100 scene simulated in blocks: old code, local, 2 workers
    python bench/scale.py simulate --simulate-side 400   # the same, small (a functional check)
    python bench/scale.py startup             # `hsiuu --help` and the imports of the default path
    python bench/scale.py all

Every cluster here is real: a `dask scheduler` process and `dask worker` processes (one thread
each, under nannies, as `dask worker --nworkers N --nthreads 1` starts them) on 127.0.0.1, and the
`hsiuu` command line talking to it with `--scheduler tcp://…`. Local runs are the same command
without `--scheduler`. Peak RSS of a worker is the kernel's high-water mark (VmHWM) of its process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hsiuu_cli.cube import Cube  # noqa: E402
from hsiuu_cli.io import read_cube, write_cube  # noqa: E402
from peak_rss import run_measured  # noqa: E402  (bench/, beside this script)

SR_POOL = ROOT / ".." / "shared" / "data" / "sr_pool"
HSIUU = [sys.executable, "-m", "hsiuu_cli"]


def load() -> str:
    return "load average " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (by name), read in 64 MB pieces."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(64 * 2**20):
                h.update(chunk)
        out[str(path.relative_to(directory))] = h.hexdigest()
    return out


class Cluster:
    """`dask scheduler` + `dask worker --nworkers N --nthreads 1` on 127.0.0.1."""

    def __init__(self, workers: int, directory: Path, preload: bool = False, env: dict | None = None):
        import distributed

        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        scheduler_file = directory / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        log = open(directory / "dask.log", "a")
        started = time.perf_counter()
        # ``env``: for workers that run another checkout's code (PYTHONPATH), started outside this one
        environment, cwd = (dict(os.environ, **env), "/") if env else (None, None)
        self.processes = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", str(scheduler_file)], stdout=log, stderr=log,
                                           env=environment, cwd=cwd)]
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "worker", self.address, "--nworkers", str(workers), "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(directory)]
            + (["--preload", "hsiuu_cli.cluster.preload"] if preload else []), stdout=log, stderr=log, env=environment, cwd=cwd))
        self.client = distributed.Client(self.address)
        self.client.wait_for_workers(workers, timeout=300)
        self.start_seconds = time.perf_counter() - started

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the workers and the scheduler."""
        return sum(self.client.run(_cpu_seconds).values()) + self.client.run_on_scheduler(_cpu_seconds)

    def peak_rss_mb(self) -> list[float]:
        def vmhwm() -> float:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
            return float("nan")

        return sorted(self.client.run(vmhwm).values())

    def close(self) -> None:
        self.client.close()
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def timed(command: list, env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of a command."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=err,
                                   env=dict(os.environ, **(env or {})))
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{err.read().decode()}")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def _cpu_seconds() -> float:
    return time.process_time()


# ---------------------------------------------------------------------------------------------
# Many scenes
# ---------------------------------------------------------------------------------------------


def many(args, work: Path) -> None:
    scenes = sorted(SR_POOL.glob("*.hdr"))
    if not scenes:
        sys.exit(f"{SR_POOL} not found: the many-scenes benchmark uses the real sr_pool cubes")
    inputs = work / "many" / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    c = args.crop
    corners = [(0, 0), (100 - c, 100 - c), (0, 100 - c), (100 - c, 0)]
    for index in range(args.scenes):
        scene, (r, q) = scenes[index % len(scenes)], corners[(index // len(scenes)) % len(corners)]
        cube = read_cube(scene)
        write_cube(cube.replace(data=np.asarray(cube.data[r : r + c, q : q + c])), inputs / f"{scene.stem}_{r}_{q}.hdr", overwrite=True)
    command = HSIUU + ["-q", "superres", str(inputs / "*.hdr"), "-s", "4"]
    print(f"\n### Many scenes: {args.scenes} real {c}×{c} crops (sr_pool, 162–207 bands) superres ×4 with the shipped models\n")
    print(f"{load()} before; cluster start-up (scheduler + workers ready) is not in the cluster times.\n")
    rows, outputs = [], {}

    def record(name: str, seconds: tuple[float, float], out: Path, note: str = "") -> None:
        outputs[name] = digest(out)
        rows.append((name, seconds, note))
        print(f"  {name}: {seconds[0]:.1f} s, {seconds[1]:.1f} CPU s ({load()})", file=sys.stderr, flush=True)

    for repeat in range(args.repeats):
        for name, env, jobs in (("local, 1 thread (OMP_NUM_THREADS=1)", {"OMP_NUM_THREADS": "1"}, 1),
                                ("local, default threads", {}, 1),
                                ("local, --jobs 2 (threads)", {"OMP_NUM_THREADS": "1"}, 2)):
            out = work / "many" / f"local{jobs}{len(env)}"
            shutil.rmtree(out, ignore_errors=True)
            record(name, timed(command + ["--out-dir", out, "-j", jobs], env), out)
        for workers in (1, 2):
            label = f"{workers} worker{'s' if workers > 1 else ''} (1 thread each)"
            for preload in (False, True):
                cluster = Cluster(workers, work / "many" / f"dask{workers}", preload=preload)
                try:
                    out = work / "many" / f"cluster{workers}{preload}"
                    shutil.rmtree(out, ignore_errors=True)
                    before = cluster.cpu_seconds()
                    wall, client_cpu = timed(command + ["--out-dir", out, "--scheduler", cluster.address])
                    cpu = client_cpu + cluster.cpu_seconds() - before
                    name = label + (", preloaded workers" if preload else "")
                    record(name, (wall, cpu), out, f"cluster start {cluster.start_seconds:.1f} s")
                    if preload:
                        continue
                    # The same run again on the same workers: what a standing cluster gives from its second
                    # run on (the workers have imported torch, ONNX Runtime and hsiuu during the first).
                    out = work / "many" / f"cluster{workers}warm"
                    shutil.rmtree(out, ignore_errors=True)
                    before = cluster.cpu_seconds()
                    wall, client_cpu = timed(command + ["--out-dir", out, "--scheduler", cluster.address])
                    record(label + ", warm workers", (wall, client_cpu + cluster.cpu_seconds() - before), out)
                finally:
                    cluster.close()
    best: dict[str, tuple[float, float]] = {}
    for name, seconds, _ in rows:
        best[name] = min(seconds, best.get(name, seconds))
    reference = next(iter(outputs.values()))
    print("| run | best wall s | CPU s (client, scheduler, workers) | scenes/s | vs 1 worker | outputs identical to local |")
    print("|---|---|---|---|---|---|")
    one = best["1 worker (1 thread each)"][0]
    for name, (seconds, cpu) in best.items():
        same = "yes" if outputs[name] == reference else "NO"
        print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {args.scenes / seconds:.3f} | {one / seconds:.2f}× | {same} |")
    local1 = best["local, 1 thread (OMP_NUM_THREADS=1)"]
    for warm in ("", ", preloaded workers", ", warm workers"):
        one, two = best[f"1 worker (1 thread each){warm}"], best[f"2 workers (1 thread each){warm}"]
        print(f"\n{warm.strip(', ').capitalize() or 'Fresh workers'}: 2 workers vs 1 worker: {one[0] / two[0]:.2f}× the throughput "
              f"(target ≥ 1.7×); 1 worker vs local on one thread: {100 * (one[0] / local1[0] - 1):+.1f} % wall time, "
              f"{100 * (one[1] / local1[1] - 1):+.1f} % CPU time (target ≤ +15 %)")
    print(f"{load()} after.")


# ---------------------------------------------------------------------------------------------
# One large scene
# ---------------------------------------------------------------------------------------------


def large(args, work: Path) -> None:
    folder = work / "large"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"lr_{args.lr_rows}x{args.lr_cols}x{args.bands}.hdr"
    if not source.exists():
        # int16 with a scale factor as a reflectance product ships; random content costs the network the same
        rng = np.random.default_rng(0)
        lr = (rng.random((args.lr_rows, args.lr_cols, args.bands), dtype=np.float32) * 5000).astype(np.int16)
        write_cube(Cube(data=lr, scale_factor=10000.0), source)
        del lr
    s = args.scale
    hr = f"{args.lr_rows * s}×{args.lr_cols * s}×{args.bands}"
    # --no-adapt: one scene on a cluster runs the model as given, so the local run must too for the bytes to match;
    # --no-denoise: random bands read as pure noise, and denoised to their mean the self-check would leave the network out
    command = HSIUU + ["-q", "superres", str(source), "-s", str(s), "--model", f"agnostic_x{s}", "--no-adapt", "--no-denoise"]
    print(f"\n### One scene in blocks: {args.lr_rows}×{args.lr_cols}×{args.bands} int16 LR → {hr} ×{s} (agnostic_x{s})\n")
    print(f"{load()} before.\n")
    results = []
    for repeat in range(args.repeats):
        out = folder / "local"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        seconds, rss, _ = run_measured(command + ["-o", str(out / "out.hdr")])
        results.append(("local (ONNX on all cores)", seconds, [rss], digest(out)))
        print(f"  local: {seconds:.1f} s, {rss} MB ({load()})", file=sys.stderr, flush=True)
        for workers in args.workers:
            cluster = Cluster(workers, folder / f"dask{workers}")
            try:
                out = folder / f"cluster{workers}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                seconds, client_rss, _ = run_measured(command + ["-o", str(out / "out.hdr"), "--scheduler", cluster.address])
                peaks = cluster.peak_rss_mb()
                results.append((f"{workers} worker{'s' if workers > 1 else ''} (1 thread each)", seconds, peaks, digest(out),
                                client_rss))
                print(f"  {workers} workers: {seconds:.1f} s, workers {peaks} MB, client {client_rss} MB ({load()})",
                      file=sys.stderr, flush=True)
            finally:
                cluster.close()
    best: dict[str, tuple] = {}
    for row in results:
        if row[0] not in best or row[1] < best[row[0]][1]:
            best[row[0]] = row
    local = best["local (ONNX on all cores)"]
    print("| run | best wall s | vs best local | peak RSS MB per process | output bytes identical to local |")
    print("|---|---|---|---|---|")
    for name, seconds, peaks, hashes, *client in best.values():
        who = ", ".join(f"{p:.0f}" for p in peaks) + (f" (client {client[0]})" if client else "")
        same = "yes" if hashes == local[3] else "NO"
        print(f"| {name} | {seconds:.1f} | {seconds / local[1]:.2f}× | {who} | {same} |")
    print(f"\nTargets: each worker's peak RSS < 1500 MB, bytes identical, wall ≤ 1.3× the best local run. {load()} after.")
    if not args.keep:
        shutil.rmtree(folder / "local", ignore_errors=True)
        for workers in args.workers:
            shutil.rmtree(folder / f"cluster{workers}", ignore_errors=True)


OLD_HSIUU = [sys.executable, "-c", "import sys; from hsiuu_cli.cli.entry import main; sys.argv[0] = 'hsiuu'; main()"]
"""The command line of the hsiuu_cli package on PYTHONPATH (run with cwd="/" so this checkout's is not found)."""


def code_of(commit: str, folder: Path) -> Path:
    """``folder`` holding the hsiuu_cli package of ``commit`` (extracted once), for PYTHONPATH."""
    if not folder.exists():
        folder.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "hsiuu_cli"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def unmix_large(args, work: Path) -> None:
    """One large scene unmixed by blocks of rows (vca-fcls): here, on 2 workers, and by the code of
    ``--baseline`` (which held the whole scene in memory), side by side."""
    jasper = ROOT / ".." / "shared" / "data" / "unmixing" / "jasper_ridge" / "jasper_ridge.hdr"
    if not jasper.exists():
        sys.exit(f"{jasper} not found: the large unmixing scene is Jasper Ridge tiled")
    folder = work / "unmix"
    folder.mkdir(parents=True, exist_ok=True)
    side = args.unmix_side
    source = folder / f"jasper_tiled_{side}.hdr"
    if not source.exists():
        # real spectra (Jasper Ridge, mirrored tiles so no seam repeats a row), int16 with a scale factor as products ship
        tile = np.asarray(read_cube(jasper).data)
        block = np.concatenate([tile, tile[:, ::-1]], axis=1)
        block = np.concatenate([block, block[::-1]], axis=0)
        reps = -(-side // block.shape[0]), -(-side // block.shape[1])
        values = np.rint(np.tile(block, (reps[0], reps[1], 1))[:side, :side] * 10000).astype(np.int16)
        write_cube(Cube(data=values, scale_factor=10000.0), source)
        del values
    baseline = code_of(args.baseline, folder / "baseline_code")
    command = ["-q", "unmix", str(source), "--method", "vca-fcls", "-k", "4"]
    print(f"\n### One scene unmixed in blocks: {side}×{side}×198 int16 (Jasper Ridge tiled), vca-fcls -k 4\n")
    print(f"{load()} before.\n")
    rows = []

    def outputs(directory: Path) -> dict[str, str]:
        return {k: v for k, v in digest(directory).items() if k != "summary.json"}

    out = folder / "baseline"
    shutil.rmtree(out, ignore_errors=True)
    seconds, rss, _ = run_measured(OLD_HSIUU + command + ["-o", str(out)], env=dict(os.environ, PYTHONPATH=str(baseline)), cwd="/")
    rows.append((f"local, code of {args.baseline} (whole scene in memory)", seconds, f"{rss}", out))
    print(f"  baseline: {seconds:.1f} s, {rss} MB ({load()})", file=sys.stderr, flush=True)
    out = folder / "local"
    shutil.rmtree(out, ignore_errors=True)
    seconds, rss, _ = run_measured(HSIUU + command + ["-o", str(out)])
    rows.append(("local, blocks of rows", seconds, f"{rss}", out))
    print(f"  local: {seconds:.1f} s, {rss} MB ({load()})", file=sys.stderr, flush=True)
    cluster = Cluster(2, folder / "dask2")
    try:
        out = folder / "cluster2"
        shutil.rmtree(out, ignore_errors=True)
        seconds, client_rss, _ = run_measured(HSIUU + command + ["-o", str(out), "--scheduler", cluster.address])
        peaks = cluster.peak_rss_mb()
        rows.append(("2 workers (1 thread each), blocks written by the workers", seconds,
                     ", ".join(f"{p:.0f}" for p in peaks) + f" (client {client_rss})", out))
        print(f"  2 workers: {seconds:.1f} s, workers {peaks} MB, client {client_rss} MB ({load()})", file=sys.stderr, flush=True)
    finally:
        cluster.close()
    local = outputs(folder / "local")
    print("| run | wall s | peak RSS MB | outputs identical to local blocks | max abs. abundance difference to local blocks |")
    print("|---|---|---|---|---|")
    for name, seconds, rss, directory in rows:
        difference = float(np.nanmax(np.abs(np.asarray(read_cube(directory / "abundances.hdr").data, dtype=np.float64)
                                            - np.asarray(read_cube(folder / "local" / "abundances.hdr").data))))
        same = "yes" if outputs(directory) == local else "no"
        print(f"| {name} | {seconds:.1f} | {rss} | {same} | {difference:.2e} |")
    print(f"\n{load()} after.")


def simulate_large(args, work: Path) -> None:
    """One large scene simulated by blocks of rows (×4 and Sentinel-2 bands): by the code of
    ``--simulate-baseline`` (the whole scene in memory), here, and on 2 workers, side by side; then
    with --snr here and on 2 workers (the noise is per block, so it differs from the old code's)."""
    from hsiuu_cli.io import open_envi_windows

    folder = work / "simulate"
    folder.mkdir(parents=True, exist_ok=True)
    side, bands = args.simulate_side, args.bands
    source = folder / f"scene_{side}x{side}x{bands}.hdr"
    if not source.exists():
        # smooth spectra of four materials in random proportions, int16 with a scale factor as
        # products ship; written a strip at a time so this script never holds the scene
        rng = np.random.default_rng(0)
        grid = np.linspace(0, 1, bands)
        spectra = np.stack([0.2 + 0.15 * np.sin(2 * np.pi * (k + 1) * grid / 3 + k) for k in range(4)]).astype(np.float32)
        header = Cube(data=np.broadcast_to(np.int16(0), (side, side, bands)), scale_factor=10000.0,
                      wavelengths=np.linspace(400.0, 2400.0, bands))
        with open_envi_windows(header, source) as windows:
            for start in range(0, side, 100):
                rows = min(100, side - start)
                mix = rng.dirichlet(np.ones(4), size=(rows, side)).astype(np.float32)
                windows.write(start, 0, np.rint(mix @ spectra * 10000).astype(np.int16))
    baseline = code_of(args.simulate_baseline, folder / f"baseline_code_{args.simulate_baseline}")
    command = ["-q", "simulate", str(source), "-r", "4", "--srf", "sentinel2a"]
    print(f"\n### One scene simulated in blocks: {side}×{side}×{bands} int16, -r 4 --srf sentinel2a\n")
    print(f"{load()} before.\n")
    rows = []

    def measured(name: str, out: Path, run: list, **options) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        seconds, rss, _ = run_measured(run + ["-o", str(out / "case")], **options)
        rows.append((name, seconds, f"{rss}", out))
        print(f"  {name}: {seconds:.1f} s, {rss} MB ({load()})", file=sys.stderr, flush=True)

    measured(f"local, code of {args.simulate_baseline} (whole scene in memory)", folder / "baseline", OLD_HSIUU + command,
             env=dict(os.environ, PYTHONPATH=str(baseline)), cwd="/")
    measured("local, blocks of rows", folder / "local", HSIUU + command)
    measured("local, blocks of rows, --snr 30", folder / "local_snr", HSIUU + command + ["--snr", "30"])
    cluster = Cluster(2, folder / "dask2")
    try:
        for name, out, extra in (("2 workers (1 thread each), blocks written by the workers", folder / "cluster2", []),
                                 ("2 workers, --snr 30", folder / "cluster2_snr", ["--snr", "30"])):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            cluster.client.run(_reset_peak_rss)
            seconds, client_rss, _ = run_measured(HSIUU + command + extra + ["-o", str(out / "case"), "--scheduler", cluster.address])
            peaks = cluster.peak_rss_mb()
            rows.append((name, seconds, ", ".join(f"{p:.0f}" for p in peaks) + f" (client {client_rss})", out))
            print(f"  {name}: {seconds:.1f} s, workers {peaks} MB, client {client_rss} MB ({load()})", file=sys.stderr, flush=True)
    finally:
        cluster.close()
    references = {False: folder / "local", True: folder / "local_snr"}
    print("| run | wall s | peak RSS MB | outputs identical to local blocks (same options) | values that differ, max. rel. difference |")
    print("|---|---|---|---|---|")
    for name, seconds, rss, directory in rows:
        reference = references["snr" in directory.name]
        same = "yes" if digest(directory) == digest(reference) else "no"
        differences = []
        for role in ("lr", "msi"):
            mine, theirs = (np.asarray(read_cube(d / f"case_{role}.hdr").data, dtype=np.float64) for d in (directory, reference))
            changed = int((mine != theirs).sum())
            relative = float(np.max(np.abs(mine - theirs) / np.maximum(np.abs(theirs), 1e-30)))
            differences.append(f"{role}: {changed} of {mine.size}, {relative:.1e}")
        print(f"| {name} | {seconds:.1f} | {rss} | {same} | {'; '.join(differences)} |")
    print(f"\n{load()} after.")
    if not args.keep:
        for _, _, _, directory in rows:
            shutil.rmtree(directory, ignore_errors=True)


def _reset_peak_rss() -> None:
    """Start a worker's high-water mark (VmHWM) afresh: 5 to /proc/self/clear_refs resets it."""
    Path("/proc/self/clear_refs").write_text("5")


# ---------------------------------------------------------------------------------------------
# One large pair fused in blocks
# ---------------------------------------------------------------------------------------------


def _fuse_inputs(folder: Path, side: int, ratio: int = 8, bands: int = 31) -> tuple[Path, Path, Path]:
    """A synthetic pair as bench/fuse.py memory sizes it: an LR-HSI of ``side``/8 pixels, 31 bands
    (5 smooth spectra mixed by smooth maps), and a ``side`` × ``side`` × 4 MSI (the HSI through a
    4-band SRF, enlarged a strip at a time, with texture the HSI cannot have); and the SRF as CSV."""
    from scipy import ndimage

    from hsiuu_cli import degrade

    rows_lr = side // ratio
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, 1.0, bands)
    spectra = np.stack([0.2 + 0.6 * np.exp(-0.5 * ((grid - centre) / 0.2) ** 2) for centre in (0.1, 0.3, 0.5, 0.7, 0.9)])
    maps = ndimage.gaussian_filter(rng.random((rows_lr, rows_lr, 5)), sigma=(3, 3, 0))
    maps /= maps.sum(axis=2, keepdims=True)
    lr = (maps @ spectra).astype(np.float32)
    srf = np.stack([np.exp(-0.5 * ((grid - centre) / 0.12) ** 2) for centre in (0.15, 0.4, 0.65, 0.9)], axis=1)
    srf_path = folder / "srf.csv"
    np.savetxt(srf_path, srf, delimiter=",")
    lr_path = write_cube(Cube(lr), folder / "lr.hdr")
    msi = np.lib.format.open_memmap(folder / "msi.npy", mode="w+", dtype=np.float32, shape=(side, side, 4))
    lr_msi = lr @ (srf / srf.sum(axis=0)).astype(np.float32)
    for start in range(0, rows_lr, 64):
        stop = min(start + 64, rows_lr)
        lo, hi = max(0, start - 3), min(rows_lr, stop + 3)
        enlarged = degrade.resize_bicubic(lr_msi[lo:hi], (hi - lo) * ratio, side)
        block = enlarged[(start - lo) * ratio : (start - lo) * ratio + (stop - start) * ratio]
        block *= 1.0 + 0.05 * rng.standard_normal(block.shape[:2])[:, :, None].astype(np.float32)
        msi[start * ratio : stop * ratio] = block
    msi_path = write_cube(Cube(msi), folder / "msi.hdr")
    del msi
    (folder / "msi.npy").unlink()
    return lr_path, msi_path, srf_path


def fuse_large(args, work: Path) -> None:
    """One large pair fused: the code of ``--fuse-baseline`` (whole HR cube in one process; with
    --scheduler, the whole command one task on a worker), and blocks of rows here and on 2 workers."""
    folder = (work / "fuse").resolve()  # absolute: the old code's runs work in /
    folder.mkdir(parents=True, exist_ok=True)
    side = args.fuse_side
    inputs = folder / f"pair_{side}"
    if not inputs.exists():
        inputs.mkdir()
        _fuse_inputs(inputs, side)
    lr_path, msi_path, srf_path = inputs / "lr.hdr", inputs / "msi.hdr", inputs / "srf.csv"
    old_code = None if args.fuse_baseline == "none" else {"PYTHONPATH": str(code_of(args.fuse_baseline, folder / "baseline_code"))}
    command = ["-q", "fuse", str(lr_path), str(msi_path), "--srf-matrix", str(srf_path), "--seed", "0"]
    runner = [sys.executable, "-c", "import sys; from hsiuu_cli.cli.entry import main; sys.argv[0] = 'hsiuu'; main()"]
    print(f"\n### One pair fused in blocks: {side}×{side}×4 MSI + {side // 8}×{side // 8}×31 HSI, ratio 8, spectramorph, ENVI output\n")
    print(f"{load()} before.\n")
    rows = []

    def run(name: str, out: Path, extra: list[str], env: dict | None = None, cluster: Cluster | None = None) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        seconds, rss, _ = run_measured((runner if env else HSIUU) + command + ["-o", str(out / "fused.hdr")] + extra,
                                       env=dict(os.environ, **(env or {})), cwd="/" if env else None)
        peaks = cluster.peak_rss_mb() if cluster is not None else []
        who = f"{rss}" if cluster is None else ", ".join(f"{p:.0f}" for p in peaks) + f" (client {rss})"
        rows.append((name, seconds, who, out))
        print(f"  {name}: {seconds:.1f} s, {who} MB ({load()})", file=sys.stderr, flush=True)

    if old_code is not None:
        run(f"local, code of {args.fuse_baseline} (whole HR cube in one process)", folder / "baseline", [], old_code)
    run("local, blocks of rows written in place", folder / "local", [])
    if old_code is not None:
        cluster = Cluster(1, folder / "dask_baseline", env=old_code)
        try:
            run(f"1 worker, code of {args.fuse_baseline}: the whole command one task", folder / "one_task",
                ["--scheduler", cluster.address], old_code, cluster)
        finally:
            cluster.close()
    cluster = Cluster(2, folder / "dask2")
    try:
        run("2 workers (1 thread each), blocks written by the workers", folder / "cluster2", ["--scheduler", cluster.address],
            cluster=cluster)
    finally:
        cluster.close()
    local = digest(folder / "local")
    print("| run | wall s | peak RSS MB (workers, client) | output bytes identical to local blocks |")
    print("|---|---|---|---|")
    for name, seconds, who, directory in rows:
        print(f"| {name} | {seconds:.1f} | {who} | {'yes' if digest(directory) == local else 'no'} |")
    print(f"\n{load()} after.")
    if not args.keep:
        for name in ("baseline", "local", "one_task", "cluster2"):
            shutil.rmtree(folder / name, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# GeoTIFF from several workers: one writer on the client, or the workers in turn under a lock
# ---------------------------------------------------------------------------------------------


def _block_values(index: int, rows: int, cols: int, bands: int) -> np.ndarray:
    return np.random.default_rng(index).random((rows, cols, bands), dtype=np.float32)


def _write_under_lock(path: str, index: int, rows: int, cols: int, bands: int) -> float:
    """A worker's block written into the shared GeoTIFF itself, one worker at a time."""
    import distributed
    import rasterio
    from rasterio.windows import Window

    values = _block_values(index, rows, cols, bands)
    started = time.perf_counter()
    with distributed.Lock("hsiuu-bench-geotiff"):
        waited = time.perf_counter() - started
        with rasterio.open(path, "r+") as dst:
            dst.write(np.moveaxis(values, -1, 0), window=Window(0, index * rows, cols, rows))
    return waited


def _write_envi_window(windows, index: int, rows: int, cols: int, bands: int) -> None:
    windows.write(index * rows, 0, _block_values(index, rows, cols, bands))


def geotiff(args, work: Path) -> None:
    import distributed
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    from hsiuu_cli.io import open_envi_windows

    warnings.simplefilter("ignore", NotGeoreferencedWarning)

    blocks, rows, cols, bands = args.blocks, 64, 1000, 50
    shape = (blocks * rows, cols, bands)
    size_mb = np.prod(shape) * 4 / 2**20
    folder = work / "geotiff"
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": cols, "height": shape[0], "count": bands, "dtype": "float32", "INTERLEAVE": "BAND"}
    print(f"\n### Writing {blocks} blocks of {rows}×{cols}×{bands} float32 ({size_mb:.0f} MB) made on 2 workers\n")
    print(f"{load()} before. The blocks are random numbers made on the workers: only the writing differs.\n")
    cluster = Cluster(2, folder / "dask")
    client = cluster.client
    results = []
    try:
        for repeat in range(args.repeats):
            # the client as the one writer (what hsiuu does)
            path = folder / "client.tif"
            started = time.perf_counter()
            with rasterio.open(path, "w", **profile) as dst:
                futures = [client.submit(_block_values, i, rows, cols, bands, pure=False) for i in range(blocks)]
                for future in distributed.as_completed(futures):
                    index = futures.index(future)
                    dst.write(np.moveaxis(future.result(), -1, 0), window=Window(0, index * rows, cols, rows))
                    future.release()
            results.append(("GeoTIFF, client writes every block", time.perf_counter() - started, ""))
            # the workers under a lock, each opening the file in update mode
            path = folder / "lock.tif"
            with rasterio.open(path, "w", **profile):
                pass
            started = time.perf_counter()
            waited = client.gather([client.submit(_write_under_lock, str(path), i, rows, cols, bands, pure=False)
                                    for i in range(blocks)])
            results.append(("GeoTIFF, workers write under a Dask Lock", time.perf_counter() - started,
                            f"{sum(waited):.1f} s waiting for the lock"))
            # ENVI positional writes, for reference
            started = time.perf_counter()
            header_only = Cube(data=np.broadcast_to(np.float32(0), shape))  # shape and type, no memory
            with open_envi_windows(header_only, folder / "envi.hdr", overwrite=True) as windows:
                client.gather([client.submit(_write_envi_window, windows, i, rows, cols, bands, pure=False) for i in range(blocks)])
            results.append(("ENVI, workers write at offsets", time.perf_counter() - started, ""))
            print(f"  round {repeat + 1} done ({load()})", file=sys.stderr, flush=True)
    finally:
        cluster.close()
    best: dict[str, tuple] = {}
    for name, seconds, note in results:
        if name not in best or seconds < best[name][0]:
            best[name] = (seconds, note)
    print("| writer | best wall s | MB/s | note |")
    print("|---|---|---|---|")
    for name, (seconds, note) in best.items():
        print(f"| {name} | {seconds:.2f} | {size_mb / seconds:.0f} | {note} |")
    print(f"\n{load()} after.")
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Start-up of the default path
# ---------------------------------------------------------------------------------------------


def startup(args, work: Path) -> None:
    print("\n### Start-up without --scheduler\n")
    code = ("import sys; sys.argv = ['hsiuu', '--help']\nfrom hsiuu_cli.cli.app import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=work).stdout.strip().splitlines()[-1]
    times = {"hsiuu --help": [], "python -c 'import distributed' (what a --scheduler run adds)": []}
    for _ in range(args.repeats * 5):
        times["hsiuu --help"].append(timed([sys.executable, "-c", code])[0])
        times["python -c 'import distributed' (what a --scheduler run adds)"].append(timed([sys.executable, "-c", "import distributed"])[0])
    print(f"Dask modules loaded by `hsiuu --help`: {loaded}. {load()}.\n")
    print("| command | median s | min s |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {np.median(values):.3f} | {min(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["many", "large", "unmix", "simulate", "fuse", "geotiff", "startup", "all"])
    parser.add_argument("--blocks", type=int, default=32, help="blocks of the GeoTIFF writer comparison")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--crop", type=int, default=48, help="side of the LR crops of the many-scenes run")
    parser.add_argument("--lr-rows", type=int, default=1000)
    parser.add_argument("--lr-cols", type=int, default=1000)
    parser.add_argument("--bands", type=int, default=100)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="cluster sizes of the large-scene run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration, interleaved; the best is kept")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs of the large-scene run")
    parser.add_argument("--unmix-side", type=int, default=1500, help="side of the scene of the unmix part")
    parser.add_argument("--baseline", default="1b6532b", help="commit whose unmix held the whole scene in memory")
    parser.add_argument("--fuse-side", type=int, default=4000, help="MSI side of the fuse part (a multiple of 8)")
    parser.add_argument("--fuse-baseline", default="8c92706",
                        help="commit whose fuse ran whole (one task on a cluster); 'none': time only today's code")
    parser.add_argument("--simulate-side", type=int, default=2000, help="side of the scene of the simulate part (--bands bands)")
    parser.add_argument("--simulate-baseline", default="8c92706", help="commit whose simulate held the whole scene in memory")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hsiuu-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/scale.py {' '.join(sys.argv[1:])}  (work folder {work})")
    if args.what in ("startup", "all"):
        startup(args, work)
    if args.what in ("many", "all"):
        many(args, work)
    if args.what in ("unmix", "all"):
        unmix_large(args, work)
    if args.what in ("fuse", "all"):
        fuse_large(args, work)
    if args.what in ("simulate", "all"):
        simulate_large(args, work)
    if args.what in ("geotiff", "all"):
        geotiff(args, work)
    if args.what in ("large", "all"):
        large(args, work)


if __name__ == "__main__":
    main()
