"""A PNG preview of an unmixing: abundance maps and endmember spectra against wavelength."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_MAPS = 16
"""Maps shown at most; with more endmembers, the ones with the largest mean abundance."""


def render_quicklook(
    abundances: np.ndarray,
    endmembers: np.ndarray,
    names: list[str],
    wavelengths: np.ndarray | None,
    path: str | Path,
    *,
    title: str = "",
) -> None:
    """Write ``path`` (PNG): one map per endmember (0–1 colour scale) above a plot of the spectra."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    k = abundances.shape[2]
    with np.errstate(invalid="ignore"):
        means = np.nanmean(abundances.reshape(-1, k), axis=0) if np.isfinite(abundances).any() else np.zeros(k)
    shown = np.argsort(-np.nan_to_num(means))[:MAX_MAPS] if k > MAX_MAPS else np.arange(k)
    columns = min(len(shown), 4)
    map_rows = -(-len(shown) // columns)
    figure = plt.figure(figsize=(3.2 * columns, 2.9 * map_rows + 3.4), dpi=100)
    grid = figure.add_gridspec(map_rows + 1, columns, height_ratios=[2.9] * map_rows + [3.4])
    colours = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    image = None
    for position, index in enumerate(shown):
        axis = figure.add_subplot(grid[position // columns, position % columns])
        image = axis.imshow(abundances[:, :, index], vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        axis.set_title(names[index], fontsize=9, color=colours(position % colours.N))
        axis.set_xticks([])
        axis.set_yticks([])
    if image is not None:
        figure.colorbar(image, ax=figure.axes, shrink=0.8, label="abundance")
    spectra_axis = figure.add_subplot(grid[map_rows, :])
    x = np.arange(1, endmembers.shape[1] + 1) if wavelengths is None else np.asarray(wavelengths)
    order = np.argsort(x)
    for position, index in enumerate(shown):
        spectra_axis.plot(x[order], endmembers[index][order], color=colours(position % colours.N), label=names[index], lw=1.2)
    spectra_axis.set_xlabel("band" if wavelengths is None else "wavelength (nm)")
    spectra_axis.set_ylabel("value")
    spectra_axis.legend(fontsize=7, ncol=min(len(shown), 4), loc="best")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, format="png")
    plt.close(figure)
