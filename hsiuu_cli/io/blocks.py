"""Row blocks and dtype casts shared by the ENVI and GeoTIFF writers.

Cubes may be memory maps larger than RAM, so writers walk them a block of rows at a time
and cast each block on its way out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import CubeWriteError
from .atomic import raise_if_stopped

BLOCK_BYTES = 64 * 1024 * 1024

# Types a format cannot store are widened without loss rather than refused.
_WIDENED = {np.dtype(bool): np.dtype(np.uint8), np.dtype(np.float16): np.dtype(np.float32), np.dtype(np.int8): np.dtype(np.int16)}


def row_blocks(rows: int, cols: int, bands: int, itemsize: int) -> Iterator[slice]:
    """Slices of rows whose blocks hold about BLOCK_BYTES each."""
    step = max(1, BLOCK_BYTES // max(1, cols * bands * itemsize))
    for start in range(0, rows, step):
        raise_if_stopped()  # a batch interrupted on another thread stops here, between blocks
        yield slice(start, min(rows, start + step))


def output_dtype(source: np.dtype, requested: str | np.dtype | None, path: Path) -> np.dtype:
    """The dtype an output will be stored in: the requested one, else the source's (widened if needed)."""
    if requested is None:
        dtype = np.dtype(source)
    else:
        try:
            dtype = np.dtype(requested)
        except TypeError:
            raise CubeWriteError(f"unknown data type '{requested}'", path) from None
    dtype = _WIDENED.get(dtype.newbyteorder("="), dtype.newbyteorder("="))
    if np.dtype(source).kind == "c" and dtype.kind != "c":
        raise CubeWriteError(f"complex values cannot be stored as {dtype} (the imaginary part would be lost)", path)
    if dtype.kind not in "uifc":
        raise CubeWriteError(f"data type {dtype} cannot be written (use an integer or float type)", path)
    return dtype


def cast_block(block: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    """``block`` as ``dtype``; float → integer rounds, and values that do not fit are refused."""
    if block.dtype == dtype:
        return block
    if dtype.kind in "iu" and not np.can_cast(block.dtype, dtype):
        values = np.asarray(block)
        if values.dtype.kind == "f":
            if not np.isfinite(values).all():
                raise CubeWriteError(f"NaN/Inf values cannot be stored as {dtype}; choose a float --dtype", path)
            values = np.rint(values)
        if values.size:
            info = np.iinfo(dtype)
            low, high = values.min(), values.max()
            if low < info.min or high > info.max:
                raise CubeWriteError(
                    f"values {low:g}..{high:g} do not fit in {dtype} ({info.min}..{info.max})", path
                )
        return values.astype(dtype)
    return block.astype(dtype)


def check_nodata(nodata: float | None, dtype: np.dtype, path: Path) -> None:
    """A no-data value must be storable in the output type."""
    if nodata is None or dtype.kind in "fc":
        return
    info = np.iinfo(dtype)
    if np.isnan(nodata) or not (info.min <= nodata <= info.max) or nodata != int(nodata):
        raise CubeWriteError(f"no-data value {nodata} cannot be stored as {dtype}; choose a float --dtype", path)
