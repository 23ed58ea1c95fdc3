"""Synthetic AVIRIS scenes of water, soil and vegetation with known truth, for the unmixing benchmark.

The project's unmixing was tuned on Samson and Jasper Ridge; these scenes are what it never saw.
Each is 100 × 100 pixels on the 224 AVIRIS channels of the USGS library (383–2508 nm), with the
AVIRIS water-vapour and edge channels flagged bad (``bbl``: < 400, 1340–1450, 1790–1960, > 2450 nm),
so about 190 bands are usable, as on a real AVIRIS reflectance product.

* **Water** is modelled, not taken from a scene: the remote-sensing reflectance of a water body
  from its inherent optical properties (Gordon et al. 1988, rrs = 0.0949 u + 0.0794 u², u = bb/(a + bb),
  above-water Rrs = 0.52 rrs / (1 − 1.7 rrs), Lee et al. 2002), with pure-water absorption
  tabulated from Pope & Fry (1997, visible) and Kou et al. (1993, near infrared), pure-water
  backscatter after Morel (1974), chlorophyll, CDOM (exp(−0.015 (λ − 440))) and particle
  backscatter (λ⁻¹) set per scene, plus a small flat sky-glint residual. Reflectance = π Rrs: a few
  per cent in the green, near zero beyond 900 nm — the dark endmember that unmixing tends to miss.
* **Soil** is a linear mixture of USGS mineral spectra (clays, quartz sand, iron oxides) darkened by
  organic matter; **vegetation** is a USGS leaf or canopy spectrum, blended per pixel with a second
  one (a different species: the within-class variability of real canopies).
* **Abundances**: a water body (a thresholded smooth random field, shore transition about 1.5 pixels,
  20–35 % of the scene), land split between vegetation and soil by a second field with wide
  transitions (mixed fields), so every class has pure pixels and many mixed ones.
* **Variability**: per-pixel illumination 1 ± 0.1 on land (topography) and the vegetation blend above;
  **noise**: Gaussian, independent of the signal (sensor noise), σ = 0.5 / SNR with an AVIRIS-like SNR
  for a 50 % reflector of 500 in the VNIR, 300 at 1.8 µm and 200 at 2.5 µm (set once, before any
  method ran on the scenes) — so water itself is below the noise beyond about 1 µm, as on real
  AVIRIS water.

Truth: the abundances (fractions, sum to one) and, per class, the abundance-weighted mean of the
spectra actually placed in the pixels (as reference spectra of real scenes are means of pure
regions). Three scenes, each from its own seed; the algorithm seeds are separate.

    python bench/unmix_scenes.py -o /tmp/unmix_scenes      # writes <name>.hdr/.img, _gt files, .npz
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("HSIUU_SHARED_DATA", ROOT.parent / "shared" / "data"))
LIBRARY = "library/usgs_1995_aviris224.sli"
CLASSES = ("water", "soil", "vegetation")

# Pure-water absorption (1/m): Pope & Fry 1997 (380–720 nm), Kou et al. 1993 (near infrared); beyond
# 1000 nm water is black to any sensor, and the model's output there is ~0.
WATER_ABSORPTION = np.array([
    (380, 0.0114), (400, 0.00663), (420, 0.00454), (440, 0.00635), (460, 0.00922), (480, 0.0150),
    (500, 0.0204), (520, 0.0417), (540, 0.0526), (560, 0.0708), (580, 0.108), (600, 0.244),
    (620, 0.289), (640, 0.325), (660, 0.410), (680, 0.465), (700, 0.650), (720, 1.17), (740, 2.60),
    (760, 2.55), (780, 2.36), (800, 2.07), (820, 2.80), (840, 3.90), (860, 4.60), (880, 5.80),
    (900, 6.80), (920, 15.0), (940, 30.0), (960, 40.0), (980, 45.0), (1000, 36.0), (1100, 20.0),
    (1200, 100.0), (1300, 110.0), (1400, 1200.0), (2600, 5000.0),
])


@dataclass(frozen=True)
class SceneRecipe:
    name: str
    seed: int
    chlorophyll: float  # mg/m³
    cdom_440: float  # 1/m
    particle_backscatter_550: float  # 1/m
    soil: dict  # library name prefix → weight
    soil_darkening: float
    vegetation: tuple[str, str]  # main canopy, the species blended into it
    water_fraction: float


RECIPES = (
    SceneRecipe("aviris_lake_grass", 101, 2.0, 0.05, 0.004,
                {"Montmorillonite SWy-1": 0.35, "Kaolinite CM9": 0.25, "Quartz GDS74": 0.3, "Goethite WS222": 0.1},
                0.75, ("Lawn_Grass", "Dry_Long_Grass"), 0.25),
    SceneRecipe("aviris_river_forest", 202, 6.0, 0.2, 0.012,
                {"Illite IMt-1.a": 0.4, "Kaolinite CM9": 0.2, "Quartz GDS74": 0.3, "Hematite GDS27": 0.1},
                0.6, ("Aspen_Leaf-A", "Maple_Leaves"), 0.3),
    SceneRecipe("aviris_pond_shrubs", 303, 12.0, 0.6, 0.006,
                {"Calcite WS272": 0.3, "Montmorillonite SWy-1": 0.3, "Quartz GDS74": 0.25, "Goethite WS222": 0.15},
                0.7, ("Sage_Brush", "Juniper_Bush"), 0.2),
)


@dataclass
class SyntheticScene:
    name: str
    cube: np.ndarray  # rows × cols × 224, float32 reflectance
    wavelengths: np.ndarray
    bad_bands: np.ndarray  # True where the band is bad (hsiuu's Cube convention; ENVI bbl = 0)
    abundances: np.ndarray  # rows × cols × 3, in CLASSES order
    endmembers: np.ndarray  # 3 × 224, abundance-weighted mean of the placed spectra

    @property
    def good(self) -> np.ndarray:
        return np.flatnonzero(~self.bad_bands)


def water_reflectance(wavelengths: np.ndarray, chlorophyll: float, cdom_440: float, particles_550: float) -> np.ndarray:
    """Reflectance (π · above-water Rrs) of optically deep water from its inherent optical properties."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    absorption = np.interp(wl, WATER_ABSORPTION[:, 0], WATER_ABSORPTION[:, 1])
    # Phytoplankton: the blue and red chlorophyll peaks, scaled as 0.06 Chl^0.65 at 440 nm (Bricaud-like).
    phyto = 0.06 * chlorophyll**0.65 * (np.exp(-0.5 * ((wl - 440) / 30) ** 2) + 0.5 * np.exp(-0.5 * ((wl - 675) / 12) ** 2))
    absorption = absorption + phyto + cdom_440 * np.exp(-0.015 * (wl - 440))
    backscatter = 0.5 * 0.00288 * (wl / 500.0) ** -4.32 + particles_550 * (550.0 / wl)
    u = backscatter / (absorption + backscatter)
    below = 0.0949 * u + 0.0794 * u**2
    above = 0.52 * below / (1 - 1.7 * below)
    return np.pi * above + 0.002  # sky-glint residual after atmospheric correction


def aviris_bad_bands(wavelengths: np.ndarray) -> np.ndarray:
    wl = np.asarray(wavelengths)
    return (wl < 400) | ((wl > 1340) & (wl < 1450)) | ((wl > 1790) & (wl < 1960)) | (wl > 2450)


def _field(rng: np.random.Generator, rows: int, cols: int, blobs: int, width: tuple[float, float]) -> np.ndarray:
    """A smooth random field (sum of Gaussian blobs of both signs), standardised."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    field = np.zeros((rows, cols))
    for _ in range(blobs):
        cy, cx = rng.uniform(-0.1, 1.1) * rows, rng.uniform(-0.1, 1.1) * cols
        w = rng.uniform(*width) * max(rows, cols)
        field += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w**2))
    return (field - field.mean()) / (field.std() or 1.0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _library_spectrum(names: list[str], spectra: np.ndarray, prefix: str) -> np.ndarray:
    matches = [i for i, n in enumerate(names) if n.startswith(prefix)]
    if not matches:
        raise KeyError(f"no USGS library spectrum named {prefix!r}")
    return spectra[matches[0]]


def build_scene(recipe: SceneRecipe, data: Path = DATA, rows: int = 100, cols: int = 100) -> SyntheticScene:
    from hsiuu_cli.io import read_library

    library = read_library(data / LIBRARY)
    wl = np.asarray(library.wavelengths, dtype=np.float64)
    spectra = np.clip(np.nan_to_num(np.asarray(library.spectra, dtype=np.float64)), 0, None)
    rng = np.random.default_rng(recipe.seed)

    water = water_reflectance(wl, recipe.chlorophyll, recipe.cdom_440, recipe.particle_backscatter_550)
    soil = sum(w * _library_spectrum(library.names, spectra, p) for p, w in recipe.soil.items()) * recipe.soil_darkening
    canopy = _library_spectrum(library.names, spectra, recipe.vegetation[0])
    other = _library_spectrum(library.names, spectra, recipe.vegetation[1])

    # Water body: threshold chosen for the recipe's fraction, ~1.5-pixel shore transition.
    lake = _field(rng, rows, cols, 5, (0.15, 0.35))
    threshold = np.quantile(lake, 1 - recipe.water_fraction)
    water_map = _sigmoid((lake - threshold) / 0.08)
    vegetation_field = _field(rng, rows, cols, 8, (0.08, 0.25))
    vegetation_map = _sigmoid(vegetation_field / 0.35)
    jitter = rng.uniform(-0.05, 0.05, (rows, cols))
    vegetation_map = np.clip(vegetation_map + jitter * (vegetation_map * (1 - vegetation_map) > 0.01), 0, 1)
    abundances = np.stack([water_map, (1 - water_map) * (1 - vegetation_map), (1 - water_map) * vegetation_map], axis=2)

    # Within-class variability: the canopy blended with another species; illumination on land.
    blend = 0.35 * _sigmoid(_field(rng, rows, cols, 6, (0.1, 0.3)) / 0.5)
    vegetation_pixels = (1 - blend)[..., None] * canopy + blend[..., None] * other
    illumination = 1 + 0.1 * np.tanh(_field(rng, rows, cols, 10, (0.05, 0.15)))
    land_light = illumination[..., None]
    cube = (
        abundances[..., :1] * water
        + abundances[..., 1:2] * land_light * soil
        + abundances[..., 2:3] * land_light * vegetation_pixels
    )
    # Reference spectra: abundance-weighted means of what was placed (with its illumination).
    weights = abundances.reshape(-1, 3)
    placed = [
        np.broadcast_to(water, (rows * cols, wl.size)),
        (land_light * soil).reshape(-1, wl.size),
        (land_light * vegetation_pixels).reshape(-1, wl.size),
    ]
    endmembers = np.stack([weights[:, i] @ placed[i] / weights[:, i].sum() for i in range(3)])

    # Sensor noise does not scale with the pixel: σ = 0.5 / SNR, SNR quoted for a 50 % reflector.
    sigma = 0.5 / np.interp(wl, [400, 1000, 1800, 2500], [500.0, 500.0, 300.0, 200.0])
    cube = cube + rng.normal(size=cube.shape) * sigma
    return SyntheticScene(recipe.name, cube.astype(np.float32), wl, aviris_bad_bands(wl), abundances, endmembers)


def scenes(data: Path = DATA) -> list[SyntheticScene]:
    return [build_scene(recipe, data) for recipe in RECIPES]


def write(scene: SyntheticScene, folder: Path) -> None:
    """ENVI cube with wavelengths and bbl, the truth as ENVI abundances + .sli, and one .npz with everything."""
    from hsiuu_cli.cube import Cube
    from hsiuu_cli.io import SpectralLibrary, write_cube, write_library

    folder.mkdir(parents=True, exist_ok=True)
    write_cube(Cube(scene.cube, wavelengths=scene.wavelengths, bad_bands=scene.bad_bands,
                    description=f"synthetic AVIRIS scene {scene.name} (bench/unmix_scenes.py)"),
               folder / f"{scene.name}.hdr", overwrite=True)
    write_cube(Cube(scene.abundances.astype(np.float32), band_names=list(CLASSES)),
               folder / f"{scene.name}_abundances_gt.hdr", overwrite=True)
    write_library(SpectralLibrary(scene.endmembers.astype(np.float32), list(CLASSES), scene.wavelengths),
                  folder / f"{scene.name}_endmembers_gt.sli", overwrite=True)
    np.savez(folder / f"{scene.name}.npz", cube=scene.cube, wavelengths=scene.wavelengths, bad_bands=scene.bad_bands,
             abundances=scene.abundances, endmembers=scene.endmembers, classes=np.array(CLASSES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    for scene in scenes():
        write(scene, args.output)
        good = scene.good
        print(f"{scene.name}: {scene.cube.shape}, {good.size} good bands, class shares "
              + ", ".join(f"{c} {scene.abundances[..., i].mean():.2f}" for i, c in enumerate(CLASSES))
              + ", pure (≥ 0.9) pixels " + ", ".join(str(int((scene.abundances[..., i] >= 0.9).sum())) for i in range(3)))


if __name__ == "__main__":
    main()
