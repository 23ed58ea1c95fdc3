"""Spectral response functions: the built-in tables, custom CSVs, band selection and resampling."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from hsiuu_cli.errors import SpectralResponseError
from hsiuu_cli.srf import SpectralResponse, list_srfs, load_srf, srf_coverage, srf_matrix

BUILTIN_BANDS = {
    "sentinel2a": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"],
    "landsat8": ["coastal", "blue", "green", "red", "nir", "swir1", "swir2", "pan"],
    "pleiades1a": ["pan", "blue", "green", "red", "nir"],
    "ikonos": ["pan", "blue", "green", "red", "nir"],
    "nikon_d700": ["red", "green", "blue"],
}
SHARED_FILES = {
    "sentinel2a": "sentinel2a_msi.csv",
    "landsat8": "landsat8_oli.csv",
    "pleiades1a": "pleiades1a.csv",
    "ikonos": "ikonos.csv",
    "nikon_d700": "nikon_d700.csv",
}


def triangle(centre: float, half_width: float, name: str = "tri") -> SpectralResponse:
    """A triangular response on a 1 nm grid."""
    wavelengths = np.arange(300.0, 2501.0)
    response = np.clip(1 - np.abs(wavelengths - centre) / half_width, 0, None)
    return SpectralResponse(wavelengths, response[:, None], [name], "test", name=name)


@pytest.mark.parametrize("name", sorted(BUILTIN_BANDS))
def test_builtin_tables_load_with_their_bands(name):
    srf = load_srf(name)
    assert srf.band_names == BUILTIN_BANDS[name]
    assert srf.responses.shape == (srf.wavelengths.size, len(BUILTIN_BANDS[name]))
    assert (srf.responses >= 0).all()
    assert np.all(np.diff(srf.wavelengths) > 0)
    # the source tables are peak-normalised
    assert np.allclose(srf.responses.max(axis=0), 1.0, atol=0.01)
    assert srf.source and name in list_srfs()


@pytest.mark.parametrize("name", sorted(BUILTIN_BANDS))
def test_builtin_tables_hold_the_agency_values(shared_data, name):
    with open(shared_data / "srf" / SHARED_FILES[name]) as handle:
        rows = list(csv.reader(handle))
    source = np.array([[float(v) for v in row] for row in rows[1:]])
    srf = load_srf(name)
    assert rows[0][1:] == srf.band_names
    # every value shipped is the agency's; rows left out carry no response
    index = np.searchsorted(source[:, 0], srf.wavelengths)
    assert np.array_equal(source[index, 0], srf.wavelengths)
    assert np.array_equal(source[index, 1:], srf.responses)
    dropped = np.setdiff1d(np.arange(source.shape[0]), index)
    assert not source[dropped, 1:].any()


def test_aliases_and_band_selection():
    assert load_srf("S2A").name == "sentinel2a"
    assert load_srf("sentinel2a_msi").bands == 12
    assert load_srf("landsat8_oli").name == "landsat8"
    subset = load_srf("ikonos:Blue,green,red,NIR")
    assert subset.band_names == ["blue", "green", "red", "nir"]
    full = load_srf("ikonos")
    assert np.array_equal(subset.responses, full.responses[:, [1, 2, 3, 4]])
    reordered = full.select(["nir", "pan"])
    assert reordered.band_names == ["nir", "pan"]
    # selecting from a selection names the table once
    assert subset.select(["red", "nir"]).name == "ikonos:red,nir" and subset.base_name == "ikonos"


def test_unknown_names_and_bands_are_clear_errors():
    with pytest.raises(SpectralResponseError, match="unknown SRF 'worldview9'.*ikonos"):
        load_srf("worldview9")
    with pytest.raises(SpectralResponseError, match="no band 'B13'.*B8A"):
        load_srf("sentinel2a:B2,B13")
    with pytest.raises(SpectralResponseError, match="repeats"):
        load_srf("ikonos:red,red")


def test_custom_csv_in_nm_and_um(tmp_path):
    path = tmp_path / "my_pan.csv"
    path.write_text("# made-up pan band\nwavelength_nm,pan\n500,0\n550,1\n600,0.5\n650,0\n")
    srf = load_srf(path)
    assert srf.band_names == ["pan"] and srf.source.endswith(str(path))
    assert np.array_equal(srf.wavelengths, [500, 550, 600, 650])
    microns = tmp_path / "um.csv"
    microns.write_text("wavelength_um,a,b\n0.5,1,0\n0.6,0,1\n0.7,0,0\n")
    srf = load_srf(f"{microns}:b")
    assert np.allclose(srf.wavelengths, [500, 600, 700]) and srf.band_names == ["b"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("band,a\n1,2\n3,4\n", "header must start with 'wavelength_nm'"),
        ("wavelength_nm,a\n500,x\n600,1\n", "non-numeric"),
        ("wavelength_nm,a\n500,-1\n600,1\n", "negative"),
        ("wavelength_nm,a,b\n500,0,1\n600,0,1\n", "no response"),
        ("wavelength_nm,a\n500,1\n500,1\n", "repeats a wavelength"),
        ("wavelength_nm,a\n500,1\n", "at least 2 rows"),
        ("wavelength_nm,a\n500,1,3\n600,1\n", "2 values"),
    ],
)
def test_bad_custom_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SpectralResponseError, match=message) as caught:
        load_srf(path)
    assert caught.value.path == path


def test_missing_csv_names_the_file(tmp_path):
    with pytest.raises(SpectralResponseError, match="not found") as caught:
        load_srf(tmp_path / "absent.csv")
    assert caught.value.path == tmp_path / "absent.csv"


def test_matrix_without_fwhm_samples_the_response_at_band_centres():
    wavelengths = np.arange(400.0, 701.0, 10.0)
    matrix = srf_matrix(triangle(550, 50), wavelengths)
    expected = np.clip(1 - np.abs(wavelengths - 550) / 50, 0, None)
    assert matrix.shape == (31, 1)
    assert np.allclose(matrix[:, 0], expected / expected.sum())


def test_matrix_with_fwhm_integrates_against_gaussian_bands():
    # a 100 nm boxcar: bands well inside it see all of their Gaussian, the band on its edge half
    wavelengths = np.arange(450.0, 651.0, 10.0)
    grid = np.arange(300.0, 1201.0)
    box = SpectralResponse(grid, ((grid >= 500) & (grid <= 600)).astype(float)[:, None], ["box"], "test", name="box")
    matrix = srf_matrix(box, wavelengths, np.full(wavelengths.size, 10.0))
    weights = matrix[:, 0] / matrix[:, 0].max()
    inside = (wavelengths >= 520) & (wavelengths <= 580)
    assert np.allclose(weights[inside], 1.0, atol=1e-3)
    # the tabulated edge ramps from 499 to 500 nm, i.e. sits at 499.5 nm: weight Φ(0.5 / σ)
    sigma = 10.0 / (2 * np.sqrt(2 * np.log(2)))
    assert weights[wavelengths == 500][0] == pytest.approx(0.5 * (1 + math.erf(0.5 / sigma / np.sqrt(2))), abs=0.01)
    assert weights[wavelengths == 470][0] < 1e-3
    assert matrix.sum() == pytest.approx(1.0)


def test_matrix_with_narrow_fwhm_approaches_sampling():
    wavelengths = np.arange(400.0, 701.0, 10.0)
    sampled = srf_matrix(triangle(550, 50), wavelengths)
    narrow = srf_matrix(triangle(550, 50), wavelengths, np.full(wavelengths.size, 2.0))
    # the largest weight is 0.2; a 2 nm Gaussian only rounds the triangle's tip
    assert np.abs(sampled - narrow).max() < 0.02 * sampled.max()


def test_builtin_matrix_columns_sum_to_one():
    wavelengths = np.linspace(380, 2500, 212)
    for name in list_srfs():
        matrix = srf_matrix(load_srf(name), wavelengths, np.full(wavelengths.size, 10.0))
        assert matrix.shape == (212, load_srf(name).bands)
        assert np.allclose(matrix.sum(axis=0), 1.0)
        assert (matrix >= 0).all()


def test_no_overlap_is_an_error_naming_the_srf():
    with pytest.raises(SpectralResponseError, match=r"SRF 'nikon_d700' \(377–948 nm\) does not overlap .*2000–2400 nm"):
        srf_matrix(load_srf("nikon_d700"), np.linspace(2000, 2400, 41))


def test_band_mostly_outside_the_cube_is_an_error():
    wavelengths = np.arange(400.0, 1001.0, 10.0)  # VNIR cube: the SWIR bands of Sentinel-2 fall outside
    with pytest.raises(SpectralResponseError, match=r"band 'B11' of SRF 'sentinel2a'.* 0% of its response"):
        srf_matrix(load_srf("sentinel2a"), wavelengths)
    # a band straddling the cube's edge: the range ends half a band spacing past 540 nm, 41% inside
    with pytest.raises(SpectralResponseError, match="band 'tri'.*mostly outside.*41% of its response is within 395–545 nm"):
        srf_matrix(triangle(550, 50), np.arange(400.0, 541.0, 10.0))
    assert srf_matrix(load_srf("sentinel2a:B2,B3,B4,B8"), wavelengths).shape == (61, 4)


def test_band_partly_outside_the_cube_warns_and_uses_the_part_inside():
    # coverage ends half a band spacing past 550 nm, so 59.5% of the triangle is inside: warned, not refused
    wavelengths = np.arange(400.0, 551.0, 10.0)
    heard: list[str] = []
    matrix = srf_matrix(triangle(550, 50), wavelengths, warn=heard.append)
    assert heard == ["SRF band 'tri' of 'tri': 60% of its response falls on the cube's bands, 40% outside 395–555 nm (left out)"]
    inside = np.interp(wavelengths, triangle(550, 50).wavelengths, triangle(550, 50).responses[:, 0])
    np.testing.assert_allclose(matrix[:, 0], inside / inside.sum())
    with pytest.raises(SpectralResponseError, match="at least 70% needed"):
        srf_matrix(triangle(550, 50), wavelengths, min_in_range=0.7)


def test_band_between_narrow_cube_bands_is_named_as_such():
    """Bands 1 nm wide every 69 nm span the SRF's range but leave Sentinel-2's narrow B5 untouched."""
    wavelengths = np.linspace(400.0, 2400.0, 30)
    with pytest.raises(SpectralResponseError, match="band 'B5' of SRF 'sentinel2a' falls between the cube's bands"):
        srf_matrix(load_srf("sentinel2a"), wavelengths, np.ones(30))


@pytest.mark.parametrize("fwhm", [None, 10.0])
def test_band_over_a_removed_water_window_is_interpolated_across_it(fwhm):
    # Hyperion + ALI: ALI's SWIR band (2080–2350 nm) falls partly into the cube's removed bands
    wavelengths = np.r_[np.arange(1000.0, 1340.0, 10.0), np.arange(1460.0, 1800.0, 10.0)]
    widths = None if fwhm is None else np.full(wavelengths.size, fwhm)
    heard: list[str] = []
    matrix = srf_matrix(triangle(1400, 30), wavelengths, widths, warn=heard.append)
    assert srf_coverage(triangle(1400, 30), wavelengths, widths)["tri"] < 0.1
    assert len(heard) == 1 and "in gaps between them (interpolated across)" in heard[0] and "outside" not in heard[0]
    # the triangle sits at 1400 nm, 70 nm above the last band before the gap (1330) and 60 below the
    # first after it (1460): a spectrum linear across the gap gives those two bands 6/13 and 7/13
    edge = {1330.0: 6 / 13, 1460.0: 7 / 13}
    for centre, share in edge.items():
        assert matrix[np.flatnonzero(wavelengths == centre)[0], 0] == pytest.approx(share, abs=0.02)
    ramp = np.interp(wavelengths, [1000.0, 1800.0], [0.1, 0.9])  # a linear spectrum is simulated exactly
    assert ramp @ matrix[:, 0] == pytest.approx(np.interp(1400.0, [1000.0, 1800.0], [0.1, 0.9]), rel=2e-3)


def test_bands_with_no_gap_are_unchanged_by_the_gap_rule():
    wavelengths = np.r_[np.arange(400.0, 1340.0, 10.0), np.arange(1460.0, 2400.0, 10.0)]
    full = srf_matrix(load_srf("sentinel2a:B2,B3,B4"), wavelengths, np.full(wavelengths.size, 10.0), warn=pytest.fail)
    alone = srf_matrix(load_srf("sentinel2a:B2,B3,B4"), wavelengths[:94], np.full(94, 10.0), warn=pytest.fail)
    # to rounding: the normalising sums run over arrays of different lengths (one unit in the last place apart with numpy 2.4.6)
    np.testing.assert_allclose(full[:94], alone, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(full[94:], 0.0)


def test_overlapping_spectrometers_leave_no_false_holes():
    # AVIRIS-style: a second spectrometer starts below where the first one ends
    wavelengths = np.r_[np.arange(400.0, 680.0, 9.87), np.arange(664.14, 1000.0, 9.58)]
    coverage = srf_coverage(load_srf("sentinel2a"), wavelengths)
    for band in ["B2", "B3", "B4", "B5", "B8"]:
        assert coverage[band] > 0.999
    # FWHM a little under the spacing (as AVIRIS) also counts as contiguous
    coverage = srf_coverage(load_srf("sentinel2a"), wavelengths, np.full(wavelengths.size, 9.2))
    assert coverage["B4"] > 0.999


def test_cube_without_wavelengths_is_an_error():
    with pytest.raises(SpectralResponseError, match="no wavelengths"):
        srf_matrix(load_srf("ikonos"), None)
