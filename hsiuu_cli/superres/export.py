"""Writing a trained network: single-file ONNX with metadata, safetensors weights, model card.

The ONNX graph maps normalised LR input to the residual over bicubic up-sampling, with dynamic
batch, height and width and every weight embedded. Its metadata (``hsiuu.*`` keys) says how to
use it: scale, network config, halo, tile multiple, normalisation, band range, wavelength
range, degradation. The safetensors file holds the same weights for PyTorch (GPU) inference and
fine-tuning; the card (JSON + Markdown) records data, exact command, metrics and checksums.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..io import atomic_write
from .config import NetworkConfig, receptive_field
from .preprocess import NORMALISATION

FORMAT_TAG = "hsiuu-superres/1"
OPSET = 17
HALO_MARGIN = 4
"""LR pixels added to the receptive field: bicubic support (2) plus a margin."""


@dataclass
class ModelInfo:
    """What a model fits and how to run it (written to ONNX metadata, read back by the registry)."""

    config: NetworkConfig
    bands_min: int = 1
    bands_max: int | None = None
    """Good-band counts the model was made for (None: any)."""
    wavelength_range: tuple[float, float] | None = None
    """Span (nm) of the training sensors' bands, when they had wavelengths."""
    degradation: str = "bicubic"
    description: str = ""
    extra: dict = field(default_factory=dict)
    psf_sigma: float | None = None
    """σ (HR pixels) of a Gaussian ``degradation`` when not the default scale / 2 (scene-adapted models, models trained
    with ``--degradation gaussian:SIGMA``)."""

    def degrade(self, values: np.ndarray) -> np.ndarray:
        """``values`` degraded by the scale as this model's training pairs were."""
        from ..degrade import spatial_degrade

        sigma = self.psf_sigma if self.degradation == "gaussian" else None
        return spatial_degrade(values, self.scale, method=self.degradation, sigma=sigma)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def halo(self) -> int:
        return receptive_field(self.config) + HALO_MARGIN

    def metadata(self) -> dict[str, str]:
        return {
            "hsiuu.format": FORMAT_TAG,
            "hsiuu.version": __version__,
            "hsiuu.config": self.config.to_json(),
            "hsiuu.scale": str(self.scale),
            "hsiuu.halo": str(self.halo),
            "hsiuu.tile_multiple": "1",
            "hsiuu.normalisation": NORMALISATION,
            "hsiuu.bands": json.dumps({"min": self.bands_min, "max": self.bands_max}),
            "hsiuu.wavelength_range": json.dumps(list(self.wavelength_range) if self.wavelength_range else None),
            "hsiuu.degradation": self.degradation,
            "hsiuu.description": self.description,
            # Only models made with a given σ have one (scene-adapted, gaussian:SIGMA), so the shipped models' files stay as they are.
            **({} if self.psf_sigma is None else {"hsiuu.psf_sigma": repr(float(self.psf_sigma))}),
        }

    @classmethod
    def from_metadata(cls, values: dict[str, str]) -> "ModelInfo":
        if values.get("hsiuu.format") != FORMAT_TAG:
            raise ValueError(f"not an hsiuu super-resolution model (format tag {values.get('hsiuu.format')!r})")
        bands = json.loads(values.get("hsiuu.bands", "{}"))
        span = json.loads(values.get("hsiuu.wavelength_range", "null"))
        return cls(
            config=NetworkConfig.from_json(values["hsiuu.config"]),
            bands_min=int(bands.get("min") or 1),
            bands_max=None if bands.get("max") is None else int(bands["max"]),
            wavelength_range=None if span is None else (float(span[0]), float(span[1])),
            degradation=values.get("hsiuu.degradation", "bicubic"),
            description=values.get("hsiuu.description", ""),
            psf_sigma=float(values["hsiuu.psf_sigma"]) if "hsiuu.psf_sigma" in values else None,
        )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_bytes(network, info: ModelInfo) -> bytes:
    """The network as one self-contained ONNX model (float32, CPU) with ``info`` as metadata.

    Inputs ``groups`` (and ``spectrum`` with the unmixing branch), output ``residual``; batch,
    rows and columns are dynamic.
    """
    import onnx
    import torch

    network = network.eval().to("cpu").float()
    config = info.config
    inputs = (torch.zeros(2, config.input_channels, 24, 24),)
    names = ["groups"]
    axes = {"groups": {0: "groups", 2: "rows", 3: "cols"}, "residual": {0: "groups", 2: "out_rows", 3: "out_cols"}}
    if config.unmixing:
        inputs += (torch.zeros(1, config.channels, 24, 24),)
        names.append("spectrum")
        axes["spectrum"] = {0: "scenes", 2: "rows", 3: "cols"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no extra packages; its deprecation notice is noise here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            inputs,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["residual"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in info.metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "hsiuu"
    model.producer_version = __version__
    return model.SerializeToString()


def safetensors_bytes(network, info: ModelInfo) -> bytes:
    from safetensors.torch import save

    from .network import inference_state_dict

    # One metadata entry: safetensors writes its metadata map in an order that varies from run to
    # run, and the same weights must give the same bytes (the checksum in the registry and card).
    return save(inference_state_dict(network), metadata={"hsiuu": json.dumps(info.metadata(), sort_keys=True)})


def model_paths(stem: Path) -> dict[str, Path]:
    """The four files of a model named by ``stem`` (``models/aviris_x4`` → ``.onnx``, ``.safetensors``, ``.json``, ``.md``)."""
    stem = Path(stem)
    if stem.suffix.lower() in (".onnx", ".safetensors", ".json", ".md"):
        stem = stem.with_suffix("")
    return {ext: stem.with_name(stem.name + "." + ext) for ext in ("onnx", "safetensors", "json", "md")}


def export_model(
    network, info: ModelInfo, stem: Path, card: dict, *, overwrite: bool = False, graph: bytes | None = None
) -> dict[str, Path]:
    """Write ONNX, safetensors and the model card (JSON + Markdown) atomically; returns the paths.

    ``card`` carries what only the trainer knows (data, command, metrics); checksums, sizes and
    the model description are filled in here. ``graph``: the ONNX bytes if already made (and evaluated).
    """
    paths = model_paths(stem)
    graph = onnx_bytes(network, info) if graph is None else graph
    weights = safetensors_bytes(network, info)
    name = paths["onnx"].stem
    full_card = {
        "name": name,
        "format": FORMAT_TAG,
        "hsiuu_version": __version__,
        "kind": info.config.kind,
        "scale": info.scale,
        "config": json.loads(info.config.to_json()),
        "parameters": int(sum(p.numel() for p in network.parameters())),
        "bands": {"min": info.bands_min, "max": info.bands_max},
        "wavelength_range_nm": list(info.wavelength_range) if info.wavelength_range else None,
        "normalisation": NORMALISATION,
        "degradation": info.degradation,
        "halo_lr_pixels": info.halo,
        "tile_multiple": 1,
        "description": info.description,
        **card,
        "files": {
            "onnx": {"file": paths["onnx"].name, "bytes": len(graph), "sha256": sha256_bytes(graph)},
            "safetensors": {"file": paths["safetensors"].name, "bytes": len(weights), "sha256": sha256_bytes(weights)},
        },
    }
    for key, payload in (("onnx", graph), ("safetensors", weights)):
        with atomic_write(paths[key], overwrite) as temporary:
            temporary.write_bytes(payload)
    with atomic_write(paths["json"], overwrite) as temporary:
        temporary.write_text(json.dumps(full_card, indent=2, default=_plain) + "\n", encoding="utf-8")
    with atomic_write(paths["md"], overwrite) as temporary:
        temporary.write_text(model_card_markdown(full_card), encoding="utf-8")
    return paths


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def model_card_markdown(card: dict) -> str:
    """A human-readable model card from the JSON card."""
    lines = [f"# {card['name']}", ""]
    if card.get("description"):
        lines += [card["description"], ""]
    bands = card["bands"]
    band_text = f"{bands['min']}–{bands['max']}" if bands.get("max") else f"any (≥ {bands['min']})"
    span = card.get("wavelength_range_nm")
    lines += [
        "| | |",
        "|---|---|",
        f"| network | {card['kind']} ({card['parameters']:,} parameters) |",
        f"| scale | ×{card['scale']} |",
        f"| bands | {band_text} |",
        f"| wavelengths | {f'{span[0]:.0f}–{span[1]:.0f} nm' if span else 'not required'} |",
        f"| normalisation | {card['normalisation']} |",
        f"| LR degradation in training | {(card.get('training') or {}).get('degradation') or card['degradation']} |",
        f"| halo (LR pixels) | {card['halo_lr_pixels']} |",
        f"| config | `{json.dumps(card['config'], sort_keys=True)}` |",
        "",
    ]
    training = card.get("training")
    if training:
        lines += ["## Training", "", "```", training.get("command", ""), "```", ""]
        for key in ("device", "seed", "epochs", "steps_per_epoch", "unmixing_steps", "patch", "batch", "wall_time_s"):
            if key in training:
                lines.append(f"- {key.replace('_', ' ')}: {training[key]}")
        lines.append("")
        held_out = training.get("val_held_out", True)
        validation = "Validation scenes (held out)" if held_out else "Validation scenes (also trained on)"
        for title, key in (("Training scenes", "train_scenes"), (validation, "val_scenes")):
            if training.get(key):
                lines += [f"{title}:", ""] + [f"- `{scene}`" for scene in training[key]] + [""]
    adaptation = card.get("adaptation")
    if adaptation:
        lines += _adaptation_markdown(adaptation)
    metrics = card.get("metrics")
    if metrics and metrics.get("scenes"):
        lines += [
            f"## Metrics on {'held-out' if (training or {}).get('val_held_out', True) else 'training (not held-out)'} scenes "
            f"({metrics.get('degradation', card['degradation'])} LR, ×{card['scale']})",
            "",
            "| scene | PSNR model | PSNR bicubic | SAM model | SAM bicubic | ERGAS model | ERGAS bicubic | SSIM model | SSIM bicubic |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in metrics["scenes"] + [dict(metrics["mean"], scene="**mean**")]:
            lines.append(
                f"| {row['scene']} | {_number(row['psnr'], 2)} | {_number(row['psnr_bicubic'], 2)} | "
                f"{_number(row['sam'], 3)} | {_number(row['sam_bicubic'], 3)} | {_number(row['ergas'], 3)} | "
                f"{_number(row['ergas_bicubic'], 3)} | {_number(row['ssim'], 4)} | {_number(row['ssim_bicubic'], 4)} |"
            )
        lines += ["", "PSNR in dB (mean over bands, peak = reference maximum), SAM in degrees; metrics from `hsiuu_cli.metrics`.", ""]
    lines += ["## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    for entry in card["files"].values():
        lines.append(f"| {entry['file']} | {entry['bytes']:,} | `{entry['sha256']}` |")
    lines += [
        "",
        "The ONNX graph maps band groups of the normalised LR scene (`groups`: groups × (group + 1) × rows × cols; "
        "with unmixing also `spectrum`: 1 × channels × rows × cols) to each group's residual over bicubic "
        "up-sampling; `hsiuu superres` adds the bicubic base, tiles the scene with the halo above and undoes the "
        "normalisation.",
        "",
    ]
    if card.get("data_credits"):
        lines += ["## Data", "", card["data_credits"], ""]
    return "\n".join(lines)


def _adaptation_markdown(adaptation: dict) -> list[str]:
    """The scene-adaptation section of a card (``hsiuu superres --adapt --save-model``)."""
    psf = adaptation["psf"]
    lines = [
        "## Adaptation", "", "```", adaptation.get("command", ""), "```", "",
        f"Fine-tuned on `{adaptation['scene']}` alone: pairs made from {adaptation['pairs_from']} of the scene, "
        f"degraded once more with a Gaussian PSF of σ = {psf['sigma_hr_pixels']:.2f} px (estimated from the scene); "
        f"{adaptation['steps']} steps in {adaptation['seconds']:.1f} s (limit {adaptation['time_limit_s']:.0f} s, "
        f"stopped by {adaptation['stopped_by']}), weights of step {adaptation['best_step']} kept.",
        "",
        "Held-back pairs of the scene (not trained on; one scale coarser than the real run):",
        "",
        "| model | gain | PSNR dB | PSNR bicubic | SAM ° | SAM bicubic |",
        "|---|---|---|---|---|---|",
    ]
    for name, check in adaptation["held_back"].items():
        lines.append(
            f"| {'before adaptation' if name == 'model' else name} | {check['gain']:.2f} | {check['psnr']:.2f} | "
            f"{check['psnr_bicubic']:.2f} | {check['sam']:.3f} | {check['sam_bicubic']:.3f} |"
        )
    used = "used this adapted model" if adaptation["result"] == "adapted" else "did not use this adapted model (it ran the unadapted one)"
    lines += ["", f"On this scene `hsiuu superres` {used}.", ""]
    return lines
