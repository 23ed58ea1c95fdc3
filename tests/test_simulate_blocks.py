"""Simulation by blocks of rows (hsiuu_cli.simulate): each block reads its rows with the PSF's halo,
and the blocks put together are the whole-scene degradation of hsiuu_cli.degrade, byte for byte;
noise has one stream per block at the whole image's level. No Dask here."""

from __future__ import annotations

import numpy as np
import pytest

from hsiuu_cli import degrade, simulate
from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import InvalidDataError
from hsiuu_cli.io import read_cube, write_cube
from hsiuu_cli.simulate import gather_blocks, plan_simulation, simulate_pair, simulation_blocks, survey_scene

from conftest import make_mixture

MSI_RTOL = 4 * float(np.finfo(np.float32).eps)


def cube_of(rows: int, cols: int, bands: int = 12, nodata: bool = False) -> Cube:
    data, _, _, wavelengths = make_mixture(rows=rows, cols=cols, bands=bands, seed=5)
    if nodata:
        data[9:12, 4:7] = np.nan
        data[rows - 1, 0] = np.nan
    return Cube(data, wavelengths=wavelengths, fwhm=np.full(bands, 150.0), nodata=float("nan") if nodata else None)


def whole_scene(cube: Cube, ratio: int | None, psf: str = "gaussian", **spatial) -> dict[str, np.ndarray]:
    """The in-memory degradation of the whole scene, as simulate did it before blocks."""
    rows, cols = simulate.whole_blocks(cube.rows, cube.cols, ratio)
    hr = cube.physical()[:rows, :cols].copy()
    hr[~cube.valid_mask()[:rows, :cols]] = np.nan
    out = {"hr": hr}
    if ratio is not None:
        out["lr"] = degrade.spatial_degrade(hr, ratio, method=psf, **spatial)
    return out


def blocks_of(cube: Cube, monkeypatch, lr_rows: int, **options) -> tuple[simulate.SimulationPlan, dict[str, np.ndarray]]:
    """The plan and outputs with blocks of ``lr_rows`` LR rows."""
    step = options.get("ratio") or 1
    monkeypatch.setattr(simulate, "BLOCK_BYTES", lr_rows * step * cube.cols * cube.bands * 4)
    plan = plan_simulation(cube, notice=lambda *_: None, **options)
    survey_scene(plan)
    return plan, gather_blocks(plan, roles=sorted({*simulate.output_roles(plan), "hr"}))


def test_blocks_cover_the_rows_once(monkeypatch):
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 3 * 4 * 10 * 5 * 4)  # 3 LR rows of ratio 4
    parts = simulation_blocks(44, 10, 5, 4)
    assert parts == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert simulation_blocks(44, 10, 5, None)[-1] == (36, 44)  # without a ratio, HR rows
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 1)
    assert simulation_blocks(8, 10, 5, 4) == [(0, 1), (1, 2)]  # at least one row per block


@pytest.mark.parametrize(
    ("shape", "options", "lr_rows"),
    [
        ((61, 37), dict(ratio=4), 2),  # neither side a multiple of the ratio: cut to 60 × 36
        ((61, 37), dict(ratio=3), 1),  # blocks of one LR row: the halo reaches two blocks each way
        ((40, 30), dict(ratio=2, sigma=3.0), 3),  # a kernel of 19 rows: halo of 5 LR rows
        ((40, 30), dict(ratio=5, kernel_size=3, offset=0), 2),
        ((44, 21), dict(ratio=4, psf="bicubic"), 2),
        ((30, 30), dict(ratio=1), 4),
        ((18, 14), dict(ratio=4), 100),  # the scene is smaller than one block
        ((23, 14), dict(ratio=None), 5),  # only the MSI: blocks of HR rows
    ],
)
@pytest.mark.parametrize("nodata", [False, True])
def test_blocks_are_the_whole_scene_degradation(monkeypatch, shape, options, lr_rows, nodata):
    cube = cube_of(*shape, nodata=nodata)
    plan, out = blocks_of(cube, monkeypatch, lr_rows, srf="ikonos", **options)
    expected = whole_scene(cube, **options)
    assert len(plan.blocks) == -(-(plan.rows // plan.step) // lr_rows)
    np.testing.assert_array_equal(out["hr"], expected["hr"])
    # BLAS rounds a pixel's SRF product differently with the number of pixels in the product (a
    # block's, not the scene's): a few units in the last place of float32
    np.testing.assert_allclose(out["msi"], degrade.spectral_degrade(expected["hr"], plan.matrix), rtol=MSI_RTOL, atol=0)
    if options["ratio"] is None:
        assert "lr" not in out and plan.halo == 0
    elif nodata and options.get("psf") == "bicubic":
        # blocks without no-data skip the normalised interpolation, whose weights add up to 1 ± 1 ulp
        np.testing.assert_allclose(out["lr"], expected["lr"], rtol=3e-7, atol=0)
        assert np.array_equal(np.isnan(out["lr"]), np.isnan(expected["lr"]))
    else:
        np.testing.assert_array_equal(out["lr"], expected["lr"])
    assert plan.invalid == int(np.isnan(expected["hr"]).all(axis=2).sum()) and (plan.invalid > 0) == nodata


def test_a_bsq_scene_file_is_read_a_block_at_a_time(tmp_path, monkeypatch):
    cube = cube_of(45, 23, nodata=True)
    data = np.round(cube.data * 10000)
    data[~np.isfinite(data)] = -9999
    path = write_cube(Cube(data.astype(np.int16), wavelengths=cube.wavelengths, nodata=-9999, scale_factor=10000.0), tmp_path / "s.hdr")
    scene = read_cube(path)
    assert isinstance(scene.data, np.memmap)
    step = 3
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 2 * step * scene.cols * scene.bands * 4)
    plan = plan_simulation(scene, path=path, ratio=step, srf="ikonos", notice=lambda *_: None)
    reads = []
    read = plan.source.read
    monkeypatch.setattr(plan.source, "read", lambda start, stop: reads.append((start, stop)) or read(start, stop))
    survey_scene(plan)
    out = gather_blocks(plan, roles=["lr", "msi"])
    assert max(stop - start for start, stop in reads) == (2 + 2 * plan.halo) * step  # a block and its halo, never the scene
    assert plan.invalid == 10
    np.testing.assert_array_equal(out["lr"], simulate_pair(read_cube(path), ratio=step, srf="ikonos").lr.data)
    np.testing.assert_array_equal(out["lr"], whole_scene(scene, step)["lr"])


def test_noise_is_a_stream_per_block_at_the_whole_images_level(monkeypatch):
    cube = cube_of(41, 20)
    options = dict(ratio=4, srf="ikonos", snr=30.0, msi_snr=25.0, seed=7)
    plan, noisy = blocks_of(cube, monkeypatch, 3, **options)
    _, clean = blocks_of(cube, monkeypatch, 3, ratio=4, srf="ikonos")
    assert len(plan.blocks) == 4
    # the level: the signal power of the whole noiseless image, as degrade.noise_sigma measures it
    np.testing.assert_allclose(plan.lr_sigma, degrade.noise_sigma(clean["lr"], 30.0), rtol=1e-12)
    np.testing.assert_allclose(plan.msi_sigma, degrade.noise_sigma(clean["msi"], 25.0), rtol=1e-12)
    # the values: block k draws from default_rng([seed, k]), its LR rows first, then its MSI rows
    for index, (start, stop) in enumerate(plan.blocks):
        rng = np.random.default_rng([7, index])
        lr = clean["lr"][start:stop]
        np.testing.assert_array_equal(noisy["lr"][start:stop], (lr + rng.standard_normal(lr.shape) * plan.lr_sigma).astype(np.float32))
        msi = clean["msi"][start * 4 : stop * 4]
        np.testing.assert_array_equal(noisy["msi"][start * 4 : stop * 4], (msi + rng.standard_normal(msi.shape) * plan.msi_sigma).astype(np.float32))
    again = blocks_of(cube, monkeypatch, 3, **options)[1]
    assert all(np.array_equal(again[role], noisy[role]) for role in noisy)
    other = blocks_of(cube, monkeypatch, 3, **dict(options, seed=8))[1]
    assert not np.array_equal(other["lr"], noisy["lr"])


def test_a_scene_of_one_block_keeps_the_noise_of_its_seed():
    """default_rng([seed, 0]) is default_rng(seed): a scene of one block (most test cases) has the
    noise it had before simulate cut scenes into blocks."""
    cube = cube_of(32, 32)
    noisy = simulate_pair(cube, ratio=4, snr=30, seed=3).lr.data
    clean = simulate_pair(cube, ratio=4).lr.data
    np.testing.assert_array_equal(noisy, degrade.add_noise(clean, 30, np.random.default_rng(3)))


def test_the_survey_counts_every_block(monkeypatch):
    cube = cube_of(40, 16)
    data = cube.data.copy()
    data[0, 0, 1] = data[39, 15, 0] = np.inf
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 4 * 16 * 12 * 4)
    with pytest.raises(InvalidDataError, match="^2 pixels hold infinite values"):
        simulate_pair(cube.replace(data=data), ratio=2)
    data = np.full_like(cube.data, np.nan)
    with pytest.raises(InvalidDataError, match="every pixel is no-data"):
        simulate_pair(cube.replace(data=data), ratio=2, snr=20)


@pytest.mark.parametrize("extension", [".hdr", ".tif"])
def test_the_command_writes_the_blocks_in_place_or_gathers_them(runner, tmp_path, monkeypatch, extension):
    cube = cube_of(46, 27, nodata=True)
    path = write_cube(cube, tmp_path / "scene.hdr")
    monkeypatch.setattr(simulate, "BLOCK_BYTES", 2 * 4 * 27 * 12 * 4)  # 6 blocks of 2 LR rows
    prefix = tmp_path / f"case{extension}"
    result = runner.invoke(app, ["simulate", str(path), "-r", "4", "--srf", "ikonos", "--snr", "30", "-o", str(prefix)])
    assert result.exit_code == 0, result.output
    assert "9 no-data pixels are left out" in result.stderr and "using the first 44×24 pixels" in result.stderr
    expected = simulate_pair(cube, ratio=4, srf="ikonos", snr=30, msi_snr=30)
    for role in ("lr", "msi", "hr"):
        written = read_cube(tmp_path / f"case_{role}{extension}")
        np.testing.assert_array_equal(np.asarray(written.data), getattr(expected, role).data)
        assert np.isnan(written.nodata)
    assert read_cube(tmp_path / f"case_lr{extension}").shape == (11, 6, 12)
