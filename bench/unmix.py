"""Unmixing benchmark: every method on Samson, Jasper Ridge, Cuprite and three synthetic AVIRIS
water/soil/vegetation scenes, the endmember-count estimators, plus speed lines.

    python bench/unmix.py                     # accuracy table (3 seeds) + counts + speed lines
    python bench/unmix.py --seeds 5 --ablation
    python bench/unmix.py --only counts       # the estimators of -k auto on every scene
    python bench/unmix.py --only default      # the default `hsiuu unmix SCENE -o DIR`, timed

Mean SAD (degrees, Hungarian-matched with hsiuu_cli.metrics.match_endmembers) and aRMSE
(hsiuu_cli.metrics.abundance_rmse, after the same matching) as mean ± spread (max − min)/2 over
seeds, wall time per run, printed beside the best peer figures of issue 4. Data:
../shared/data/unmixing (Zhu, arXiv:1708.05125; Cuprite via LinaZhuang/NMF-QMV_demo); the synthetic
scenes (aviris_*) are built by bench/unmix_scenes.py from the USGS library in ../shared/data/library
and were built before any method ran on them (the signal-subspace start of SMILE was then chosen with
them in view, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hsiuu_cli.degrade import spatial_degrade  # noqa: E402
from hsiuu_cli.io import read_cube, read_library  # noqa: E402
from hsiuu_cli.metrics import abundance_rmse, match_endmembers  # noqa: E402
from hsiuu_cli.unmixing import METHODS, SmileConfig, count_endmembers, fcls, hysime, unmix, vca  # noqa: E402
from unmix_scenes import RECIPES, build_scene  # noqa: E402

DATA = Path(os.environ.get("HSIUU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "unmixing"

# Best figure of any peer (issue 4): (mean SAD, aRMSE, wall time of that peer).
PEERS = {
    "samson": ("1.45 (MSNet)", "–", "148 s"),
    "jasper_ridge": ("6.14 (EDAA)", "0.147 (PGMSU)", "96–340 s"),
    "cuprite": ("–", "–", "–"),
}
SYNTHETIC = {recipe.name: recipe for recipe in RECIPES}
REAL = ("samson", "jasper_ridge", "cuprite")
TRUE_COUNTS = {"samson": 3, "jasper_ridge": 4, "cuprite": 3, **{name: 3 for name in SYNTHETIC}}
"""Labelled materials; the Cuprite crop is unmixed with 3 in its source (NMF-QMV, Zhuang et al. 2019)."""


def load(scene: str):
    """(cube over the usable bands, reference endmembers, reference abundances or None)."""
    if scene in SYNTHETIC:
        synthetic = build_scene(SYNTHETIC[scene], DATA.parent)
        good = synthetic.good
        return synthetic.cube[..., good], synthetic.endmembers[:, good], synthetic.abundances
    folder = DATA / scene
    cube = read_cube(folder / f"{scene}.hdr").physical()
    if scene == "cuprite":
        return cube, read_library(folder / "endmembers_reference.sli").spectra, None
    reference = read_cube(folder / "abundances_gt.hdr").physical()
    return cube, read_library(folder / "endmembers_gt.sli").spectra, reference


def score(result, endmembers, abundances):
    order, sad = match_endmembers(result.endmembers, endmembers)
    armse = None if abundances is None else abundance_rmse(result.abundances[..., order], abundances)
    return float(sad.mean()), armse


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def accuracy(seeds: int, scenes: list[str], methods: list[str], config: SmileConfig | None = None, label: str = ""):
    print(f"\n| scene | method{label} | mean SAD (deg) | aRMSE | wall time (s) | best peer SAD | best peer aRMSE | peer time |")
    print("|---|---|---|---|---|---|---|---|")
    for scene in scenes:
        cube, endmembers, abundances = load(scene)
        k = endmembers.shape[0]
        for method in methods:
            sads, armses, times = [], [], []
            for seed in range(seeds):
                started = time.perf_counter()
                result = unmix(cube, k, method=method, seed=seed, smile_config=config)
                times.append(time.perf_counter() - started)
                sad, armse = score(result, endmembers, abundances)
                sads.append(sad)
                armses.append(armse)
            peer = PEERS.get(scene, ("see docs", "see docs", ""))
            print(
                f"| {scene} | {method} | {spread(sads)} | {spread(armses)} | {spread(times)} | {peer[0]} | {peer[1]} | {peer[2]} |",
                flush=True,
            )


def ablation(seeds: int):
    """SMILE's SR task on and off; and the SR head's finer grid on Jasper Ridge degraded ×2."""
    print("\nSR-task ablation (SMILE, Jasper Ridge and Samson):")
    for weight in (1.0, 0.0):
        accuracy(seeds, ["samson", "jasper_ridge"], ["smile"], SmileConfig(sr_weight=weight), f" (sr_weight={weight})")

    print("\nAbundances on the 2× finer grid: Jasper Ridge degraded ×2 (Gaussian PSF), unmixed with --scale 2,")
    print("scored against the full-resolution ground truth (aRMSE), versus FCLS on the degraded scene + bicubic:")
    from hsiuu_cli.degrade import resize_bicubic

    cube, endmembers, abundances = load("jasper_ridge")
    low = spatial_degrade(cube, 2)
    for seed in range(seeds):
        result = unmix(low, 4, method="smile", scale=2, seed=seed)
        order, sad = match_endmembers(result.endmembers, endmembers)
        fine = result.abundances_hr[..., order]
        coarse = resize_bicubic(result.abundances[..., order], cube.shape[0], cube.shape[1])
        coarse = np.clip(coarse, 0, None)
        coarse /= coarse.sum(2, keepdims=True)
        exact = fcls(low.reshape(-1, low.shape[2]), result.endmembers[order]).reshape(*low.shape[:2], 4)
        bicubic = np.clip(resize_bicubic(exact, cube.shape[0], cube.shape[1]), 0, None)
        bicubic /= bicubic.sum(2, keepdims=True)
        print(
            f"  seed {seed}: SAD {sad.mean():.2f}°, SR head aRMSE {abundance_rmse(fine, abundances):.4f}, "
            f"bicubic of SMILE abundances {abundance_rmse(coarse, abundances):.4f}, "
            f"bicubic of FCLS abundances {abundance_rmse(bicubic, abundances):.4f}"
        )


def counts(scenes: list[str]):
    """The candidate estimators of `-k auto` on every scene (HySime, the signal-variance share at
    three levels, the largest eigen-gap, the VCA reconstruction elbow, a fixed cap), against the
    labelled counts."""
    print("\n| scene | labelled | HySime | share 99.5 % | share 99 % (auto) | share 98 % | eigen-gap | VCA elbow | HySime capped at 8 | seconds (auto) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scene in scenes:
        cube, _, _ = load(scene)
        pixels = cube.reshape(-1, cube.shape[2]).astype(np.float64)
        started = time.perf_counter()
        auto = count_endmembers(pixels)
        seconds = time.perf_counter() - started
        share = auto.cumulative_share
        shares = [min(int(np.argmax(share >= 1 - u)) + 2, pixels.shape[1]) for u in (0.005, 0.01, 0.02)]
        subspace = hysime(pixels).n_endmembers
        print(
            f"| {scene} | {TRUE_COUNTS[scene]} | {subspace} | {shares[0]} | **{auto.n_endmembers}** | {shares[2]} | "
            f"{eigen_gap_count(pixels)} | {vca_elbow_count(pixels)} | {min(subspace, 8)} | {seconds:.2f} |",
            flush=True,
        )


def oracle(scenes: list[str]):
    """What the synthetic scenes allow: SAD of the mean of the pixels whose *true* abundance is at
    least 0.9 or 0.999 (a pure-pixel method can do no better than its purest pixels), and FCLS aRMSE
    with the true endmembers."""
    from hsiuu_cli.metrics import spectral_angles

    print("\n| scene | class | SAD of true-pure (≥ 0.9) mean | SAD of true-pure (≥ 0.999) mean | pixels ≥ 0.999 |")
    print("|---|---|---|---|---|")
    for scene in [s for s in scenes if s in SYNTHETIC]:
        cube, endmembers, abundances = load(scene)
        pixels = cube.reshape(-1, cube.shape[2]).astype(np.float64)
        truth = abundances.reshape(-1, endmembers.shape[0])
        for k, name in enumerate(("water", "soil", "vegetation")):
            angles = []
            for level in (0.9, 0.999):
                chosen = truth[:, k] >= level
                mean = pixels[chosen].mean(0) if chosen.any() else None
                angles.append("–" if mean is None else f"{spectral_angles(mean[None], endmembers[k : k + 1])[0, 0]:.2f}")
            print(f"| {scene} | {name} | {angles[0]} | {angles[1]} | {int((truth[:, k] >= 0.999).sum())} |")
        exact = fcls(pixels, endmembers)
        print(f"| {scene} | FCLS with the true endmembers: aRMSE {abundance_rmse(exact, truth):.4f} | | | |", flush=True)


def eigen_gap_count(pixels: np.ndarray) -> int:
    """1 + the position of the largest ratio between consecutive noise-whitened eigenvalues above
    1.5 × the Marchenko–Pastur edge (a literature heuristic, measured here and not chosen)."""
    from hsiuu_cli.unmixing.hysime import estimate_noise

    n, bands = pixels.shape
    level = np.sqrt(np.mean(estimate_noise(pixels) ** 2, axis=0))
    whitened = (pixels - pixels.mean(0)) / level
    values = np.sort(np.linalg.eigvalsh(whitened.T @ whitened / n))[::-1]
    above = int((values > 1.5 * (1 + np.sqrt(bands / n)) ** 2).sum())
    if above < 2:
        return 2
    return int(np.argmax(np.log(values[: above - 1] / values[1:above]))) + 2


def vca_elbow_count(pixels: np.ndarray, max_count: int = 10, seed: int = 0) -> int:
    """The knee of the VCA + FCLS reconstruction RMSE over K = 2 … ``max_count``: the K farthest
    below the chord from the first to the last point (kneedle; measured here and not chosen)."""
    ks = np.arange(2, max_count + 1)
    errors = []
    for k in ks:
        endmembers, _ = vca(pixels, int(k), rng=seed)
        errors.append(np.sqrt(np.mean((pixels - fcls(pixels, endmembers) @ endmembers) ** 2)))
    errors = np.asarray(errors)
    span = errors[0] - errors[-1]
    if span <= 0:
        return 2
    drop = (errors[0] - errors) / span
    return int(ks[np.argmax(drop - (ks - ks[0]) / (ks[-1] - ks[0]))])


def default_command(scenes: list[str], repeats: int):
    """`hsiuu unmix SCENE -o DIR` with the defaults (SMILE, -k auto) through the installed command,
    interleaved with the same command at `-k <labelled count>` (the baseline; the two swap places on
    every other run), load noted per run."""
    import json
    import subprocess
    import tempfile

    from hsiuu_cli.cube import Cube
    from hsiuu_cli.io import write_cube

    print(f"\nDefault command, {os.cpu_count()} cores (wall seconds; load average before each run):")
    print("| scene | run | command | endmembers | wall (s) | load |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for scene in scenes:
            if scene in SYNTHETIC:
                synthetic = build_scene(SYNTHETIC[scene], DATA.parent)
                path = Path(folder) / f"{scene}.hdr"
                write_cube(Cube(synthetic.cube, wavelengths=synthetic.wavelengths, bad_bands=synthetic.bad_bands), path)
            else:
                path = DATA / scene / f"{scene}.hdr"
            for run in range(repeats):
                pair = [("default", []), (f"-k {TRUE_COUNTS[scene]}", ["-k", str(TRUE_COUNTS[scene])])]
                for label, extra in pair if run % 2 == 0 else pair[::-1]:  # alternate which goes first
                    out = Path(folder) / f"{scene}_{run}_{label.replace(' ', '')}"
                    load_before = os.getloadavg()[0]
                    started = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "hsiuu_cli", "-q", "unmix", str(path), *extra, "-o", str(out), "--json"],
                        capture_output=True, text=True, check=True,
                    )
                    wall = time.perf_counter() - started
                    count = json.loads(done.stdout)["endmembers"]
                    print(f"| {scene} | {run} | {label} | {count} | {wall:.1f} | {load_before:.1f} |", flush=True)


def speed():
    print("\nSpeed:")
    rng = np.random.default_rng(0)
    k, bands, pixels = 10, 200, 1_000_000
    endmembers = np.cumsum(np.abs(rng.normal(0.3, 0.1, (k, bands))), axis=1) / np.arange(1, bands + 1)
    truth = rng.dirichlet(np.full(k, 0.5), pixels)
    data = (truth @ endmembers).astype(np.float32)
    data += rng.normal(0, 0.01, data.shape).astype(np.float32)
    started = time.perf_counter()
    _, report = fcls(data, endmembers, return_report=True)
    print(
        f"  FCLS, 1M pixels × 200 bands × 10 endmembers: {time.perf_counter() - started:.1f} s "
        f"(target ≤ 20 s; max KKT violation {report.max_kkt_violation:.1e}, unconverged {report.unconverged_pixels})"
    )
    del data, truth
    cube, _, _ = load("jasper_ridge")
    for method in ("vca-fcls", "smile"):
        started = time.perf_counter()
        unmix(cube, 4, method=method, seed=0)
        target = "< 1 s" if method == "vca-fcls" else "≤ 120 s"
        print(f"  {method} on Jasper Ridge 100×100×198: {time.perf_counter() - started:.2f} s (target {target})")
    pixels = cube.reshape(-1, cube.shape[2])
    started = time.perf_counter()
    vca(pixels, 4, rng=0)
    print(f"    of which VCA alone: {time.perf_counter() - started:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--scenes", default=",".join([*REAL, *SYNTHETIC]))
    parser.add_argument("--ablation", action="store_true", help="also the SR-task ablation and the --scale experiment")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--only", choices=("accuracy", "counts", "default", "oracle", "speed"), help="one part only")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each command in the default-command timing")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    import torch

    print(f"command: python bench/unmix.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at start"
    )
    scenes = args.scenes.split(",")
    if args.only in (None, "accuracy"):
        accuracy(args.seeds, scenes, args.methods.split(","))
    if args.only in (None, "counts"):
        counts(scenes)
    if args.only == "oracle":
        oracle(scenes)
    if args.ablation:
        ablation(args.seeds)
    if args.only == "default":
        default_command([s for s in scenes if s in ("jasper_ridge", *SYNTHETIC)], args.repeats)
    if args.only == "speed" or (args.only is None and not args.no_speed):
        speed()
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
