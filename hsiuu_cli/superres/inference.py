"""Tiled super-resolution of whole scenes: ONNX Runtime on CPU, PyTorch on CUDA.

The scene is processed in strips of ``tile`` LR rows, each cut into ``tile``-wide windows
that carry a halo of the model's receptive field (plus the bicubic support) on every side. A
window's core is therefore computed from exactly the pixels the whole scene would give it:
no seams, and memory set by the tile size and scene width, never by the scene's area. The
output is an array-like (:class:`SuperResolvedArray`) that computes strips as a writer asks
for rows, so a scene larger than memory streams from input to output.

Per scene, before any tile: statistics for normalisation (from a subsample of the LR scene),
fill values for no-data pixels, and (``calibrate``) a residual gain from a self-check, where the
LR scene is degraded once more by the scale and the model's residual is scaled by the least-
squares gain in [0, 1] that best restores it. A model that does not suit the sensor is thus
pulled back towards bicubic rather than allowed to do worse.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..cube import Cube
from ..device import resolve_device
from ..errors import InvalidDataError, ParameterError
from .export import HALO_MARGIN
from .denoise import SceneNoise, few_band_noise_variance, median_snr_db, scene_noise, with_noise_put_back
from .guard import DARK_FRACTION, MAX_DIMMED_LINES, GainCheck, dimmed_lines, guarded_gain, shape_detail
from .preprocess import (
    SceneStatistics,
    adapter_matrix,
    add_groups,
    band_groups,
    group_context,
    scene_statistics,
    slots_per_band,
    to_channels_first,
)
from .registry import LoadedModel

BAND_CHUNK = 32
"""Bands up-sampled by bicubic at a time, bounding the transient memory of a window."""
CALIBRATION_CROP = 192
"""Largest side (LR pixels) of the central crop the residual gain is estimated on."""
CALIBRATION_MIN_SIDE = 12
"""Smallest side (coarse pixels) of the self-check; smaller scenes keep a gain of 1."""
METHODS = ("model", "bicubic")
GROUP_CHUNK = 8
"""Band groups per network call: the HR activations of a call dominate inference memory (and ONNX
Runtime keeps its largest allocation), while fewer than 8 groups per call ran slower."""
DEFAULT_TILE = 64
"""Tile side in LR pixels. Memory follows the tile and the scene width, not the scene area; larger
tiles spend less time on halos. docs/benchmarks.md (Super-resolution) measures 64 and 128."""


def available_cores() -> int:
    """The cores this process may use, or fewer where ``OMP_NUM_THREADS`` says so (Dask's worker
    nannies set it to 1: each of a machine's worker processes runs on one thread)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, min(cores, int(limit))) if limit.isdigit() and int(limit) > 0 else cores


# ---------------------------------------------------------------------------------------------
# Back-ends: groups (N, group + 1, h, w) [and spectrum (1, C, h, w)] → residual (N, group, s·h, s·w)
# ---------------------------------------------------------------------------------------------


class OnnxBackend:
    name = "onnxruntime-cpu"

    def __init__(self, model: LoadedModel, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model.onnx, options, providers=["CPUExecutionProvider"])

    def run(self, groups: np.ndarray, spectrum: np.ndarray | None = None) -> np.ndarray:
        feeds = {"groups": np.ascontiguousarray(groups, dtype=np.float32)}
        if spectrum is not None:
            feeds["spectrum"] = np.ascontiguousarray(spectrum, dtype=np.float32)
        return self.session.run(None, feeds)[0]


class TorchBackend:
    def __init__(self, model: LoadedModel, device: str):
        import torch
        from safetensors.torch import load

        from .network import build_network

        self.torch = torch
        self.device = torch.device(device)
        self.name = f"pytorch-{self.device.type}"
        network = build_network(model.info.config)
        network.load_state_dict(load(model.weights()))
        self.network = network.to(self.device).eval()

    def run(self, groups: np.ndarray, spectrum: np.ndarray | None = None) -> np.ndarray:
        def tensor(values):
            return self.torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(self.device)

        with self.torch.inference_mode():
            return self.network(tensor(groups), None if spectrum is None else tensor(spectrum)).float().cpu().numpy()


def make_backend(model: LoadedModel, device: str, threads: int | None = None):
    if resolve_device(device) == "cuda":
        return TorchBackend(model, "cuda")
    return OnnxBackend(model, threads)


# ---------------------------------------------------------------------------------------------
# The resolver
# ---------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What runs on a scene (reported to users and benchmark logs)."""

    method: str
    scale: int
    tile: int
    halo: int
    model: str | None = None
    backend: str | None = None
    gain: float = 1.0
    gain_source: str = "none"
    check: GainCheck | None = None
    """The self-check behind the gain, when one ran."""
    dimmed_lines: int = 0
    """Outermost LR lines dimmed on every side, as by a zero-padded blur: their HR pixels keep the bicubic result."""
    noise: SceneNoise | None = None
    """The scene's estimated noise and whether it was removed first (model runs only)."""


@dataclass
class SceneState:
    """What a :class:`SuperResolver` learns from the whole scene before any tile: no-data fill
    values, empty bands, normalisation statistics and the residual gain. Passing it to another
    resolver of the same scene (on a cluster worker) skips that work and gives the same tiles."""

    fill: np.ndarray
    empty_bands: np.ndarray
    stats: SceneStatistics | None
    dark_level: float
    dimmed_lines: int
    noise: SceneNoise | None
    gain: float
    gain_source: str


class SuperResolver:
    """Super-resolves one scene (a :class:`Cube`, possibly memory-mapped) strip by strip."""

    def __init__(
        self,
        cube: Cube,
        scale: int,
        model: LoadedModel | None,
        *,
        method: str = "model",
        tile: int | None = None,
        device: str = "auto",
        threads: int | None = None,
        calibrate: bool = True,
        gain: float | None = None,
        progress: Callable[[int], None] | None = None,
        state: SceneState | None = None,
        denoise: bool | None = None,
    ):
        if method not in METHODS:
            raise ParameterError(f"unknown method '{method}' (use {' or '.join(METHODS)})")
        tile = DEFAULT_TILE if tile is None else tile
        if tile < 8:
            raise ParameterError(f"tile must be at least 8 LR pixels, got {tile}")
        if isinstance(scale, bool) or int(scale) != scale or scale < 2:
            raise ParameterError(f"scale must be an integer of at least 2, got {scale}")
        if method == "model" and model is None:
            raise ParameterError("method 'model' needs a model")
        if method == "model" and model.scale != scale:
            raise ParameterError(f"model {model.name} is ×{model.scale}, not ×{scale}")
        self.cube = cube
        self.scale = int(scale)
        self.method = method
        self.model = model if method == "model" else None
        self.tile = int(tile)
        self.progress = progress or (lambda _n=1: None)
        self.halo = HALO_MARGIN if self.model is None else self.model.info.halo
        self.good = cube.good_band_indices()
        if self.model is not None and self.good.size == 0:
            raise InvalidDataError("every band is flagged bad; nothing for the model to work on")
        if state is None:
            self._statistics(denoise)
        else:
            self.fill, self.empty_bands, self.stats, self.dark_level = state.fill, state.empty_bands, state.stats, state.dark_level
            self.dimmed_lines, self.noise = state.dimmed_lines, state.noise
        self.backend = None
        self.plan = Plan(method, self.scale, self.tile, self.halo, None if self.model is None else self.model.name,
                         dimmed_lines=self.dimmed_lines, noise=self.noise)
        if self.model is not None:
            self.backend = make_backend(self.model, device, threads)
            self.plan.backend = self.backend.name
            config = self.model.info.config
            self.groups = band_groups(self.good.size, config.group)
            self.slots = slots_per_band(self.groups, self.good.size)
            self.to_channels = adapter_matrix(self.good.size, config.channels) if config.unmixing else None
            self.gain = 1.0
            if state is not None:
                self.gain = self.plan.gain = state.gain
                self.plan.gain_source = state.gain_source
            elif gain is not None:
                self.gain = self.plan.gain = float(gain)
                self.plan.gain_source = "given"
            elif calibrate:
                self._calibrate()
            else:
                self.plan.gain_source = "calibration off"

    def state(self) -> SceneState:
        """The scene-wide values this resolver computed (see :class:`SceneState`)."""
        gain = self.gain if self.model is not None else 1.0
        return SceneState(self.fill, self.empty_bands, self.stats, self.dark_level, self.dimmed_lines, self.noise, gain,
                          self.plan.gain_source)

    # -- scene statistics ------------------------------------------------------------------

    def _valid(self, block: np.ndarray) -> np.ndarray:
        """Pixels with data in the good bands (bad bands are often all NaN and must not void a pixel)."""
        return Cube(data=block[:, :, self.good], nodata=self.cube.nodata).valid_mask()

    def _read(self, rows: slice, cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Physical float32 values (no-data and stray non-finite values filled; denoised where the scene's noise is
        removed first) and the validity mask of a window."""
        block = np.asarray(self.cube.data[rows, cols])
        values = self.cube.replace(data=block).physical()
        valid = self._valid(block)
        if not valid.all():
            values = self._fill_nearest(rows, cols, valid.shape)
        if not np.isfinite(values).all():
            values = np.where(np.isfinite(values), values, self.fill[np.newaxis, np.newaxis, :])
        if self.noise is None or not self.noise.applied:
            return values.astype(np.float32, copy=False), valid
        values = np.array(values, dtype=np.float32)  # one copy whatever the type: the values may be the input's own memory
        values[:, :, self.good] = values[:, :, self.good] @ self.noise.matrix
        return values, valid

    def _fill_nearest(self, rows: slice, cols: slice, shape: tuple[int, int]) -> np.ndarray:
        """The window's physical values with each no-data pixel taking its nearest valid pixel's spectrum.

        As bicubic replicates the scene's edge, valid pixels beside no-data then see their own
        level, not the scene mean. The window is read again with a margin of the halo, so every
        no-data pixel a valid core pixel can see finds its nearest valid pixel in the same place
        whichever tile asks.
        """
        from scipy import ndimage

        top, left = rows.start or 0, cols.start or 0
        margin = self.halo
        outer_rows = slice(max(0, top - margin), min(self.cube.rows, top + shape[0] + margin))
        outer_cols = slice(max(0, left - margin), min(self.cube.cols, left + shape[1] + margin))
        block = np.asarray(self.cube.data[outer_rows, outer_cols])
        values = self.cube.replace(data=block).physical()
        valid = self._valid(block)
        inner = (slice(top - outer_rows.start, top - outer_rows.start + shape[0]),
                 slice(left - outer_cols.start, left - outer_cols.start + shape[1]))
        if not valid.any():
            return np.broadcast_to(self.fill, shape + (self.fill.size,)).copy()
        nearest_rows, nearest_cols = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
        return values[nearest_rows[inner], nearest_cols[inner]]

    def _statistics(self, denoise: bool | None) -> None:
        rows, cols = self.cube.rows, self.cube.cols
        step = max(1, int(np.sqrt(rows * cols / 250_000)))
        block = np.asarray(self.cube.data[::step, ::step])
        values = self.cube.replace(data=block).physical()
        valid = self._valid(block)
        if not valid.any():
            raise InvalidDataError("the scene has no valid pixels (all no-data or non-finite)")
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bad bands
            fill = np.nanmean(values[valid], axis=0)
        self.empty_bands = np.flatnonzero(~np.isfinite(fill))
        """Bands without a single finite value: they stay NaN."""
        self.fill = np.where(np.isfinite(fill), fill, 0.0).astype(np.float32)
        self.stats: SceneStatistics | None = None
        self.dark_level = 0.0
        self.dimmed_lines = 0
        self.noise = None
        if self.model is not None:
            good_values = values[:, :, self.good]
            self.noise = scene_noise(np.nan_to_num(good_values[valid]), denoise)
            if self.noise.applied:
                good_values = good_values @ self.noise.matrix
            self.stats = scene_statistics(good_values, valid)
            norms = np.linalg.norm(np.nan_to_num(good_values[valid]).astype(np.float64), axis=-1)
            self.dark_level = float(DARK_FRACTION * np.median(norms))
            self.dimmed_lines = dimmed_lines(self._edge_lines(step))

    def _edge_lines(self, step: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per side, the scene's outermost lines (good bands, physical values, every ``step``-th pixel along
        them) and their validity, the outermost first, at most half the scene: what
        :func:`hsiuu_cli.superres.guard.dimmed_lines` judges."""
        depth = min(MAX_DIMMED_LINES + 1, self.cube.rows // 2, self.cube.cols // 2)
        along = slice(None, None, step)
        sides = []
        for rows, cols, flip, across in ((slice(0, depth), along, False, False), (slice(-depth, None), along, True, False),
                                         (along, slice(0, depth), False, True), (along, slice(-depth, None), True, True)):
            block = np.asarray(self.cube.data[rows, cols])
            values, valid = self.cube.replace(data=block).physical()[:, :, self.good], self._valid(block)
            if across:
                values, valid = values.transpose(1, 0, 2), valid.T
            sides.append((values[::-1], valid[::-1]) if flip else (values, valid))
        return sides

    def _calibrate(self) -> None:
        """The detail gain from a self-check on the central crop of the scene, degraded once more
        as the model's training pairs were (:func:`hsiuu_cli.superres.guard.guarded_gain`)."""
        s = self.scale
        side_rows = min(self.cube.rows, CALIBRATION_CROP) // s * s
        side_cols = min(self.cube.cols, CALIBRATION_CROP) // s * s
        if min(side_rows, side_cols) < CALIBRATION_MIN_SIDE * s:
            self.plan.gain_source = "scene too small for a self-check"
            return
        r0 = (self.cube.rows - side_rows) // 2
        c0 = (self.cube.cols - side_cols) // 2
        crop, _ = self._read(slice(r0, r0 + side_rows), slice(c0, c0 + side_cols))
        crop = crop[:, :, self.good]
        coarse = self.model.info.degrade(crop)
        variance = few_band_noise_variance(crop)
        if variance is not None:
            coarse = with_noise_put_back(coarse, variance, self.model.info.degrade, crop.shape[:2])
        check = self.plan.check = self.self_check(crop, coarse)
        self.gain = self.plan.gain = check.gain
        info = self.model.info
        made = info.degradation if info.psf_sigma is None else f"{info.degradation} σ = {info.psf_sigma:g} px"
        self.plan.gain_source = f"self-check on a {side_rows}×{side_cols} crop degraded ×{s} by {made}, as the model was trained"
        if variance is not None:
            self.plan.gain_source += f", the scene's own noise (SNR {median_snr_db(crop, variance):.1f} dB) put back"
        if check.limited:
            self.plan.gain_source += ", lowered so that PSNR and SAM are no worse than bicubic's"

    def self_check(self, target: np.ndarray, coarse: np.ndarray) -> GainCheck:
        """The guarded detail gain on a self-check pair (good bands, physical units): ``coarse``
        super-resolved with this resolver's model and statistics, compared with ``target``."""
        from ..degrade import resize_bicubic

        base = resize_bicubic(coarse, target.shape[0], target.shape[1])
        return guarded_gain(base, shape_detail(base, self._residual(coarse), self.dark_level), target, self.stats.std)

    # -- per window --------------------------------------------------------------------------

    def _residual(self, window: np.ndarray, core: tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
        """rows × cols × good bands (physical) → the model's residual on the ``core`` HR pixels, × good bands."""
        config = self.model.info.config
        context = group_context(to_channels_first(self.stats.normalise(window)), self.groups)
        spectrum = None
        if config.unmixing:
            spectrum = to_channels_first(self.stats.relative(window), self.to_channels)[np.newaxis]
        total = None
        # Groups go in chunks, each cropped to the core at once, so memory stays near one tile's
        # output; the small unmixing encoder reruns per chunk.
        for start in range(0, len(context), GROUP_CHUNK):
            chunk = self.backend.run(context[start : start + GROUP_CHUNK], spectrum)[:, :, core[0], core[1]]
            if total is None:
                total = np.zeros((self.good.size,) + chunk.shape[2:], dtype=np.float32)
            add_groups(total, chunk, self.groups[start : start + GROUP_CHUNK])
        total /= self.slots[:, None, None]
        return self.stats.residual_to_physical(np.moveaxis(total, 0, -1))

    def _window(self, window: np.ndarray, core_rows: slice, core_cols: slice, origin: tuple[int, int]) -> np.ndarray:
        """Super-resolve a window and return the HR pixels of its core, whose first pixel is the scene's HR pixel ``origin``."""
        from ..degrade import resize_bicubic

        s = self.scale
        rows, cols, bands = window.shape
        out = np.empty((core_rows.stop - core_rows.start, core_cols.stop - core_cols.start, bands), np.float32)
        for start in range(0, bands, BAND_CHUNK):
            chunk = slice(start, min(bands, start + BAND_CHUNK))
            out[:, :, chunk] = resize_bicubic(window[:, :, chunk], rows * s, cols * s)[core_rows, core_cols]
        if self.model is not None and self.gain > 0:
            base = out[:, :, self.good]
            detail = shape_detail(base, self._residual(window[:, :, self.good], (core_rows, core_cols)), self.dark_level)
            if self.dimmed_lines:
                # the dimmed LR lines' HR pixels: a model would sharpen the dimming into a dark rim
                rim, hr_rows, hr_cols = self.dimmed_lines * s, self.cube.rows * s, self.cube.cols * s
                rows_at = origin[0] + np.arange(detail.shape[0])
                cols_at = origin[1] + np.arange(detail.shape[1])
                detail[(rows_at < rim) | (rows_at >= hr_rows - rim)] = 0
                detail[:, (cols_at < rim) | (cols_at >= hr_cols - rim)] = 0
            out[:, :, self.good] = base + np.float32(self.gain) * detail
        return out

    def strip(
        self, lr_start: int, lr_stop: int, convert: Callable[[np.ndarray], np.ndarray] | None = None, dtype=np.float32
    ) -> np.ndarray:
        """HR rows for LR rows ``lr_start:lr_stop``: (s·rows) × (s·cols) × bands, NaN where no data.

        ``convert`` turns each window's float32 pixels into ``dtype`` as they come, so a strip
        is held once, in the output type.
        """
        s = self.scale
        out = np.empty(((lr_stop - lr_start) * s, self.cube.cols * s, self.cube.bands), dtype)
        for c0, c1, core in self.windows(lr_start, lr_stop, 0, self.cube.cols, convert):
            out[:, c0 * s : c1 * s] = core
        return out

    def windows(
        self, lr_start: int, lr_stop: int, col_start: int, col_stop: int,
        convert: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """The HR pixels of LR rows ``lr_start:lr_stop``, one tile of columns at a time, for the
        tiles from LR column ``col_start`` (a multiple of the tile) to ``col_stop``: yields
        (first LR column, last LR column + 1, pixels). The strip is read whole-width whatever
        the columns asked for, so every tile equals the one :meth:`strip` makes.
        """
        s, halo, tile = self.scale, self.halo, self.tile
        rows, cols = self.cube.rows, self.cube.cols
        top, bottom = max(0, lr_start - halo), min(rows, lr_stop + halo)
        values, valid = self._read(slice(top, bottom))
        invalid = ~valid[lr_start - top : lr_stop - top]
        core_rows = slice((lr_start - top) * s, (lr_stop - top) * s)
        for c0 in range(col_start, min(cols, col_stop), tile):
            c1 = min(cols, c0 + tile)
            left, right = max(0, c0 - halo), min(cols, c1 + halo)
            core = self._window(values[:, left:right], core_rows, slice((c0 - left) * s, (c1 - left) * s), (lr_start * s, c0 * s))
            missing = invalid[:, c0:c1]
            if missing.any():
                core[np.repeat(np.repeat(missing, s, axis=0), s, axis=1)] = np.nan
            if self.empty_bands.size:
                core[:, :, self.empty_bands] = np.nan
            yield c0, c1, core if convert is None else convert(core)
            self.progress(1)


def rows_of_strips(
    start: int, stop: int, shape: tuple, dtype, strip_of: Callable[[int], tuple[int, int, np.ndarray]]
) -> np.ndarray:
    """Rows ``start:stop`` of an array made of strips; ``strip_of(row)`` gives (first row, last row + 1,
    pixels) of the strip holding ``row``. A range within one strip is a view of it."""
    if stop <= start:
        return np.empty((0,) + tuple(shape[1:]), dtype)
    first, last, data = strip_of(start)
    if stop <= last:
        return data[start - first : stop - first]
    out = np.empty((stop - start,) + tuple(shape[1:]), dtype)
    row = start
    while row < stop:
        first, last, data = strip_of(row)
        end = min(stop, last)
        out[row - start : end - start] = data[row - first : end - first]
        row = end
    return out


class SuperResolvedArray:
    """The output of a :class:`SuperResolver` as a read-only array-like that computes rows on demand.

    Writers that walk a cube by row blocks (as ``hsiuu_cli.io`` does) get strips computed once,
    in order; ``numpy.asarray`` computes the whole scene.
    """

    ndim = 3

    def __init__(self, resolver: SuperResolver, dtype=np.float32, scale_factor: float | None = None, nodata=None):
        self.resolver = resolver
        s = resolver.scale
        self.shape = (resolver.cube.rows * s, resolver.cube.cols * s, resolver.cube.bands)
        self.dtype = np.dtype(dtype)
        self.scale_factor = scale_factor
        self.nodata = nodata
        self.clipped = self.converted = 0
        """Values converted to an integer type so far, and how many of them fell outside its range."""
        self._cached: tuple[int, int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _strip_of(self, hr_row: int) -> tuple[int, int, np.ndarray]:
        if self._cached is not None and self._cached[0] <= hr_row < self._cached[1]:
            return self._cached
        self._cached = None  # let the previous strip go before the next is made
        s, tile = self.resolver.scale, self.resolver.tile
        lr_start = (hr_row // s) // tile * tile
        lr_stop = min(self.resolver.cube.rows, lr_start + tile)
        self._cached = (lr_start * s, lr_stop * s, self.resolver.strip(lr_start, lr_stop, self._convert, self.dtype))
        return self._cached

    def _convert(self, values: np.ndarray) -> np.ndarray:
        """Physical float32 pixels (modified in place) → the output dtype: the scale factor
        re-applied, integers rounded and clipped to the type's range, no-data marked (float
        outputs keep NaN, their no-data value: :func:`super_resolve_cube`)."""
        if self.scale_factor not in (None, 0, 1):
            np.multiply(values, np.float32(self.scale_factor), out=values)
        if self.dtype.kind == "f":
            return values.astype(self.dtype, copy=False)
        missing = np.isnan(values)
        if missing.any() and self.nodata is None:
            raise InvalidDataError(f"no-data pixels cannot be stored as {self.dtype} without a no-data value")
        info = np.iinfo(self.dtype)
        np.rint(values, out=values)
        self.converted += int(np.count_nonzero(~missing))
        self.clipped += int(np.count_nonzero((values < info.min) | (values > info.max)))
        np.clip(values, info.min, info.max, out=values)
        if self.nodata is not None:
            # A valid pixel rounded or clipped onto the no-data value (often the type's floor, 0)
            # would vanish: it moves one step inwards instead.
            values[values == self.nodata] = self.nodata + (1 if self.nodata < info.max else -1)
            values[missing] = self.nodata
        return values.astype(self.dtype)

    def windows(self, lr_start: int, lr_stop: int, col_start: int, col_stop: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """(HR row, HR column, pixels in the output type) of each tile of an LR block, as
        :meth:`SuperResolver.windows` cuts it; ``lr_start`` a multiple of the tile, so the pixels
        equal those the rows of this array give."""
        s = self.resolver.scale
        for c0, _, core in self.resolver.windows(lr_start, lr_stop, col_start, col_stop, self._convert):
            yield lr_start * s, c0 * s, core

    def rows(self, start: int, stop: int) -> np.ndarray:
        return rows_of_strips(start, stop, self.shape, self.dtype, self._strip_of)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            block = self.rows(index, index + 1)[0]
            return block[rest] if rest else block
        if isinstance(key, slice) and key.indices(self.shape[0])[2] == 1:
            start, stop, _ = key.indices(self.shape[0])
            block = self.rows(start, stop)
            return block[(slice(None),) + rest] if rest else block
        return np.asarray(self)[(key,) + rest]

    def __array__(self, dtype=None, copy=None):
        data = self.rows(0, self.shape[0])
        return data if dtype is None else data.astype(dtype)


def super_resolve_cube(
    cube: Cube,
    scale: int,
    model: LoadedModel | None,
    *,
    method: str = "model",
    tile: int | None = None,
    device: str = "auto",
    dtype=None,
    calibrate: bool = True,
    gain: float | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    state: SceneState | None = None,
    denoise: bool | None = None,
) -> tuple[Cube, Plan]:
    """The super-resolved cube (pixels computed lazily as they are read) and what ran.

    Geo is updated (pixel size / scale, same corner and rotation); wavelengths, FWHM, bad bands,
    band names, no-data and scale factor are carried. ``dtype`` defaults to the input's: integer
    cubes stay integer (rounded, clipped, scale factor kept); float outputs mark no-data with NaN.
    ``state`` (from another resolver of the same scene) skips the scene statistics and calibration.
    ``denoise``: remove the scene's noise first (True), never (False), or where it is strong (None,
    :mod:`hsiuu_cli.superres.denoise`); model runs only.
    """
    from ..grid import scaled_transform

    resolver = SuperResolver(
        cube, scale, model, method=method, tile=tile, device=device, threads=threads, calibrate=calibrate, gain=gain,
        progress=progress, state=state, denoise=denoise,
    )
    out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(cube.data.dtype)
    if out_dtype.kind not in "iuf":
        out_dtype = np.dtype(np.float32)
    nodata = cube.nodata
    scale_factor = cube.scale_factor
    if out_dtype.kind == "f":
        # Float outputs mark no-data with NaN; integers read into floats become physical values.
        nodata = None if nodata is None else float("nan")
        if np.dtype(cube.data.dtype).kind != "f":
            scale_factor = None
    array = SuperResolvedArray(resolver, out_dtype, scale_factor, nodata)
    transform = None if cube.transform is None else scaled_transform(cube.transform, scale)
    what = f"×{scale} super-resolution ({method}{'' if model is None or method != 'model' else ' ' + model.name})"
    description = f"{cube.description}; {what}" if cube.description else what
    out = cube.regridded(
        array, transform, nodata=nodata, scale_factor=scale_factor, description=description,
        metadata=cube.metadata if scale_factor is not None else cube.physical_metadata(),
    )
    return out, resolver.plan
