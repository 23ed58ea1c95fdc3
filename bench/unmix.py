"""Unmixing benchmark: every method on Samson, Jasper Ridge and Cuprite, plus speed lines.

    python bench/unmix.py                     # accuracy table (3 seeds) + speed lines
    python bench/unmix.py --seeds 5 --ablation

Mean SAD (degrees, Hungarian-matched with hsiuu_cli.metrics.match_endmembers) and aRMSE
(hsiuu_cli.metrics.abundance_rmse, after the same matching) as mean ± spread (max − min)/2 over
seeds, wall time per run, printed beside the best peer figures of issue 4. Data:
../shared/data/unmixing (Zhu, arXiv:1708.05125; Cuprite via LinaZhuang/NMF-QMV_demo).
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

from hsiuu_cli.degrade import spatial_degrade  # noqa: E402
from hsiuu_cli.io import read_cube, read_library  # noqa: E402
from hsiuu_cli.metrics import abundance_rmse, match_endmembers  # noqa: E402
from hsiuu_cli.unmixing import METHODS, SmileConfig, fcls, unmix, vca  # noqa: E402

DATA = Path(os.environ.get("HSIUU_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "unmixing"

# Best figure of any peer (issue 4): (mean SAD, aRMSE, wall time of that peer).
PEERS = {
    "samson": ("1.45 (MSNet)", "–", "148 s"),
    "jasper_ridge": ("6.14 (EDAA)", "0.147 (PGMSU)", "96–340 s"),
    "cuprite": ("–", "–", "–"),
}


def load(scene: str):
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
            peer = PEERS[scene]
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
    parser.add_argument("--scenes", default="samson,jasper_ridge,cuprite")
    parser.add_argument("--ablation", action="store_true", help="also the SR-task ablation and the --scale experiment")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    import torch

    print(f"command: python bench/unmix.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at start"
    )
    accuracy(args.seeds, args.scenes.split(","), args.methods.split(","))
    if args.ablation:
        ablation(args.seeds)
    if not args.no_speed:
        speed()
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
