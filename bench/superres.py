"""Benchmark of `hsiuu superres`: quality against bicubic on held-out scenes, the unmixing
ablation, ONNX CPU throughput and peak memory for a large output.

Run from the repository root (results go to stdout as Markdown tables; ``--json`` also saves them):

    python bench/superres.py quality                      # shipped models vs bicubic, ×2 and ×4, two degradations
    python bench/superres.py ablation --without runs/aviris_x4_nounmix
    python bench/superres.py throughput                   # output megavoxels per second at ×4
    python bench/superres.py memory                       # peak RSS of `hsiuu superres` for a 4000×4000×100 output
    python bench/superres.py noise                        # noisy LR scenes: the default (denoised where strong) vs bicubic
    python bench/superres.py noise-photos                 # the same for the two colour photographs (noise put back in the self-check)
    python bench/superres.py noise-adapt                  # a noisy 400×400 mosaic through adaptation, denoised or not
    python bench/superres.py other-lr                     # LR made by wider/narrower PSFs, box, point sampling, striping

Scenes are the ones held out of training (see the model cards): the AVIRIS family (three ABU
scenes and Cuprite) and sensors no model saw (ROSIS Pavia University, CASI MUUFL Gulfport and
Houston 2018, a colour camera). LR cubes are made from them with hsiuu_cli.degrade, the code
behind `hsiuu simulate`; metrics come from hsiuu_cli.metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsiuu_cli.cube import Cube  # noqa: E402
from hsiuu_cli.degrade import spatial_degrade  # noqa: E402
from hsiuu_cli.io import read_cube, write_cube  # noqa: E402
from hsiuu_cli.metrics import ergas, psnr, sam, ssim  # noqa: E402
from hsiuu_cli.superres import choose_model, load_model  # noqa: E402
from hsiuu_cli.superres.adapt import SHARPNESS_FRACTIONS, estimate_psf, sharpness  # noqa: E402
from hsiuu_cli.superres.inference import super_resolve_cube  # noqa: E402
from hsiuu_cli.superres.training import physical_good_bands  # noqa: E402
from peak_rss import run_measured  # noqa: E402  (bench/, beside this script)

FAMILY = [
    "sr_pool/abu-airport-4.hdr",
    "sr_pool/abu-beach-3.hdr",
    "sr_pool/abu-urban-3.hdr",
    "unmixing/cuprite/cuprite.hdr",
]
OTHER = [
    "scenes/pavia_university/pavia_lr_hsi.hdr",
    "scenes/muufl_gulfport/muufl_gulfport.hdr",
    "scenes/houston2018/houston_hsi.hdr",
    "scenes/houston2018/houston_rgb.hdr",
]


TRAINING = [
    "sr_pool/abu-airport-1.hdr", "sr_pool/abu-airport-2.hdr", "sr_pool/abu-airport-3.hdr", "sr_pool/abu-beach-1.hdr",
    "sr_pool/abu-beach-2.hdr", "sr_pool/abu-urban-1.hdr", "sr_pool/abu-urban-2.hdr", "sr_pool/hydice.hdr",
    "sr_pool/sandiego.hdr", "scenes/salton_sea/salton_sea.hdr", "unmixing/jasper_ridge/jasper_ridge.hdr",
    "unmixing/urban_subimage/urban_subimage.hdr", "unmixing/samson/samson.hdr",
]
"""The shipped models' training scenes (their cards): the PSF table is measured on these only."""


def load_reference(path: Path) -> Cube:
    """The held-out HR scene as training sees a scene: good bands only, physical values, no-data filled with band means."""
    values, wavelengths = physical_good_bands(read_cube(path))
    return Cube(data=values, wavelengths=wavelengths)


def scores(result: np.ndarray, reference: np.ndarray, scale: int) -> dict:
    return {
        "psnr": psnr(result, reference),
        "sam": sam(result, reference),
        "ergas": ergas(result, reference, scale),
        "ssim": ssim(result, reference),
    }


def worse_than(result: dict, baseline: dict) -> list[str]:
    """Which of PSNR and SAM in ``result`` (:func:`scores`) are worse than in ``baseline``, beyond rounding."""
    return [k.upper() for k in ("psnr", "sam") if (result[k] < baseline[k] - 1e-6 if k == "psnr" else result[k] > baseline[k] + 1e-6)]


def run_method(lr: Cube, scale: int, model, calibrate: bool) -> tuple[np.ndarray, object]:
    method = "bicubic" if model is None else "model"
    result, plan = super_resolve_cube(lr, scale, model, method=method, dtype=np.float32, calibrate=calibrate)
    return np.asarray(result.data), plan


def quality(args) -> list[dict]:
    rows = []
    for group, scenes in (("AVIRIS family", FAMILY), ("other sensors", OTHER)):
        for relative in scenes:
            reference_full = load_reference(args.data / relative)
            for scale in args.scales:
                for degradation in args.degradations:
                    h = reference_full.rows // scale * scale
                    w = reference_full.cols // scale * scale
                    reference = reference_full.data[:h, :w]
                    lr = Cube(data=spatial_degrade(reference, scale, method=degradation).astype(np.float32),
                              wavelengths=reference_full.wavelengths)
                    base = {"group": group, "scene": Path(relative).stem, "bands": reference.shape[2],
                            "hr": f"{h}×{w}", "scale": scale, "degradation": degradation}
                    bicubic, _ = run_method(lr, scale, None, False)
                    rows.append({**base, "method": "bicubic", **scores(bicubic, reference, scale)})
                    chosen = choose_model(lr, scale)
                    others = [load_model(name) for name in args.also if name != chosen.name]
                    candidates = [chosen] + [m for m in others if m.scale == scale]
                    for model in candidates:
                        for calibrate in (False, True):
                            started = time.perf_counter()
                            result, plan = run_method(lr, scale, model, calibrate)
                            rows.append({
                                **base,
                                "method": model.name + (" +cal" if calibrate else ""),
                                "default": model is chosen and calibrate,
                                "gain": round(plan.gain, 3),
                                "seconds": round(time.perf_counter() - started, 2),
                                **scores(result, reference, scale),
                            })
                    print(f"  {relative} ×{scale} {degradation}: done", file=sys.stderr, flush=True)
    print_quality(rows)
    return rows


def print_quality(rows: list[dict]) -> None:
    print("\n### Per scene\n")
    print("| group | scene | bands | HR | scale | LR made by | method | PSNR dB | SAM ° | ERGAS | SSIM | gain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['group']} | {r['scene']} | {r['bands']} | {r['hr']} | ×{r['scale']} | {r['degradation']} | "
              f"{r['method']} | {r['psnr']:.2f} | {r['sam']:.3f} | {r['ergas']:.3f} | {r['ssim']:.4f} | "
              f"{r.get('gain', '')} |")
    print("\n### Means over scenes: model minus bicubic\n")
    print("| group | scale | LR made by | method | PSNR dB (model / bicubic, Δ) | SAM ° (model / bicubic, change) | ERGAS (model / bicubic) | SSIM (model / bicubic) | scenes worse than bicubic (PSNR) |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["group"], r["scale"], r["degradation"]) for r in rows})
    for group, scale, degradation in keys:
        subset = [r for r in rows if (r["group"], r["scale"], r["degradation"]) == (group, scale, degradation)]
        baseline = {r["scene"]: r for r in subset if r["method"] == "bicubic"}
        methods = sorted({r["method"].replace(" +cal", "") for r in subset if r["method"] != "bicubic"})
        for name in methods:
            for label in (name, name + " +cal"):
                chosen = [r for r in subset if r["method"] == label]
                if not chosen:
                    continue
                mean = {k: float(np.mean([r[k] for r in chosen])) for k in ("psnr", "sam", "ergas", "ssim")}
                base = {k: float(np.mean([baseline[r["scene"]][k] for r in chosen])) for k in ("psnr", "sam", "ergas", "ssim")}
                worse = sum(r["psnr"] < baseline[r["scene"]]["psnr"] - 1e-6 for r in chosen)
                print(f"| {group} | ×{scale} | {degradation} | {label} | {mean['psnr']:.2f} / {base['psnr']:.2f} "
                      f"({mean['psnr'] - base['psnr']:+.2f}) | {mean['sam']:.3f} / {base['sam']:.3f} "
                      f"({100 * (mean['sam'] / base['sam'] - 1):+.1f} %) | {mean['ergas']:.3f} / {base['ergas']:.3f} | "
                      f"{mean['ssim']:.4f} / {base['ssim']:.4f} | {worse} of {len(chosen)} |")


def ablation(args) -> list[dict]:
    rows = []
    models = {"with unmixing": load_model(args.with_model), "without unmixing": load_model(args.without)}
    for relative in FAMILY:
        reference_full = load_reference(args.data / relative)
        for degradation in args.degradations:
            scale = models["with unmixing"].scale
            h, w = reference_full.rows // scale * scale, reference_full.cols // scale * scale
            reference = reference_full.data[:h, :w]
            lr = Cube(data=spatial_degrade(reference, scale, method=degradation).astype(np.float32))
            bicubic, _ = run_method(lr, scale, None, False)
            rows.append({"scene": Path(relative).stem, "degradation": degradation, "variant": "bicubic", **scores(bicubic, reference, scale)})
            for label, model in models.items():
                result, _ = run_method(lr, scale, model, False)
                rows.append({"scene": Path(relative).stem, "degradation": degradation, "variant": label, **scores(result, reference, scale)})
    print(f"\n### Ablation (×{models['with unmixing'].scale}, networks alone, no calibration)\n")
    print("| LR made by | variant | PSNR dB | SAM ° | ERGAS | SSIM |")
    print("|---|---|---|---|---|---|")
    for degradation in args.degradations:
        for variant in ("bicubic", "without unmixing", "with unmixing"):
            chosen = [r for r in rows if r["degradation"] == degradation and r["variant"] == variant]
            mean = {k: float(np.mean([r[k] for r in chosen])) for k in ("psnr", "sam", "ergas", "ssim")}
            print(f"| {degradation} | {variant} | {mean['psnr']:.2f} | {mean['sam']:.3f} | {mean['ergas']:.3f} | {mean['ssim']:.4f} |")
    return rows


def throughput(args) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for name, bands in (("aviris_x4", 188), ("agnostic_x4", 100)):
        model = load_model(name)
        lr = Cube(data=rng.random((args.size, args.size, bands), dtype=np.float32))
        # random bands read as pure noise: denoised by default, they would shrink to their mean and the self-check
        # would leave the network out; the network's rows keep them, a last row times the denoising forced
        for calibrate, denoise in ((False, False), (True, False), (False, True)):
            super_resolve_cube(Cube(data=lr.data[:32, :32]), 4, model, dtype=np.float32, calibrate=False, threads=args.threads,
                               denoise=False)
            started = time.perf_counter()
            result, plan = super_resolve_cube(lr, 4, model, dtype=np.float32, calibrate=calibrate, threads=args.threads, tile=args.tile,
                                              denoise=denoise)
            np.asarray(result.data)
            seconds = time.perf_counter() - started
            voxels = args.size * 4 * args.size * 4 * bands
            rows.append({"model": name + (", denoised" if denoise else ""), "bands": bands, "lr": f"{args.size}×{args.size}",
                         "calibrate": calibrate, "seconds": round(seconds, 2), "mvoxels_per_s": round(voxels / seconds / 1e6, 2)})
        started = time.perf_counter()
        result, _ = super_resolve_cube(lr, 4, None, method="bicubic", dtype=np.float32)
        np.asarray(result.data)
        seconds = time.perf_counter() - started
        rows.append({"model": "bicubic", "bands": bands, "lr": f"{args.size}×{args.size}", "calibrate": False,
                     "seconds": round(seconds, 2), "mvoxels_per_s": round(args.size**2 * 16 * bands / seconds / 1e6, 2)})
    print(f"\n### Throughput at ×4 (ONNX Runtime, {args.threads} threads, tile {args.tile}; whole pipeline: bicubic base, "
          "normalisation, network, in memory)\n")
    print("| model | bands | LR size | calibration | seconds | output Mvoxel/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['bands']} | {r['lr']} | {'on' if r['calibrate'] else 'off'} | {r['seconds']} | {r['mvoxels_per_s']} |")
    return rows


def memory(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        folder = Path(folder)
        rng = np.random.default_rng(0)
        lr = (rng.random((args.rows, args.cols, args.bands), dtype=np.float32) * 5000).astype(np.int16)
        source = folder / "large_lr.hdr"
        write_cube(Cube(data=lr, scale_factor=10000.0), source)
        del lr
        for suffix in args.formats:
            target = folder / f"large_x4{suffix}"
            # --no-denoise: the random LR reads as pure noise, and denoised the self-check would leave the network out
            command = [sys.executable, "-m", "hsiuu_cli", "-q", "superres", str(source), "--scale", "4",
                       "--model", args.model, "-o", str(target), "--tile", str(args.tile), "--no-denoise"]
            try:
                seconds, peak_mb, _ = run_measured(command, cwd=ROOT)
            except RuntimeError as exc:
                raise SystemExit(str(exc)) from None
            size_gb = sum(p.stat().st_size for p in folder.glob("large_x4*")) / 1e9
            voxels = args.rows * 4 * args.cols * 4 * args.bands
            rows.append({"output": f"{args.rows * 4}×{args.cols * 4}×{args.bands} int16 {suffix}", "peak_rss_mb": round(peak_mb),
                         "seconds": round(seconds, 1),
                         "mvoxels_per_s": round(voxels / seconds / 1e6, 2), "output_gb": round(size_gb, 2),
                         "command": " ".join(command[1:])})
            for path in folder.glob("large_x4*"):
                path.unlink()
    print("\n### Peak memory of a large output (`hsiuu superres` in a subprocess, peak RSS from GNU time)\n")
    print("| output | peak RSS MB | seconds | output Mvoxel/s (end to end, with writing) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['output']} | {r['peak_rss_mb']} | {r['seconds']} | {r['mvoxels_per_s']} |")
    return rows


def psf_degrade(values: np.ndarray, scale: int, fraction: float | None) -> np.ndarray:
    """LR made with a Gaussian PSF of σ = fraction · scale, or antialiased bicubic (None)."""
    if fraction is None:
        return spatial_degrade(values, scale, method="bicubic")
    return spatial_degrade(values, scale, method="gaussian", sigma=fraction * scale)


def psf_table(args) -> list[dict]:
    """adapt.SHARPNESS_TABLE: mean log sharpness of the training scenes' LR for each PSF width."""
    scenes = [load_reference(args.data / relative).data for relative in TRAINING]
    rows = []
    print("SHARPNESS_TABLE = {")
    for scale in (2, 3, 4, 8):
        means = [float(np.mean([sharpness(psf_degrade(v, scale, f)) for v in scenes])) for f in SHARPNESS_FRACTIONS]
        rows.append({"scale": scale, "log_sharpness": means})
        print(f"    {scale}: ({', '.join(f'{m:.3f}' for m in means)}),")
    print("}")
    return rows


def psf_accuracy(args) -> list[dict]:
    """The PSF estimate on the held-out scenes, LR made with known PSFs (σ as a fraction of the scale)."""
    rows = []
    truths = [None, 0.35, 0.5, 0.7]
    for relative in FAMILY + OTHER:
        reference = load_reference(args.data / relative).data
        for scale in args.scales:
            for truth in truths:
                estimate = estimate_psf(psf_degrade(reference, scale, truth), scale)
                rows.append({"scene": Path(relative).stem, "scale": scale, "truth": truth, "estimate": estimate.fraction})
    print("\n### PSF estimate (σ / scale) on held-out scenes\n")
    print("| scene | scale | " + " | ".join("bicubic LR" if t is None else f"σ = {t} s" for t in truths) + " |")
    print("|---|---|" + "---|" * len(truths))
    for relative in FAMILY + OTHER:
        for scale in args.scales:
            found = [r for r in rows if r["scene"] == Path(relative).stem and r["scale"] == scale]
            print(f"| {Path(relative).stem} | ×{scale} | " + " | ".join(f"{r['estimate']:.2f}" for r in found) + " |")
    return rows


MOSAIC = ["sr_pool/abu-airport-4.hdr", "sr_pool/abu-beach-3.hdr", "sr_pool/abu-urban-3.hdr", "sr_pool/sandiego-plane.hdr"]
"""Unseen AVIRIS scenes (no model trained on them) for the 400 × 400 mosaic."""
REAL_SIZE = [
    ("houston_rgb", "scenes/houston2018/houston_rgb.hdr"),
    ("pavia_hr_rgb", "scenes/pavia_university/pavia_hr_rgb.hdr"),
    ("houston_hsi", "scenes/houston2018/houston_hsi.hdr"),
    ("abu-beach-1", "sr_pool/abu-beach-1.hdr"),
]
"""The largest real cubes in ../shared/data (abu-beach-1, 150 × 150, is a training scene of the AVIRIS models)."""


def aviris_mosaic(data: Path) -> np.ndarray:
    """400 × 400 × 188: the four unseen 100 × 100 AVIRIS scenes, each four times in a different
    orientation (rotations and flips), no copy beside another; the first 188 bands of each."""
    tiles = [load_reference(data / relative).data[:100, :100, :188] for relative in MOSAIC]
    layout = [[0, 1, 2, 3], [2, 3, 0, 1], [1, 0, 3, 2], [3, 2, 1, 0]]
    rows = []
    for r, line in enumerate(layout):
        rows.append(np.concatenate([np.rot90(tiles[k], k=r + c) if (r + c) % 2 else np.rot90(tiles[k], k=r)[:, ::-1]
                                    for c, k in enumerate(line)], axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32)


def adapt_cases(args):
    cases = [("AVIRIS mosaic (unseen)", aviris_mosaic(args.data))]
    for label, relative in REAL_SIZE:
        cases.append((label, load_reference(args.data / relative).data))
    for relative in FAMILY:
        cases.append((Path(relative).stem, load_reference(args.data / relative).data))
    return [(label, values) for label, values in cases if args.only is None or any(o in label for o in args.only)]


def adapt(args) -> list[dict]:
    """Scene adaptation against the model as shipped (its default calibration), bicubic and an oracle
    (the same fine-tuning on the scene's true HR/LR pairs instead of its self-supervised ones)."""
    from hsiuu_cli.superres.adapt import (
        AdaptSettings, PsfEstimate, SelfPairs, adapt_to_scene, blurrier_than_training, fine_tune, too_small,
    )

    rows = []
    for label, reference_full in adapt_cases(args):
        for scale in args.scales:
            for degradation in args.degradations:
                h, w = reference_full.shape[0] // scale * scale, reference_full.shape[1] // scale * scale
                reference = reference_full[:h, :w]
                lr = Cube(data=spatial_degrade(reference, scale, method=degradation).astype(np.float32))
                base = {"scene": label, "bands": reference.shape[2], "hr": f"{h}×{w}", "scale": scale, "degradation": degradation}
                bicubic, _ = run_method(lr, scale, None, False)
                rows.append({**base, "method": "bicubic", **scores(bicubic, reference, scale)})
                model = choose_model(lr, scale)
                shipped, plan = run_method(lr, scale, model, True)
                rows.append({**base, "method": f"{model.name} (no adaptation)", "gain": round(plan.gain, 3), **scores(shipped, reference, scale)})
                reason = too_small(lr.rows, lr.cols, scale)
                if reason:
                    rows.append({**base, "method": "adapt: " + reason})
                    print(f"  {label} ×{scale} {degradation}: {reason}", file=sys.stderr, flush=True)
                    continue
                settings = AdaptSettings(seed=0, time_limit_s=args.time_limit)
                started = time.perf_counter()
                # force: fine-tune even where the default skips it (a scene no blurrier than the training
                # pairs), to show what the adapted network would have done; the choice is the default's.
                chosen = adapt_to_scene(lr, scale, model, settings, force=True)
                seconds = time.perf_counter() - started
                result, written_plan = super_resolve_cube(lr, scale, chosen.model, dtype=np.float32, gain=chosen.gain)
                forced, _ = super_resolve_cube(lr, scale, chosen.adapted_model, dtype=np.float32, calibrate=False)
                summary = chosen.summary()
                rows.append({**base, "method": "adapted network (gain 1)", **scores(np.asarray(forced.data), reference, scale)})
                default = "fine-tunes" if blurrier_than_training(chosen.psf, model.info) else "skips fine-tuning"
                rows.append({**base, "method": f"default: {default}, writes {chosen.result}", "gain": round(written_plan.gain, 3),
                             "seconds": round(seconds, 1), "fine_tune_s": summary["seconds"], "steps": summary["steps"],
                             "best_step": summary["best_step"], "stopped_by": summary["stopped_by"],
                             "psf": summary["psf"]["sigma_over_scale"], "held_back": summary["held_back"],
                             "lr_mpx": lr.rows * lr.cols / 1e6, **scores(np.asarray(result.data), reference, scale)})
                if args.oracle:
                    # The same fine-tuning, but on the scene's true pairs (HR target, its real LR), held back alike.
                    held = max(2, round(lr.rows * settings.hold_back)) * scale
                    truth = SelfPairs(reference[: h - held], np.asarray(lr.data)[: (h - held) // scale], reference[h - held :],
                                      np.asarray(lr.data)[(h - held) // scale :], PsfEstimate(0.5, scale, 0.0))
                    tuned = fine_tune(model.weights(), model.info.config, truth, AdaptSettings(seed=0, time_limit_s=1e9), 1e9)
                    from hsiuu_cli.superres.export import onnx_bytes
                    from hsiuu_cli.superres.registry import LoadedModel
                    oracle = LoadedModel("oracle", model.path, model.info, onnx_bytes(tuned.network, model.info), None, None)
                    out, _ = super_resolve_cube(lr, scale, oracle, dtype=np.float32, calibrate=False)
                    rows.append({**base, "method": "oracle (same fine-tuning on the true HR)", "steps": tuned.steps,
                                 **scores(np.asarray(out.data), reference, scale)})
                mine = [r for r in rows if (r["scene"], r["scale"], r["degradation"]) == (label, scale, degradation) and "psnr" in r]
                print(f"  {label} ×{scale} {degradation}: done ({seconds:.0f} s, {chosen.result}): "
                      + "; ".join(f"{r['method']} {r['psnr']:.2f}/{r['sam']:.3f}" for r in mine)
                      + f"; held back {summary['held_back']}", file=sys.stderr, flush=True)
    print_adapt(rows)
    return rows


def print_adapt(rows: list[dict]) -> None:
    print("\n### Scene adaptation\n")
    print("| scene | bands | HR | scale | LR made by | method | PSNR dB | SAM ° | ERGAS | SSIM | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "psnr" not in r:
            print(f"| {r['scene']} | {r['bands']} | {r['hr']} | ×{r['scale']} | {r['degradation']} | {r['method']} | | | | | |")
            continue
        notes = []
        if "gain" in r:
            notes.append(f"gain {r['gain']}")
        if "seconds" in r:
            notes.append(f"PSF σ = {r['psf']} s; {r['steps']} steps (best {r['best_step']}, {r['stopped_by']}); "
                         f"fine-tuning {r['fine_tune_s']} s, all {r['seconds']} s for {r['lr_mpx']:.3f} LR Mpx")
        print(f"| {r['scene']} | {r['bands']} | {r['hr']} | ×{r['scale']} | {r['degradation']} | {r['method']} | "
              f"{r['psnr']:.2f} | {r['sam']:.3f} | {r['ergas']:.3f} | {r['ssim']:.4f} | {'; '.join(notes)} |")


def thirty_one_bands(cube: Cube) -> np.ndarray:
    """The cube resampled (linear in wavelength) to 31 bands, 400–700 nm in 10 nm steps, as lab
    cameras (CAVE, Harvard) record; bands outside the cube's span are clipped to its ends."""
    target = np.arange(400.0, 701.0, 10.0)
    source = np.asarray(cube.wavelengths, dtype=np.float64)
    lower = np.clip(np.searchsorted(source, target) - 1, 0, source.size - 2)
    weight = np.clip((target - source[lower]) / (source[lower + 1] - source[lower]), 0.0, 1.0).astype(np.float32)
    values = np.asarray(cube.data, dtype=np.float32)
    return values[:, :, lower] * (1 - weight) + values[:, :, lower + 1] * weight


def guard_cases(args):
    """(label, HR, LR maker) for the no-adaptation guard: 31-band VNIR cubes made from two other
    sensors, and the peer benchmark's own LR cubes."""
    cases = []
    for relative in ("scenes/houston2018/houston_hsi.hdr", "scenes/pavia_university/pavia_lr_hsi.hdr"):
        reference = load_reference(args.data / relative)
        cases.append((f"31-band VNIR from {Path(relative).stem}", thirty_one_bands(reference), None))
    from fuse import HYPERBENCH_SCENES, dump_hyperbench_cases  # bench/, beside this script

    names = tuple(HYPERBENCH_SCENES)
    with tempfile.TemporaryDirectory(prefix="hsiuu-hyperbench-") as folder:
        if not dump_hyperbench_cases(list(names), [[4, 3, 35.0, 40.0]], Path(folder)):
            print("HyperBench's venv is missing: its cases are left out (see bench/fuse.py hyperbench)", file=sys.stderr)
            return cases
        for name in names:
            case = Path(folder) / f"{name}_4_3"
            cases.append((f"HyperBench {name} (its PSF and noise)", np.load(case / "gt_hsi.npy"), np.load(case / "lr_hsi.npy")))
    return cases


def guard(args) -> list[dict]:
    """The default run (no adaptation) against bicubic on sensors and protocols no model trained for,
    with the detail gain before the PSNR/SAM guard (plain least squares, as before it) beside it."""
    rows = []
    for label, reference_full, given_lr in guard_cases(args):
        scales, degradations = ([4], ["HyperBench"]) if given_lr is not None else (args.scales, args.degradations)
        for scale in scales:
            for degradation in degradations:
                h, w = reference_full.shape[0] // scale * scale, reference_full.shape[1] // scale * scale
                reference = reference_full[:h, :w].astype(np.float32)
                made = given_lr if given_lr is not None else spatial_degrade(reference, scale, method=degradation)
                lr = Cube(data=np.asarray(made, dtype=np.float32))
                base = {"scene": label, "bands": reference.shape[2], "hr": f"{h}×{w}", "scale": scale, "degradation": degradation}
                bicubic, _ = run_method(lr, scale, None, False)
                rows.append({**base, "method": "bicubic", **scores(bicubic, reference, scale)})
                model = choose_model(lr, scale)
                result, plan = run_method(lr, scale, model, True)
                check = plan.check
                if check is not None and check.limited:
                    before, _ = super_resolve_cube(lr, scale, model, dtype=np.float32, gain=check.least_squares_gain)
                    rows.append({**base, "method": f"{model.name}, least-squares gain only", "gain": round(check.least_squares_gain, 3),
                                 **scores(np.asarray(before.data), reference, scale)})
                rows.append({**base, "method": f"{model.name} (default, guarded)", "gain": round(plan.gain, 3),
                             "dimmed": getattr(plan, "dimmed_lines", 0), **scores(result, reference, scale)})
                print(f"  {label} ×{scale} {degradation}: done", file=sys.stderr, flush=True)
    print("\n### The PSNR/SAM guard without adaptation\n")
    print("| scene | bands | HR | scale | LR made by | method | PSNR dB | SAM ° | ERGAS | SSIM | gain | dimmed LR lines | worse than bicubic |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    baseline = {}
    for r in rows:
        key = (r["scene"], r["scale"], r["degradation"])
        if r["method"] == "bicubic":
            baseline[key] = r
        worse = [] if r["method"] == "bicubic" else worse_than(r, baseline[key])
        print(f"| {r['scene']} | {r['bands']} | {r['hr']} | ×{r['scale']} | {r['degradation']} | {r['method']} | {r['psnr']:.2f} | "
              f"{r['sam']:.4f} | {r['ergas']:.3f} | {r['ssim']:.4f} | {r.get('gain', '')} | {r.get('dimmed', '')} | {', '.join(worse) or ('' if r['method'] == 'bicubic' else 'no')} |")
    return rows


def damping(args) -> list[dict]:
    """The dark-pixel damping of the detail (guard.shape_detail) at several strengths, gain 1, on the
    guard's cases and the quality table's (×4 bicubic and Gaussian LR, ×2 bicubic LR)."""
    import hsiuu_cli.superres.inference as inference
    from hsiuu_cli.superres.guard import shape_detail

    cases = guard_cases(args) + [(Path(r).stem, load_reference(args.data / r).data, None) for r in FAMILY + OTHER]
    fractions = [None, "brightness only", 0.25, 0.5, 0.6, 0.75, 1.0]
    rows = []
    shipped, inference.DARK_FRACTION = inference.DARK_FRACTION, 0.0  # the raw detail; damped below
    try:
        for label, reference_full, given_lr in cases:
            for scale, degradation in ([(4, "HyperBench")] if given_lr is not None else [(4, "bicubic"), (4, "gaussian"), (2, "bicubic")]):
                h, w = reference_full.shape[0] // scale * scale, reference_full.shape[1] // scale * scale
                reference = reference_full[:h, :w].astype(np.float32)
                made = given_lr if given_lr is not None else spatial_degrade(reference, scale, method=degradation)
                lr = Cube(data=np.asarray(made, dtype=np.float32))
                bicubic, _ = run_method(lr, scale, None, False)
                raw, _ = run_method(lr, scale, choose_model(lr, scale), False)
                level = float(np.median(np.linalg.norm(np.asarray(lr.data, dtype=np.float64), axis=-1)))
                best = scores(bicubic, reference, scale)
                for fraction in fractions:
                    detail = raw - bicubic
                    if fraction == "brightness only":
                        result = bicubic + shape_detail(bicubic, detail, 1e15)  # every spectrum-turning part removed
                    else:
                        result = bicubic + shape_detail(bicubic, detail, 0.0 if fraction is None else fraction * level)
                    got = scores(result, reference, scale)
                    rows.append({"scene": label, "scale": scale, "degradation": degradation, "fraction": str(fraction),
                                 "psnr_gain": got["psnr"] - best["psnr"], "sam_change": got["sam"] / best["sam"] - 1,
                                 "worse": bool(worse_than(got, best))})
                print(f"  {label} ×{scale} {degradation}: done", file=sys.stderr, flush=True)
    finally:
        inference.DARK_FRACTION = shipped
    print(f"\n### Dark-pixel damping of the detail ({len(rows) // len(fractions)} cases, gain 1)\n")
    print("| L / median spectrum norm | mean PSNR gain dB | mean SAM change | cases worse than bicubic |")
    print("|---|---|---|---|")
    for fraction in fractions:
        chosen = [r for r in rows if r["fraction"] == str(fraction)]
        name = "no damping" if fraction is None else str(fraction)
        losses = ", ".join(f"{r['scene']} ×{r['scale']} {r['degradation']}" for r in chosen if r["worse"])
        print(f"| {name} | {np.mean([r['psnr_gain'] for r in chosen]):+.3f} | {100 * np.mean([r['sam_change'] for r in chosen]):+.2f} % | "
              f"{sum(r['worse'] for r in chosen)} {losses} |")
    return rows


def adapt_time(args) -> list[dict]:
    """Seconds of `--adapt` (PSF, pairs, fine-tuning, export, held-back checks) against the scene's LR
    megapixels: LR scenes of side n cut from the unseen AVIRIS mosaic tiled (150 bands), blurred
    (Gaussian, σ = 1 LR pixel), aviris_x4 with the default settings and time bound, fine-tuning forced."""
    from hsiuu_cli.degrade import blur, gaussian_psf
    from hsiuu_cli.superres.adapt import AdaptSettings, adapt_to_scene, default_time_limit

    mosaic = aviris_mosaic(args.data)[:, :, :150]
    rows = []
    for side in args.sides:
        repeat = -(-side // mosaic.shape[0])
        values = np.tile(mosaic, (repeat, repeat, 1))[:side, :side]
        lr = Cube(data=blur(values, gaussian_psf(1.0)).astype(np.float32))
        del values
        model = choose_model(lr, 4)
        started = time.perf_counter()
        chosen = adapt_to_scene(lr, 4, model, AdaptSettings(), force=True)
        seconds = time.perf_counter() - started
        summary = chosen.summary()
        mpx = lr.rows * lr.cols / 1e6
        rows.append({"lr": f"{lr.rows}×{lr.cols}×{lr.bands}", "lr_mpx": round(mpx, 3), "seconds": round(seconds, 1),
                     "fine_tuning_s": summary.get("seconds"), "steps": summary.get("steps"), "stopped_by": summary.get("stopped_by"),
                     "limit_s": round(default_time_limit(lr.rows * lr.cols), 1), "s_per_mpx": round(seconds / mpx, 1)})
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print("\n### Time of `--adapt` (×4, aviris_x4, default settings)\n")
    print("| LR scene | LR Mpx | all adaptation s | fine-tuning s | steps | stopped by | time bound s | s per LR Mpx |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lr']} | {r['lr_mpx']} | {r['seconds']} | {r['fine_tuning_s']} | {r['steps']} | {r['stopped_by']} | {r['limit_s']} | {r['s_per_mpx']} |")
    return rows


PHOTOGRAPHS = [relative for label, relative in REAL_SIZE if label.endswith("_rgb")]
"""The colour photographs: 3 bands, too few to denoise; their self-checks carry their noise instead."""


def held_out_references(args, scenes=FAMILY + OTHER):
    """(scene name, scale, HR reference cut to whole LR pixels, float32) for each of ``scenes`` (the held-out
    scenes by default) at each scale."""
    for relative in scenes:
        reference_full = load_reference(args.data / relative).data
        for scale in args.scales:
            h, w = reference_full.shape[0] // scale * scale, reference_full.shape[1] // scale * scale
            yield Path(relative).stem, scale, np.asarray(reference_full[:h, :w], dtype=np.float32)

def noise(args, scenes=FAMILY + OTHER) -> list[dict]:
    """The held-out scenes' LR cubes (or ``scenes``') with white noise added (per band,
    `hsiuu_cli.degrade.add_noise`, seed 0) at each SNR: bicubic, the default run (noise removed first where strong)
    and the same with --no-denoise."""
    from hsiuu_cli.degrade import add_noise

    rows = []
    for scene, scale, reference in held_out_references(args, scenes):
        for degradation in args.degradations:
            clean = spatial_degrade(reference, scale, method=degradation).astype(np.float32)
            for snr in args.snrs:
                lr = Cube(data=clean if snr is None else add_noise(clean, snr, 0).astype(np.float32))
                base = {"scene": scene, "scale": scale, "degradation": degradation,
                        "snr": "none added" if snr is None else f"{snr:g} dB"}
                bicubic, _ = run_method(lr, scale, None, False)
                rows.append({**base, "method": "bicubic", **scores(bicubic, reference, scale)})
                model = choose_model(lr, scale)
                for label, denoise in (("default", None), ("--no-denoise", False)):
                    result, plan = super_resolve_cube(lr, scale, model, dtype=np.float32, denoise=denoise)
                    estimate = plan.noise.snr_db
                    rows.append({**base, "method": f"{model.name} ({label})", "gain": round(plan.gain, 3),
                                 "estimated SNR": "" if estimate is None else round(estimate, 1),
                                 "denoised": plan.noise.applied, **scores(np.asarray(result.data), reference, scale)})
            print(f"  {scene} ×{scale} {degradation}: done", file=sys.stderr, flush=True)
    print("\n### Noisy LR scenes\n")
    print("| scene | scale | LR made by | noise | method | PSNR dB | SAM ° | gain | estimated SNR dB | denoised | worse than bicubic |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    baseline, worse = {}, {}
    for r in rows:
        key = (r["scene"], r["scale"], r["degradation"], r["snr"])
        if r["method"] == "bicubic":
            baseline[key] = r
            flags = ""
        else:
            bad = worse_than(r, baseline[key])
            label = r["method"].split("(")[-1].rstrip(")")
            worse[label] = worse.get(label, 0) + bool(bad)
            flags = ", ".join(bad) or "no"
        print(f"| {r['scene']} | ×{r['scale']} | {r['degradation']} | {r['snr']} | {r['method']} | {r['psnr']:.2f} | {r['sam']:.3f} | "
              f"{r.get('gain', '')} | {r.get('estimated SNR', '')} | {r.get('denoised', '')} | {flags} |")
    cases = len(baseline)
    print("\n" + "; ".join(f"{label}: {count} of {cases} cases worse than bicubic" for label, count in worse.items()))
    return rows


def noise_adapt(args) -> list[dict]:
    """The 400 × 400 unseen AVIRIS mosaic with noise added to its LR cube, through adaptation (the default path of
    `hsiuu superres` on a scene this large): bicubic, and `--adapt` with and without the noise removed first."""
    from hsiuu_cli.degrade import add_noise
    from hsiuu_cli.superres import super_resolve

    mosaic = aviris_mosaic(args.data)
    rows = []
    for scale, degradation in ((4, "gaussian"), (2, "bicubic")):
        h, w = mosaic.shape[0] // scale * scale, mosaic.shape[1] // scale * scale
        reference = np.asarray(mosaic[:h, :w], dtype=np.float32)
        for snr in (30.0, 20.0):
            lr = add_noise(spatial_degrade(reference, scale, method=degradation), snr, 0).astype(np.float32)
            row = {"scale": scale, "degradation": degradation, "snr": snr,
                   "bicubic": scores(super_resolve(lr, scale, method="bicubic"), reference, scale)}
            for label, denoise in (("default", None), ("--no-denoise", False)):
                started = time.perf_counter()
                result = super_resolve(lr, scale, adapt=True, denoise=denoise)
                row[label] = {**scores(result, reference, scale), "seconds": round(time.perf_counter() - started, 1)}
            rows.append(row)
    print("\n### Noisy mosaic through adaptation\n")
    print("| scale | LR made by | noise | bicubic PSNR / SAM | --adapt (default, denoised) | --adapt --no-denoise |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]['psnr']:.2f} / {r[k]['sam']:.3f}" for k in ("bicubic", "default", "--no-denoise")]
        print(f"| ×{r['scale']} | {r['degradation']} | {r['snr']:g} dB | {cells[0]} | {cells[1]} ({r['default']['seconds']} s) | "
              f"{cells[2]} ({r['--no-denoise']['seconds']} s) |")
    return rows


def lr_makers(scale: int, reference: np.ndarray) -> dict[str, np.ndarray]:
    """LR cubes made in ways the models were not trained for: wider and narrower Gaussian PSFs, the
    detector's box alone, point sampling (aliased; at an even scale two pixels are equally central: the
    second is what ``hsiuu simulate --sigma 0`` keeps), and bicubic with column striping (a push-broom
    sensor's detector-to-detector gain, 2 %)."""
    h, w = reference.shape[0] // scale, reference.shape[1] // scale
    bicubic = spatial_degrade(reference, scale, method="bicubic")
    striping = 1 + 0.02 * np.random.default_rng(1).standard_normal((1, bicubic.shape[1], 1))
    return {
        "Gaussian σ = s": spatial_degrade(reference, scale, method="gaussian", sigma=float(scale)),
        "Gaussian σ = 0.3 s": spatial_degrade(reference, scale, method="gaussian", sigma=0.3 * scale),
        "s × s block mean": reference[: h * scale, : w * scale].reshape(h, scale, w, scale, -1).mean(axis=(1, 3)),
        "point sampling": spatial_degrade(reference, scale, method="gaussian", sigma=0.0, offset=scale // 2),
        "point sampling, the other central pixel": spatial_degrade(reference, scale, method="gaussian", sigma=0.0),
        "bicubic, 2 % column striping": bicubic * striping,
    }


def other_lr(args) -> list[dict]:
    """The default run (no adaptation) against bicubic on LR cubes made by :func:`lr_makers`; with ``--compare``,
    also those models (names or paths, where their scale fits) and the quality table's own LR (bicubic, Gaussian
    σ = s/2), on which a model meant to replace a shipped one must hold up as well."""
    compared = [load_model(name) for name in args.compare]
    rows = []
    for scene, scale, reference in held_out_references(args):
        makers = lr_makers(scale, reference)
        if compared:
            makers = {"bicubic (as trained)": spatial_degrade(reference, scale, method="bicubic"),
                      "Gaussian σ = s/2": spatial_degrade(reference, scale, method="gaussian"), **makers}
        for label, made in makers.items():
            lr = Cube(data=np.asarray(made, dtype=np.float32))
            bicubic, _ = run_method(lr, scale, None, False)
            b = scores(bicubic, reference, scale)
            row = {"scene": scene, "scale": scale, "lr": label, "bicubic": b, "models": {}}
            for model in [choose_model(lr, scale)] + [m for m in compared if m.scale == scale]:
                result, plan = run_method(lr, scale, model, True)
                m = scores(result, reference, scale)
                key = "default" if not row["models"] else model.name
                row["models"][key] = {"model": model.name, **m, "gain": round(plan.gain, 3), "worse": ", ".join(worse_than(m, b)) or "no"}
            rows.append(row)
        print(f"  {scene} ×{scale}: done", file=sys.stderr, flush=True)
    names = list(dict.fromkeys(k for r in rows for k in r["models"]))
    print("\n### LR made in other ways\n")
    print("| scene | scale | LR made by | bicubic PSNR / SAM | " + " | ".join(f"{n} PSNR / SAM (gain)" for n in names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for r in rows:
        cells = []
        for n in names:
            m = r["models"].get(n)
            cells.append("" if m is None else f"{m['psnr']:.2f} / {m['sam']:.3f} ({m['gain']:g})" + ("" if m["worse"] == "no" else f" **worse: {m['worse']}**"))
        print(f"| {r['scene']} | ×{r['scale']} | {r['lr']} | {r['bicubic']['psnr']:.2f} / {r['bicubic']['sam']:.3f} | " + " | ".join(cells) + " |")
    print()
    for n in names:
        mine = [r for r in rows if n in r["models"]]
        worse = sum(r["models"][n]["worse"] != "no" for r in mine)
        line = f"- {n}: worse than bicubic in {worse} of {len(mine)} cases"
        if n != "default":
            for label in ("bicubic (as trained)", "Gaussian σ = s/2"):
                same = [r for r in mine if r["lr"] == label]
                if same:
                    change = np.mean([r["models"][n]["psnr"] - r["models"]["default"]["psnr"] for r in same])
                    line += f"; on {label} LR {change:+.2f} dB against the default (mean of {len(same)})"
        print(line)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["quality", "ablation", "throughput", "memory", "psf-table", "psf", "adapt", "guard", "damping",
                                         "adapt-time", "noise", "noise-photos", "noise-adapt", "other-lr"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--degradations", nargs="+", default=["bicubic", "gaussian"])
    parser.add_argument("--also", nargs="*", default=["agnostic_x2", "agnostic_x4"],
                        help="models to run besides the one chosen automatically (when the scale fits)")
    parser.add_argument("--compare", nargs="*", default=[], help="other-lr: models (names or paths) run beside the default choice")
    parser.add_argument("--with-model", default="aviris_x4")
    parser.add_argument("--without", default="runs/aviris_x4_nounmix")
    parser.add_argument("--size", type=int, default=256, help="LR side for throughput")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--cols", type=int, default=1000)
    parser.add_argument("--bands", type=int, default=100)
    parser.add_argument("--model", default="agnostic_x4")
    parser.add_argument("--formats", nargs="+", default=[".hdr", ".tif"])
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="*", help="adapt: scenes whose label contains one of these")
    parser.add_argument("--oracle", action="store_true", help="adapt: also the oracle (fine-tuning on the true HR)")
    parser.add_argument("--time-limit", type=float, default=None, help="adapt: seconds of fine-tuning (default: the CLI's)")
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 512, 1024], help="adapt-time: LR scene sides")
    parser.add_argument("--snrs", type=lambda v: None if v == "none" else float(v), nargs="+", default=[None, 40.0, 35.0, 30.0, 20.0],
                        help="noise: SNRs (dB) of the white noise added to the LR cubes ('none': as made)")
    args = parser.parse_args()
    parts = {"quality": quality, "ablation": ablation, "throughput": throughput, "memory": memory,
             "psf-table": psf_table, "psf": psf_accuracy, "adapt": adapt, "guard": guard, "damping": damping, "adapt-time": adapt_time,
             "noise": noise, "noise-photos": lambda a: noise(a, PHOTOGRAPHS), "noise-adapt": noise_adapt, "other-lr": other_lr}
    rows = parts[args.part](args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
