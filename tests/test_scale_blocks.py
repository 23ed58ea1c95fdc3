"""Scale-out pieces that need no cluster: the --scheduler value, Dask kept off the default path,
positional ENVI writes, the block plan."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hsiuu_cli.cli.app import app
from hsiuu_cli.cluster import parse_scheduler
from hsiuu_cli.cluster.superres import plan_blocks
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import CubeWriteError, ParameterError
from hsiuu_cli.io import open_envi_windows, read_cube, write_cube
from hsiuu_cli.io.atomic import remove_temporaries, temporary_path, temporary_tag

from conftest import make_mixture


@pytest.mark.parametrize(
    ("value", "kind", "target", "workers"),
    [
        ("local:3", "local", None, 3),
        ("LOCAL", "local", None, None),
        ("tcp://10.0.0.5:8786", "address", "tcp://10.0.0.5:8786", None),
        ("node12:8786", "address", "tcp://node12:8786", None),
        ("tls://node:8786", "address", "tls://node:8786", None),
        ("scheduler.json", "file", "scheduler.json", None),
    ],
)
def test_scheduler_values(value, kind, target, workers):
    spec = parse_scheduler(value)
    assert (spec.kind, spec.target, spec.workers) == (kind, target, workers)


@pytest.mark.parametrize("value", ["local:0", "local:x", "node", "", "http//x"])
def test_bad_scheduler_values(value):
    with pytest.raises(ParameterError):
        parse_scheduler(value)


def test_bad_scheduler_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(app, ["superres", str(tmp_path / "x.hdr"), "-s", "2", "--scheduler", "local:none"])
    assert result.exit_code == 2
    assert "local:N" in result.output


def test_scheduler_from_the_environment(runner, tmp_path):
    result = runner.invoke(app, ["superres", str(tmp_path / "x.hdr"), "-s", "2"], env={"HSIUU_SCHEDULER": "local:0"})
    assert result.exit_code == 2  # the variable was read (and its value refused)
    result = runner.invoke(app, ["superres", str(tmp_path / "x.hdr"), "-s", "2", "--method", "bicubic"], env={"HSIUU_SCHEDULER": ""})
    assert result.exit_code == 1 and "file not found" in result.output  # empty: runs here


def test_missing_dask_is_a_one_line_error(runner, tmp_path, monkeypatch):
    cube, _, _, wavelengths = make_mixture(rows=8, cols=8, bands=5)
    write_cube(Cube(cube, wavelengths=wavelengths), tmp_path / "a.hdr")
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    for args in (
        ["superres", str(tmp_path / "a.hdr"), "-s", "2", "--method", "bicubic", "-o", str(tmp_path / "o.hdr")],
        ["evaluate", str(tmp_path / "a.hdr"), "-r", str(tmp_path / "a.hdr")],
    ):
        result = runner.invoke(app, [*args, "--scheduler", "local:2"])
        assert result.exit_code == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "pip install 'hsiuu[dask]'" in lines[0], result.stderr
    assert not (tmp_path / "o.img").exists()


def test_commands_without_scheduler_never_import_dask():
    code = (
        "import sys\n"
        "from hsiuu_cli.cli.app import app\n"
        "for args in (['--help'], ['superres', '--help'], ['unmix', '--help'], ['fuse', '--help']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# Positional ENVI writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize(("dtype", "byte_order", "width"), [("float32", 0, 6), ("int16", 1, 17)])
def test_windows_in_any_order_equal_a_whole_write(tmp_path, interleave, dtype, byte_order, width):
    cube, _, _, wavelengths = make_mixture(rows=23, cols=17, bands=6, seed=3)
    values = (cube * 1000).astype(dtype)
    source = Cube(values, wavelengths=wavelengths, description="windows")
    whole = write_cube(source, tmp_path / "whole.hdr", interleave=interleave, creation_options={"BYTE_ORDER": str(byte_order)})
    # windows of 4 rows × `width` columns (17: whole rows), the last ones cut by the edges
    windows = [(r, c, min(4, 23 - r), min(width, 17 - c)) for r in range(0, 23, 4) for c in range(0, 17, width)]
    rng = np.random.default_rng(0)
    with open_envi_windows(source, tmp_path / "parts.hdr", interleave=interleave,
                           creation_options={"BYTE_ORDER": str(byte_order)}) as target:
        assert not (tmp_path / "parts.img").exists()  # under a temporary name until the end
        for index in rng.permutation(len(windows)):
            r, c, h, w = windows[index]
            target.write(r, c, values[r : r + h, c : c + w])
        # what a later pass of the same run reads back: native byte order, every band
        back = target.read_rows(5, 19)
        assert back.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(back, values[5:19])
    assert (tmp_path / "parts.img").read_bytes() == (tmp_path / "whole.img").read_bytes()
    assert (tmp_path / "parts.hdr").read_text() == whole.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts.hdr", "parts.img", "whole.hdr", "whole.img"]


def test_windows_output_goes_on_error_and_refuses_bad_windows(tmp_path):
    source = Cube(np.zeros((4, 5, 2), np.float32))
    with pytest.raises(CubeWriteError, match="does not fit"):
        with open_envi_windows(source, tmp_path / "out.hdr") as target:
            target.write(3, 0, np.ones((2, 5, 2), np.float32))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt):
        with open_envi_windows(source, tmp_path / "out.hdr") as target:
            target.write(0, 0, np.ones((4, 5, 2), np.float32))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CubeWriteError, match="cannot write"):
        target.write(0, 0, np.ones((4, 5, 2), np.float32))  # the file is gone: no stray file is made
    assert list(tmp_path.iterdir()) == []


def test_windows_refuse_the_input_and_foreign_options(tmp_path):
    path = write_cube(Cube(np.zeros((4, 5, 2), np.float32)), tmp_path / "in.hdr")
    cube = read_cube(path)
    with pytest.raises(CubeWriteError, match="output is the input"):
        with open_envi_windows(cube, path, overwrite=True):
            pass
    with pytest.raises(CubeWriteError, match="COMPRESS"):
        with open_envi_windows(cube, tmp_path / "o.hdr", creation_options={"COMPRESS": "DEFLATE"}):
            pass


def test_tagged_temporaries_are_found_and_removed(tmp_path):
    with temporary_tag("abc123"):
        tagged = temporary_path(tmp_path / "scene.hdr")
    other = temporary_path(tmp_path / "scene.hdr")
    tagged.write_text("x")
    other.write_text("x")
    assert remove_temporaries(tmp_path, "abc123") == [tagged]
    assert not tagged.exists() and other.exists()


@pytest.mark.parametrize(("rows", "cols", "tile", "block_bytes"), [(100, 70, 16, 1), (100, 70, 16, 10**9), (9, 300, 8, 2**20)])
def test_block_plan_covers_every_tile_once(rows, cols, tile, block_bytes):
    blocks = plan_blocks(rows, cols, 40, 4, tile, 4, block_bytes)
    covered = np.zeros((rows, cols), int)
    for block in blocks:
        assert block.rows[0] % tile == 0 and block.cols[0] % tile == 0
        assert block.rows[1] - block.rows[0] <= tile
        covered[slice(*block.rows), slice(*block.cols)] += 1
    assert (covered == 1).all()
    assert [b.rows[0] for b in blocks] == sorted(b.rows[0] for b in blocks)


def test_a_resolver_given_the_scene_state_makes_the_same_tiles():
    """What a cluster worker does: build its resolver from the client's SceneState instead of the
    scene, and compute the same pixels (the dark-pixel level of the detail damping included)."""
    from hsiuu_cli.superres import load_model
    from hsiuu_cli.superres.inference import SuperResolvedArray, SuperResolver

    cube, _, _, wavelengths = make_mixture(rows=40, cols=36, bands=12, seed=3)
    scene = Cube(cube, wavelengths=wavelengths)
    model = load_model("agnostic_x2")
    client = SuperResolver(scene, 2, model, tile=16)
    worker = SuperResolver(scene, 2, model, tile=16, calibrate=False, state=client.state())
    assert worker.gain == client.gain
    whole = np.asarray(SuperResolvedArray(client, np.dtype("float32"), None, None))
    from_state = np.asarray(SuperResolvedArray(worker, np.dtype("float32"), None, None))
    np.testing.assert_array_equal(from_state, whole)
