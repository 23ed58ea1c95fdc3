"""Grid arithmetic and LR/HR alignment checks."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import GridError, ParameterError
from hsiuu_cli.grid import check_grids, coarsened_transform, pixel_size, scaled_transform

ROTATED = Affine.translation(579717.18, 3714550.7) @ Affine.rotation(34) @ Affine.scale(16.9, -16.9)


def cube(rows: int, cols: int, transform: Affine | None = None, crs: str | None = "EPSG:32611") -> Cube:
    return Cube(np.zeros((rows, cols, 2), np.float32), transform=transform, crs=crs if transform else None)


def test_scaled_grid_keeps_corner_and_rotation_and_covers_the_same_ground():
    fine = scaled_transform(ROTATED, 4)
    assert (fine.c, fine.f) == (ROTATED.c, ROTATED.f)
    assert pixel_size(fine) == pytest.approx((16.9 / 4, 16.9 / 4))
    # The far corner of 10 × 12 coarse pixels is the far corner of 40 × 48 fine pixels.
    assert fine @ (48, 40) == pytest.approx(ROTATED @ (12, 10))
    assert coarsened_transform(fine, 4).almost_equals(ROTATED, precision=1e-9)


@pytest.mark.parametrize("factor", [0, -2, 1.5])
def test_factor_must_be_a_positive_integer(factor):
    with pytest.raises(ParameterError):
        scaled_transform(ROTATED, factor)


def test_aligned_grids_give_their_ratio():
    lr = cube(10, 12, ROTATED)
    hr = cube(40, 48, scaled_transform(ROTATED, 4))
    assert check_grids(lr, hr, "lr.hdr", "hr.tif") == 4


def test_non_georeferenced_only_checks_the_size_ratio():
    assert check_grids(cube(16, 8), cube(48, 24)) == 3
    assert check_grids(cube(16, 8, ROTATED), cube(48, 24)) == 3


@pytest.mark.parametrize("hr_shape", [(41, 48), (40, 36), (20, 48)])
def test_non_integer_or_unequal_ratio(hr_shape):
    with pytest.raises(GridError) as err:
        check_grids(cube(10, 12), cube(*hr_shape), "lr.hdr", "hr.tif")
    message = str(err.value)
    assert "lr.hdr" in message and "hr.tif" in message and f"{hr_shape[0]}×{hr_shape[1]}" in message


def test_different_crs():
    hr = cube(40, 48, scaled_transform(ROTATED, 4), crs="EPSG:32612")
    with pytest.raises(GridError, match="different CRS.*EPSG:32611.*EPSG:32612") as err:
        check_grids(cube(10, 12, ROTATED), hr, "lr.hdr", "hr.tif")
    assert "lr.hdr" in str(err.value) and "hr.tif" in str(err.value)


def test_shifted_origin():
    shifted = Affine.translation(5, 0) @ scaled_transform(ROTATED, 4)
    with pytest.raises(GridError, match=r"upper-left corners differ by 5 map units \(1\.18 HR pixels\)") as err:
        check_grids(cube(10, 12, ROTATED), cube(40, 48, shifted), "lr.hdr", "hr.tif")
    assert "579717.18" in str(err.value)
    # A small fraction of an HR pixel is tolerated.
    nudged = Affine.translation(0.2, 0) @ scaled_transform(ROTATED, 4)
    assert check_grids(cube(10, 12, ROTATED), cube(40, 48, nudged)) == 4


def test_pixel_size_inconsistent_with_ratio():
    hr = cube(40, 48, scaled_transform(ROTATED, 2))
    with pytest.raises(GridError, match=r"pixel sizes do not match the 4× size ratio: lr.hdr column step 16.9, hr.tif 8.45 × 4 = 33.8"):
        check_grids(cube(10, 12, ROTATED), hr, "lr.hdr", "hr.tif")


def test_differently_rotated_grids():
    north_up = Affine.translation(579717.18, 3714550.7) @ Affine.scale(16.9 / 4, -16.9 / 4)
    with pytest.raises(GridError, match="rotated"):
        check_grids(cube(10, 12, ROTATED), cube(40, 48, north_up), "lr.hdr", "hr.tif")


@pytest.mark.realdata
def test_houston_pair_is_a_4x_grid(shared_data):
    from hsiuu_cli.io import read_cube

    folder = shared_data / "scenes" / "houston2018"
    assert check_grids(read_cube(folder / "houston_hsi.hdr"), read_cube(folder / "houston_rgb.hdr")) == 4
