"""Fusion of cubes as read from files: grids, spectral responses, bad bands and no-data.

:func:`align_pair` brings the LR-HSI and the HR-MSI onto nested grids (georeferenced inputs:
same CRS, integer pixel-size ratio, LR pixel corners on HR pixel corners, both cut to their
overlap; others: an integer size ratio). :func:`resolve_srf` builds the B × b matrix from a
built-in/CSV SRF (resampled to the HSI's wavelengths) or a matrix CSV. :func:`plan_cubes` fits
the fusion (:func:`hsiuu_cli.fusion.plan_fusion`) on the HSI's good bands, its plan writing every
band (bad ones enlarged); :func:`output_cube` is the output's header on the MSI's grid with the HSI's
spectral metadata; :func:`fuse_cubes` does both and runs the blocks in this process.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from affine import Affine

from ..cube import Cube
from ..errors import GridError, HsiuuError, ShapeMismatchError, SpectralResponseError
from ..grid import (
    ORIGIN_TOLERANCE,
    check_grids,
    footprint_window,
    hr_pixel_size_in,
    nesting_ratio,
    pixel_size,
    resample,
    resampling_method,
    scaled_transform,
)
from ..io.envi import same_crs
from ..io.scene_rows import SceneFile
from . import FusionResult, SceneFit, plan_fusion
from .bicubic import BicubicStrips
from .blocks import ArrayOut, BadBands, MsiRows, Sinks, run_blocks

RATIO_TOLERANCE = 1e-3


@dataclass
class AlignedPair:
    lr: Cube
    hr: Cube
    ratio: int
    cropped: bool
    resampled: str | None = None
    """How the MSI was resampled onto a grid nesting with the HSI's (None: it already nested)."""
    hr_offset: tuple[int, int] = (0, 0)
    """Where ``hr`` starts in the MSI's file (row, column), when it was not resampled."""


def _crop(cube: Cube, rows: slice, cols: slice) -> Cube:
    transform = None if cube.transform is None else cube.transform @ Affine.translation(cols.start, rows.start)
    return cube.replace(data=cube.data[rows, cols], transform=transform)


NO_RESAMPLE_HINT = "; without --no-resample the MSI is resampled onto a grid that nests with the HSI's"


def align_pair(lr: Cube, hr: Cube, lr_path: Path, hr_path: Path, *, resample: bool = True,
               srf: np.ndarray | None = None) -> AlignedPair:
    """Cut both cubes to their common extent on nested grids.

    Grids that do not nest (a non-integer pixel-size ratio, misaligned corners, another rotation or
    CRS, or — without georeference — sizes that are not an integer multiple) get the MSI resampled
    onto the HSI's grid refined by the nearest integer ratio (:func:`resample_msi`, ``srf`` for the
    registration of images without georeference); with ``resample=False`` they are a GridError. GridError/ShapeMismatchError when impossible.
    """
    check_order(lr, hr, hr_path)
    try:
        return _nested_pair(lr, hr, lr_path, hr_path)
    except GridError as exc:
        if not resample:
            raise GridError(exc.message + NO_RESAMPLE_HINT, hr_path) from None
        if "do not overlap" in exc.message:
            raise
        return resample_msi(lr, hr, lr_path, hr_path, srf)


def check_order(lr: Cube, hr: Cube, hr_path: Path) -> None:
    """ShapeMismatchError when the 'high-resolution' image has fewer pixels than the HSI (swapped arguments)."""
    if hr.rows < lr.rows or hr.cols < lr.cols:
        raise ShapeMismatchError(
            f"the MSI ({hr.rows}×{hr.cols}) is smaller than the HSI ({lr.rows}×{lr.cols}); "
            "give the low-resolution hyperspectral cube first and the high-resolution image second",
            hr_path,
        )


def _nested_pair(lr: Cube, hr: Cube, lr_path: Path, hr_path: Path) -> AlignedPair:
    if lr.transform is None or hr.transform is None:
        if hr.rows % lr.rows or hr.cols % lr.cols or hr.rows // lr.rows != hr.cols // lr.cols:
            raise GridError(
                f"the MSI ({hr.rows}×{hr.cols}) is not an integer multiple of the HSI ({lr.rows}×{lr.cols}): "
                f"ratios {hr.rows / lr.rows:g} (rows) and {hr.cols / lr.cols:g} (columns)",
                hr_path,
            )
        return AlignedPair(lr, hr, check_grids(lr, hr, lr_path, hr_path), False)

    if lr.crs is not None and hr.crs is not None and not same_crs(lr.crs, hr.crs):
        raise GridError(f"the MSI and the HSI ({Path(lr_path).name}) are in different coordinate reference systems", hr_path)
    lr_size, hr_size = pixel_size(lr.transform), pixel_size(hr.transform)
    estimate = lr_size[0] / hr_size[0]
    ratio = max(1, round(estimate))
    for axis in (0, 1):
        if not math.isclose(lr_size[axis] / hr_size[axis], ratio, rel_tol=RATIO_TOLERANCE):
            raise GridError(
                f"the pixel sizes ({lr_size[axis]:g} in the HSI, {hr_size[axis]:g} in the MSI) are not in an integer ratio",
                hr_path,
            )
    col0, row0 = ~hr.transform @ (lr.transform.c, lr.transform.f)
    offsets = (round(row0), round(col0))
    if abs(row0 - offsets[0]) > ORIGIN_TOLERANCE or abs(col0 - offsets[1]) > ORIGIN_TOLERANCE:
        raise GridError(
            f"the grids are misaligned: the HSI's pixel corners fall {row0 - math.floor(row0):.2f}, "
            f"{col0 - math.floor(col0):.2f} HR pixels off the MSI's",
            hr_path,
        )
    windows = []
    for offset, lr_count, hr_count in ((offsets[0], lr.rows, hr.rows), (offsets[1], lr.cols, hr.cols)):
        first = max(0, math.ceil(-offset / ratio))
        last = min(lr_count, math.floor((hr_count - offset) / ratio))
        if last <= first:
            raise GridError(f"the MSI and the HSI ({Path(lr_path).name}) do not overlap", hr_path)
        windows.append((slice(first, last), slice(offset + ratio * first, offset + ratio * last)))
    (lr_rows, hr_rows), (lr_cols, hr_cols) = windows
    cropped = (lr_rows, lr_cols) != (slice(0, lr.rows), slice(0, lr.cols)) or (hr_rows, hr_cols) != (
        slice(0, hr.rows),
        slice(0, hr.cols),
    )
    lr_c, hr_c = _crop(lr, lr_rows, lr_cols), _crop(hr, hr_rows, hr_cols)
    return AlignedPair(lr_c, hr_c, check_grids(lr_c, hr_c, lr_path, hr_path), cropped, hr_offset=(hr_rows.start, hr_cols.start))


def resample_msi(lr: Cube, hr: Cube, lr_path: Path, hr_path: Path, srf: np.ndarray | None = None) -> AlignedPair:
    """The MSI resampled (rasterio.warp, GDAL) onto the HSI's grid refined by the integer ratio nearest
    to the pixel sizes' (the HSI's CRS and rotation; without georeference both images are taken to
    cover the same ground), both cut to whole LR pixels where the MSI has data.

    Without georeference the mapping comes from :func:`hsiuu_cli.fusion.registration.register`, on
    the HSI seen through ``srf`` (good bands × MSI bands; None: all bands alike).
    """
    values = np.where(valid_rows(hr)[:, :, None], np.asarray(hr.data, dtype=np.float32), np.nan).astype(np.float32)
    if lr.transform is None or hr.transform is None:
        # no georeference: where the MSI lies on the HSI's grid is found from the images themselves
        from .registration import REGISTRATION_LIMIT, register

        good = lr.good_band_indices()
        matrix = np.full((good.size, hr.bands), 1.0 / good.size) if srf is None else srf
        found = register(lr.physical()[:, :, good] @ matrix, lr.valid_mask(), values, np.isfinite(values).all(axis=2))
        if found.unexplained > REGISTRATION_LIMIT:
            raise GridError(
                f"the grids do not nest ({hr.rows}×{hr.cols} against {lr.rows}×{lr.cols}) and without georeference the MSI "
                f"could not be registered on the HSI (the best match leaves {found.unexplained:.0%} of the HSI unexplained); "
                "georeference both or resample one onto the other's grid",
                hr_path,
            )
        ratios = (found.scale, found.scale)
        src_transform, src_crs = ~found.transform, None
        lr_transform, dst_crs = Affine.identity(), None
        lr_window = footprint_window(lr.replace(transform=Affine.identity()), hr.replace(transform=src_transform))
        if lr_window is None:
            raise GridError(f"the MSI and the HSI ({Path(lr_path).name}) do not overlap", hr_path)
        ground = (f"registered on the images: {found.scale:.3g} MSI pixels per HSI pixel, rotated {found.angle:+.1f}°, "
                  f"{1 - found.unexplained:.0%} of the HSI's brightness explained")
    else:
        hr_size, lr_size = hr_pixel_size_in(lr, hr), pixel_size(lr.transform)
        ratios = (lr_size[1] / hr_size[1], lr_size[0] / hr_size[0])
        lr_window = footprint_window(lr, hr)
        if lr_window is None:
            raise GridError(f"the MSI and the HSI ({Path(lr_path).name}) do not overlap", hr_path)
        src_transform, src_crs = hr.transform, hr.crs
        lr_transform, dst_crs = lr.transform, lr.crs or hr.crs
        ground = "placed by georeference"
    ratio = nesting_ratio(ratios)
    if ratio < 2:  # noqa: PLR2004
        raise GridError(f"the MSI's pixels ({ratios[0]:.2f}, {ratios[1]:.2f} per HSI pixel) are not finer than the HSI's", hr_path)
    method = resampling_method(ratio, ratios)
    rows_lr, cols_lr = lr_window
    window_transform = lr_transform @ Affine.translation(cols_lr.start, rows_lr.start)
    shape = ((rows_lr.stop - rows_lr.start) * ratio, (cols_lr.stop - cols_lr.start) * ratio)
    warped = resample(values, src_transform, src_crs, scaled_transform(window_transform, ratio), dst_crs, shape, method)
    # whole LR pixels where the resampled MSI has any data
    covered = np.isfinite(warped).all(axis=2).reshape(shape[0] // ratio, ratio, shape[1] // ratio, ratio).any(axis=(1, 3))
    if not covered.any():
        raise GridError(f"the MSI and the HSI ({Path(lr_path).name}) do not overlap", hr_path)
    used_rows, used_cols = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    keep_rows = slice(int(used_rows[0]), int(used_rows[-1]) + 1)
    keep_cols = slice(int(used_cols[0]), int(used_cols[-1]) + 1)
    lr_rows = slice(rows_lr.start + keep_rows.start, rows_lr.start + keep_rows.stop)
    lr_cols = slice(cols_lr.start + keep_cols.start, cols_lr.start + keep_cols.stop)
    warped = warped[keep_rows.start * ratio : keep_rows.stop * ratio, keep_cols.start * ratio : keep_cols.stop * ratio]
    lr_c = _crop(lr, lr_rows, lr_cols)
    hr_transform = None if lr_c.transform is None else scaled_transform(lr_c.transform, ratio)
    hr_c = hr.replace(data=warped, transform=hr_transform, crs=lr.crs if lr.transform is not None else hr.crs,
                      nodata=float("nan"), scale_factor=hr.scale_factor)
    if lr.transform is None or hr.transform is None:
        hr_c = hr_c.replace(transform=None)
    cropped = (lr_rows, lr_cols) != (slice(0, lr.rows), slice(0, lr.cols))
    description = (f"{hr_path.name} resampled from {hr.rows}×{hr.cols} onto {warped.shape[0]}×{warped.shape[1]} "
                   f"({ratio}× the HSI's grid; {ground}; pixel-size ratios {ratios[0]:.3g}, {ratios[1]:.3g}) "
                   f"with GDAL {method} resampling")
    return AlignedPair(lr_c, hr_c, ratio, cropped, description)


def valid_rows(cube: Cube, rows_per_block: int = 256) -> np.ndarray:
    """``cube.valid_mask()`` computed a block of rows at a time (no full-size temporaries)."""
    return np.concatenate(
        [cube.replace(data=cube.data[start : start + rows_per_block]).valid_mask() for start in range(0, cube.rows, rows_per_block)]
    )


def read_matrix_csv(path: Path, rows_all: int, rows_good: int, msi_bands: int) -> tuple[np.ndarray, bool]:
    """A B × b matrix from CSV (an optional header row of names, '#' comments); returns it and
    whether it covers all HSI bands (True) or only the good ones."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle) if r and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpectralResponseError(f"cannot read the SRF matrix: {exc}", path) from None
    try:
        float(rows[0][0])
    except (ValueError, IndexError):
        rows = rows[1:]
    try:
        matrix = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise SpectralResponseError(f"the SRF matrix holds a non-numeric value ({exc})", path) from None
    if matrix.ndim != 2 or matrix.size == 0:
        raise SpectralResponseError("the SRF matrix CSV is empty or ragged", path)
    if matrix.shape[1] != msi_bands:
        raise ShapeMismatchError(
            f"the SRF matrix has {matrix.shape[1]} columns but the MSI has {msi_bands} bands "
            "(one row per HSI band, one column per MSI band)",
            path,
        )
    if matrix.shape[0] not in (rows_all, rows_good):
        raise ShapeMismatchError(
            f"the SRF matrix has {matrix.shape[0]} rows but the HSI has {rows_all} bands"
            + (f" ({rows_good} good)" if rows_good != rows_all else ""),
            path,
        )
    if not np.isfinite(matrix).all() or (matrix < 0).any() or (matrix.sum(axis=0) <= 0).any():
        raise SpectralResponseError("SRF matrix weights must be finite, non-negative, with a positive sum per column", path)
    return matrix, matrix.shape[0] == rows_all


def resolve_srf(
    lr: Cube,
    msi: Cube,
    *,
    srf: str | None,
    matrix_path: Path | None,
    lr_path: Path,
    msi_path: Path,
    notice: Callable[[str], None] = lambda message: None,
) -> tuple[np.ndarray, str]:
    """The B_good × b spectral-response matrix and a name for it.

    ``notice`` hears about partial spectral overlap: MSI bands partly outside the HSI's range (the
    MSI sees light the HSI does not), and HSI bands outside every MSI band (their detail comes from
    the spectral unmixing alone).
    """
    from ..srf import load_srf, srf_matrix

    good = lr.good_band_indices()
    if matrix_path is not None:
        matrix, full = read_matrix_csv(matrix_path, lr.bands, good.size, msi.bands)
        matrix = matrix[good] if full else matrix
        _notice_uncovered(matrix, None if lr.wavelengths is None else lr.wavelengths[good], notice)
        return matrix, str(matrix_path)
    if lr.wavelengths is None:
        raise SpectralResponseError(
            "the HSI has no wavelengths, so the SRF cannot be resampled to its bands; "
            "give the B × b matrix with --srf-matrix",
            lr_path,
        )
    response = load_srf(srf)
    if response.bands != msi.bands:
        names = [n.strip().lower() for n in (msi.band_names or [])]
        known = {n.lower() for n in response.band_names}
        if names and len(names) == msi.bands and all(n in known for n in names):
            response = response.select(names)
        else:
            raise ShapeMismatchError(
                f"SRF '{response.name}' has {response.bands} bands ({', '.join(response.band_names)}) but the MSI has "
                f"{msi.bands}; pick bands in the MSI's order with '{response.base_name}:band,...'",
                msi_path,
            )
    elif msi.band_names and len(msi.band_names) == msi.bands:
        # same count: follow the MSI's band order when its names are the SRF's
        names = [n.strip().lower() for n in msi.band_names]
        if sorted(names) == sorted(n.lower() for n in response.band_names):
            response = response.select(names)
    fwhm = None if lr.fwhm is None else lr.fwhm[good]
    try:
        # a band partly outside the HSI's range still helps fusion (its gain and trust are fitted on the
        # data); srf_matrix says how much of each band the HSI covers through ``notice``
        matrix = srf_matrix(response, lr.wavelengths[good], fwhm, warn=notice)
    except SpectralResponseError as exc:
        raise SpectralResponseError(exc.message, lr_path) from None
    _notice_uncovered(matrix, lr.wavelengths[good], notice)
    return matrix, response.name


UNCOVERED_WEIGHT = 1e-3
"""An HSI band whose largest SRF weight is below this share of the largest overall counts as unseen by the MSI."""


def _notice_uncovered(matrix: np.ndarray, wavelengths: np.ndarray | None, notice: Callable[[str], None]) -> None:
    weights = matrix / np.maximum(matrix.max(), 1e-30)
    unseen = weights.max(axis=1) < UNCOVERED_WEIGHT
    if not unseen.any():
        return
    where = ""
    if wavelengths is not None:
        where = f", {wavelengths[unseen].min():.0f}–{wavelengths[unseen].max():.0f} nm"
    notice(f"{int(unseen.sum())} of the HSI's {unseen.size} bands{where} lie outside every MSI band: their spatial detail "
           "comes from the spectral unmixing alone")


class RowFile:
    """A rows × cols × bands float32 array in a file, read and written a strip of rows at a time
    with plain file I/O.

    Unlike a memory map, pages written here do not count against the process's resident memory,
    so a fused cube larger than RAM costs only the strips being worked on. Supports what fusion and
    the cube writers use: ``a[start:stop]`` (read and write), ``a[start:stop:step, ...]`` (read),
    ``shape``, ``dtype``, ``ndim``. It pickles as its path and shape: another process reopens the file.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path, self.shape = Path(path), tuple(int(n) for n in shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3
        self._row_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self.shape[0] * self._row_bytes)

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape}

    def __setstate__(self, state: dict) -> None:
        # another process's view of the same file (a cluster's worker on a shared file system)
        self.path, self.shape = state["path"], state["shape"]
        self.dtype, self.ndim = np.dtype(np.float32), 3
        self._row_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, key) -> tuple[slice, tuple]:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if not isinstance(rows, slice):
            raise TypeError("RowFile is indexed by a slice of rows")
        return slice(*rows.indices(self.shape[0])), rest

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        raw = os.pread(self._fd, count * self._row_bytes, start * self._row_bytes)
        return np.frombuffer(raw, dtype=self.dtype).reshape((count,) + self.shape[1:]).copy()

    def __getitem__(self, key) -> np.ndarray:
        rows, rest = self._rows(key)
        if rows.step == 1:
            block = self._read(rows.start, rows.stop)
        else:
            block = np.stack([self._read(i, i + 1)[0] for i in range(rows.start, rows.stop, rows.step)])
        return block[(slice(None),) + rest] if rest else block

    def __setitem__(self, key, value) -> None:
        rows, rest = self._rows(key)
        if rest or rows.step != 1:
            raise TypeError("RowFile is written a contiguous strip of whole rows at a time")
        block = np.broadcast_to(np.asarray(value, dtype=self.dtype), (rows.stop - rows.start,) + self.shape[1:])
        os.pwrite(self._fd, np.ascontiguousarray(block).tobytes(), rows.start * self._row_bytes)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


IN_MEMORY_BYTES = 512 * 2**20
"""Fused cubes up to this size are assembled in memory; larger ones in a :class:`RowFile`."""


def allocate(shape: tuple[int, int, int], scratch: Path | None, name: str = "fused.f32", on_disk: bool = False):
    """A float32 array, or a :class:`RowFile` ``name`` in ``scratch`` when it would exceed
    :data:`IN_MEMORY_BYTES` or ``on_disk`` (other processes write it)."""
    size = int(np.prod(shape)) * 4
    if scratch is None or (size <= IN_MEMORY_BYTES and not on_disk):
        return np.empty(shape, dtype=np.float32)
    return RowFile(Path(scratch) / name, shape)


def plan_cubes(
    lr_cube: Cube,
    msi_cube: Cube,
    matrix: np.ndarray,
    *,
    lr_path: Path,
    msi_path: Path,
    msi_rows: MsiRows | None = None,
    scratch: Path | None = None,
    **options,
) -> SceneFit:
    """The per-scene fit of two aligned cubes (:func:`hsiuu_cli.fusion.plan_fusion`); its output has
    every band of the HSI: bad bands are left out of the fusion and written as the HSI's band
    enlarged (bicubic). ``msi_rows`` reads the MSI (default: from ``msi_cube``)."""
    good = lr_cube.good_band_indices()
    lr = lr_cube.physical()
    bad = np.setdiff1d(np.arange(lr_cube.bands), good)
    bad_bands = None
    if bad.size:
        enlarged = BicubicStrips(lr[:, :, bad].astype(np.float32), msi_cube.rows // lr_cube.rows)
        bad_bands = BadBands(good, bad, enlarged)
    if msi_rows is None:
        msi_rows = MsiRows(SceneFile(msi_cube), (0, 0, msi_cube.rows, msi_cube.cols))
    try:
        # the MSI as stored: the fit of its gain absorbs any scale factor; read strip by strip
        return plan_fusion(lr[:, :, good], msi_cube.data, matrix, lr_valid=lr_cube.valid_mask(), msi_rows=msi_rows,
                           bad_bands=bad_bands, workspace=lambda shape: allocate(shape, scratch, "whole.f32"), **options)
    except HsiuuError as exc:
        if exc.path is not None:
            raise
        which = msi_path if isinstance(exc, (ShapeMismatchError, GridError)) or "MSI" in exc.message else lr_path
        raise type(exc)(exc.message, which) from None


def msi_rows(pair: AlignedPair, msi_cube: Cube, msi_path: Path, scratch: Path | None = None) -> MsiRows:
    """The aligned MSI's rows as :class:`MsiRows`: its window of ``msi_path`` (``msi_cube``, the
    whole file). A resampled MSI exists only in memory: with ``scratch`` (a folder other processes
    see) it is written there as ENVI for them to read."""
    rows, cols = pair.hr.rows, pair.hr.cols
    if not pair.resampled:
        return MsiRows(SceneFile(msi_cube, Path(msi_path).resolve()), (*pair.hr_offset, rows, cols))
    if scratch is None:
        return MsiRows(SceneFile(pair.hr), (0, 0, rows, cols))
    from ..io import write_cube

    path = write_cube(pair.hr, Path(scratch).resolve() / "msi_resampled.hdr", format="ENVI")
    return MsiRows(SceneFile(path=path), (0, 0, rows, cols))


def output_cube(lr_cube: Cube, msi_cube: Cube, data, fit: SceneFit, lr_path: Path, msi_path: Path) -> Cube:
    """The fused cube's header (``data``: its pixels, or a stand-in of their shape): on the MSI's grid
    with the HSI's band metadata."""
    rows_hr = msi_cube.rows
    return lr_cube.regridded(
        data,
        msi_cube.transform if msi_cube.transform is not None or lr_cube.transform is None
        else scaled_transform(lr_cube.transform, rows_hr // lr_cube.rows),
        nodata=float("nan") if not fit.valid.all() else None,
        scale_factor=None,
        crs=msi_cube.crs if msi_cube.transform is not None else lr_cube.crs,
        description=f"hsiuu fuse ({fit.plan.method}) of {lr_path.name} and {msi_path.name}",
        metadata=lr_cube.physical_metadata(),
    )


def fuse_cubes(
    lr_cube: Cube,
    msi_cube: Cube,
    matrix: np.ndarray,
    *,
    lr_path: Path,
    msi_path: Path,
    scratch: Path | None = None,
    return_abundances: bool = False,
    advance=lambda n: None,
    **options,
) -> tuple[Cube, FusionResult]:
    """Fuse two aligned cubes in this process (:func:`plan_cubes`, then every block in turn), into
    an array, or a :class:`RowFile` in ``scratch`` when large."""
    fit = plan_cubes(lr_cube, msi_cube, matrix, lr_path=lr_path, msi_path=msi_path, scratch=scratch,
                     return_abundances=return_abundances, **options)
    plan = fit.plan
    full = allocate(plan.shape, scratch)
    abundances = None
    if plan.with_abundances:
        abundances = np.empty(plan.shape[:2] + (fit.endmembers.shape[0],), dtype=np.float32)
    plan.sinks = Sinks(ArrayOut(full), None if abundances is None else ArrayOut(abundances))
    result = fit.result(full, abundances, run_blocks(plan, advance=advance))
    return output_cube(lr_cube, msi_cube, full, fit, lr_path, msi_path), result


def endmember_library(result: FusionResult, lr_cube: Cube):
    """The fusion's endmembers as a spectral library over the HSI's good bands."""
    from ..io import SpectralLibrary

    good = lr_cube.good_band_indices()
    return SpectralLibrary(
        spectra=result.endmembers.astype(np.float32),
        names=[f"endmember {i + 1}" for i in range(result.endmembers.shape[0])],
        wavelengths=None if lr_cube.wavelengths is None else lr_cube.wavelengths[good],
    )
