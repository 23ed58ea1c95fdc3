"""`hsiuu_cli.simulate.simulate_pair`: the simulation pipeline on cubes, without files."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from conftest import gaussian_srf, make_mixture
from hsiuu_cli import degrade
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import InvalidDataError, ParameterError, SpectralResponseError
from hsiuu_cli.simulate import Simulation, simulate_pair, whole_blocks
from hsiuu_cli.srf import SpectralResponse, load_srf, srf_matrix

TRANSFORM = Affine.translation(579717.18, 3714550.7) @ Affine.rotation(34) @ Affine.scale(16.9, -16.9)


def assert_same_values(actual: np.ndarray, expected: np.ndarray) -> None:
    """The same computation on the same values: equal up to the last float32 digits, which BLAS and
    SIMD kernels may round differently with the arrays' memory layout and the library build."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)


def scene(rows: int = 32, cols: int = 32, **fields) -> Cube:
    """A georeferenced rows×cols×40 cube, 400–2400 nm, FWHM 50 nm."""
    data, _, _, wavelengths = make_mixture(rows, cols)
    fields = {
        "wavelengths": wavelengths,
        "fwhm": np.full(40, 50.0),
        "crs": "EPSG:32611",
        "transform": TRANSFORM,
        "band_names": [f"b{i}" for i in range(40)],
        "description": "synthetic",
        **fields,
    }
    return Cube(fields.pop("data", data), **fields)


def heard(cube: Cube, **options) -> tuple[Simulation, list[tuple[str, str]]]:
    notices: list[tuple[str, str]] = []
    result = simulate_pair(cube, notice=lambda kind, message: notices.append((kind, message)), **options)
    return result, notices


def test_lr_and_msi_are_the_degradations_with_the_outputs_metadata():
    cube = scene()
    result, notices = heard(cube, ratio=4, srf="sentinel2a:B2,B3,B4,B8")
    assert notices == [] and not result.cropped

    assert result.lr.shape == (8, 8, 40) and result.lr.data.dtype == np.float32
    assert_same_values(result.lr.data, degrade.spatial_degrade(cube.physical(), 4))
    assert result.lr.transform.almost_equals(TRANSFORM @ Affine.scale(4))
    assert np.array_equal(result.lr.wavelengths, cube.wavelengths) and result.lr.band_names == cube.band_names
    assert result.lr.crs == cube.crs and result.lr.nodata is None and result.lr.scale_factor is None

    response = load_srf("sentinel2a:B2,B3,B4,B8")
    matrix = srf_matrix(response, cube.wavelengths, cube.fwhm).astype(np.float32)
    assert result.response.name == "sentinel2a:B2,B3,B4,B8"
    assert result.msi.shape == (32, 32, 4) and result.msi.data.dtype == np.float32
    assert_same_values(result.msi.data, degrade.spectral_degrade(cube.physical(), matrix))
    assert result.msi.band_names == ["B2", "B3", "B4", "B8"] and result.msi.fwhm is None
    assert 480 < result.msi.wavelengths[0] < 500 and 820 < result.msi.wavelengths[-1] < 850  # response centroids
    assert result.msi.transform == TRANSFORM and result.msi.description == "synthetic — simulated sentinel2a:B2,B3,B4,B8"

    assert np.array_equal(result.hr.data, cube.physical()) and result.hr.shape == cube.shape


def test_only_what_is_asked_for():
    cube = scene()
    assert simulate_pair(cube, srf="ikonos:red,nir").lr is None
    only_lr = simulate_pair(cube, ratio=2, psf="bicubic")
    assert only_lr.msi is None and only_lr.response is None
    assert_same_values(only_lr.lr.data, degrade.spatial_degrade(cube.physical(), 2, method="bicubic"))
    custom = simulate_pair(cube, ratio=4, sigma=1.5, kernel_size=9, offset=0)
    assert_same_values(custom.lr.data, degrade.spatial_degrade(cube.physical(), 4, sigma=1.5, kernel_size=9, offset=0))


def test_a_loaded_response_and_bad_bands():
    bad = np.zeros(40, bool)
    bad[[30, 31]] = True
    data = make_mixture()[0]
    data[:, :, 31] = np.nan  # a water-vapour band: NaN everywhere, flagged bad
    cube = scene(data=data, bad_bands=bad, fwhm=None)
    good = cube.good_band_indices()
    matrix = gaussian_srf(cube.wavelengths, [500.0, 650.0], 40.0, normalise=False)
    response = SpectralResponse(cube.wavelengths, matrix, ["g", "r"], source="test", name="two")
    result, notices = heard(cube, ratio=4, srf=response)
    assert notices == [] and result.hr.nodata is None  # the bad band voids no pixel
    assert result.response is response and result.msi.band_names == ["g", "r"]
    expected = degrade.spectral_degrade(cube.physical()[:, :, good], srf_matrix(response, cube.wavelengths[good]).astype(np.float32))
    assert_same_values(result.msi.data, expected)
    assert np.isnan(result.lr.data[:, :, 31]).all() and np.isfinite(np.delete(result.lr.data, 31, axis=2)).all()
    assert np.array_equal(result.lr.bad_bands, bad)


def test_cut_to_whole_blocks():
    assert whole_blocks(30, 31, 4) == (28, 28) and whole_blocks(30, 31, None) == (30, 31)
    with pytest.raises(ParameterError, match="a 3×31 cube is smaller than the ratio 4"):
        whole_blocks(3, 31, 4)

    cube = scene(30, 31)
    result, notices = heard(cube, ratio=4, srf="ikonos:blue,green,red,nir")
    assert result.cropped and notices == [("crop", "30×31 is not a multiple of 4; using the first 28×28 pixels")]
    assert np.array_equal(result.hr.data, cube.physical()[:28, :28]) and result.hr.transform == TRANSFORM
    assert result.lr.shape == (7, 7, 40) and result.msi.shape == (28, 28, 4)
    assert_same_values(result.lr.data, degrade.spatial_degrade(cube.physical()[:28, :28], 4))
    assert not simulate_pair(cube, srf="ikonos").cropped  # no ratio, no cut


def test_no_data_is_left_out_and_marked_nan():
    data = np.round(make_mixture()[0] * 10000).astype(np.int16)
    data[:4, :4] = -9999
    cube = scene(data=data, nodata=-9999, scale_factor=10000.0)
    result, notices = heard(cube, ratio=4, srf="ikonos:blue,green,red,nir")
    assert notices == [("nodata", "16 no-data pixels are left out and written as NaN")]
    for out in (result.hr, result.lr, result.msi):
        assert np.isnan(out.nodata) and out.scale_factor is None and out.data.dtype == np.float32
    assert np.isnan(result.hr.data[:4, :4]).all() and np.nanmax(result.hr.data) < 1  # the scale factor applied
    assert np.isnan(result.lr.data[0, 0]).all() and np.isfinite(result.lr.data[1:, 1:]).all()
    assert np.nanmin(result.lr.data) > 0  # -9999 never blurred in
    assert np.isnan(result.msi.data[:4, :4]).all() and np.isfinite(result.msi.data[4:, 4:]).all()


def test_noise_goes_on_lr_first_then_msi_from_one_generator():
    """A scene of one block: one generator, default_rng([seed, 0]), which is default_rng(seed)
    (larger scenes: tests/test_simulate_blocks.py)."""
    cube = scene()
    clean = simulate_pair(cube, ratio=4, srf="ikonos")
    noisy = simulate_pair(cube, ratio=4, srf="ikonos", snr=30, msi_snr=35, seed=2)
    rng = np.random.default_rng(2)
    assert_same_values(noisy.lr.data, degrade.add_noise(clean.lr.data, 30, rng))
    assert_same_values(noisy.msi.data, degrade.add_noise(clean.msi.data, 35, rng))
    again = simulate_pair(cube, ratio=4, srf="ikonos", snr=30, msi_snr=35, seed=2)
    assert np.array_equal(again.lr.data, noisy.lr.data) and np.array_equal(again.msi.data, noisy.msi.data)
    msi_only = simulate_pair(cube, ratio=4, srf="ikonos", msi_snr=35, seed=2)
    assert np.array_equal(msi_only.lr.data, clean.lr.data)
    assert_same_values(msi_only.msi.data, degrade.add_noise(clean.msi.data, 35, np.random.default_rng(2)))


def test_partial_coverage_is_a_warning_and_the_notices_come_in_order():
    cube = scene(30, 34, wavelengths=np.linspace(475, 2400, 40))
    data = cube.data.copy()
    data[0, 0] = np.nan
    cube = cube.replace(data=data)
    with pytest.warns(UserWarning, match="SRF band 'blue' of 'ikonos:blue,green': 87% of its response falls on the cube's bands"):
        simulate_pair(cube, srf="ikonos:blue,green")
    _, notices = heard(cube, ratio=4, srf="ikonos:blue,green")
    assert [kind for kind, _ in notices] == ["coverage", "nodata", "crop"]


@pytest.mark.parametrize(
    ("change", "options", "error", "message"),
    [
        ({"data": np.where(np.arange(40) == 3, np.inf, make_mixture()[0])}, {"ratio": 2}, InvalidDataError, "1024 pixels hold infinite values"),
        ({"data": np.full((32, 32, 40), np.nan, np.float32)}, {"ratio": 2}, InvalidDataError, "every pixel is no-data"),
        ({}, {"ratio": 64}, ParameterError, "smaller than the ratio 64"),
        ({}, {}, ParameterError, "a ratio .* and/or an SRF"),
        ({}, {"srf": "ikonos", "sigma": 1.0}, ParameterError, "need a ratio"),
        ({"wavelengths": np.linspace(2000, 2400, 40)}, {"srf": "nikon_d700"}, SpectralResponseError, "does not overlap"),
        ({}, {"ratio": 4, "snr": float("inf")}, ParameterError, "SNR must be a finite number"),
    ],
)
def test_errors_carry_no_path(change, options, error, message):
    with pytest.raises(error, match=message) as caught:
        simulate_pair(scene(**change), **options)
    assert caught.value.path is None


def test_shift_misregisters_the_lr_cube_only(mixture):
    """--shift samples the LR cube ROWS, COLS HR pixels off: the same as degrading the shifted reference,
    and an integer shift equals a moved decimation; the MSI stays on the reference's grid."""
    from hsiuu_cli import degrade
    from hsiuu_cli.simulate import simulate_pair

    cube, _, _, wavelengths = mixture
    source = Cube(cube, wavelengths=wavelengths)
    plain = simulate_pair(source, ratio=4, srf="nikon_d700")
    moved = simulate_pair(source, ratio=4, srf="nikon_d700", shift=(1.0, 2.0))
    np.testing.assert_array_equal(moved.msi.data, plain.msi.data)
    expected = degrade.spatial_degrade(degrade.shift(cube, -1.0, -2.0), 4)
    np.testing.assert_allclose(moved.lr.data, expected, rtol=1e-6)
    # away from the edges an integer shift is sampling 1 row and 2 columns further
    blurred = degrade.blur(cube, degrade.gaussian_psf(2.0))
    np.testing.assert_allclose(moved.lr.data[2:-2, 2:-2], blurred[2::4, 3::4][:8, :8][2:-2, 2:-2], rtol=1e-4, atol=1e-6)
    with pytest.raises(ParameterError, match="need a ratio"):
        simulate_pair(source, srf="nikon_d700", shift=(1.0, 0.0))


def test_degrade_shift_moves_content_and_keeps_no_data():
    from hsiuu_cli import degrade

    image = np.zeros((20, 20), np.float32)
    image[8:12, 8:12] = 1.0
    moved = degrade.shift(image, 2.0, -3.0)
    np.testing.assert_allclose(moved[10:14, 5:9], 1.0, atol=1e-5)
    assert abs(moved.sum() - image.sum()) < 1e-3
    half = degrade.shift(image, 0.5, 0.0)
    assert 0.3 < half[8, 10] < 0.7 and half[12, 10] > 0.3
    holed = np.ones((10, 10, 2), np.float32)
    holed[4:6, 4:6] = np.nan
    out = degrade.shift(holed, 1.0, 0.0)
    assert np.isnan(out[5:7, 4:6]).all() and np.isfinite(out[:4]).all()
    with pytest.raises(ParameterError):
        degrade.shift(image, np.nan, 0.0)


def test_cli_shift_option(runner, tmp_path, mixture):
    from hsiuu_cli.cli.app import app
    from hsiuu_cli.io import read_cube, write_cube

    cube, _, _, wavelengths = mixture
    path = write_cube(Cube(cube, wavelengths=wavelengths), tmp_path / "scene.hdr")
    plain = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "-o", str(tmp_path / "a")])
    moved = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "--shift", "1.5,-1", "-o", str(tmp_path / "b")])
    assert plain.exit_code == 0 and moved.exit_code == 0, moved.output
    assert "shifted 1.5, -1 px" in moved.stderr
    assert not np.allclose(read_cube(tmp_path / "a_lr.hdr").data, read_cube(tmp_path / "b_lr.hdr").data)
    for bad in ("1,2,3", "x", "1;2"):
        result = runner.invoke(app, ["simulate", str(path), "--ratio", "4", "--shift", bad, "-o", str(tmp_path / "c")])
        assert result.exit_code == 2
    assert runner.invoke(app, ["simulate", str(path), "--srf", "nikon_d700", "--shift", "1,1", "-o", str(tmp_path / "d")]).exit_code == 2
    assert not list(tmp_path.glob("c_*")) and not list(tmp_path.glob("d_*"))
