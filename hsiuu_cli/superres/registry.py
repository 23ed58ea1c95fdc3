"""The models shipped in the top-level ``models/`` folder, and loading any model safely.

Shipped models are listed explicitly in :data:`SHIPPED` with the sha256 of their files; a file
whose checksum differs is refused. Models given by path are checked against the checksums in
their model card (``NAME.json``) when one sits beside them. Nothing is ever unpickled: the
graph is ONNX, the weights are safetensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, ParameterError
from .export import ModelInfo, model_paths, sha256_bytes
from .config import SUPPORTED_SCALES

MODELS_ENV = "HSIUU_MODELS_DIR"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    onnx_sha256: str
    safetensors_sha256: str
    summary: str


SHIPPED: dict[str, RegistryEntry] = {
    "aviris_x4": RegistryEntry(
        "aviris_x4",
        "2968d2d5198975f97054aa478a1a134a345ee805efe2554bfdf7715c6f672d1e",
        "3fec24f5336bb3feeb7a7e9f8717fb8fd2ee10ba76a9bab1ddad229e491199b9",
        "UnmixingSR for AVIRIS-like VNIR-SWIR cubes, ×4",
    ),
    "aviris_x2": RegistryEntry(
        "aviris_x2",
        "cd9689c5739313188f1413490377c83d3143dd72bb8137cd0a3c705cb9d5345e",
        "1f33c17b225cd91e0b43b267c85facb08488de3eadc5a82243a1eb6a593ce908",
        "UnmixingSR for AVIRIS-like VNIR-SWIR cubes, ×2",
    ),
    "agnostic_x4": RegistryEntry(
        "agnostic_x4",
        "d7d93c8e6ecb5e945e30af8e727c1ab907a27f0447e0953a44227d48faa0e209",
        "192ea4b0026ddd9a2a38be0cb9bb23fa81bb42082b919fc5bfcd2fdc93c27508",
        "band-agnostic default (any band count), ×4",
    ),
    "agnostic_x2": RegistryEntry(
        "agnostic_x2",
        "7392a79f8306a1ab7bfba76857fa3a8f75102a731b0294b6089ca91d470cc511",
        "d249eab9f89428d2350ae06eb1c06859b3063a0d4593a4f37cfec184f21b60b6",
        "band-agnostic default (any band count), ×2",
    ),
}
"""Name → entry, in order of preference when several fit a scene (sensor-family models first)."""


def models_dir() -> Path:
    """Where shipped models live: ``$HSIUU_MODELS_DIR``, else ``models/`` at the project root."""
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "models"


@dataclass
class LoadedModel:
    """A verified model: its ONNX bytes (what was checked is what runs) and what it fits."""

    name: str
    path: Path
    info: ModelInfo
    onnx: bytes
    weights_path: Path | None
    weights_sha256: str | None
    weights_data: bytes | None = None
    """Weights held in memory (a scene-adapted model that was never written)."""

    @property
    def scale(self) -> int:
        return self.info.scale

    def weights(self) -> bytes:
        """The safetensors weights (for PyTorch inference and fine-tuning), checked against the expected checksum."""
        if self.weights_data is not None:
            return self.weights_data
        if self.weights_path is None or not self.weights_path.exists():
            raise ModelError("no safetensors weights beside the ONNX model (needed for PyTorch inference)", self.path)
        data = self.weights_path.read_bytes()
        if self.weights_sha256 is not None and sha256_bytes(data) != self.weights_sha256:
            raise ModelError("weights file does not match its checksum (corrupted or tampered with)", self.weights_path)
        return data

    def describe(self) -> str:
        info = self.info
        bands = f"{info.bands_min}–{info.bands_max} bands" if info.bands_max else "any band count"
        return f"{self.name} (×{info.scale}, {info.config.kind}, {bands})"


def list_models() -> list[RegistryEntry]:
    return list(SHIPPED.values())


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError("model file not found", path) from None
    except OSError as exc:
        raise ModelError(f"cannot read model file ({exc.strerror})", path) from None


def _parse(path: Path, data: bytes) -> ModelInfo:
    import onnx

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception:  # noqa: BLE001 - protobuf and checker raise many types for a damaged file
        raise ModelError("not a valid ONNX model (corrupted or not a model file)", path) from None
    try:
        return ModelInfo.from_metadata({entry.key: entry.value for entry in model.metadata_props})
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"ONNX model lacks hsiuu metadata: {exc}", path) from None


def get_model(name: str) -> LoadedModel:
    """A shipped model by name, its files verified against the registry's checksums."""
    entry = SHIPPED.get(name)
    if entry is None:
        known = ", ".join(SHIPPED) or "none"
        raise ModelError(f"no shipped model named '{name}' (shipped: {known})")
    paths = model_paths(models_dir() / name)
    data = _read_bytes(paths["onnx"])
    if sha256_bytes(data) != entry.onnx_sha256:
        raise ModelError("model file does not match the registry checksum (corrupted or tampered with)", paths["onnx"])
    return LoadedModel(name, paths["onnx"], _parse(paths["onnx"], data), data, paths["safetensors"], entry.safetensors_sha256)


def load_model_file(path: str | Path) -> LoadedModel:
    """A model by path (``.onnx``, its card ``.json``, or the stem); checked against its card when present."""
    paths = model_paths(Path(path))
    expected_onnx = expected_weights = None
    if paths["json"].exists():
        try:
            files = json.loads(paths["json"].read_text(encoding="utf-8"))["files"]
            expected_onnx = files["onnx"]["sha256"]
            expected_weights = files["safetensors"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelError("model card is unreadable or has no checksums", paths["json"]) from None
    data = _read_bytes(paths["onnx"])
    if expected_onnx is not None and sha256_bytes(data) != expected_onnx:
        raise ModelError("model file does not match the checksum in its model card (corrupted or tampered with)", paths["onnx"])
    return LoadedModel(paths["onnx"].stem, paths["onnx"], _parse(paths["onnx"], data), data, paths["safetensors"], expected_weights)


def load_model(name_or_path: str | Path) -> LoadedModel:
    """A shipped model by name, else a model file by path."""
    if str(name_or_path) in SHIPPED:
        return get_model(str(name_or_path))
    path = Path(name_or_path)
    if path.suffix.lower() in (".onnx", ".json", ".safetensors") or path.exists() or model_paths(path)["onnx"].exists():
        return load_model_file(path)
    known = ", ".join(SHIPPED) or "none"
    raise ModelError(f"'{name_or_path}' is neither a shipped model ({known}) nor a model file")


def check_scale(scale: int) -> int:
    if isinstance(scale, bool) or int(scale) != scale or int(scale) not in SUPPORTED_SCALES:
        raise ParameterError(f"scale {scale} is not supported (supported: {', '.join(map(str, SUPPORTED_SCALES))})")
    return int(scale)


def misfit(info: ModelInfo, scale: int, bands: int, wavelengths) -> str | None:
    """Why a model does not fit a scene (None when it fits). ``bands`` counts the good bands."""
    if info.scale != scale:
        return f"it is ×{info.scale}, not ×{scale}"
    if bands < info.bands_min or (info.bands_max is not None and bands > info.bands_max):
        upper = info.bands_max if info.bands_max is not None else "any"
        return f"it takes {info.bands_min}–{upper} bands and the scene has {bands}"
    if info.wavelength_range is not None and wavelengths is not None and len(wavelengths):
        low, high = float(min(wavelengths)), float(max(wavelengths))
        model_low, model_high = info.wavelength_range
        overlap = max(0.0, min(high, model_high) - max(low, model_low))
        # Both ways: the scene lies within the model's range and covers most of it.
        if overlap < 0.8 * (high - low) or overlap < 0.6 * (model_high - model_low):
            return (
                f"it was trained on {model_low:.0f}–{model_high:.0f} nm and the scene spans {low:.0f}–{high:.0f} nm"
            )
    return None


def select_model(scale: int, bands: int, wavelengths=None) -> LoadedModel:
    """The first shipped model that fits the scene; ModelError naming what is shipped otherwise."""
    scale = check_scale(scale)
    reasons = []
    for name in SHIPPED:
        model = get_model(name)
        reason = misfit(model.info, scale, bands, wavelengths)
        if reason is None:
            return model
        reasons.append((model, reason))
    scales = sorted({m.scale for m, _ in reasons})
    if scale not in scales:
        shipped = ", ".join(f"×{s}" for s in scales) or "none"
        raise ModelError(
            f"no shipped model for ×{scale} (shipped scales: {shipped}); use --method bicubic, or train one with "
            f"'hsiuu train superres DATA --scale {scale} -o models/NAME' and pass --model"
        )
    details = "; ".join(f"{m.name}: {r}" for m, r in reasons if m.scale == scale)
    raise ModelError(f"no shipped ×{scale} model fits a scene with {bands} bands ({details})")


def check_fits(model: LoadedModel, scale: int, bands: int, wavelengths=None) -> None:
    """ModelError naming the models that would fit, when ``model`` does not."""
    reason = misfit(model.info, scale, bands, wavelengths)
    if reason is None:
        return
    fitting = []
    for name in SHIPPED:
        try:
            if misfit(get_model(name).info, scale, bands, wavelengths) is None:
                fitting.append(name)
        except ModelError:
            continue
    suggestion = f"models that fit: {', '.join(fitting)}" if fitting else "no shipped model fits; try --method bicubic"
    raise ModelError(f"model {model.name} does not fit this scene: {reason} ({suggestion})", model.path)
