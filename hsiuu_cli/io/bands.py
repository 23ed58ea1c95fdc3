"""Band subsets: parse ``0-9,20`` / ``400:700nm`` selections and cut a cube with its per-band metadata."""

from __future__ import annotations

import re

import numpy as np

from ..cube import Cube
from ..errors import ParameterError
from . import envi

_WAVELENGTH_RE = re.compile(r"^\s*([0-9.eE+-]*)\s*(:?)\s*([0-9.eE+-]*)\s*(nm|um|µm)\s*$", re.IGNORECASE)
_INDEX_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_band_selection(text: str, cube: Cube) -> list[int]:
    """Band indices (0-based, in the order given, no repeats) from a selection such as
    ``0-9,20`` (indices, ranges inclusive), ``400:700nm`` (wavelength range, inclusive; open ends
    allowed: ``:700nm``, ``2000:nm``; ``um`` also accepted) or ``550nm`` (the nearest band).
    """
    selected: list[int] = []
    for item in [part for part in text.split(",") if part.strip()]:
        for index in _parse_item(item, cube):
            if index not in selected:
                selected.append(index)
    if not selected:
        raise ParameterError(f"band selection '{text}' selects no band")
    return selected


def _parse_item(item: str, cube: Cube) -> list[int]:
    match = _INDEX_RE.match(item)
    if match:
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise ParameterError(f"band range '{item.strip()}' runs backwards")
        if stop >= cube.bands:
            raise ParameterError(f"band index {stop} is out of range: the cube has bands 0-{cube.bands - 1}")
        return list(range(start, stop + 1))
    match = _WAVELENGTH_RE.match(item)
    if not match or not (match.group(1) or match.group(3)):
        raise ParameterError(
            f"cannot read band selection '{item.strip()}': use indices such as 0-9,20 or a wavelength range such as 400:700nm"
        )
    if cube.wavelengths is None:
        raise ParameterError(f"'{item.strip()}' selects by wavelength but the cube has no wavelengths")
    factor = 1.0 if match.group(4).lower() == "nm" else 1000.0
    try:
        low = float(match.group(1)) * factor if match.group(1) else -np.inf
        high = float(match.group(3)) * factor if match.group(3) else np.inf
    except ValueError:
        raise ParameterError(f"cannot read the numbers in band selection '{item.strip()}'") from None
    if not match.group(2):
        return [int(np.argmin(np.abs(cube.wavelengths - low)))]
    if high < low:
        raise ParameterError(f"wavelength range '{item.strip()}' runs backwards")
    indices = np.flatnonzero((cube.wavelengths >= low) & (cube.wavelengths <= high)).tolist()
    if not indices:
        raise ParameterError(
            f"no band in {item.strip()}: the cube covers {cube.wavelengths.min():g}-{cube.wavelengths.max():g} nm"
        )
    return indices


def select_bands(cube: Cube, indices: list[int]) -> Cube:
    """A cube with only ``indices`` (in that order), per-band metadata cut to match.

    A contiguous ascending run stays a view of the (possibly memory-mapped) data.
    """
    if not indices:
        raise ParameterError("no band left to keep")
    order = np.asarray(indices, dtype=np.intp)
    if order.size > 1 and np.all(np.diff(order) == 1):
        data = cube.data[:, :, order[0] : order[-1] + 1]
    else:
        data = cube.data[:, :, order]
    metadata = dict(cube.metadata)
    for key in envi.PER_BAND_KEYS:
        if key in metadata:
            values = envi.split_list(metadata[key])
            if len(values) == cube.bands:
                metadata[key] = envi.format_list(values[i] for i in order)
    if "default bands" in metadata:
        try:
            kept = {int(float(v)) - 1 for v in envi.split_list(metadata["default bands"])}
        except ValueError:
            kept = {-1}
        if kept <= set(order.tolist()):
            position = {band: new for new, band in enumerate(order.tolist())}
            metadata["default bands"] = envi.format_list(
                str(position[int(float(v)) - 1] + 1) for v in envi.split_list(metadata["default bands"])
            )
        else:
            del metadata["default bands"]
    return cube.replace(
        data=data,
        wavelengths=None if cube.wavelengths is None else cube.wavelengths[order],
        fwhm=None if cube.fwhm is None else cube.fwhm[order],
        bad_bands=None if cube.bad_bands is None else cube.bad_bands[order],
        band_names=None if cube.band_names is None else [cube.band_names[i] for i in order],
        metadata=metadata,
    )
