"""What defines an UnmixingSR network, without PyTorch: the registry, the model files and the
tiling read these on machines (and in processes, such as a cluster's client) that never build one."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

SUPPORTED_SCALES = (2, 3, 4, 8)


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild a network (stored in ONNX metadata and safetensors headers)."""

    scale: int = 4
    group: int = 4
    """Neighbouring bands the trunk processes together (with shared weights across groups)."""
    width: int = 32
    depth: int = 3
    """GRAM blocks in the SR body."""
    unmixing: bool = True
    """Auxiliary unmixing autoencoder and material-aware module."""
    channels: int = 64
    """Spectral channels the unmixing branch sees (the scene's bands are resampled to these)."""
    endmembers: int = 6
    encoder_width: int = 16
    encoder_depth: int = 1
    attention_window: int = 5
    """Side of the window channel attention averages over (odd)."""
    reduction: int = 4
    """Channel-attention bottleneck ratio."""

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {self.scale}")
        if self.attention_window < 1 or self.attention_window % 2 == 0:
            raise ValueError("attention_window must be an odd positive integer")
        for name in ("group", "width", "depth", "channels", "endmembers", "encoder_width", "encoder_depth", "reduction"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def kind(self) -> str:
        """'unmixingsr' with the unmixing branch, 'bandwise' (band-agnostic trunk only) without."""
        return "unmixingsr" if self.unmixing else "bandwise"

    @property
    def input_channels(self) -> int:
        return self.group + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "NetworkConfig":
        values = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def upsampling_factors(scale: int) -> list[int]:
    """Progressive up-sampling steps: ×2 stages for powers of two (the paper's n/2 then ×2), else one."""
    if scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    return [scale]


def stage_widths(width: int, scale: int) -> list[int]:
    """Feature widths entering each up-sampling stage: halved at each step, so the stages at high
    resolution cost about what the LR body does."""
    return [max(8, width // 2**i) for i in range(len(upsampling_factors(scale)))]


def receptive_field(config: NetworkConfig) -> int:
    """Radius in LR pixels beyond which an input pixel cannot change an output pixel (a safe bound)."""
    gram = config.attention_window // 2 + 2  # channel-attention window + two 3×3 convolutions
    body = 1 + config.depth * gram + 1  # head conv, GRAMs, body conv
    trunk = body + len(upsampling_factors(config.scale))  # one 3×3 conv per stage (the last is the tail), ≤ 1 LR px each
    if config.unmixing:
        encoder = config.encoder_depth * gram + 1  # 1×1 head, GRAMs, bilinear up-sampling of the abundances
        trunk = max(trunk, encoder + 1)  # the MAM sits before the tail
    return trunk
