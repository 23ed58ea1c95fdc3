"""Geotransform arithmetic for grids that differ by an integer factor, and LR/HR alignment checks.

Transforms are pixel-corner affines (column, row) → (x, y), rotation included, as in
:class:`hsiuu_cli.cube.Cube`. Scaling keeps the upper-left corner of the first pixel and the
rotation, so a grid sharpened ×s covers exactly the ground of the original.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from affine import Affine

from .cube import Cube
from .errors import GridError, ParameterError
from .io.envi import same_crs

ORIGIN_TOLERANCE = 0.1
"""Largest allowed offset between LR and HR upper-left corners, in HR pixels."""
PIXEL_SIZE_TOLERANCE = 1e-3
"""Largest allowed relative difference between the LR pixel and ``ratio`` HR pixels."""


def _check_factor(factor: int, name: str) -> int:
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ParameterError(f"{name} must be a positive integer, got {factor}")
    return int(factor)


def scaled_transform(transform: Affine, factor: int) -> Affine:
    """The finer grid: pixel size / ``factor``, same upper-left corner and rotation."""
    return transform @ Affine.scale(1.0 / _check_factor(factor, "scale factor"))


def coarsened_transform(transform: Affine, ratio: int) -> Affine:
    """The coarser grid: pixel size × ``ratio``, same upper-left corner and rotation."""
    return transform @ Affine.scale(_check_factor(ratio, "ratio"))


def pixel_size(transform: Affine) -> tuple[float, float]:
    """(column step, row step) lengths in map units, rotation included."""
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def _name(path, fallback: str) -> str:
    return str(path) if path is not None else fallback


def check_grids(lr: Cube, hr: Cube, lr_path: str | Path | None = None, hr_path: str | Path | None = None) -> int:
    """The integer ratio between a low-res and a high-res grid; GridError when they do not line up.

    Always checked: HR rows and columns are the same integer multiple of LR's. When both rasters
    are georeferenced: same CRS (when both have one), LR pixel = ratio × HR pixel (rotation
    included), and upper-left corners within ``ORIGIN_TOLERANCE`` HR pixels.
    """
    lr_name, hr_name = _name(lr_path, "low-res input"), _name(hr_path, "high-res input")
    path = hr_path if hr_path is not None else lr_path
    if hr.rows % lr.rows or hr.cols % lr.cols or hr.rows // lr.rows != hr.cols // lr.cols:
        raise GridError(
            f"{hr_name} ({hr.rows}×{hr.cols}) is not an integer multiple of {lr_name} ({lr.rows}×{lr.cols}): "
            f"ratios {hr.rows / lr.rows:g} (rows) and {hr.cols / lr.cols:g} (columns)",
            path,
        )
    ratio = hr.rows // lr.rows
    if lr.transform is None or hr.transform is None:
        return ratio

    if lr.crs is not None and hr.crs is not None and not same_crs(lr.crs, hr.crs):
        raise GridError(f"{lr_name} and {hr_name} have different CRS ({_short(lr.crs)} vs {_short(hr.crs)})", path)

    expected = coarsened_transform(hr.transform, ratio)
    for index, label in ((0, "column"), (1, "row")):
        lr_size, expected_size = pixel_size(lr.transform)[index], pixel_size(expected)[index]
        if not math.isclose(lr_size, expected_size, rel_tol=PIXEL_SIZE_TOLERANCE):
            hr_size = pixel_size(hr.transform)[index]
            raise GridError(
                f"pixel sizes do not match the {ratio}× size ratio: {lr_name} {label} step {lr_size:g}, "
                f"{hr_name} {hr_size:g} × {ratio} = {expected_size:g}",
                path,
            )
    steps = ((lr.transform.a, lr.transform.d), (lr.transform.b, lr.transform.e))
    expected_steps = ((expected.a, expected.d), (expected.b, expected.e))
    for (x, y), (ex, ey) in zip(steps, expected_steps):
        norm = math.hypot(ex, ey)
        if math.hypot(x - ex, y - ey) > PIXEL_SIZE_TOLERANCE * norm:
            raise GridError(f"{lr_name} and {hr_name} have differently rotated or flipped grids", path)

    hr_pixel = min(pixel_size(hr.transform))
    offset = math.hypot(lr.transform.c - hr.transform.c, lr.transform.f - hr.transform.f)
    if offset > ORIGIN_TOLERANCE * hr_pixel:
        raise GridError(
            f"upper-left corners differ by {offset:g} map units ({offset / hr_pixel:.2f} HR pixels): "
            f"{lr_name} at ({lr.transform.c:.10g}, {lr.transform.f:.10g}), "
            f"{hr_name} at ({hr.transform.c:.10g}, {hr.transform.f:.10g})",
            path,
        )
    return ratio


def _short(crs: str) -> str:
    return crs if len(crs) <= 40 else crs[:37] + "..."


# ---------------------------------------------------------------------------------------------
# Grids that do not nest: the high-resolution image resampled onto one that does
# ---------------------------------------------------------------------------------------------

PLACEHOLDER_CRS = "EPSG:3857"
"""GDAL's warper needs a CRS; images without one are resampled in this one on both sides, which
makes the warp the plain affine resampling between their pixel grids."""


def nesting_ratio(ratios: tuple[float, float]) -> int:
    """The integer nearest the geometric mean of the LR/HR pixel-size ratios along the two axes."""
    return max(1, round(math.sqrt(ratios[0] * ratios[1])))


AVERAGE_ABOVE = 1.1
"""Pixels growing by more than this factor are resampled by averaging (which does not alias)."""


def resampling_method(ratio: int, ratios: tuple[float, float]) -> str:
    """Cubic convolution unless the image's pixels grow by more than :data:`AVERAGE_ABOVE` along an
    axis (then averaging)."""
    return "average" if max(ratios) / ratio > AVERAGE_ABOVE else "cubic"


def resample(
    values: np.ndarray,
    src_transform: Affine,
    src_crs: str | None,
    dst_transform: Affine,
    dst_crs: str | None,
    shape: tuple[int, int],
    method: str,
) -> np.ndarray:
    """``values`` (rows × cols × bands, NaN for no-data) warped onto ``shape`` pixels of
    ``dst_transform`` with rasterio (GDAL's warper); NaN where the source has no data."""
    from rasterio.warp import Resampling, reproject

    source = np.ascontiguousarray(np.moveaxis(np.asarray(values, dtype=np.float32), 2, 0))
    target = np.full((source.shape[0], *shape), np.nan, dtype=np.float32)
    reproject(
        source, target,
        src_transform=src_transform, src_crs=src_crs or PLACEHOLDER_CRS,
        dst_transform=dst_transform, dst_crs=dst_crs or src_crs or PLACEHOLDER_CRS,
        src_nodata=np.nan, dst_nodata=np.nan, resampling=getattr(Resampling, method),
    )
    return np.moveaxis(target, 0, 2)


def footprint_window(lr: Cube, hr: Cube) -> tuple[slice, slice] | None:
    """The LR pixels (rows, cols; whole pixels) that the high-res image's footprint touches, in the
    LR grid's CRS; None when they do not overlap."""
    from rasterio.warp import transform as transform_points

    corners = [(0, 0), (hr.cols, 0), (0, hr.rows), (hr.cols, hr.rows)]
    xs, ys = zip(*(hr.transform @ corner for corner in corners))
    if hr.crs is not None and lr.crs is not None and not same_crs(hr.crs, lr.crs):
        xs, ys = transform_points(hr.crs, lr.crs, list(xs), list(ys))
    cols, rows = zip(*(~lr.transform @ (x, y) for x, y in zip(xs, ys)))
    row0, row1 = max(0, math.floor(min(rows))), min(lr.rows, math.ceil(max(rows)))
    col0, col1 = max(0, math.floor(min(cols))), min(lr.cols, math.ceil(max(cols)))
    if row1 <= row0 or col1 <= col0:
        return None
    return slice(row0, row1), slice(col0, col1)


def hr_pixel_size_in(lr: Cube, hr: Cube) -> tuple[float, float]:
    """The high-res image's pixel size (column step, row step) in the LR grid's map units."""
    if hr.crs is None or lr.crs is None or same_crs(hr.crs, lr.crs):
        return pixel_size(hr.transform)
    from rasterio.warp import transform as transform_points

    centre = hr.transform @ (hr.cols / 2, hr.rows / 2)
    step_col = hr.transform @ (hr.cols / 2 + 1, hr.rows / 2)
    step_row = hr.transform @ (hr.cols / 2, hr.rows / 2 + 1)
    xs, ys = transform_points(hr.crs, lr.crs, [centre[0], step_col[0], step_row[0]], [centre[1], step_col[1], step_row[1]])
    return math.hypot(xs[1] - xs[0], ys[1] - ys[0]), math.hypot(xs[2] - xs[0], ys[2] - ys[0])
