"""Typed errors. Each also subclasses the built-in a Python caller would expect.

The CLI turns any :class:`HsiuuError` into a one-line message and exit code 1;
the message must name the file (when there is one) and the problem.
"""

from __future__ import annotations

from pathlib import Path


class HsiuuError(Exception):
    """Base of every error the tool reports to users without a traceback."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class CubeReadError(HsiuuError, OSError):
    """A cube, header or library could not be read (missing, truncated, garbage)."""


class CubeFormatError(HsiuuError, ValueError):
    """A file was read but its content is not a valid cube/header (bad fields, sizes, types)."""


class CubeWriteError(HsiuuError, OSError):
    """An output could not be written (unwritable directory, disk full, bad creation option)."""


class OutputExistsError(HsiuuError, FileExistsError):
    """The output exists and ``--overwrite`` was not given."""


class InvalidDataError(HsiuuError, ValueError):
    """Pixel values the method cannot use (NaN/Inf where not allowed, all no-data, constant)."""


class ShapeMismatchError(HsiuuError, ValueError):
    """Two inputs that must agree in shape, grid or band count do not."""


class GridError(HsiuuError, ValueError):
    """Two rasters are not on compatible grids (CRS, ratio, origin)."""


class SpectralResponseError(HsiuuError, ValueError):
    """A spectral response function cannot be used with a cube (unknown name, no overlap)."""


class ModelError(HsiuuError, ValueError):
    """A model file is missing, tampered with, or does not fit the scene."""


class ParameterError(HsiuuError, ValueError):
    """A parameter value the method cannot work with (K too large, scale unsupported)."""


class ClusterError(HsiuuError, ConnectionError):
    """A Dask scheduler cannot be reached, or was lost during a run (``--scheduler``)."""


class MissingExtraError(HsiuuError, ImportError):
    """An optional feature's packages are not installed (``pip install 'hsiuu[dask]'``)."""
