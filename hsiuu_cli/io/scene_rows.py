"""A scene read a block of rows at a time, here or by a cluster's workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import Cube


class SceneFile:
    """A cube, and the file it was read from.

    With a ``path`` it pickles as that path: a worker opens the scene itself. Where the data is a
    memory map (uncompressed ENVI), each :meth:`rows` maps the file afresh
    (:func:`hsiuu_cli.io.envi.remap`): a block reads only its rows, and the pages it read leave the
    process's resident memory with it, rather than the whole scene piling up in one map kept over
    every block (which a Dask nanny counts against a worker's memory limit).
    """

    def __init__(self, cube: Cube | None = None, path: str | Path | None = None):
        if cube is None and path is None:
            raise ValueError("a SceneFile needs a cube or a path")
        self._cube, self.path, self._layout = cube, None if path is None else Path(path), None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _cube=None, _layout=None) if self.path is not None else dict(self.__dict__)

    @property
    def cube(self) -> Cube:
        if self._cube is None:
            from . import read_cube

            self._cube = read_cube(self.path)
        return self._cube

    def rows(self, start: int, stop: int) -> Cube:
        """Rows ``start:stop`` as a cube with the scene's metadata."""
        data = self.cube.data
        if self.path is not None and isinstance(data, np.memmap):
            from .envi import open_layout, remap

            if self._layout is None:
                self._layout = open_layout(self.path)
            data = remap(self._layout)
        return self.cube.replace(data=data[start:stop])
