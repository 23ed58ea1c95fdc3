"""Two-step training of UnmixingSR (and of the band-wise variant), as in Yu et al.

Step I trains the unmixing autoencoder on LR cubes (L1 + 0.1·SAD + 1e-3·spectral TV of the
endmembers). Step II trains the SR network with L1 + α·SAD + β·‖A_SR − Up(A_LR)‖₁, the
unmixing encoder frozen: it gives the LR abundances to the material-aware module and the HR
abundances of the SR output to the consistency term. The band-wise network has no unmixing
head and trains with L1 only.

LR cubes are made from HR cubes by :func:`hsiuu_cli.degrade.spatial_degrade` (the code behind
``hsiuu simulate``); with ``self_supervised`` each scene is its own HR and learns to be
restored from itself degraded once more. Patches are sampled uniformly over the training
scenes' area with the eight flips/rotations. Validation scenes are never trained on; the
final weights (not the best on validation) are exported, so validation metrics are honest
held-out figures.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Callable

import numpy as np

from ..cube import Cube
from ..device import resolve_device
from ..errors import CubeReadError, InvalidDataError, ModelError, ParameterError
from ..torch_losses import spectral_angles
from .config import SUPPORTED_SCALES, NetworkConfig
from .network import build_network
from .preprocess import adapter_matrix, band_groups, scene_statistics

CHECKPOINT_SUFFIX = ".checkpoint.safetensors"
SEARCHED_SUFFIXES = (".hdr", ".tif", ".tiff")
"""What a data folder is searched for: headers and GeoTIFFs, so each ENVI cube is found once (not also by its data file)."""


def parse_degradations(text: str) -> list[tuple[str, float | None]]:
    """``bicubic`` (antialiased), ``gaussian`` (PSF σ = scale / 2) or ``gaussian:SIGMA`` (σ in HR pixels, 0: point
    sampling, as ``hsiuu simulate --sigma``), or several of them comma-separated: each item one LR version of every
    training scene, so a repeated item weighs more. Returns (method, σ or None) per item."""
    specs = []
    for item in (part.strip() for part in str(text).split(",")):
        method, colon, sigma = item.partition(":")
        unknown = ParameterError(
            f"unknown degradation '{item}' (use bicubic, gaussian or gaussian:SIGMA with SIGMA ≥ 0 in HR pixels, "
            "comma-separated for a mix)"
        )
        if method not in ("bicubic", "gaussian") or (colon and method == "bicubic"):
            raise unknown
        if not colon:
            specs.append((method, None))
            continue
        try:
            value = float(sigma)
        except ValueError:
            raise unknown from None
        if not (np.isfinite(value) and value >= 0):
            raise unknown
        specs.append((method, value))
    return specs


def degradation_label(method: str, sigma: float | None) -> str:
    """An item of :func:`parse_degradations` written back (``gaussian:1.2``)."""
    return method if sigma is None else f"{method}:{sigma:g}"


@dataclass
class TrainingOptions:
    scale: int
    band_agnostic: bool = False
    width: int | None = None
    depth: int | None = None
    channels: int = 64
    endmembers: int = 6
    group: int = 4
    unmixing: bool = True
    epochs: int = 20
    steps_per_epoch: int = 50
    unmixing_steps: int = 200
    patch: int | None = None
    """HR patch side (pixels), rounded down to a multiple of the scale; default 16 LR pixels (16·scale), as in the paper."""
    batch: int = 1
    """Patches per step, all from one scene, each with all its band groups."""
    learning_rate: float = 1e-3
    alpha: float = 0.1
    """Weight of the SAD term."""
    beta: float = 1e-3
    """Weight of the LR–HR abundance-consistency term."""
    val_fraction: float = 0.2
    degradation: str = "bicubic"
    self_supervised: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    init: str | None = None
    """A model (shipped name or path) whose weights and architecture training starts from."""

    def network_config(self) -> NetworkConfig:
        return NetworkConfig(
            scale=self.scale, group=self.group, width=self.width or 32, depth=self.depth or 3,
            unmixing=self.unmixing and not self.band_agnostic, channels=self.channels, endmembers=self.endmembers,
        )

    @property
    def degradations(self) -> list[tuple[str, float | None]]:
        """The LR versions made of every training scene (:func:`parse_degradations`); the first also makes the
        validation pairs and is the one the model's self-check and scene adaptation assume."""
        return parse_degradations(self.degradation)

    @property
    def hr_patch(self) -> int:
        patch = self.patch if self.patch is not None else 16 * self.scale
        return patch - patch % self.scale

    def check(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise ParameterError(f"scale {self.scale} is not supported (supported: {', '.join(map(str, SUPPORTED_SCALES))})")
        for name in ("epochs", "steps_per_epoch", "batch"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name.replace('_', '-')} must be at least 1")
        if self.patch is not None and self.patch < 2 * self.scale:
            raise ParameterError(f"patch must be at least twice the scale ({2 * self.scale} pixels)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ParameterError("val-fraction must be in [0, 1)")
        parse_degradations(self.degradation)
        try:
            self.network_config()
        except ValueError as exc:
            raise ParameterError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def collect_cubes(items) -> list[Path]:
    """Cube files from files and folders (folders searched recursively; spectral libraries skipped)."""
    from ..io import describe_file, is_spectral_library

    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.suffix.lower() in SEARCHED_SUFFIXES and p.is_file())
            for candidate in candidates:
                if is_spectral_library(candidate):
                    continue
                try:
                    describe_file(candidate)
                except Exception:  # noqa: BLE001 - a file in a folder that is no cube is skipped, not fatal
                    continue
                found.append(candidate)
        elif path.exists():
            found.append(path)
        else:
            raise CubeReadError("file not found", path)
    unique = list(dict.fromkeys(found))
    if not unique:
        searched = ", ".join(str(item) for item in items)
        raise ParameterError(
            f"no cubes found in {searched} (searched recursively for {', '.join(SEARCHED_SUFFIXES)} files that are not spectral libraries)"
        )
    return unique


def cube_identity(path: Path) -> Path:
    """One key per cube however it is named: an ENVI data file stands for its header."""
    from ..io.envi import header_for

    if path.suffix.lower() not in SEARCHED_SUFFIXES:
        path = header_for(path) or path
    return path.resolve()


def without_validation(paths: list[Path], val_paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(training cubes, cubes left out because they are validation cubes): a folder of data may
    hold the scenes given to ``--val``, which must never train."""
    held = {cube_identity(p) for p in val_paths}
    kept, left_out = [], []
    for path in paths:
        (left_out if cube_identity(path) in held else kept).append(path)
    if left_out and not kept:
        raise ParameterError(f"nothing left to train on: every training cube is also a --val cube ({', '.join(map(str, left_out))})")
    return kept, left_out


@dataclass
class Scene:
    """One training or validation pair in physical units (good bands only): HR and its LR."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    wavelengths: np.ndarray | None = None


def physical_good_bands(cube: Cube) -> tuple[np.ndarray, np.ndarray | None]:
    """Physical values of the good bands, invalid pixels filled with the band means."""
    good = cube.good_band_indices()
    values = cube.physical()[:, :, good]
    # Validity over the good bands only: bad bands are often all NaN.
    valid = Cube(data=values, nodata=cube.nodata).valid_mask()
    if not valid.any():
        raise InvalidDataError("no valid pixels")
    if not valid.all():
        fill = values[valid].mean(axis=0)
        values = np.where(valid[:, :, None], values, fill[None, None, :]).astype(np.float32)
    wavelengths = None if cube.wavelengths is None else cube.wavelengths[good]
    return np.ascontiguousarray(values, dtype=np.float32), wavelengths


def make_pair(name: str, hr: np.ndarray, scale: int, degradation: tuple[str, float | None], wavelengths=None) -> Scene:
    """An (HR, LR) pair, the LR made by ``degradation`` = (method, σ or None) of :func:`parse_degradations`."""
    from ..degrade import spatial_degrade

    rows, cols = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
    hr = np.ascontiguousarray(hr[:rows, :cols], dtype=np.float32)
    method, sigma = degradation
    lr = spatial_degrade(hr, scale, method=method, sigma=sigma).astype(np.float32)
    return Scene(name, hr, lr, wavelengths)


def other_degradations(scenes: list[Scene], options: TrainingOptions) -> list[Scene]:
    """The training scenes' LR versions by the degradations after the first (a mix), sharing their HR arrays."""
    return [
        make_pair(f"{scene.name} ({degradation_label(*degradation)})", scene.hr, options.scale, degradation, scene.wavelengths)
        for scene in scenes
        for degradation in options.degradations[1:]
    ]


def load_scenes(paths: list[Path], options: TrainingOptions) -> list[Scene]:
    """Read cubes and make (HR, LR) pairs; with ``self_supervised`` the scene itself is the HR."""
    from ..io import read_cube

    scenes = []
    for path in paths:
        cube = read_cube(path)
        try:
            values, wavelengths = physical_good_bands(cube)
        except InvalidDataError as exc:
            raise InvalidDataError(exc.message, path) from None
        if min(values.shape[:2]) < 2 * options.scale:
            raise InvalidDataError(f"a {values.shape[0]}×{values.shape[1]} scene is too small for ×{options.scale}", path)
        scenes.append(make_pair(str(path), values, options.scale, options.degradations[0], wavelengths))
    return scenes


def split_validation(
    scenes: list[Scene], options: TrainingOptions, rng: np.random.Generator
) -> tuple[list[Scene], list[Scene], str | None]:
    """Hold out a fraction of the scenes; a single scene is split spatially (bottom rows held out).

    The third item says why there is no validation where some was asked for and none is possible.
    """
    if options.val_fraction == 0:
        return scenes, [], None
    if len(scenes) >= 2:
        count = min(len(scenes) - 1, max(1, round(options.val_fraction * len(scenes))))
        held = set(rng.permutation(len(scenes))[:count].tolist())
        return [s for i, s in enumerate(scenes) if i not in held], [s for i, s in enumerate(scenes) if i in held], None
    scene = scenes[0]
    s = options.scale
    rows = scene.hr.shape[0]
    val_rows = int(round(rows * options.val_fraction / s)) * s
    train_rows = rows - val_rows
    if val_rows < 2 * s or train_rows < 2 * s:
        why = (
            f"no validation: {scene.name} has {rows} rows, too few to hold out {options.val_fraction:g} of them at ×{s} "
            f"(each part needs {2 * s}); all of it trains and the model card has no metrics"
        )
        return scenes, [], why
    top = make_pair(scene.name + " (top)", scene.hr[:train_rows], s, options.degradations[0], scene.wavelengths)
    bottom = make_pair(scene.name + " (bottom)", scene.hr[train_rows:], s, options.degradations[0], scene.wavelengths)
    return [top], [bottom], None


@dataclass
class Prepared:
    """A scene in network units, channels first (torch tensors).

    ``lr``, ``up``, ``hr``: standardised bands (LR, its bicubic up-sampling, HR target);
    ``mean_band``: the LR scene-mean band (the groups' context); ``index``: band groups
    (groups × group); ``spectrum``: the LR spectrum for the unmixing branch; ``gain``/``bias``
    turn standardised bands into the branch's relative units (x / mean); ``adapter``: C × B.
    """

    lr: object
    up: object
    hr: object
    mean_band: object
    index: object
    spectrum: object = None
    gain: object = None
    bias: object = None
    adapter: object = None


def prepare(scene: Scene, config: NetworkConfig) -> Prepared:
    """Normalise with statistics of the LR (as inference does) and build the groups' inputs."""
    import torch

    from ..degrade import resize_bicubic

    stats = scene_statistics(scene.lr)
    lr = stats.normalise(scene.lr)
    hr = stats.normalise(scene.hr)
    up = resize_bicubic(lr, hr.shape[0], hr.shape[1])

    def chw(values):
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(values, -1, 0), dtype=np.float32))

    bands = lr.shape[2]
    prepared = Prepared(
        chw(lr), chw(up), chw(hr), chw(lr.mean(axis=2, keepdims=True)),
        torch.from_numpy(np.stack(band_groups(bands, config.group))),
    )
    prepared.gain = torch.from_numpy((stats.std / stats.level).astype(np.float32))[:, None, None]
    prepared.bias = torch.from_numpy((stats.mean / stats.level).astype(np.float32))[:, None, None]
    if config.unmixing:
        adapter = adapter_matrix(bands, config.channels)
        prepared.adapter = torch.from_numpy(adapter)
        prepared.spectrum = chw(stats.relative(scene.lr) @ adapter.T)
    return prepared


def group_inputs(lr, mean_band, index):
    """(P, B, h, w) standardised LR patches → (P·groups, group + 1, h, w), patch-major."""
    import torch

    patches = lr.shape[0]
    grouped = lr[:, index]  # P × groups × group × h × w
    context = mean_band.unsqueeze(1).expand(patches, index.shape[0], 1, *lr.shape[-2:])
    return torch.cat([grouped, context], dim=2).reshape(-1, index.shape[1] + 1, *lr.shape[-2:])


def scatter_residual(residual, index, bands: int):
    """(P·groups, group, H, W) → (P, B, H, W), averaging bands several slots predict."""
    import torch

    groups, group = index.shape
    residual = residual.reshape(-1, groups, group, *residual.shape[-2:])
    total = residual.new_zeros(residual.shape[0], bands, *residual.shape[-2:])
    for slot in range(group):
        total.index_add_(1, index[:, slot], residual[:, :, slot])
    counts = torch.bincount(index.reshape(-1), minlength=bands).to(residual.dtype)
    return total / counts[None, :, None, None]


class PatchSampler:
    """Per step one scene (chosen in proportion to its area) and ``size`` random aligned LR/HR
    patches with the eight flips/rotations; each patch carries all its bands."""

    def __init__(self, scenes: list[Prepared], scale: int, patch: int, rng: np.random.Generator):
        self.scenes = scenes
        self.scale = scale
        smallest = min(min(p.lr.shape[1:]) for p in scenes)
        self.lr_patch = max(2, min(patch // scale, smallest))
        area = np.array([p.lr.shape[1] * p.lr.shape[2] for p in scenes], float)
        self.weights = area / area.sum()
        self.rng = rng

    def batch(self, size: int) -> tuple[Prepared, dict]:
        import torch

        prepared = self.scenes[int(self.rng.choice(len(self.scenes), p=self.weights))]
        s, p = self.scale, self.lr_patch
        crops: dict[str, list] = {"lr": [], "up": [], "hr": [], "mean_band": [], "spectrum": []}
        for _ in range(size):
            i = int(self.rng.integers(0, prepared.lr.shape[1] - p + 1))
            j = int(self.rng.integers(0, prepared.lr.shape[2] - p + 1))
            turns, flip = int(self.rng.integers(0, 4)), bool(self.rng.integers(0, 2))
            low, high = (slice(i, i + p), slice(j, j + p)), (slice(i * s, (i + p) * s), slice(j * s, (j + p) * s))
            for key, window in (("lr", low), ("mean_band", low), ("spectrum", low), ("up", high), ("hr", high)):
                source = getattr(prepared, key)
                if source is None:
                    continue
                tensor = torch.rot90(source[:, window[0], window[1]], turns, dims=(1, 2))
                crops[key].append(torch.flip(tensor, dims=(2,)) if flip else tensor)
        return prepared, {k: torch.stack(v) for k, v in crops.items() if v}


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def spectral_angle_loss(result, reference):
    """Mean spectral angle (radians) between pixels of two (N, C, H, W) tensors, with the norm
    guard the shipped models were trained with."""
    return spectral_angles(result, reference, eps=1e-6).mean()


def spectral_tv(endmembers):
    """Spectral total variation of the endmembers (rows are endmembers, columns channels)."""
    return (endmembers[:, 1:] - endmembers[:, :-1]).abs().sum(dim=1).mean()


# ---------------------------------------------------------------------------------------------
# Checkpoints (safetensors: tensors plus a JSON header; never pickled)
# ---------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, network, optimizer, state: dict) -> None:
    import torch
    from safetensors.torch import save

    from ..io import atomic_write

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    for index, param_state in optimizer.state_dict()["state"].items():
        for key, value in param_state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = tensor.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    with atomic_write(path, overwrite=True) as temporary:
        temporary.write_bytes(save(tensors, metadata={"state": json.dumps(state)}))


def run_settings(options: TrainingOptions, train_paths: list[Path], val_paths: list[Path], device: str) -> dict:
    """What makes a run what it is, as a checkpoint records it: the data in order (the sampler
    draws scenes by index), the device that computes, and every option but ``epochs``, which may
    be raised on resume."""
    settings = {
        "train_files": [str(cube_identity(p)) for p in train_paths],
        "val_files": [str(cube_identity(p)) for p in val_paths],
        **asdict(options),
        "device": device,
    }
    del settings["epochs"]
    # Compared with what JSON gives back from a checkpoint.
    return json.loads(json.dumps(settings, default=str))  # a Path given as init reads back as its text


def _first_difference(saved: dict, current: dict) -> str | None:
    for key, value in current.items():
        old = saved.get(key)
        if old == value:
            continue
        if key.endswith("_files"):
            label = "training" if key == "train_files" else "validation"
            for number, (was, now) in enumerate(zip_longest(old or [], value), start=1):
                if was != now:
                    return f"{label} cube {number} = {was or 'none'}, not {now or 'none'}"
        return f"{key}={_shown(old)}, not {_shown(value)}"
    return None


def _shown(value) -> str:
    # None stands for an option left at its default (threads: all cores; patch: 16 LR pixels).
    return "default" if value is None else repr(value)


def read_checkpoint_state(path: Path, run: dict) -> dict:
    """The progress a checkpoint records, refused unless it was made by a run with these settings."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            state = json.loads(handle.metadata()["state"])
    except Exception as exc:  # noqa: BLE001 - any damage to the file means it cannot be resumed
        raise ModelError(f"checkpoint cannot be read ({exc})", path) from None
    if "run" not in state:
        raise ModelError("checkpoint does not record its training settings (an older hsiuu made it); train afresh without --resume", path)
    difference = _first_difference(state["run"], run)
    if difference is not None:
        raise ModelError(f"checkpoint was made with {difference}; resume with its settings or train afresh without --resume", path)
    return state


def load_checkpoint(path: Path, network, optimizer) -> None:
    """Restore network, optimiser and torch RNG from a checkpoint :func:`read_checkpoint_state` accepted."""
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - any damage to the file means it cannot be resumed
        raise ModelError(f"checkpoint cannot be read ({exc})", path) from None
    network.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state = optimizer.state_dict()
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    optim_state["state"] = per_param
    optimizer.load_state_dict(optim_state)
    torch.set_rng_state(tensors["rng.torch"])


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainingResult:
    network: object
    config: NetworkConfig
    train_scenes: list[str]
    val_scenes: list[Scene]
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    device: str = "cpu"
    bands_range: tuple[int, int | None] = (1, None)
    wavelength_range: tuple[float, float] | None = None


def _autocast(device: str):
    import contextlib

    import torch

    if device != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def train(
    paths: list[Path],
    options: TrainingOptions,
    *,
    val_paths: list[Path] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_progress: Callable[[dict], None] | None = None,
) -> TrainingResult:
    """Train a network on HR cubes (or, self-supervised, on the scenes themselves).

    ``on_progress`` gets events by ``phase``: ``notice`` (a ``message`` for the user), ``start``
    (the names of the scenes that ``train`` and of those for ``validation``, the ``network`` kind), ``resume``, ``unmixing`` and ``sr`` (steps), ``epoch`` (its record).
    """
    import torch
    import torch.nn.functional as F

    options.check()
    notify = on_progress or (lambda _event: None)

    def notice(message: str) -> None:
        notify({"phase": "notice", "message": message})

    started = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    config = options.network_config()
    initial = None
    if options.init:
        from safetensors.torch import load

        from .registry import load_model

        source = load_model(options.init)
        if source.scale != options.scale:
            raise ParameterError(f"--init model {source.name} is ×{source.scale}, not ×{options.scale}")
        config = source.info.config
        initial = load(source.weights())
    device = resolve_device(options.device)
    paths, left_out = without_validation(paths, val_paths or [])
    if left_out:
        notice(f"left out of training, as they are --val cubes: {', '.join(map(str, left_out))}")
    run = run_settings(options, paths, val_paths or [], device)
    state = None
    if checkpoint is not None and checkpoint.exists():
        if resume:
            state = read_checkpoint_state(checkpoint, run)
            if state["epoch"] > options.epochs:
                raise ParameterError(f"checkpoint has finished {state['epoch']} epochs; --epochs must be at least that to resume it", checkpoint)
        else:
            notice(f"an earlier run's checkpoint {checkpoint} is replaced; use --resume to continue it")
    elif checkpoint is not None and resume:
        notice(f"no checkpoint {checkpoint} to resume; starting from the beginning")
    scenes = load_scenes(paths, options)
    if val_paths:
        train_scenes, val_scenes = scenes, load_scenes(val_paths, options)
    elif options.self_supervised:
        # The scenes are the ones to be sharpened and there is nothing else: every pixel of each
        # trains, and the fit on them is the only figure there is (the card says it is not held out).
        train_scenes, val_scenes = scenes, scenes
    else:
        train_scenes, val_scenes, why = split_validation(scenes, options, rng)
        if why:
            notice(why)
    # what trains and what validates, as split (a held-out fraction of the scenes, or of one scene's rows)
    notify({"phase": "start", "train": [s.name for s in train_scenes], "validation": [s.name for s in val_scenes],
            "network": config.kind})
    band_counts = [s.hr.shape[2] for s in train_scenes]
    spans = [(float(s.wavelengths.min()), float(s.wavelengths.max())) for s in train_scenes if s.wavelengths is not None]

    network = build_network(config)
    if initial is not None:
        network.load_state_dict(initial)
    network = network.to(device)
    prepared = [prepare(s, config) for s in train_scenes + other_degradations(train_scenes, options)]
    prepared_val = [prepare(s, config) for s in val_scenes]
    sampler = PatchSampler(prepared, config.scale, options.hr_patch, rng)

    sr_parameters = [p for name, p in network.named_parameters() if not name.startswith("unmixing.")]
    optimizer = torch.optim.Adam(sr_parameters, lr=options.learning_rate, betas=(0.9, 0.99))
    total_steps = options.epochs * options.steps_per_epoch
    if state is None:
        # A network started from a trained model keeps its (already trained) unmixing encoder.
        state = {"epoch": 0, "unmixing_done": not config.unmixing or initial is not None, "history": [], "run": run}
    else:
        load_checkpoint(checkpoint, network, optimizer)
        rng.bit_generator.state = state["numpy_rng"]
        notify({"phase": "resume", "epoch": state["epoch"]})

    autocast, scaler = _autocast(device)

    # Step I: unsupervised unmixing of the LR spectra.
    if not state["unmixing_done"]:
        unmixing = network.unmixing.train()
        unmix_optimizer = torch.optim.Adam(unmixing.parameters(), lr=options.learning_rate, betas=(0.9, 0.99))
        for step in range(options.unmixing_steps):
            _, crops = sampler.batch(4 * options.batch)
            spectrum = crops["spectrum"].to(device)
            with autocast:
                reconstruction, _ = unmixing(spectrum)
                reconstruction = reconstruction.float()
                loss = (
                    F.l1_loss(reconstruction, spectrum)
                    + 0.1 * spectral_angle_loss(reconstruction, spectrum)
                    + 1e-3 * spectral_tv(unmixing.decoder.endmembers)
                )
            unmix_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            unmix_optimizer.step()
            unmixing.decoder.project_nonnegative()
            notify({"phase": "unmixing", "step": step + 1, "total": options.unmixing_steps, "loss": loss.item()})
        state["unmixing_done"] = True
    if config.unmixing:
        network.unmixing.requires_grad_(False)

    # Step II: super-resolution with the unmixing weights frozen.
    schedule = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))  # noqa: E731
    for epoch in range(state["epoch"], options.epochs):
        network.train()
        if config.unmixing:
            network.unmixing.eval()
        running = 0.0
        for step in range(options.steps_per_epoch):
            global_step = epoch * options.steps_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = options.learning_rate * schedule(global_step)
            prepared_scene, crops = sampler.batch(options.batch)
            crops = {k: v.to(device) for k, v in crops.items()}
            with autocast:
                loss = sr_loss(network, prepared_scene, crops, options, device)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            running += loss.item()
            notify({"phase": "sr", "step": global_step + 1, "total": total_steps, "loss": loss.item(), "epoch": epoch + 1})
        record = {"epoch": epoch + 1, "train_loss": running / options.steps_per_epoch}
        if prepared_val:
            record.update(_validate(network, prepared_val, device))
        state["history"].append(record)
        state["epoch"] = epoch + 1
        if checkpoint is not None:
            state["numpy_rng"] = rng.bit_generator.state
            save_checkpoint(checkpoint, network, optimizer, state)
        notify({"phase": "epoch", **record})

    network.eval().to("cpu")
    return TrainingResult(
        network=network,
        config=config,
        train_scenes=[s.name for s in train_scenes],
        val_scenes=val_scenes,
        history=state["history"],
        wall_time_s=time.perf_counter() - started,
        device=device,
        bands_range=(min(band_counts), max(band_counts)),
        wavelength_range=(min(a for a, _ in spans), max(b for _, b in spans)) if spans else None,
    )


def _on(tensor, device):
    return None if tensor is None else tensor.to(device)


def super_resolve_patches(network, prepared: Prepared, lr, mean_band, up, spectrum, device: str, chunk: int | None = None):
    """SR of standardised LR patches (P, B, h, w) → (P, B, s·h, s·w): groups through the network,
    residuals back onto the bands, plus the bicubic base. ``chunk`` bounds groups per call (P = 1)."""
    import torch

    index = prepared.index.to(device)
    groups = group_inputs(lr, mean_band, index)
    if chunk is None:
        residual = network(groups, spectrum)
    else:
        residual = torch.cat([network(groups[i : i + chunk], spectrum) for i in range(0, len(groups), chunk)])
    return up + scatter_residual(residual.float(), index, lr.shape[1])


def sr_loss(network, prepared: Prepared, crops: dict, options: TrainingOptions, device: str):
    """L1 + α·SAD (on spectra in relative units, each band weighted alike) + β·‖A_SR − Up(A_LR)‖₁."""
    import torch
    import torch.nn.functional as F

    spectrum = crops.get("spectrum")
    sr = super_resolve_patches(network, prepared, crops["lr"], crops["mean_band"], crops["up"], spectrum, device)
    hr = crops["hr"]
    loss = F.l1_loss(sr, hr)
    gain, bias = prepared.gain.to(device), prepared.bias.to(device)
    relative_sr, relative_hr = sr * gain + bias, hr * gain + bias
    if options.alpha > 0:
        loss = loss + options.alpha * spectral_angle_loss(relative_sr, relative_hr)
    if network.unmixing is not None and options.beta > 0:
        encoder = network.unmixing.encoder
        adapter = prepared.adapter.to(device)
        abundances_sr = encoder(torch.einsum("cb,pbhw->pchw", adapter, relative_sr))
        abundances_lr = F.interpolate(encoder(spectrum), size=sr.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + options.beta * F.l1_loss(abundances_sr.float(), abundances_lr.float())
    return loss


def _validate(network, prepared_val: list[Prepared], device: str) -> dict:
    """PSNR gain over bicubic on standardised bands (each band alike), mean over validation scenes."""
    import torch

    network.eval()
    gains = []
    with torch.inference_mode():
        for scene in prepared_val:
            sr = super_resolve_patches(
                network, scene, scene.lr[None].to(device), scene.mean_band[None].to(device), scene.up[None].to(device),
                _on(None if scene.spectrum is None else scene.spectrum[None], device), device, chunk=16,
            ).cpu()[0]
            error_model = float(((sr - scene.hr) ** 2).mean())
            error_bicubic = float(((scene.up - scene.hr) ** 2).mean())
            gains.append(10 * math.log10(max(error_bicubic, 1e-20) / max(error_model, 1e-20)))
    network.train()
    if network.unmixing is not None:
        network.unmixing.eval()
    return {"val_psnr_gain_db": float(np.mean(gains))}


def evaluate_scenes(model, scenes: list[Scene], scale: int, *, calibrate: bool = False) -> dict:
    """Model vs bicubic on (HR, LR) pairs through the real inference path; metrics from hsiuu_cli.metrics."""
    from ..metrics import ergas, psnr, sam, ssim
    from .inference import super_resolve_cube

    rows = []
    for scene in scenes:
        lr_cube = Cube(data=scene.lr)
        model_out, _ = super_resolve_cube(lr_cube, scale, model, method="model", dtype=np.float32, calibrate=calibrate)
        bicubic_out, _ = super_resolve_cube(lr_cube, scale, None, method="bicubic", dtype=np.float32)
        result, baseline = np.asarray(model_out.data), np.asarray(bicubic_out.data)
        row = {"scene": scene.name, "bands": int(scene.hr.shape[2]), "hr_size": list(scene.hr.shape[:2])}
        for label, values in (("", result), ("_bicubic", baseline)):
            row["psnr" + label] = psnr(values, scene.hr)
            row["sam" + label] = sam(values, scene.hr)
            row["ergas" + label] = ergas(values, scene.hr, scale)
            row["ssim" + label] = ssim(values, scene.hr)
        rows.append(row)
    keys = [k for k in rows[0] if k not in ("scene", "bands", "hr_size")] if rows else []
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return {"scenes": rows, "mean": mean}


def model_info_for(result: TrainingResult, options: TrainingOptions, description: str = ""):
    """What the trained model fits: any band count for a band-agnostic model; else the training
    sensors' band counts (±10 %) and wavelength span."""
    from .export import ModelInfo

    method, sigma = options.degradations[0]
    if options.band_agnostic:
        return ModelInfo(result.config, 1, None, None, method, description, psf_sigma=sigma)
    low, high = result.bands_range
    return ModelInfo(
        result.config,
        max(1, math.floor(0.9 * low)),
        math.ceil(1.1 * high),
        result.wavelength_range,
        method,
        description,
        psf_sigma=sigma,
    )


def train_and_export(
    paths: list[Path],
    options: TrainingOptions,
    stem: Path,
    *,
    val_paths: list[Path] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str = "",
    description: str = "",
    on_progress: Callable[[dict], None] | None = None,
) -> tuple[dict[str, Path], dict]:
    """Train, evaluate on the validation scenes through the ONNX inference path, and write the
    model (ONNX, safetensors, card). Returns the written paths and the card."""
    from ..io.atomic import check_outputs
    from .export import export_model, model_paths, onnx_bytes
    from .registry import LoadedModel

    outputs = model_paths(stem)
    # Training takes minutes: make the model folder rather than fail at the end for want of it.
    outputs["onnx"].parent.mkdir(parents=True, exist_ok=True)
    check_outputs(list(outputs.values()), overwrite)
    checkpoint = outputs["onnx"].with_name(outputs["onnx"].stem + CHECKPOINT_SUFFIX)
    result = train(paths, options, val_paths=val_paths, checkpoint=checkpoint, resume=resume, on_progress=on_progress)
    info = model_info_for(result, options, description)
    graph = onnx_bytes(result.network, info)
    metrics = None
    if result.val_scenes:
        model = LoadedModel(outputs["onnx"].stem, outputs["onnx"], info, graph, None, None)
        metrics = evaluate_scenes(model, result.val_scenes, options.scale)
        metrics["degradation"] = degradation_label(*options.degradations[0])
        metrics["calibrated"] = False
    card = {
        "training": {
            "command": command,
            "device": result.device,
            "seed": options.seed,
            "epochs": options.epochs,
            "steps_per_epoch": options.steps_per_epoch,
            "unmixing_steps": options.unmixing_steps if result.config.unmixing else 0,
            "patch": options.hr_patch,
            "batch": options.batch,
            "learning_rate": options.learning_rate,
            "alpha_sad": options.alpha,
            "beta_abundance": options.beta if result.config.unmixing else 0.0,
            "self_supervised": options.self_supervised,
            "degradation": options.degradation,
            "wall_time_s": round(result.wall_time_s, 1),
            "train_scenes": result.train_scenes,
            "val_scenes": [s.name for s in result.val_scenes],
            # Without validation scenes there is nothing to be held out or not; the card then says neither.
            **(
                {"val_held_out": not {s.name for s in result.val_scenes} & set(result.train_scenes)}
                if result.val_scenes
                else {}
            ),
            "history": result.history,
        },
        "metrics": metrics,
    }
    written = export_model(result.network, info, stem, card, overwrite=overwrite, graph=graph)
    checkpoint.unlink(missing_ok=True)
    return written, card
