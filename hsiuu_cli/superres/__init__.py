"""Single-image super-resolution of hyperspectral cubes (UnmixingSR and a band-wise variant).

>>> from hsiuu_cli.superres import super_resolve
>>> hr = super_resolve(lr, 4)                     # shipped model that fits the band count, ONNX on CPU
>>> hr = super_resolve(lr, 4, method="bicubic")   # the baseline
>>> hr = super_resolve(lr, 4, model="models/my_sensor_x4.onnx", tile=64)

Modules: ``network`` (PyTorch networks), ``preprocess`` (normalisation, spectral adapter, band
groups), ``training`` (two-step training), ``export`` (ONNX, safetensors, model cards),
``registry`` (shipped models and checksums), ``inference`` (tiled ONNX/PyTorch inference),
``guard`` (the detail gain a self-check allows), ``adapt`` (fine-tuning on the scene itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import Cube
from .registry import LoadedModel, check_fits, check_scale, list_models, load_model, select_model

__all__ = ["choose_model", "list_models", "load_model", "super_resolve"]


def good_band_info(cube: Cube) -> tuple[int, np.ndarray | None]:
    """Number of good bands and their wavelengths (None when the cube has none)."""
    good = cube.good_band_indices()
    wavelengths = None if cube.wavelengths is None else cube.wavelengths[good]
    return int(good.size), wavelengths


def choose_model(cube: Cube, scale: int, model: str | Path | LoadedModel | None = None) -> LoadedModel:
    """The model for a scene: the one asked for (checked to fit), else the first shipped one that fits."""
    scale = check_scale(scale)
    bands, wavelengths = good_band_info(cube)
    if model is None:
        return select_model(scale, bands, wavelengths)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    check_fits(loaded, scale, bands, wavelengths)
    return loaded


def super_resolve(
    array: np.ndarray,
    scale: int,
    model: str | Path | LoadedModel | None = None,
    *,
    method: str = "model",
    tile: int | None = None,
    device: str = "auto",
    calibrate: bool = True,
    wavelengths: np.ndarray | None = None,
    bad_bands: np.ndarray | None = None,
    adapt: bool = False,
    adapt_settings=None,
    denoise: bool | None = None,
) -> np.ndarray:
    """Super-resolve a rows × cols × bands array by ``scale``; float32 rows·s × cols·s × bands.

    ``model``: a shipped model's name, a path to a model, or None for the shipped model that
    fits the band count (and wavelengths, when given). ``method="bicubic"`` needs no model.
    NaN pixels are filled for the network and come back NaN. ``adapt``: fine-tune the model on
    the scene first and keep whichever of the adapted, unadapted and bicubic results its
    held-back pairs favour (``adapt_settings``: an :class:`hsiuu_cli.superres.adapt.AdaptSettings`).
    ``denoise``: remove the scene's noise before the model (True), never (False), or where it is strong
    (None: :mod:`hsiuu_cli.superres.denoise`).
    """
    from .inference import super_resolve_cube

    cube = Cube(data=np.asarray(array), wavelengths=wavelengths, bad_bands=bad_bands)
    loaded = choose_model(cube, scale, model) if method == "model" else None
    gain = None
    if adapt and loaded is not None:
        from .adapt import adapt_to_scene

        adaptation = adapt_to_scene(cube, scale, loaded, adapt_settings, device=device, denoise=denoise)
        loaded, gain = adaptation.model, adaptation.gain
        method = "model" if loaded is not None else "bicubic"
    result, _ = super_resolve_cube(
        cube, scale, loaded, method=method, tile=tile, device=device, dtype=np.float32, calibrate=calibrate, gain=gain,
        denoise=denoise,
    )
    return np.asarray(result.data)
