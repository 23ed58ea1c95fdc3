"""`hsiuu unmix`: outputs, formats, library mode, batch, bad input (exit codes, nothing half-written)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from affine import Affine
from conftest import make_mixture

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import SpectralLibrary, read_cube, read_library, write_cube, write_library

TRANSFORM = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4200000.0)


@pytest.fixture
def scene(tmp_path):
    """A 20×20×30 ENVI scene with wavelengths, a CRS, one NaN pixel, and its truth."""
    cube, endmembers, abundances, wavelengths = make_mixture(rows=20, cols=20, bands=30, endmembers=3, seed=2)
    cube = cube.copy()
    cube[0, 0] = np.nan
    path = tmp_path / "scene.hdr"
    write_cube(Cube(cube, wavelengths=wavelengths, crs="EPSG:32611", transform=TRANSFORM), path)
    return path, endmembers, abundances, wavelengths


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def test_unmix_writes_every_output(runner, scene, tmp_path):
    path, _, _, wavelengths = scene
    out = tmp_path / "out"
    result = invoke(runner, "unmix", path, "--endmembers", 3, "--method", "vca-fcls", "-o", out, "--quicklook")
    assert result.exit_code == 0, result.output
    for name in ("abundances.hdr", "abundances.img", "residual.hdr", "residual.img", "endmembers.sli",
                 "endmembers.hdr", "endmembers.csv", "summary.json", "quicklook.png"):
        assert (out / name).is_file(), name
        assert str(out / name) in result.stdout
    abundances = read_cube(out / "abundances.hdr")
    assert abundances.shape == (20, 20, 3)
    assert abundances.band_names == ["endmember_1", "endmember_2", "endmember_3"]
    assert abundances.transform == TRANSFORM and "32611" in abundances.crs
    assert np.isnan(abundances.data[0, 0]).all()
    np.testing.assert_allclose(np.asarray(abundances.data[1:, 1:]).sum(2), 1, atol=1e-5)
    residual = read_cube(out / "residual.hdr")
    assert residual.shape == (20, 20, 1) and np.isnan(residual.data[0, 0, 0])
    with open(out / "endmembers.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["wavelength_nm", "endmember_1", "endmember_2", "endmember_3"]
    assert len(rows) == 31
    library = read_library(out / "endmembers.sli")
    np.testing.assert_allclose(library.wavelengths, wavelengths)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "vca-fcls" and summary["skipped_pixels"] == 1 and summary["endmembers"] == 3
    assert (out / "quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*hsiuu-tmp*"))


def test_smile_with_scale_writes_the_finer_grid(runner, scene, tmp_path):
    path, truth, _, _ = scene
    out = tmp_path / "smile"
    result = invoke(runner, "unmix", path, "-k", 3, "--scale", 2, "-o", out, "--format", "GTiff", "--seed", 1)
    assert result.exit_code == 0, result.output
    coarse = read_cube(out / "abundances.tif")
    fine = read_cube(out / "abundances_x2.tif")
    assert fine.shape == (40, 40, 3) and coarse.shape == (20, 20, 3)
    assert fine.transform == Affine(15.0, 0.0, 500000.0, 0.0, -15.0, 4200000.0)
    assert np.isnan(fine.data[:2, :2]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "smile" and summary["details"]["sr_task"] is True


def test_a_projection_without_crs_keeps_its_map_info(runner, tmp_path):
    """State Plane in feet has no CRS here: the abundance maps carry the scene's own map info."""
    cube, _, _, wavelengths = make_mixture(rows=12, cols=12, bands=20, endmembers=3, seed=5)
    map_info = "{State Plane (NAD 83), 1, 1, 2000000.0, 500000.0, 3.0, 3.0, 0405, units=Feet}"
    path = tmp_path / "sp.hdr"
    write_cube(Cube(cube, wavelengths=wavelengths), path)
    path.write_text(path.read_text() + f"map info = {map_info}\n")
    assert read_cube(path).transform is not None
    result = invoke(runner, "unmix", path, "-k", 3, "--method", "vca-fcls", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert f"map info = {map_info}" in (tmp_path / "out" / "abundances.hdr").read_text()


def test_json_summary_on_stdout(runner, scene, tmp_path):
    path, _, _, _ = scene
    result = invoke(runner, "unmix", path, "-k", 3, "--method", "nfindr-fcls", "-o", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "nfindr-fcls" and summary["names"] == ["endmember_1", "endmember_2", "endmember_3"]


def test_library_mode_with_true_endmembers(runner, scene, tmp_path):
    path, truth, abundances, wavelengths = scene
    library = tmp_path / "truth.csv"
    write_library(SpectralLibrary(truth, ["soil", "grass", "water"], wavelengths), library)
    out = tmp_path / "lib"
    result = invoke(runner, "unmix", path, "--library", library, "-o", out)
    assert result.exit_code == 0, result.output
    estimated = read_cube(out / "abundances.hdr")
    assert estimated.band_names == ["soil", "grass", "water"]
    np.testing.assert_allclose(np.asarray(estimated.data)[1:, 1:], abundances[1:, 1:], atol=1e-4)


def test_library_without_overlap_fails_cleanly(runner, scene, tmp_path):
    path, truth, _, _ = scene
    library = tmp_path / "thermal.csv"
    write_library(SpectralLibrary(truth, ["a", "b", "c"], np.linspace(8000, 12000, 30)), library)
    out = tmp_path / "never"
    result = invoke(runner, "unmix", path, "--library", library, "-o", out)
    assert result.exit_code == 1
    assert "thermal.csv" in result.output and "do not overlap" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args, code",
    [
        (["--sparse"], 2),
        (["-k", "1"], 2),
        (["-k", "many"], 2),
        (["--method", "kmeans"], 2),
        (["--method", "vca-fcls", "--scale", "2"], 2),
        (["--method", "vca-fcls", "-k", "31"], 1),
    ],
)
def test_bad_options(runner, scene, tmp_path, args, code):
    path, _, _, _ = scene
    out = tmp_path / "bad"
    result = invoke(runner, "unmix", path, "-o", out, *args)
    assert result.exit_code == code, result.output
    assert not out.exists()


def test_library_conflicts_with_endmembers(runner, scene, tmp_path):
    path, truth, _, wavelengths = scene
    library = tmp_path / "lib.csv"
    write_library(SpectralLibrary(truth, ["a", "b", "c"], wavelengths), library)
    result = invoke(runner, "unmix", path, "--library", library, "-k", 3, "-o", tmp_path / "x")
    assert result.exit_code == 2


@pytest.mark.parametrize("fill", [np.nan, 0.3])
def test_nodata_or_constant_scene_fails_without_output(runner, tmp_path, fill):
    path = tmp_path / "flat.hdr"
    write_cube(Cube(np.full((8, 8, 10), fill, dtype=np.float32)), path)
    out = tmp_path / "flat_out"
    result = invoke(runner, "unmix", path, "-k", 2, "--method", "vca-fcls", "-o", out)
    assert result.exit_code == 1
    assert "flat.hdr" in result.output
    assert ("no-data" in result.output) if np.isnan(fill) else ("constant" in result.output)
    assert not out.exists()


def test_existing_outputs_need_overwrite(runner, scene, tmp_path):
    path, _, _, _ = scene
    out = tmp_path / "again"
    first = invoke(runner, "unmix", path, "-k", 3, "--method", "vca-fcls", "-o", out)
    assert first.exit_code == 0
    before = (out / "abundances.img").stat().st_mtime_ns
    second = invoke(runner, "unmix", path, "-k", 3, "--method", "vca-fcls", "-o", out)
    assert second.exit_code == 1 and "--overwrite" in second.output
    assert (out / "abundances.img").stat().st_mtime_ns == before
    third = invoke(runner, "unmix", path, "-k", 3, "--method", "vca-fcls", "-o", out, "--overwrite")
    assert third.exit_code == 0


def test_several_inputs_get_one_directory_each(runner, scene, tmp_path):
    path, _, _, _ = scene
    other = tmp_path / "other.hdr"
    cube, _, _, wavelengths = make_mixture(rows=12, cols=12, bands=30, endmembers=3, seed=4)
    write_cube(Cube(cube, wavelengths=wavelengths), other)
    out = tmp_path / "batch"
    out.mkdir()
    result = invoke(runner, "unmix", path, other, "-k", 3, "--method", "vca-fcls", "--out-dir", out)
    assert result.exit_code == 0, result.output
    assert (out / "scene_unmix" / "abundances.hdr").is_file()
    assert read_cube(out / "other_unmix" / "abundances.hdr").shape == (12, 12, 3)


def test_parallel_smile_jobs_each_get_one_thread(runner, scene, tmp_path, monkeypatch):
    """PyTorch's thread count is process-wide: jobs side by side must not race on it, so each runs on one."""
    import torch

    import hsiuu_cli.unmixing as unmixing

    path, _, _, _ = scene
    other = tmp_path / "other.hdr"
    cube, _, _, wavelengths = make_mixture(rows=12, cols=12, bands=30, endmembers=3, seed=4)
    write_cube(Cube(cube, wavelengths=wavelengths), other)
    seen: list[int] = []
    real_smile = unmixing.smile

    def recording_smile(*args, **kwargs):
        seen.append(torch.get_num_threads())  # before SMILE's own per-scene choice
        return real_smile(*args, **kwargs)

    monkeypatch.setattr(unmixing, "smile", recording_smile)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outputs = []
        for run in ("a", "b"):
            result = invoke(runner, "unmix", path, other, "-k", 3, "-j", 2, "--seed", 1, "--out-dir", tmp_path / run)
            assert result.exit_code == 0, result.output
            outputs.append([(tmp_path / run / name / "abundances.img").read_bytes() for name in ("scene_unmix", "other_unmix")])
    finally:
        torch.set_num_threads(threads)
    assert seen == [1, 1, 1, 1]
    assert outputs[0] == outputs[1]


def test_auto_endmembers_and_bad_bands(runner, tmp_path):
    cube, _, _, wavelengths = make_mixture(rows=32, cols=32, bands=40, endmembers=3, seed=2)
    sigma = np.sqrt(np.mean(cube**2) / 1e3)
    noisy = cube + np.random.default_rng(0).normal(0, sigma, cube.shape).astype(np.float32)
    bad = np.zeros(40, dtype=bool)
    bad[[0, 39]] = True
    path = tmp_path / "auto.hdr"
    write_cube(Cube(noisy, wavelengths=wavelengths, bad_bands=bad), path)
    out = tmp_path / "auto_out"
    result = invoke(runner, "unmix", path, "--method", "vca-fcls", "-o", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["endmembers"] == 3 and summary["bands_used"] == 38
    assert read_library(out / "endmembers.sli").spectra.shape == (3, 38)


def test_smile_progress_bar_has_a_real_total(runner, scene, tmp_path, monkeypatch):
    """The bar's total is the endmember stage plus SMILE's step budget, and it ends full (an early
    stop jumps to the end) — not 147/1 with a frozen clock."""
    from contextlib import contextmanager

    from hsiuu_cli.cli import unmix as unmix_cli
    from hsiuu_cli.unmixing import progress_total

    bars = []

    @contextmanager
    def recording_progress(description, total):
        bar = {"total": total, "done": 0, "calls": 0}
        bars.append(bar)

        def advance(n=1):
            bar["done"] += n
            bar["calls"] += 1

        yield advance

    monkeypatch.setattr(unmix_cli, "progress", recording_progress)
    path, _, _, _ = scene
    result = invoke(runner, "unmix", path, "-k", 3, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (bar,) = bars
    assert bar["total"] == progress_total("smile") == 251
    assert bar["done"] == bar["total"]
    assert bar["calls"] > 10  # it moves during training


def test_quicklook_lines_break_at_removed_bands():
    from hsiuu_cli.unmixing.quicklook import broken_at_gaps

    wavelengths = np.r_[np.arange(400, 1340, 10), np.arange(1450, 1800, 10), np.arange(1960, 2450, 10)]
    values = np.linspace(0, 1, wavelengths.size)
    x, y = broken_at_gaps(wavelengths[::-1], values[::-1])
    assert np.isnan(x).sum() == 2 and np.isnan(y).sum() == 2
    breaks = np.flatnonzero(np.isnan(x))
    assert x[breaks[0] - 1] == 1330 and x[breaks[0] + 1] == 1450
    assert x[breaks[1] - 1] == 1790 and x[breaks[1] + 1] == 1960
    finite = np.isfinite(x)
    np.testing.assert_array_equal(x[finite], np.sort(wavelengths))
    np.testing.assert_array_equal(y[finite], values)  # each value stays with its wavelength
    x, _ = broken_at_gaps(np.arange(1.0, 31.0), np.zeros(30))
    assert np.isfinite(x).all()  # no gap, no break


def test_quicklook_draws_no_line_across_bad_bands(runner, tmp_path, monkeypatch):
    """Through the command: the plotted spectra carry NaN breaks where bands were flagged bad."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    cube, _, _, wavelengths = make_mixture(rows=16, cols=16, bands=40, endmembers=3, seed=2)
    bad = np.zeros(40, dtype=bool)
    bad[18:24] = True
    path = tmp_path / "gaps.hdr"
    write_cube(Cube(cube, wavelengths=wavelengths, bad_bands=bad), path)
    plotted = []
    original = Axes.plot

    def recording_plot(self, *args, **kwargs):
        if len(args) >= 2:
            plotted.append(np.asarray(args[0], dtype=float))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    result = invoke(runner, "unmix", path, "-k", 3, "--method", "vca-fcls", "--quicklook", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert len(plotted) == 3
    for x in plotted:
        assert np.isnan(x).sum() == 1
        gap = int(np.flatnonzero(np.isnan(x))[0])
        assert x[gap - 1] == pytest.approx(wavelengths[17]) and x[gap + 1] == pytest.approx(wavelengths[24])
