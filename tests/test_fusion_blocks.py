"""Fusion in blocks of HR rows (hsiuu_cli.fusion.blocks), without Dask: the blocks in any order and
in other processes give the bytes of the whole-grid run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import gaussian_srf, make_mixture

import hsiuu_cli.fusion.blocks as blocks
from hsiuu_cli import degrade
from hsiuu_cli.cube import Cube
from hsiuu_cli.fusion import fuse, plan_fusion
from hsiuu_cli.fusion.cubes import RowFile
from hsiuu_cli.fusion.blocks import ArrayOut, Sinks, in_turn, run_blocks
from hsiuu_cli.io import write_cube
from hsiuu_cli.io.scene_rows import SceneFile


@pytest.fixture(scope="module")
def pair():
    cube, _, _, wavelengths = make_mixture(48, 40, 24, 3, seed=2)
    srf = gaussian_srf(wavelengths, [500, 800, 1300, 2000], 150)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf)
    msi[5:9, 10:20] = np.nan  # gaps: the no-data mask and the fusion's fill are per block too
    return lr, msi, srf


def small_strips(monkeypatch, blocks_of: int | None):
    """Strips of one ratio's rows (4), and blocks of ``blocks_of`` strips (None: one block)."""
    monkeypatch.setattr(blocks, "STRIP_BYTES", 1)
    if blocks_of is not None:
        monkeypatch.setattr(blocks, "BLOCK_VALUES", blocks_of * 4 * 40 * 24)


def shuffled(task, plan, on_result):
    """The blocks of a pass in reverse order, each from a pickled copy of the plan (another process's
    view) and each run twice, as a block is rerun when its worker died after writing."""
    for index, (start, stop) in list(enumerate(plan.blocks))[::-1]:
        task(pickle.loads(pickle.dumps(plan)), start, stop)
        on_result(index, task(pickle.loads(pickle.dumps(plan)), start, stop))


@pytest.mark.parametrize("options", [{}, {"consistency": False}, {"method": "bicubic"}], ids=["default", "no consistency", "bicubic"])
def test_blocks_give_the_bytes_of_one_block(pair, monkeypatch, tmp_path, options):
    lr, msi, srf = pair
    one_strip = fuse(lr, msi, srf, seed=0, epochs=20, **options).fused
    small_strips(monkeypatch, None)
    whole = fuse(lr, msi, srf, seed=0, epochs=20, return_abundances=options.get("method") != "bicubic", **options)
    small_strips(monkeypatch, 3)  # 12 strips in 4 blocks of 3
    fit = plan_fusion(lr, msi, srf, seed=0, epochs=20, return_abundances=options.get("method") != "bicubic", **options)
    assert [stop - start for start, stop in fit.plan.blocks] == [12, 12, 12, 12]
    out = RowFile(tmp_path / "out.f32", fit.plan.shape)
    abundances = None if whole.abundances is None else RowFile(tmp_path / "maps.f32", whole.abundances.shape)
    # the passes alternate between the output and a scratch file, so that a rerun reads what it read
    fit.plan.sinks = Sinks(ArrayOut(out), None if abundances is None else ArrayOut(abundances),
                           ArrayOut(RowFile(tmp_path / "passes.f32", fit.plan.shape)))
    # blocks run in reverse order, twice each, each time from a pickled copy of the plan (as on
    # another process, which opens the same files)
    checks = run_blocks(fit.plan, shuffled)
    out = out[0 : out.shape[0]]
    abundances = None if abundances is None else abundances[0 : abundances.shape[0]]
    result = fit.result(out, abundances, checks)
    assert out.tobytes() == whole.fused.tobytes()
    # the strips' halos are right: the whole grid as one strip differs only by the rounding of the
    # network's batches and of the LR sums (carried further by the refit's training on the result)
    scale = float(np.nanmax(np.abs(one_strip)))
    np.testing.assert_allclose(out, one_strip, rtol=1e-3, atol=1e-4 * scale)
    assert np.isnan(out[5:9, 10:20]).all() and np.isfinite(out[20:]).all()
    if abundances is not None:
        assert abundances.tobytes() == whole.abundances.tobytes()
    without_time = {key: value for key, value in result.info.items() if key != "seconds"}
    assert without_time == {key: value for key, value in whole.info.items() if key != "seconds"}
    # the guard's checks, from the blocks' sums, are those of the whole grid (without consistency
    # on this pair they fail, and pass 3 writes every block again, blended)
    assert ("checks" in result.info) == (options.get("method") != "bicubic")


def test_a_blended_result_is_written_by_the_final_pass(pair, monkeypatch):
    """When the guard blends with bicubic, the final pass blends each block: the same bytes as blending the whole."""
    import hsiuu_cli.fusion.guard as guard

    lr, msi, srf = pair
    monkeypatch.setattr(guard, "ERROR_FLOOR", -1e6)  # every check fails
    monkeypatch.setattr(guard, "safe_alpha", lambda *args, **kwargs: 0.25)
    small_strips(monkeypatch, None)
    whole = fuse(lr, msi, srf, seed=0, epochs=20)
    assert whole.info["guard"] == "blended (0.25 fused)"
    small_strips(monkeypatch, 2)
    passes = []

    def counted(task, plan, on_result):
        passes.append(task.__name__)
        in_turn(task, plan, on_result)

    fit = plan_fusion(lr, msi, srf, seed=0, epochs=20)
    out = np.empty(fit.plan.shape, dtype=np.float32)
    fit.plan.sinks = Sinks(ArrayOut(out))
    checks = run_blocks(fit.plan, counted)
    # the first round makes the refit's targets, the second the result
    assert passes == ["first_pass", "consistency_pass", "first_pass", "consistency_pass", "final_pass"]
    assert checks.alpha == 0.25 and out.tobytes() == whole.fused.tobytes()


def test_msi_rows_pickle_as_their_file_and_window(tmp_path):
    values = np.arange(6 * 5 * 2, dtype=np.float32).reshape(6, 5, 2)
    values[2, 1] = -9.0
    path = write_cube(Cube(values, nodata=-9.0), tmp_path / "msi.hdr")
    rows = blocks.MsiRows(SceneFile(path=path), (1, 2, 4, 3))
    copy = pickle.loads(pickle.dumps(rows))
    read, valid = copy.read(1, 3)
    np.testing.assert_array_equal(read, values[2:4, 2:5])
    assert valid.tolist() == [[True, True, True], [True, True, True]]
    assert copy.read(3, 9)[0].shape == (1, 3, 2)  # the window's last row
    _, valid = blocks.MsiRows(SceneFile(path=path), (0, 0, 6, 5)).read(2, 3)
    assert valid.tolist() == [[True, False, True, True, True]]
