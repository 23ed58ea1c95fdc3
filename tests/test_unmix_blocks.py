"""Unmixing by blocks of rows (hsiuu_cli.unmixing.blocks): endmembers on a sample, FCLS a block at a
time, written in place; the same values as unmixing every pixel at once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import read_cube, write_cube
from hsiuu_cli.unmixing import blocks, fcls, unmix, unmix_with_library
from hsiuu_cli.unmixing.blocks import ArrayRows, read_sample, row_blocks, sample_stride

from conftest import make_mixture


def scene(rows=60, cols=24, bands=20, seed=3):
    cube, endmembers, _, wavelengths = make_mixture(rows=rows, cols=cols, bands=bands, endmembers=3, seed=seed)
    cube[5, 7] = np.nan
    cube[40:43, 2:5] = np.nan
    return cube, endmembers, wavelengths


def test_row_blocks_cover_the_scene_once(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 10 * 24 * 20)
    parts = row_blocks(61, 24, 20)
    assert parts[0] == (0, 10) and parts[-1] == (60, 61)
    assert [stop for _, stop in parts[:-1]] == [start for start, _ in parts[1:]]
    assert row_blocks(61, 24, 20)[-1][1] == 61
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 1)
    assert len(row_blocks(5, 3, 2)) == 5  # at least one row per block


def test_blocks_give_what_one_solve_gives(monkeypatch):
    cube, endmembers, _ = scene()
    valid = np.isfinite(cube).all(axis=2)
    whole = fcls(np.asarray(cube[valid], dtype=np.float64), endmembers)
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 7 * 24 * 20)  # 9 blocks of 7 rows
    result = unmix_with_library(cube, endmembers, ["a", "b", "c"])
    assert result.abundances.shape == (60, 24, 3)
    assert np.isnan(result.abundances[5, 7]).all() and np.isnan(result.residual[41, 3])
    assert result.skipped_pixels == 1 + 9
    np.testing.assert_allclose(result.abundances[valid], whole, atol=1e-6)
    np.testing.assert_allclose(result.info["mean_residual_rmse"], np.nanmean(result.residual.astype(np.float64)), rtol=1e-6)


def test_sample_of_a_large_scene_is_a_regular_grid(monkeypatch):
    cube, _, _ = scene()
    monkeypatch.setattr(blocks, "SAMPLE_PIXELS", 400)  # 1440 pixels: every 2nd row and column
    assert sample_stride(60, 24) == 2
    sample = read_sample(ArrayRows(cube), 2)
    assert sample.stride == 2
    assert (sample.positions % 2 == 0).all()
    assert sample.pixels.shape[0] == 30 * 12 - 4  # the NaN pixels (40|42, 2|4) lie on the grid, (5, 7) does not
    np.testing.assert_array_equal(sample.pixels, cube[sample.positions[:, 0], sample.positions[:, 1]])
    result = unmix(cube, 3, method="nfindr-fcls")
    assert "one pixel of every 2 × 2" in result.info["endmember_sample"]
    for (r, c), spectrum in zip(result.info["endmember_pixels"], result.endmembers):
        assert r % 2 == 0 and c % 2 == 0
        np.testing.assert_array_equal(spectrum, cube[r, c])
    assert np.isfinite(result.abundances[1, 1]).all()  # pixels off the grid are unmixed too


def test_unusable_scenes_say_so():
    with pytest.raises(Exception, match="every pixel is no-data"):
        unmix(np.full((4, 4, 5), np.nan, dtype=np.float32), 2, method="vca-fcls")
    with pytest.raises(Exception, match="constant"):
        unmix(np.ones((4, 4, 5), dtype=np.float32), 2, method="vca-fcls")


@pytest.mark.parametrize("method", ["vca-fcls", "nfindr-fcls"])
def test_cli_writes_blocks_in_place_with_the_values_of_the_api(runner, tmp_path, monkeypatch, method):
    cube, _, wavelengths = scene()
    path = write_cube(Cube((cube * 1000).astype(np.float32), wavelengths=wavelengths, nodata=float("nan"), scale_factor=1000.0),
                      tmp_path / "scene.hdr")
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 7 * 24 * 20)
    result = runner.invoke(app, ["unmix", str(path), "-k", "3", "--method", method, "-o", str(tmp_path / "out"),
                                 "--quicklook", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    expected = unmix(read_cube(path).physical(), 3, method=method)
    written = read_cube(tmp_path / "out" / "abundances.hdr")
    np.testing.assert_array_equal(np.asarray(written.data), expected.abundances)
    np.testing.assert_array_equal(np.asarray(read_cube(tmp_path / "out" / "residual.hdr").data)[:, :, 0], expected.residual)
    assert written.band_names == expected.names
    assert summary["skipped_pixels"] == 10 and summary["details"]["endmember_pixels"] == expected.info["endmember_pixels"]
    assert summary["mean_residual_rmse"] == pytest.approx(expected.info["mean_residual_rmse"], rel=1e-12)
    assert (tmp_path / "out" / "quicklook.png").stat().st_size > 0
    tif = runner.invoke(app, ["unmix", str(path), "-k", "3", "--method", method, "-o", str(tmp_path / "tif"), "-f", "GTiff"])
    assert tif.exit_code == 0, tif.output
    np.testing.assert_array_equal(np.asarray(read_cube(tmp_path / "tif" / "abundances.tif").data), expected.abundances)
