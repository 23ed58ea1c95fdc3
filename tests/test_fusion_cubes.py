"""Cube-level fusion helpers: the on-disk row store behind large outputs, grid alignment and SRF resolution."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from conftest import gaussian_srf, make_mixture

from hsiuu_cli import degrade
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import GridError, ShapeMismatchError, SpectralResponseError
from hsiuu_cli.fusion import cubes


def test_row_file_reads_and_writes_like_an_array(tmp_path):
    rng = np.random.default_rng(0)
    reference = rng.random((10, 7, 3)).astype(np.float32)
    store = cubes.RowFile(tmp_path / "rows.f32", reference.shape)
    store[0:4] = reference[0:4]
    store[4:10] = reference[4:10]
    np.testing.assert_array_equal(store[0:10], reference)
    np.testing.assert_array_equal(store[2:9:3, ::2], reference[2:9:3, ::2])
    np.testing.assert_array_equal(store[8:20], reference[8:])  # slices clip like numpy's
    assert store.shape == (10, 7, 3) and store.dtype == np.float32 and store.ndim == 3
    with pytest.raises(TypeError):
        store[0:2, :, 0] = 1.0
    store.close()
    assert (tmp_path / "rows.f32").stat().st_size == reference.nbytes


def test_large_outputs_go_through_the_row_file_unchanged(tmp_path, monkeypatch):
    cube, _, _, wavelengths = make_mixture(32, 32, 20, 3, seed=5)
    bad = np.zeros(20, bool)
    bad[[3, 11]] = True  # bad bands are written from the HSI, not fused
    srf = gaussian_srf(wavelengths, [700.0, 1500.0], 300.0)
    lr = Cube(degrade.spatial_degrade(cube, 4, sigma=2.0), wavelengths=wavelengths, bad_bands=bad)
    msi = Cube(degrade.spectral_degrade(cube, srf))
    matrix = srf[~bad]
    options = dict(lr_path=tmp_path / "lr.hdr", msi_path=tmp_path / "msi.hdr", method="gsa")
    in_memory, _ = cubes.fuse_cubes(lr, msi, matrix, **options)
    monkeypatch.setattr(cubes, "IN_MEMORY_BYTES", 0)
    on_disk, result = cubes.fuse_cubes(lr, msi, matrix, scratch=tmp_path, **options)
    assert isinstance(on_disk.data, cubes.RowFile)
    np.testing.assert_array_equal(on_disk.data[0:32], in_memory.data)
    np.testing.assert_allclose(in_memory.data[:, :, 3], degrade.resize_bicubic(lr.data[:, :, 3], 32, 32), rtol=1e-5)
    result.fused.close()


def test_align_pair_cuts_to_the_overlap():
    hr_transform = Affine.translation(1000.0, 2000.0) @ Affine.scale(1.0, -1.0)
    lr = Cube(np.zeros((5, 6, 2), np.float32), transform=hr_transform @ Affine.translation(-4, 8) @ Affine.scale(4), crs="EPSG:32611")
    hr = Cube(np.zeros((40, 16, 1), np.float32), transform=hr_transform, crs="EPSG:32611")
    pair = cubes.align_pair(lr, hr, "lr", "hr")
    # LR columns 1..4 (HR 0..16) and rows 0..5 (HR 8..28) are the overlap
    assert pair.ratio == 4 and pair.cropped
    assert pair.lr.shape == (5, 4, 2) and pair.hr.shape == (20, 16, 1)
    assert pair.hr.transform.almost_equals(hr_transform @ Affine.translation(0, 8))
    assert pair.lr.transform.almost_equals(pair.hr.transform @ Affine.scale(4))


def test_align_pair_errors():
    hr_transform = Affine.scale(1.0, -1.0)
    hr = Cube(np.zeros((16, 16, 1), np.float32), transform=hr_transform)
    with pytest.raises(GridError, match="integer ratio.*without --no-resample"):
        cubes.align_pair(Cube(np.zeros((4, 4, 2), np.float32), transform=hr_transform @ Affine.scale(3.5)), hr, "lr", "hr",
                         resample=False)
    with pytest.raises(GridError, match="do not overlap"):
        far = hr_transform @ Affine.translation(100, 0) @ Affine.scale(4)
        cubes.align_pair(Cube(np.zeros((4, 4, 2), np.float32), transform=far), hr, "lr", "hr")
    with pytest.raises(ShapeMismatchError, match="smaller"):
        cubes.align_pair(Cube(np.zeros((20, 20, 2), np.float32)), hr, "lr", "hr")


def test_resolve_srf_follows_the_msi_band_names(tmp_path):
    wavelengths = np.linspace(400, 1000, 61)
    lr = Cube(np.zeros((4, 4, 61), np.float32), wavelengths=wavelengths)
    msi = Cube(np.zeros((16, 16, 3), np.float32), band_names=["blue", "green", "red"])
    matrix, name = cubes.resolve_srf(lr, msi, srf="nikon_d700", matrix_path=None, lr_path=tmp_path / "l", msi_path=tmp_path / "m")
    assert matrix.shape == (61, 3) and name.endswith("blue,green,red")
    centres = wavelengths @ matrix
    assert centres[0] < centres[1] < centres[2]  # blue, green, red in the MSI's order
    with pytest.raises(SpectralResponseError, match="no wavelengths"):
        cubes.resolve_srf(lr.replace(wavelengths=None), msi, srf="nikon_d700", matrix_path=None, lr_path=tmp_path / "l", msi_path=tmp_path / "m")
