"""Synthetic AVIRIS-like training cubes for the super-resolution models: real spatial structure,
library spectra.

The public AVIRIS/HYDICE scenes are a few 100 × 100 crops, and a network trained on them alone
learns their textures, then stops generalising (docs/benchmarks.md, Super-resolution). These cubes
add textures: crops of the two colour images in ../shared/data (Pavia University and Houston 2018,
both of sensors and places the AVIRIS models are never validated on), each pixel a mixture of 8
spectra drawn from the USGS library on the 224 AVIRIS channels. A pixel's weights favour the
spectra whose colour (through the Nikon D700 response) is closest to its chromaticity, and its
brightness scales the mixture so that the cube's colour image follows the photograph.

    python bench/synthetic_sr_cubes.py --crops 12 -o runs/synthetic_sr    # 24 cubes, 128 × 128 × 224

Deterministic with --seed. The model cards name the folder; this command rebuilds it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsiuu_cli.cube import Cube  # noqa: E402
from hsiuu_cli.io import read_cube, write_cube  # noqa: E402
from hsiuu_cli.srf import load_srf, srf_matrix  # noqa: E402

PHOTOGRAPHS = ("scenes/pavia_university/pavia_hr_rgb.hdr", "scenes/houston2018/houston_rgb.hdr")
LIBRARY = "library/usgs_1995_aviris224.csv"
MATERIALS = 8


def library_spectra(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(wavelengths, spectra N × 224) of the USGS library, spectra with no gaps or negative values."""
    table = np.loadtxt(data / LIBRARY, delimiter=",", skiprows=1)
    spectra = table[:, 1:].T
    usable = np.isfinite(spectra).all(axis=1) & (spectra.min(axis=1) >= 0) & (spectra.max(axis=1) > 0)
    return table[:, 0], spectra[usable]


def valid_crop(valid: np.ndarray, size: int, rng: np.random.Generator) -> tuple[int, int] | None:
    rows, cols = valid.shape
    for _ in range(200):
        top, left = int(rng.integers(0, rows - size + 1)), int(rng.integers(0, cols - size + 1))
        if valid[top : top + size, left : left + size].all():
            return top, left
    return None


def synthesise(colour: np.ndarray, spectra: np.ndarray, to_colour: np.ndarray) -> np.ndarray:
    """A cube (rows × cols × B) whose colour image through ``to_colour`` (B × 3) follows ``colour``."""
    pixels = colour.reshape(-1, 3)
    material_colours = spectra @ to_colour
    chromaticity = pixels / (pixels.sum(axis=1, keepdims=True) + 1e-6)
    material_chromaticity = material_colours / material_colours.sum(axis=1, keepdims=True)
    distance = ((chromaticity[:, None, :] - material_chromaticity[None]) ** 2).sum(axis=2)
    weights = np.exp(-distance / (0.5 * np.median(distance) + 1e-12))
    weights /= weights.sum(axis=1, keepdims=True)
    brightness = pixels.sum(axis=1) / np.clip((weights @ material_colours).sum(axis=1), 1e-6, None)
    cube = (weights * brightness[:, None]) @ spectra
    return cube.reshape(colour.shape[:2] + (spectra.shape[1],)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the ENVI cubes")
    parser.add_argument("--crops", type=int, default=12, help="crops per photograph")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    wavelengths, spectra = library_spectra(args.data)
    to_colour = srf_matrix(load_srf("nikon_d700"), wavelengths, None)
    rng = np.random.default_rng(args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    for photograph in PHOTOGRAPHS:
        cube = read_cube(args.data / photograph)
        valid = cube.valid_mask()
        colour = cube.physical().astype(np.float64)
        colour /= np.percentile(colour[valid], 99)
        for index in range(args.crops):
            corner = valid_crop(valid, args.size, rng)
            if corner is None:
                sys.exit(f"error: {photograph}: no {args.size} × {args.size} crop without no-data")
            top, left = corner
            chosen = spectra[rng.choice(len(spectra), MATERIALS, replace=False)]
            synthetic = synthesise(colour[top : top + args.size, left : left + args.size], chosen, to_colour)
            path = args.output / f"{Path(photograph).stem}_{index:02d}.hdr"
            write_cube(Cube(synthetic, wavelengths=wavelengths), path, overwrite=True)
            print(path)


if __name__ == "__main__":
    main()
