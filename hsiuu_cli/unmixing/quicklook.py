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
    band_numbers: np.ndarray | None = None,
) -> None:
    """Write ``path`` (PNG): one map per endmember (0–1 colour scale) above a plot of the spectra.

    The spectra are drawn against ``wavelengths`` or, without them, ``band_numbers`` (1-based numbers
    of the bands used; default 1, 2, …); lines break where bands were left out (bad or water bands).
    """
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
    if wavelengths is not None:
        x = np.asarray(wavelengths, dtype=np.float64)
    elif band_numbers is not None:
        x = np.asarray(band_numbers, dtype=np.float64)
    else:
        x = np.arange(1.0, endmembers.shape[1] + 1)
    for position, index in enumerate(shown):
        gapped_x, gapped_y = broken_at_gaps(x, endmembers[index])
        spectra_axis.plot(gapped_x, gapped_y, color=colours(position % colours.N), label=names[index], lw=1.2)
    spectra_axis.set_xlabel("band" if wavelengths is None else "wavelength (nm)")
    spectra_axis.set_ylabel("value")
    spectra_axis.legend(fontsize=7, ncol=min(len(shown), 4), loc="best")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, format="png")
    plt.close(figure)


def broken_at_gaps(x: np.ndarray, y: np.ndarray, *, factor: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """``x`` sorted, with a NaN point wherever a step exceeds ``factor`` × the median step, so that a
    plotted line stops at removed bands (water-vapour bands, bad bands) instead of bridging them."""
    order = np.argsort(x)
    x, y = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    if x.size < 3:
        return x, y
    steps = np.diff(x)
    typical = np.median(steps[steps > 0]) if (steps > 0).any() else 0.0
    gaps = np.flatnonzero(steps > factor * typical) + 1 if typical > 0 else np.array([], dtype=int)
    return np.insert(x, gaps, np.nan), np.insert(y, gaps, np.nan)
