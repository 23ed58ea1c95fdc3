"""Bringing a spectral library onto a scene's bands (supervised unmixing)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidDataError, ShapeMismatchError

_SAME_WAVELENGTH_NM = 0.5
"""Band centres closer than this are taken as the same band (rounding in headers)."""


def fit_library(
    spectra: np.ndarray,
    library_wavelengths: np.ndarray | None,
    scene_wavelengths: np.ndarray | None,
    scene_bands: int,
    *,
    path=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Library spectra (m, B') on the scene's bands: ``(spectra (m, n), scene band indices (n,))``.

    With wavelengths on both sides, the library is linearly interpolated to the scene's band
    centres and only the scene bands inside the library's range are kept. Without wavelengths
    the band counts must agree. ``path`` names the library in errors.
    """
    spectra = np.asarray(spectra, dtype=np.float64)
    if not np.isfinite(spectra).all():
        raise InvalidDataError("the library holds NaN/Inf values", path)
    if library_wavelengths is None or scene_wavelengths is None:
        if spectra.shape[1] != scene_bands:
            missing = "the library" if library_wavelengths is None else "the scene"
            raise ShapeMismatchError(
                f"the library has {spectra.shape[1]} bands and the scene {scene_bands}, and {missing} "
                "has no wavelengths to resample by",
                path,
            )
        return spectra, np.arange(scene_bands)
    lib_wl = np.asarray(library_wavelengths, dtype=np.float64)
    order = np.argsort(lib_wl)
    lib_wl, spectra = lib_wl[order], spectra[:, order]
    scene_wl = np.asarray(scene_wavelengths, dtype=np.float64)
    if lib_wl.size == scene_wl.size and np.all(np.abs(lib_wl - np.sort(scene_wl)) < _SAME_WAVELENGTH_NM):
        return spectra[:, np.argsort(np.argsort(scene_wl))], np.arange(scene_bands)
    inside = np.flatnonzero(
        (scene_wl >= lib_wl[0] - _SAME_WAVELENGTH_NM) & (scene_wl <= lib_wl[-1] + _SAME_WAVELENGTH_NM)
    )
    if inside.size < 2:
        raise ShapeMismatchError(
            f"the library's wavelengths ({lib_wl[0]:.0f}–{lib_wl[-1]:.0f} nm) do not overlap the scene's "
            f"({scene_wl.min():.0f}–{scene_wl.max():.0f} nm)",
            path,
        )
    resampled = np.stack([np.interp(scene_wl[inside], lib_wl, spectrum) for spectrum in spectra])
    return resampled, inside
