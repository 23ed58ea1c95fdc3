"""The bicubic baseline: the LR-HSI enlarged to the HR grid, the MSI unused.

:class:`BicubicStrips` enlarges any strip of LR rows so that strips agree with enlarging the whole
image at once (bicubic reaches 2 LR pixels; the margin covers it), which keeps memory bounded on
large HR grids. The resize is :func:`hsiuu_cli.degrade.resize_bicubic`, the project's one bicubic.
``shift`` places the LR pixels where the fitted sampling model found them on the HR grid (a
misregistered pair), rather than at their blocks' centres.
"""

from __future__ import annotations

import numpy as np

from ..degrade import resize_bicubic, shift


class BicubicStrips:
    MARGIN = 3
    """LR rows around a strip: bicubic reaches 2, a shift of up to one LR pixel 1 more."""

    def __init__(self, lr: np.ndarray, ratio: int, offset: tuple[float, float] = (0.0, 0.0)):
        self.lr = lr
        self.ratio = ratio
        self.offset = (float(offset[0]), float(offset[1]))

    def strip(self, lr_start: int, lr_stop: int) -> np.ndarray:
        """HR rows ratio·lr_start … ratio·lr_stop of the whole image enlarged by ``ratio``."""
        rows = self.lr.shape[0]
        lo, hi = max(0, lr_start - self.MARGIN), min(rows, lr_stop + self.MARGIN)
        enlarged = resize_bicubic(self.lr[lo:hi], (hi - lo) * self.ratio, self.lr.shape[1] * self.ratio)
        if self.offset != (0.0, 0.0):
            enlarged = shift(enlarged, *self.offset)
        first = (lr_start - lo) * self.ratio
        return enlarged[first : first + (lr_stop - lr_start) * self.ratio]


def fuse_bicubic(lr: np.ndarray, out: np.ndarray, *, strip_rows: int) -> None:
    """Fill ``out`` (H × W × B) with ``lr`` (h × w × B) enlarged by H / h."""
    ratio = out.shape[0] // lr.shape[0]
    strips = BicubicStrips(lr, ratio)
    for start in range(0, out.shape[0], strip_rows):
        stop = min(start + strip_rows, out.shape[0])
        out[start:stop] = strips.strip(start // ratio, stop // ratio)
