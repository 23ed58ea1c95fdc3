"""The cube model: shape checks, physical values, valid-pixel mask."""

import numpy as np
import pytest

from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import ShapeMismatchError


def test_two_dimensional_data_becomes_one_band():
    assert Cube(np.zeros((4, 5))).shape == (4, 5, 1)


def test_per_band_metadata_must_match_band_count():
    with pytest.raises(ShapeMismatchError, match="wavelengths"):
        Cube(np.zeros((2, 2, 3)), wavelengths=[400.0, 500.0])
    with pytest.raises(ShapeMismatchError, match="band names"):
        Cube(np.zeros((2, 2, 3)), band_names=["a"])
    with pytest.raises(ValueError, match="rows x cols x bands"):  # typed, and still a ValueError
        Cube(np.zeros((2, 2, 3, 1)))


def test_good_band_indices():
    assert Cube(np.zeros((2, 2, 3))).good_band_indices().tolist() == [0, 1, 2]
    assert Cube(np.zeros((2, 2, 3)), bad_bands=[False, True, False]).good_band_indices().tolist() == [0, 2]


def test_physical_applies_scale_factor():
    cube = Cube(np.full((2, 2, 1), 5000, dtype=np.int16), scale_factor=10000)
    assert cube.physical().dtype == np.float32
    assert np.allclose(cube.physical(), 0.5)


def test_valid_mask_ignores_nan_bad_bands():
    data = np.ones((3, 4, 3), dtype=np.float32)
    data[:, :, 2] = np.nan
    data[0, 0, :2] = -1
    data[1, 1, 0] = np.nan
    cube = Cube(data, bad_bands=np.array([False, False, True]), nodata=-1.0)
    valid = cube.valid_mask()
    expected = np.ones((3, 4), bool)
    expected[1, 1] = False
    assert np.array_equal(valid, expected)  # (0, 0) is -1 in two bands only: still data
    data[0, 0, 2] = -1
    assert not Cube(data, bad_bands=np.array([False, False, True]), nodata=-1.0).valid_mask()[0, 0]
