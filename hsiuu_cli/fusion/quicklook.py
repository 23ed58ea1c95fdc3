"""A PNG preview of a fusion: true-colour LR-HSI, MSI and fused cube side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import Cube

TRUE_COLOUR_NM = (640.0, 550.0, 460.0)
PANEL_ROWS = 512
GAP = 8
LABEL_ROWS = 36
"""Height of the white strip above the panels that holds their labels (two lines each)."""


def colour_bands(wavelengths: np.ndarray | None, usable: np.ndarray, bands: int) -> list[int]:
    """Of the ``usable`` band indices, those nearest red/green/blue, else three spread bands, else one."""
    if bands < 3:
        return [0]
    if wavelengths is not None and usable.size >= 3:
        picks = [int(usable[np.argmin(np.abs(wavelengths[usable] - target))]) for target in TRUE_COLOUR_NM]
        if len(set(picks)) == 3:
            return picks
    if usable.size >= 3:
        return [int(usable[i]) for i in (usable.size * 3 // 4, usable.size // 2, usable.size // 4)]
    return [int(usable[0])] if usable.size else [0]


def msi_colour_bands(names: list[str] | None, wavelengths: np.ndarray | None, bands: int) -> list[int]:
    lookup = {n.strip().lower(): i for i, n in enumerate(names or [])}
    if all(c in lookup for c in ("red", "green", "blue")):
        return [lookup["red"], lookup["green"], lookup["blue"]]
    return colour_bands(wavelengths, np.arange(bands), bands)


def _stretch(image: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    scaled = (image - low) / np.where(high > low, high - low, 1.0)
    return np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0)


def _limits(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = image.reshape(-1, image.shape[2])
    pixels = pixels[np.isfinite(pixels).all(axis=1)]
    if pixels.size == 0:
        return np.zeros(image.shape[2]), np.ones(image.shape[2])
    return np.percentile(pixels, 2, axis=0), np.percentile(pixels, 98, axis=0)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _strided(data: np.ndarray, step: int, bands: list[int]) -> np.ndarray:
    """Every ``step``-th pixel of ``bands`` as float32, without reading the rest of a memory map."""
    return np.asarray(data[::step, ::step], dtype=np.float32)[:, :, bands]


def panel_labels(lr: Cube, msi: Cube, method: str, lr_name: str = "", msi_name: str = "") -> list[str]:
    """Titles of the three panels: what each shows and which bands."""
    ratio = msi.rows // lr.rows
    lr_text = f"HSI {lr.rows}x{lr.cols}, shown x{ratio}"
    msi_text = f"MSI {msi.rows}x{msi.cols}, {msi.bands} band{'s' if msi.bands > 1 else ''}"
    return [f"{lr_text}\n{lr_name}", f"{msi_text}\n{msi_name}", f"fused {fused_text(msi)}\n{method}"]


def fused_text(msi: Cube) -> str:
    return f"{msi.rows}x{msi.cols}"


def _draw_labels(image, labels: list[str], cols: int) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        font = ImageFont.load_default()
    for i, label in enumerate(labels):
        left = i * (cols + GAP)
        for line, text in enumerate(label.split("\n")[:2]):
            # shortened to the panel's width
            while draw.textlength(text, font=font) > cols - 4 and len(text) > 4:
                text = text[:-2] + "…"
            draw.text((left + 2, 2 + 16 * line), text, fill=(0, 0, 0), font=font)


def write_quicklook(path: Path, lr: Cube, msi: Cube, fused: Cube, valid: np.ndarray, *, overwrite: bool,
                    labels: list[str] | None = None) -> Path:
    """True-colour LR-HSI (enlarged), MSI and fused cube side by side, at most PANEL_ROWS tall, each
    labelled above (``labels``; by default what :func:`panel_labels` says).

    LR and fused share one 2–98 % stretch so that their colours compare; pixels without data are black.
    """
    from PIL import Image

    from ..io import atomic_write

    hsi_bands = colour_bands(lr.wavelengths, lr.good_band_indices(), lr.bands)
    msi_bands = msi_colour_bands(msi.band_names, msi.wavelengths, msi.bands)
    rows_hr = msi.rows
    ratio = rows_hr // lr.rows
    step = max(1, int(np.ceil(rows_hr / PANEL_ROWS)))
    shown = valid[::step, ::step, None]
    fused_small = np.where(shown, _strided(fused.data, step, hsi_bands), np.nan)
    msi_small = np.where(shown, _strided(msi.data, step, msi_bands), np.nan)
    lr_values = np.where(lr.valid_mask()[:, :, None], lr.physical()[:, :, hsi_bands], np.nan)
    lr_big = np.repeat(np.repeat(lr_values, ratio, axis=0), ratio, axis=1)[::step, ::step]
    low, high = _limits(fused_small)
    panels = [_stretch(lr_big, low, high), _stretch(msi_small, *_limits(msi_small)), _stretch(fused_small, low, high)]
    rows, cols = fused_small.shape[:2]
    canvas = np.ones((LABEL_ROWS + rows, 3 * cols + 2 * GAP, 3), dtype=np.float32)
    for i, panel in enumerate(panels):
        canvas[LABEL_ROWS:, i * (cols + GAP) : i * (cols + GAP) + cols] = _rgb(panel)[:rows, :cols]
    image = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))
    _draw_labels(image, labels or panel_labels(lr, msi, "fusion"), cols)
    with atomic_write(path, overwrite) as temporary:
        image.save(temporary, format="PNG")
    return path
