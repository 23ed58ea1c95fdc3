"""Benchmark of `hsiuu fuse`: SpectraMorph against CNMF, GSA and bicubic on simulated pairs, the
real Houston pair (Wald protocol), SpectraMorph's design choices, speed and peak memory.

Run from the repository root (Markdown tables on stdout; ``--json FILE`` also saves the figures):

    python bench/fuse.py quality      # every case × every method: PSNR, SAM, ERGAS, SSIM, seconds
    python bench/fuse.py ablation     # SpectraMorph variants (coefficients, prior, consistency, K)
    python bench/fuse.py houston      # real CASI + RGB pair, both degraded ×4, compared with the CASI
    python bench/fuse.py mismatch     # misregistered pairs (1–2 px) and a PSF width given ±20 % wrong
    python bench/fuse.py speed        # 512×512 MSI + 64×64×31 HSI, ratio 8: `hsiuu fuse` end to end
    python bench/fuse.py memory       # peak RSS of `hsiuu fuse` for a 4000×4000 MSI (ratio 8, 31 bands)
    python bench/fuse.py hyperbench   # HyperBench 0.1.0's own protocol and metrics (its own venv), with
                                      # the SpectraMorph authors' TensorFlow code beside ours when installed

Simulated cases are built as `hsiuu simulate` builds them, with hsiuu_cli.degrade: the reference
cube (good bands) divided by its maximum, a Gaussian PSF (σ = ratio/2 HR pixels, sampled at the
block pixel (ratio−1)//2, i.e. every 4th pixel from pixel 1 at ratio 4), the MSI through
hsiuu_cli.srf's response matrix for the reference's wavelengths, no noise. Metrics are
hsiuu_cli.metrics (PSNR: mean over bands, peak = the reference's maximum). Torch and BLAS use
``--threads`` threads (default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _threads_from_argv() -> int:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
    return 2


# BLAS reads these at import: set them before numpy loads
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = str(_threads_from_argv())

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("HSIUU_SHARED_DATA", ROOT.parent / "shared" / "data"))

from hsiuu_cli import degrade, metrics  # noqa: E402
from hsiuu_cli.cube import Cube  # noqa: E402
from hsiuu_cli.fusion import fuse  # noqa: E402
from hsiuu_cli.io import read_cube, write_cube  # noqa: E402
from hsiuu_cli.srf import load_srf, srf_matrix  # noqa: E402
from peak_rss import run_measured  # noqa: E402  (bench/, beside this script)

METHODS = ("spectramorph", "cnmf", "gsa", "bicubic")
SCENES = {
    "jasper": "unmixing/jasper_ridge/jasper_ridge.hdr",
    "samson": "unmixing/samson/samson.hdr",
    "salton": "scenes/salton_sea/salton_sea.hdr",
    "muufl": "scenes/muufl_gulfport/muufl_gulfport.hdr",
}
IKONOS4 = "ikonos:blue,green,red,nir"
# (name, scene, ratio, SRF[, HSI SNR dB, MSI SNR dB])
CASES = [
    ("Jasper Ridge ×4, IKONOS 4 bands", "jasper", 4, IKONOS4),
    ("Jasper Ridge ×4, Sentinel-2 (12 bands)", "jasper", 4, "sentinel2a"),
    ("Jasper Ridge ×4, IKONOS pan", "jasper", 4, "ikonos:pan"),
    ("Jasper Ridge ×4, RGB (Nikon D700)", "jasper", 4, "nikon_d700"),
    ("Samson ×4, IKONOS 4 bands", "samson", 4, IKONOS4),
    ("Samson ×4, IKONOS pan", "samson", 4, "ikonos:pan"),
    ("Salton Sea ×4, Sentinel-2 (12 bands)", "salton", 4, "sentinel2a"),
    ("Salton Sea ×4, IKONOS pan", "salton", 4, "ikonos:pan"),
    ("MUUFL Gulfport ×4, IKONOS 4 bands", "muufl", 4, IKONOS4),
    ("MUUFL Gulfport ×4, IKONOS pan", "muufl", 4, "ikonos:pan"),
    ("Jasper Ridge ×4, IKONOS 4 bands, SNR 30/35 dB", "jasper", 4, IKONOS4, 30, 35),
    ("Jasper Ridge ×4, IKONOS pan, SNR 30/35 dB", "jasper", 4, "ikonos:pan", 30, 35),
    ("Salton Sea ×4, Sentinel-2, SNR 25/30 dB", "salton", 4, "sentinel2a", 25, 30),
]


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def warm_up() -> None:
    """One tiny run of every method, so that import and first-call costs stay out of the timings."""
    rng = np.random.default_rng(0)
    lr = rng.random((8, 8, 12)).astype(np.float32)
    msi = degrade.resize_bicubic(lr, 32, 32)[:, :, :3]
    matrix = np.eye(12)[:, :3]
    for method in METHODS:
        fuse(lr, msi, matrix, method=method, epochs=2, endmembers=2)


def simulated_case(scene: str, ratio: int, srf_name: str, snr: float | None = None, msi_snr: float | None = None):
    """(reference H×W×B, LR-HSI, MSI, SRF matrix) from the library calls behind `hsiuu simulate
    --snr S --msi-snr M --seed 0` (noise: LR first, then MSI, from one generator), on the papers'
    protocol: good bands without non-finite values, the scene divided by its maximum."""
    cube = read_cube(DATA / SCENES[scene])
    good = cube.good_band_indices()
    reference = cube.physical()[:, :, good].astype(np.float64)
    finite = np.isfinite(reference).all(axis=(0, 1))
    reference, good = reference[:, :, finite], good[finite]
    rows, cols = (cube.rows // ratio) * ratio, (cube.cols // ratio) * ratio
    reference = reference[:rows, :cols] / reference.max()
    fwhm = None if cube.fwhm is None else cube.fwhm[good]
    matrix = srf_matrix(load_srf(srf_name), cube.wavelengths[good], fwhm)
    lr = degrade.spatial_degrade(reference, ratio, sigma=degrade.default_sigma(ratio))
    msi = degrade.spectral_degrade(reference, matrix)
    rng = np.random.default_rng(0)
    if snr is not None:
        lr = degrade.add_noise(lr, snr, rng)
    if msi_snr is not None:
        msi = degrade.add_noise(msi, msi_snr, rng)
    return reference.astype(np.float32), lr.astype(np.float32), msi.astype(np.float32), matrix


def scores(result: np.ndarray, reference: np.ndarray, ratio: int, mask=None) -> dict:
    report = metrics.quality_report(result, reference, scale=ratio, mask=mask)
    return {key: float(report[key]) for key in ("psnr", "sam", "ergas", "ssim")}


def timed_fuse(lr, msi, matrix, method, **options):
    started = time.perf_counter()
    result = fuse(lr, msi, matrix, method=method, seed=0, **options)
    return result, time.perf_counter() - started


def table(rows: list[dict], columns: list[str], title: str) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if isinstance(value, float):
                value = f"{value:.3f}" if column == "ssim" else f"{value:.2f}"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_quality(args) -> list[dict]:
    rows = []
    for name, scene, ratio, srf_name, *noise in CASES:
        if args.case and not any(part.lower() in name.lower() for part in args.case):
            continue
        reference, lr, msi, matrix = simulated_case(scene, ratio, srf_name, *noise)
        for method in [m for m in METHODS if m in args.methods.split(",")]:
            result, seconds = timed_fuse(lr, msi, matrix, method)
            row = {"case": name, "method": method, **scores(result.fused, reference, ratio), "seconds": seconds}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows, ["case", "method", "psnr", "sam", "ergas", "ssim", "seconds"], "Simulated pairs"))
    return rows


ABLATIONS = [
    ("default", {}),
    ("coefficients ≥ 0 (softplus)", {"coefficients": "nonneg"}),
    ("coefficients ≥ 0, sum to 1 (softmax)", {"coefficients": "simplex"}),
    ("prior as network input (paper: 4 PCs)", {"prior": "input"}),
    ("no coarse prior", {"prior": "none"}),
    ("training input = LR-HSI through the SRF (paper)", {"train_input": "srf"}),
    ("no consistency step (network only)", {"consistency": False}),
    ("consistency with the LR-HSI only (λ = 0)", {"msi_weight": 0.0}),
    ("no signal-subspace denoising", {"denoise": "none"}),
    ("signal subspace: plain projection (no shrinkage)", {"denoise": "project"}),
    ("MSI not projected on the HSI's signal subspace", {"msi_projection": False}),
    ("no noise augmentation", {"noise_augmentation": 0.0}),
    ("noise augmentation at 0.5 × the estimated variance", {"noise_augmentation": 0.5}),
    ("noise augmentation at the full estimated variance", {"noise_augmentation": 1.0}),
    ("μ not scaled with the HSI's noise", {"noise_adaptive": False}),
    ("Adam, 1200 epochs (instead of L-BFGS, 150)", {"optimizer": "adam", "epochs": 1200}),
    ("K = 4", {"endmembers": 4}),
    ("K = 16", {"endmembers": 16}),
    ("K = auto (HySime)", {"endmembers": "auto"}),
    ("PSF σ given (2 px) instead of estimated", {"psf_sigma": 2.0}),
]
ABLATION_CASES = [CASES[0], CASES[2], CASES[6], CASES[8], CASES[10], CASES[12]]


def run_ablation(args) -> list[dict]:
    rows = []
    for name, scene, ratio, srf_name, *noise in ABLATION_CASES:
        reference, lr, msi, matrix = simulated_case(scene, ratio, srf_name, *noise)
        for label, options in ABLATIONS:
            result, seconds = timed_fuse(lr, msi, matrix, "spectramorph", **options)
            row = {"case": name, "variant": label, **scores(result.fused, reference, ratio), "seconds": seconds,
                   "K": result.info["endmembers"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows, ["case", "variant", "psnr", "sam", "ergas", "ssim", "K", "seconds"], "SpectraMorph design choices"))
    return rows


MISMATCH_CASES = [CASES[0], CASES[6], CASES[9]]
MISMATCHES = [
    ("matched", None, None),
    ("LR 1, 1 px off the MSI grid", (1.0, 1.0), None),
    ("LR 2, −1.5 px off", (2.0, -1.5), None),
    ("LR −2, 2 px off", (-2.0, 2.0), None),
    ("PSF σ given 1.6 (−20 %)", None, 1.6),
    ("PSF σ given 2.4 (+20 %)", None, 2.4),
]


def run_mismatch(args) -> list[dict]:
    """Misregistration (`hsiuu simulate --shift`: the LR cube sampled ROWS, COLS HR pixels off the MSI's
    grid) and a PSF width given 20 % wrong, against the matched pair."""
    rows = []
    for name, scene, ratio, srf_name, *noise in MISMATCH_CASES:
        reference, lr, msi, matrix = simulated_case(scene, ratio, srf_name, *noise)
        for label, shift, sigma in MISMATCHES:
            case_lr = lr
            if shift is not None:
                moved = degrade.shift(reference, -shift[0], -shift[1])
                case_lr = degrade.spatial_degrade(moved, ratio, sigma=degrade.default_sigma(ratio)).astype(np.float32)
            result, seconds = timed_fuse(case_lr, msi, matrix, "spectramorph", psf_sigma=sigma)
            row = {"case": name, "mismatch": label, **scores(result.fused, reference, ratio), "seconds": seconds,
                   "estimated offset": ", ".join(f"{v:+.2f}" for v in result.info["misregistration"]),
                   "PSF model": result.info["psf_model"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows, ["case", "mismatch", "psnr", "sam", "ergas", "ssim", "estimated offset", "PSF model", "seconds"],
                "Model mismatch: misregistration and a wrong PSF width"))
    return rows


EDGE = 3
"""HR pixels at each edge left out of the on-grid scores (the shift there reads mirrored pixels)."""


def _inside(valid: np.ndarray) -> np.ndarray:
    inside = valid.copy()
    inside[:EDGE], inside[-EDGE:], inside[:, :EDGE], inside[:, -EDGE:] = False, False, False, False
    return inside


def run_houston(args) -> list[dict]:
    """Wald protocol on the real pair: both degraded ×4, fused, compared with the original CASI cube."""
    hsi = read_cube(DATA / "scenes/houston2018/houston_hsi.hdr")
    rgb = read_cube(DATA / "scenes/houston2018/houston_rgb.hdr")
    reference = hsi.physical().astype(np.float32)
    colour = np.where(rgb.valid_mask()[:, :, None], rgb.physical(), np.nan).astype(np.float32)
    ratio = 4
    lr = degrade.spatial_degrade(reference, ratio, sigma=degrade.default_sigma(ratio))
    msi = degrade.spatial_degrade(colour, ratio, sigma=degrade.default_sigma(ratio))
    response = load_srf("nikon_d700").select(rgb.band_names)
    matrix = srf_matrix(response, hsi.wavelengths)
    rows = []
    for psf in ("estimated", "given σ = 2"):
        for method in METHODS:
            if method == "bicubic" and psf != "estimated":
                continue
            options = {} if psf == "estimated" else {"psf_sigma": 2.0}
            result, seconds = timed_fuse(lr, msi, matrix, method, **options)
            row = {"method": method, "PSF": "-" if method == "bicubic" else psf,
                   **scores(result.fused, reference, ratio, mask=result.valid), "seconds": seconds}
            on_grid, with_data = result.fused, result.valid
            if method != "bicubic":
                row["fit σ"] = result.info["psf_sigma"]
                row["MSI trust"] = float(np.mean(result.info["msi_trust"]))
                # the output follows the RGB's grid; the reference is the CASI's, which the fit finds off the
                # RGB's by the offset beyond the protocol's own (−0.5, −0.5): moved onto it, the score of the fusion itself
                rows_off, cols_off = (-(offset + 0.5) for offset in result.info["misregistration"])
                row["HSI-grid offset"] = f"{rows_off:+.2f}, {cols_off:+.2f}"
                on_grid = degrade.shift(result.fused, rows_off, cols_off)
                with_data = result.valid & np.isfinite(on_grid).all(axis=2)
            inside = _inside(with_data)
            on_grid_scores = scores(np.where(inside[:, :, None], on_grid, 0.0), reference, ratio, mask=inside)
            row.update({f"{key} on HSI grid": on_grid_scores[key] for key in ("psnr", "sam")})
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    title = "Houston 2018 CASI + RGB, Wald ×4 (32×32×48 + 128×128×3 → 128×128×48)"
    print(table(rows, ["method", "PSF", "psnr", "sam", "ergas", "ssim", "fit σ", "MSI trust", "HSI-grid offset",
                       "psnr on HSI grid", "sam on HSI grid", "seconds"], title))
    return rows


def _write_speed_inputs(folder: Path, rows: int, bands: int, ratio: int) -> tuple[Path, Path, np.ndarray]:
    """A CAVE-sized case: the Houston CASI cube mirrored and tiled to rows × rows, resampled to
    ``bands`` bands over 400–1000 nm (the reference; the D700 responds up to 950 nm), its LR version and its Nikon D700 RGB image."""
    hsi = read_cube(DATA / "scenes/houston2018/houston_hsi.hdr")
    source = hsi.physical()
    block = np.concatenate(
        [np.concatenate([source, source[:, ::-1]], axis=1), np.concatenate([source[::-1], source[::-1, ::-1]], axis=1)],
        axis=0,
    )
    reps = int(np.ceil(rows / block.shape[0]))
    tiled = np.tile(block, (reps, reps, 1))[:rows, :rows]
    wavelengths = np.linspace(400.0, 1000.0, bands)
    # linear interpolation between the CASI bands, as a 48 × 31 matrix
    resample = np.stack([np.interp(wavelengths, hsi.wavelengths, unit) for unit in np.eye(hsi.bands)])
    reference = (tiled @ resample).astype(np.float32)
    reference /= reference.max()
    matrix = srf_matrix(load_srf("nikon_d700"), wavelengths)
    lr = degrade.spatial_degrade(reference, ratio, sigma=degrade.default_sigma(ratio))
    msi = degrade.spectral_degrade(reference, matrix)
    lr_path = write_cube(Cube(lr, wavelengths=wavelengths), folder / "lr.hdr")
    msi_path = write_cube(Cube(msi, band_names=list(load_srf("nikon_d700").band_names)), folder / "msi.hdr")
    return lr_path, msi_path, reference


def _run_cli(args_list: list[str], threads: int) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MiB) and stdout of `hsiuu ...` (python -m hsiuu_cli) in a fresh process."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["HSIUU_TORCH_THREADS"] = str(threads)
    code = "import os, torch; torch.set_num_threads(int(os.environ['HSIUU_TORCH_THREADS'])); from hsiuu_cli.cli.app import main; main()"
    seconds, peak, done = run_measured([sys.executable, "-c", code, *args_list], cwd=ROOT, env=env)
    return seconds, peak, done.stdout


def run_speed(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        lr_path, msi_path, reference = _write_speed_inputs(folder, 512, 31, 8)
        for method in METHODS:
            output = folder / f"{method}.hdr"
            seconds, peak, stdout = _run_cli(
                ["fuse", str(lr_path), str(msi_path), "--srf", "nikon_d700", "-o", str(output), "--method", method, "--json"],
                args.threads,
            )
            summary = json.loads(stdout)
            fused = read_cube(output).physical()
            row = {"case": "512×512 RGB + 64×64×31 HSI, ratio 8", "method": method, "end-to-end s": seconds,
                   "fusion s": summary["seconds"], "peak RSS MiB": peak, **scores(fused, reference, 8)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows, ["case", "method", "end-to-end s", "fusion s", "peak RSS MiB", "psnr", "sam"], "Speed"))
    return rows


def run_memory(args) -> list[dict]:
    """`hsiuu fuse` onto a 4000×4000 grid: 500×500×31 HSI, 4000×4000×4 MSI (inputs written as ENVI)."""
    rows_hr, ratio, bands = args.size, 8, 31
    rows_lr = rows_hr // ratio
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.scratch) as folder:
        folder = Path(folder)
        hsi = read_cube(DATA / "scenes/houston2018/houston_hsi.hdr")
        source = hsi.physical()[:, :, np.linspace(0, hsi.bands - 1, bands).round().astype(int)]
        reps = int(np.ceil(rows_lr / source.shape[0]))
        lr = np.tile(source, (reps, reps, 1))[:rows_lr, :rows_lr].astype(np.float32)
        lr /= lr.max()
        wavelengths = hsi.wavelengths[np.linspace(0, hsi.bands - 1, bands).round().astype(int)]
        matrix = srf_matrix(load_srf(IKONOS4), wavelengths)
        lr_path = write_cube(Cube(lr, wavelengths=wavelengths), folder / "lr.hdr")
        # the MSI: the LR-HSI through the SRF, enlarged strip by strip, with texture the HSI cannot have
        msi = np.lib.format.open_memmap(folder / "msi.npy", mode="w+", dtype=np.float32, shape=(rows_hr, rows_hr, 4))
        lr_msi = lr @ matrix.astype(np.float32)
        step = 64
        for start in range(0, rows_lr, step):
            stop = min(start + step, rows_lr)
            lo, hi = max(0, start - 3), min(rows_lr, stop + 3)
            enlarged = degrade.resize_bicubic(lr_msi[lo:hi], (hi - lo) * ratio, rows_hr)
            block = enlarged[(start - lo) * ratio : (start - lo) * ratio + (stop - start) * ratio]
            block *= 1.0 + 0.05 * rng.standard_normal(block.shape[:2])[:, :, None].astype(np.float32)
            msi[start * ratio : stop * ratio] = block
        msi_path = write_cube(Cube(msi, band_names=["blue", "green", "red", "nir"]), folder / "msi.hdr")
        del msi
        output = folder / ("fused.tif" if args.output_format == "GTiff" else "fused.hdr")
        seconds, peak, stdout = _run_cli(
            ["fuse", str(lr_path), str(msi_path), "--srf", IKONOS4, "-o", str(output), "--json"], args.threads
        )
        fused_bytes = rows_hr * rows_hr * bands * 4
        row = {
            "case": f"{rows_hr}×{rows_hr}×4 MSI + {rows_lr}×{rows_lr}×{bands} HSI, ratio 8, {args.output_format} output",
            "wall s": seconds,
            "peak RSS MiB": peak,
            "fused cube float32 MiB": fused_bytes / 2**20,
            "fused cube float64 MiB": 2 * fused_bytes / 2**20,
            "fusion s": json.loads(stdout)["seconds"],
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(table([row], list(row), "Peak memory"))
    return [row]


HYPERBENCH_SCENES = {"jasper": SCENES["jasper"], "houston": "scenes/houston2018/houston_hsi.hdr",
                     "salton": SCENES["salton"], "samson": SCENES["samson"], "muufl": SCENES["muufl"],
                     "pavia": "scenes/pavia_university/pavia_lr_hsi.hdr", "enmap": "scenes/enmap_potsdam"}
ENMAP_MOSAIC = ((64, 96, 128, 160), (160, 192))
"""Rows (Y) and columns (X) of the EnMAP Potsdam tiles that join into one 128 × 64 area (README of ../shared/data)."""


def enmap_mosaic() -> Cube:
    """The EnMAP L2A tiles of one contiguous 128 × 64 area, joined (band metadata from the first)."""
    tiles = [[read_cube(DATA / HYPERBENCH_SCENES["enmap"] / f"enmap_potsdam_tile_{x}_{y}.tif") for x in ENMAP_MOSAIC[1]]
             for y in ENMAP_MOSAIC[0]]
    data = np.concatenate([np.concatenate([tile.physical() for tile in row], axis=1) for row in tiles], axis=0)
    return Cube(data=data, wavelengths=tiles[0][0].wavelengths, bad_bands=tiles[0][0].bad_bands)
HYPERBENCH_METHODS = ("spectramorph", "cnmf", "gsa", "bicubic", "spectramorph-tf")
HYPERBENCH_METRICS = ("psnr", "sam", "ergas", "ssim", "uiqi", "rmse")
PEERS = Path(os.environ.get("HSIUU_PEERS", "/work/peers"))


def hyperbench_scene(name: str, multiple: int) -> np.ndarray:
    """A scene as HyperBench takes it: the good, finite bands in physical units (HyperBench normalises
    them itself), cut to whole ``multiple`` × ``multiple`` blocks so that every ratio's LR grid nests."""
    cube = enmap_mosaic() if name == "enmap" else read_cube(DATA / HYPERBENCH_SCENES[name])
    values = cube.physical()[:, :, cube.good_band_indices()]
    values = values[:, :, np.isfinite(values).all(axis=(0, 1))]
    rows, cols = (cube.rows // multiple) * multiple, (cube.cols // multiple) * multiple
    return np.ascontiguousarray(values[:rows, :cols], dtype=np.float32)


def dump_hyperbench_cases(scenes: list[str], cases: list[list], folder: Path, *, multiple: int = 8,
                          python: Path = PEERS / "hyperbench-venv/bin/python") -> bool:
    """HyperBench's arrays (gt_hsi, lr_hsi, hr_msi, srf, psf .npy) for each scene and case ([ratio, MSI
    bands, HSI SNR, MSI SNR]), made by its own case builder in its own venv, under
    ``folder/<scene>_<ratio>_<bands>/``; scenes cut to whole ``multiple`` blocks, as the default ``hyperbench``
    run cuts them. False when HyperBench's interpreter is missing."""
    if not python.exists():
        return False
    for scene in scenes:
        np.save(folder / f"{scene}.npy", hyperbench_scene(scene, multiple))
        job = {"scene": str(folder / f"{scene}.npy"), "name": scene, "cases": cases, "dump": str(folder)}
        (folder / "dump.json").write_text(json.dumps(job))
        done = run_hyperbench_driver(python, folder / "dump.json")
        if not done.startswith("exit 0"):
            raise RuntimeError(f"HyperBench could not make the {scene} cases: {done}")
    return True


def run_hyperbench(args) -> list[dict]:
    """HyperBench's default protocol (Gaussian PSF σ 3.4, radius 7, zero-padded blur, area decimation,
    its Gaussian SRFs, SNR 35/40 dB, seed 42, percentile normalisation, predictions clipped to [0, 1])
    run by HyperBench itself; each method is a `run_pipeline` adapter in its own interpreter."""
    import csv
    import shlex

    python = Path(args.hyperbench_python)
    if not python.exists():
        sys.exit(f"HyperBench's interpreter {python} is missing: python3 -m venv {python.parents[1]} && "
                 f"{python.parent}/pip install hyperbench==0.1.0")
    ratios = [int(r) for r in args.ratios.split(",")]
    bands = [int(b) for b in args.bands.split(",")]
    methods = [m for m in args.methods.split(",")]
    tf_python, tf_code = Path(args.spectramorph_tf_python), Path(args.spectramorph_tf_code)
    if "spectramorph-tf" in methods and not (tf_python.exists() and tf_code.exists()):
        print(f"SpectraMorph TF left out: {tf_python} or {tf_code} is missing", file=sys.stderr)
        methods.remove("spectramorph-tf")
    commands = {m: [sys.executable, str(Path(__file__).resolve()), "hyperbench-case", "--method", m,
                    "--threads", str(args.threads)] for m in methods if m != "spectramorph-tf"}
    commands["spectramorph-tf"] = [str(tf_python), str(ROOT / "bench" / "spectramorph_tf_case.py"), "--code", str(tf_code)]
    cases = [[r, b, args.hsi_snr, args.msi_snr] for r in ratios for b in bands]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hsiuu-hyperbench-") as folder:
        folder = Path(folder)
        for scene in args.scenes.split(","):
            np.save(folder / f"{scene}.npy", hyperbench_scene(scene, max(ratios)))
            for method in methods:
                chosen = cases
                if method == "spectramorph-tf" and args.tf_cases:
                    wanted = {tuple(int(v) for v in item.split(":")[1:]) for item in args.tf_cases.split(",")
                              if item.split(":")[0] == scene}
                    chosen = [case for case in cases if (case[0], case[1]) in wanted]
                if not chosen:
                    continue
                csv_path = folder / f"{scene}-{method}.csv"
                job = {"scene": str(folder / f"{scene}.npy"), "name": scene, "cases": chosen, "method": method,
                       "command": commands[method], "csv": str(csv_path)}
                (folder / "job.json").write_text(json.dumps(job))
                done = run_hyperbench_driver(python, folder / "job.json")
                if not csv_path.exists():
                    print(f"{scene}/{method}: HyperBench wrote no results\n{done}", file=sys.stderr)
                    continue
                with open(csv_path, newline="") as handle:
                    for result in csv.DictReader(handle):
                        row = {"scene": scene, "ratio": int(result["downsampling_ratio"]),
                               "MSI bands": int(result["msi_band_count"]), "method": method, "status": result["status"]}
                        if result["status"] == "success":
                            row.update({m: float(result[m.upper()]) for m in HYPERBENCH_METRICS})
                            row["fusion s"] = float(result.get("fusion_seconds") or "nan")
                            row["HyperBench s"] = float(result["runtime_seconds"])
                            row["inputs"] = f"{result.get('lr_sha', '')[:8]}/{result.get('msi_sha', '')[:8]}"
                            for key in ("psf_model", "msi_trust_mean", "guard"):
                                if result.get(key):
                                    row[key] = result[key]
                        else:
                            row["error"] = result.get("error", "")[:200]
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["scene"], r["ratio"], r["MSI bands"], HYPERBENCH_METHODS.index(r["method"])))
    columns = ["scene", "ratio", "MSI bands", "method", *HYPERBENCH_METRICS, "fusion s", "HyperBench s", "inputs"]
    print(table(rows, columns, "HyperBench 0.1.0, default protocol (its metrics: PSNR on 8-bit, SAM in degrees)"))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"command lines: {shlex.join(commands.get('spectramorph', []))}", file=sys.stderr)
    return rows


def run_hyperbench_driver(python: Path, job: Path) -> str:
    """bench/hyperbench_driver.py on ``job`` in HyperBench's interpreter, outside this project's venv;
    its exit status and the tail of its stderr."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), str(ROOT / "bench" / "hyperbench_driver.py"), str(job)],
                          capture_output=True, text=True, env=env)
    return f"exit {done.returncode}: {done.stderr.strip()[-3000:]}"


def run_hyperbench_case(args) -> None:
    """One HyperBench case for an hsiuu method: the arrays from hyperbench_driver.py through
    hsiuu_cli.fusion.run_pipeline (the adapter users call), prediction and summary written back."""
    from hsiuu_cli.fusion import run_pipeline

    folder = Path(args.folder)
    psf = np.load(folder / "psf.npy") if (folder / "psf.npy").exists() else None
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update(method=args.method, seed=0, return_info=True)
    warm_up()  # imports and first calls out of the timing, as the TF runner imports before its clock starts
    started = time.perf_counter()
    fused, summary = run_pipeline(np.load(folder / "hr_msi.npy"), np.load(folder / "lr_hsi.npy"), np.load(folder / "srf.npy"),
                                  psf=psf, metadata=metadata)
    seconds = time.perf_counter() - started
    np.save(folder / "prediction.npy", fused)
    stats = {"fusion_seconds": round(seconds, 3)}
    if "psf_model" in summary:
        stats["psf_model"] = summary["psf_model"]
    if "msi_trust" in summary:
        stats["msi_trust_mean"] = round(float(np.mean(summary["msi_trust"])), 4)
    if "guard" in summary:
        stats["guard"] = summary["guard"]
    (folder / "stats.json").write_text(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["quality", "ablation", "houston", "mismatch", "speed", "memory", "hyperbench", "all",
                                         "hyperbench-case"])
    parser.add_argument("folder", nargs="?", help="hyperbench-case: the folder of arrays (used by hyperbench_driver.py)")
    parser.add_argument("--method", default="spectramorph", help="hyperbench-case: the hsiuu method")
    parser.add_argument("--scenes", default=",".join(HYPERBENCH_SCENES), help="hyperbench: scenes (default: all of jasper, houston, salton, samson, muufl, pavia, enmap)")
    parser.add_argument("--ratios", default="4,8", help="hyperbench: ratios")
    parser.add_argument("--bands", default="3,4,8", help="hyperbench: MSI band counts (HyperBench's built-in SRFs)")
    parser.add_argument("--methods", default=",".join(HYPERBENCH_METHODS), help="hyperbench: methods")
    parser.add_argument("--tf-cases", help="hyperbench: only these scene:ratio:bands for SpectraMorph TF (it is slow)")
    parser.add_argument("--hsi-snr", type=float, default=35.0, help="hyperbench: LR-HSI SNR dB (HyperBench default at ×4)")
    parser.add_argument("--msi-snr", type=float, default=40.0, help="hyperbench: MSI SNR dB (HyperBench default)")
    parser.add_argument("--hyperbench-python", default=str(PEERS / "hyperbench-venv/bin/python"))
    parser.add_argument("--spectramorph-tf-python", default=str(PEERS / "spectramorph-tf-venv/bin/python"))
    parser.add_argument("--spectramorph-tf-code", default=str(PEERS / "SpectraMorph/SpectraMorph_python"))
    parser.add_argument("--threads", type=int, default=2, help="torch/BLAS threads (default 2)")
    parser.add_argument("--case", action="append", help="only cases whose name contains this (quality)")
    parser.add_argument("--size", type=int, default=4000, help="HR grid size for memory (default 4000)")
    parser.add_argument("--scratch", default=None, help="folder for the memory case's files (about 4 GB)")
    parser.add_argument("--output-format", default="ENVI", choices=["ENVI", "GTiff"], help="output format for memory")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_intermixed_args()
    set_threads(args.threads)
    if args.what == "hyperbench-case":
        run_hyperbench_case(args)
        return
    if args.what in ("quality", "ablation", "houston", "mismatch", "all"):
        warm_up()
    runners = {"quality": run_quality, "ablation": run_ablation, "houston": run_houston, "speed": run_speed,
               "memory": run_memory, "hyperbench": run_hyperbench, "mismatch": run_mismatch}
    chosen = [name for name in runners if name != "hyperbench"] if args.what == "all" else [args.what]
    figures = {name: runners[name](args) for name in chosen}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
