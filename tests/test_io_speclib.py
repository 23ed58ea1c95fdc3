"""Spectral libraries: ENVI .sli and CSV, both ways, and their bad-input errors."""

from __future__ import annotations

import numpy as np
import pytest

from hsiuu_cli.errors import CubeFormatError, CubeReadError, CubeWriteError, OutputExistsError, ShapeMismatchError
from hsiuu_cli.io import SpectralLibrary, read_library, write_library
from hsiuu_cli.io import envi


@pytest.fixture
def library(mixture) -> SpectralLibrary:
    _, endmembers, _, wavelengths = mixture
    return SpectralLibrary(spectra=endmembers, names=["soil, dry", "tree {a}", "water"], wavelengths=wavelengths)


@pytest.mark.parametrize("name", ["lib.sli", "lib.csv"])
def test_round_trip(tmp_path, library, name):
    written = write_library(library, tmp_path / name)
    assert all(p.exists() for p in written)
    back = read_library(written[0])
    np.testing.assert_array_equal(back.spectra, library.spectra)
    np.testing.assert_array_equal(back.wavelengths, library.wavelengths)
    expected = library.names if name.endswith(".csv") else ["soil; dry", "tree (a)", "water"]
    assert back.names == expected


def test_sli_header_is_an_envi_spectral_library(tmp_path, library):
    data, header = write_library(library, tmp_path / "lib.sli")
    assert (data.name, header.name) == ("lib.sli", "lib.hdr")
    fields = envi.read_header(header)
    assert fields["file type"] == "ENVI Spectral Library"
    assert (fields["samples"], fields["lines"], fields["bands"]) == ("40", "3", "1")
    assert read_library(header).names == read_library(data).names


def test_library_without_wavelengths(tmp_path):
    lib = SpectralLibrary(spectra=np.eye(3, 5, dtype=np.float32), names=["a", "b", "c"])
    for name in ("x.sli", "x.csv"):
        back = read_library(write_library(lib, tmp_path / name)[0])
        assert back.wavelengths is None
        np.testing.assert_array_equal(back.spectra, lib.spectra)


def test_inconsistent_library_is_a_shape_error():
    with pytest.raises(ShapeMismatchError, match="2 names for 3 spectra"):
        SpectralLibrary(spectra=np.eye(3, 5), names=["a", "b"])
    with pytest.raises(ShapeMismatchError, match="4 wavelengths for 5 bands"):
        SpectralLibrary(spectra=np.eye(3, 5), names=["a", "b", "c"], wavelengths=[1.0, 2.0, 3.0, 4.0])


def test_existing_library_is_refused(tmp_path, library):
    write_library(library, tmp_path / "lib.csv")
    with pytest.raises(OutputExistsError, match="lib.csv"):
        write_library(library, tmp_path / "lib.csv")
    write_library(library, tmp_path / "lib.csv", overwrite=True)
    with pytest.raises(CubeWriteError, match="'.txt'"):
        write_library(library, tmp_path / "lib.txt")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected a header"),
        ("wavelength_nm,a\n400,x\n", "not a number"),
        ("wavelength_nm,a,b\n400,1\n", "every row needs 3 values"),
        ("colour,a\n400,1\n", "first column must be 'wavelength_nm'"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CubeFormatError, match=message) as err:
        read_library(path)
    assert "bad.csv" in str(err.value)


def test_bad_sli(tmp_path, library):
    data, header = write_library(library, tmp_path / "lib.sli")
    with pytest.raises(CubeReadError, match="file not found"):
        read_library(tmp_path / "missing.sli")
    header.write_text(header.read_text().replace("spectra names = { soil; dry , tree (a) , water }", "spectra names = { a , b }"))
    with pytest.raises(CubeFormatError, match="2 spectra names for 3 spectra"):
        read_library(data)
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(CubeReadError, match="truncated"):
        read_library(header)


@pytest.mark.realdata
def test_shared_libraries_agree_in_both_formats(shared_data):
    folder = shared_data / "unmixing" / "samson"
    sli, csv = read_library(folder / "endmembers_gt.sli"), read_library(folder / "endmembers_gt.csv")
    assert sli.names == csv.names == ["rock", "tree", "water"]
    np.testing.assert_allclose(sli.spectra, csv.spectra, atol=1e-6)
    np.testing.assert_allclose(sli.wavelengths, csv.wavelengths, atol=1e-4)
    usgs = read_library(shared_data / "library" / "usgs_1995_aviris224.sli")
    assert usgs.spectra.shape == (len(usgs.names), 224)
