"""The one in-memory cube model every command reads, transforms and writes."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

from .errors import ShapeMismatchError

logger = logging.getLogger(__name__)

GRID_KEYS = ("geo points", "rpc info", "pixel size", "x start", "y start")
"""ENVI header fields in the old grid's pixel coordinates or sizes (``geo points`` and ``rpc info``
also carry a GeoTIFF's GCPs and RPCs)."""

CALIBRATION_KEYS = (
    "data gain values",
    "data offset values",
    "data reflectance gain values",
    "data reflectance offset values",
)
"""Per-band gains and offsets from the stored numbers to radiance or reflectance. The reader does not
apply them, so they hold while a cube's values are the stored numbers (see :meth:`Cube.physical_metadata`)."""


@dataclass
class Cube:
    """A hyperspectral (or multispectral) image with the metadata analysts rely on.

    ``data`` is rows × columns × bands in the file's own dtype and units (it may be a
    read-only memory map). ``physical()`` gives float32 values with the scale factor
    applied; ``valid_mask()`` says which pixels carry data.
    """

    data: np.ndarray
    wavelengths: np.ndarray | None = None
    """Band centres in nanometres (converted from µm on read)."""
    fwhm: np.ndarray | None = None
    """Full width at half maximum per band, nanometres."""
    bad_bands: np.ndarray | None = None
    """Boolean per band, True where the band is bad (ENVI ``bbl`` = 0)."""
    nodata: float | None = None
    """Value marking pixels without data (ENVI ``data ignore value``); may be NaN."""
    scale_factor: float | None = None
    """ENVI ``reflectance scale factor``: physical value = stored value / scale_factor."""
    band_names: list[str] | None = None
    crs: str | None = None
    """Coordinate reference system as WKT (or an authority string such as ``EPSG:32611``)."""
    transform: Affine | None = None
    """Pixel-corner geotransform: (col, row) → map (x, y), rotation included."""
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    """Other header fields carried through verbatim (ENVI key → raw value text)."""
    source_files: tuple = field(default=(), compare=False, repr=False)
    """The files the pixels were read from (resolved paths); cubes derived from it keep them, so that
    nothing is written over its own input."""

    def __post_init__(self) -> None:
        if self.data.ndim == 2:
            self.data = self.data[:, :, np.newaxis]
        if self.data.ndim != 3:
            raise ShapeMismatchError(f"cube data must be rows x cols x bands, got shape {self.data.shape}")
        n = self.data.shape[2]
        for name in ("wavelengths", "fwhm"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if value.size != n:
                    raise ShapeMismatchError(f"{name} has {value.size} values for {n} bands")
                setattr(self, name, value)
        if self.bad_bands is not None:
            self.bad_bands = np.asarray(self.bad_bands, dtype=bool).reshape(-1)
            if self.bad_bands.size != n:
                raise ShapeMismatchError(f"bad-band list has {self.bad_bands.size} values for {n} bands")
        if self.band_names is not None and len(self.band_names) != n:
            raise ShapeMismatchError(f"{len(self.band_names)} band names for {n} bands")

    @property
    def rows(self) -> int:
        return self.data.shape[0]

    @property
    def cols(self) -> int:
        return self.data.shape[1]

    @property
    def bands(self) -> int:
        return self.data.shape[2]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]

    def good_band_indices(self) -> np.ndarray:
        """Indices (ascending int array) of the bands not flagged bad."""
        if self.bad_bands is None:
            return np.arange(self.bands)
        return np.flatnonzero(~self.bad_bands)

    def physical(self) -> np.ndarray:
        """Float32 values in physical units (scale factor applied); no-data left as stored."""
        values = np.asarray(self.data, dtype=np.float32)
        if self.scale_factor not in (None, 0, 1):
            values = values / np.float32(self.scale_factor)
        return values

    def valid_mask(self, bands: np.ndarray | None = None) -> np.ndarray:
        """Rows × cols boolean, True where a pixel carries data.

        A pixel is no-data when it holds the no-data value in every band, or a non-finite value in
        any of ``bands`` (default: the bands not flagged bad, so a bad band full of NaN, as AVIRIS
        water-vapour bands often are, does not void every pixel).
        """
        data = np.asarray(self.data)
        if bands is None:
            bands = self.good_band_indices()
        valid = np.ones(data.shape[:2], dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data[:, :, bands]).all(axis=2)
        if self.nodata is not None and not np.isnan(self.nodata):
            valid &= ~(data == np.asarray(self.nodata).astype(data.dtype)).all(axis=2)
        return valid

    def replace(self, **changes) -> "Cube":
        """A copy with some fields changed (metadata dict copied, arrays shared)."""
        changes.setdefault("metadata", dict(self.metadata))
        return dataclasses.replace(self, **changes)

    def regridded(self, data, transform: Affine | None, **changes) -> "Cube":
        """A copy on another pixel grid: header fields that count the old grid's pixels are dropped
        from the metadata (``changes["metadata"]`` if given; ``map info`` is redrawn from ``transform``
        when written)."""
        metadata = changes.pop("metadata", self.metadata)
        dropped = [key for key in ("geo points", "rpc info") if key in metadata]
        if dropped and transform is None:
            names = {"geo points": "ground control points", "rpc info": "RPCs"}
            logger.warning("the %s describe the input's pixel grid and are not kept on the new one: the "
                           "output is not georeferenced", " and ".join(names[key] for key in dropped))
        metadata = {k: v for k, v in metadata.items() if k not in GRID_KEYS}
        return self.replace(data=data, transform=transform, metadata=metadata, **changes)

    def physical_metadata(self) -> dict[str, str]:
        """The metadata for a cube of this one's :meth:`physical` values: the calibration gains refer
        to the stored numbers, so they go when a scale factor is divided out."""
        if self.scale_factor in (None, 0, 1):
            return dict(self.metadata)
        return {k: v for k, v in self.metadata.items() if k not in CALIBRATION_KEYS}

    def with_bands(self, data: np.ndarray, *, band_names: list[str] | None = None) -> "Cube":
        """A cube on the same grid with a different set of bands (drops per-band metadata)."""
        return self.replace(
            data=data,
            wavelengths=None,
            fwhm=None,
            bad_bands=None,
            band_names=band_names,
            scale_factor=None,
        )
