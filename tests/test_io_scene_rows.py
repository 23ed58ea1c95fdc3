"""A scene read a block of rows at a time (SceneFile), as the block paths and their workers read it."""

import pickle

import numpy as np
import pytest

from hsiuu_cli.cube import Cube
from hsiuu_cli.io import read_cube, write_cube
from hsiuu_cli.io.scene_rows import SceneFile


@pytest.fixture
def scene(tmp_path):
    values = np.random.default_rng(3).integers(0, 5000, (40, 30, 7), dtype=np.int16)
    return write_cube(Cube(values, scale_factor=1000.0, nodata=0), tmp_path / "scene.hdr"), values


def test_rows_of_a_file_come_from_a_fresh_map_with_the_scene_metadata(scene):
    path, values = scene
    cube = read_cube(path)
    rows = SceneFile(cube, path).rows(10, 25)
    assert np.array_equal(rows.data, values[10:25])
    assert rows.scale_factor == 1000.0 and rows.nodata == 0
    # a fresh map: the pages a block read go with it, not with the scene's own map
    assert not np.shares_memory(rows.data, cube.data)


def test_pickles_as_its_path_and_reads_the_same_rows_there(scene):
    path, values = scene
    shipped = pickle.dumps(SceneFile(read_cube(path), path))
    assert len(shipped) < values.nbytes / 4
    assert np.array_equal(pickle.loads(shipped).rows(0, 40).data, values)


def test_a_cube_without_a_file_is_sliced_and_pickled_whole():
    values = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    scene = SceneFile(Cube(values))
    assert np.shares_memory(scene.rows(1, 3).data, values)
    assert np.array_equal(pickle.loads(pickle.dumps(scene)).rows(1, 3).data, values[1:3])
    with pytest.raises(ValueError):
        SceneFile()
