"""UnmixingSR (Yu et al.) built to serve any band count.

The SR trunk follows the paper — head conv, GRAM blocks (spectral residual block: layer norm,
conv, LeakyReLU, channel attention; spatial residual block: layer norm, conv, ReLU, conv) with
a long skip, progressive PixelShuffle up-sampling, tail conv, global residual from bicubic —
but, as SSPSR's shared group convolutions do, it processes the spectrum in groups of
``config.group`` neighbouring bands with one set of weights. Each group sees the scene's mean
band as spectral context. The trunk therefore fits any number of bands, and each weight sees
every group of every training scene, which is what lets a small network learn from the few
public scenes there are.

The auxiliary unmixing autoencoder (GRAM encoder → softmax abundances, non-negative 1×1
decoder = endmembers) sees the whole spectrum, resampled to ``config.channels``. Its LR
abundances enter the last up-sampling stage of every group through the material-aware module,
so all groups of a pixel share one material context; the abundances of the SR output give the
LR–HR consistency loss during training. ``unmixing=False`` drops the branch (the ablation, and
the band-agnostic default model).

The network returns the residual over bicubic up-sampling; callers add
``hsiuu_cli.degrade.resize_bicubic(lr)`` so training, ONNX inference and the baseline share one
interpolation. Every layer is local (channel attention pools over a window, not the image), so a
tile with a halo of :func:`.config.receptive_field` LR pixels gives exactly the pixels the whole scene
would: tiled inference has no seams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig, stage_widths, upsampling_factors

# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class ChannelLayerNorm(nn.Module):
    """Layer normalisation across channels at each pixel (written out so it exports to plain ONNX ops)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        variance = (centred * centred).mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(variance + self.eps) * self.weight + self.bias


class LocalChannelAttention(nn.Module):
    """Squeeze-and-excitation over a local window instead of the whole image, so tiles need no global state."""

    def __init__(self, channels: int, reduction: int, window: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.window = window
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x
        if self.window > 1:
            pooled = F.avg_pool2d(x, self.window, stride=1, padding=self.window // 2, count_include_pad=False)
        return x * torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))


class SpectralResidualBlock(nn.Module):
    """Layer norm → 1×1 conv (mixes channels only) → LeakyReLU → channel attention, plus the input."""

    def __init__(self, channels: int, reduction: int, window: int):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.attention = LocalChannelAttention(channels, reduction, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(F.leaky_relu(self.conv(self.norm(x)), 0.2))


class SpatialResidualBlock(nn.Module):
    """Layer norm → 3×3 conv → ReLU → 3×3 conv, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(self.norm(x))))


class GRAM(nn.Module):
    """General residual attention module: a spectral then a spatial residual block."""

    def __init__(self, channels: int, reduction: int, window: int):
        super().__init__()
        self.spectral = SpectralResidualBlock(channels, reduction, window)
        self.spatial = SpatialResidualBlock(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.spectral(x))


def gram_stack(channels: int, depth: int, config: NetworkConfig) -> nn.Sequential:
    return nn.Sequential(*[GRAM(channels, config.reduction, config.attention_window) for _ in range(depth)])


# ---------------------------------------------------------------------------------------------
# Auxiliary unmixing autoencoder
# ---------------------------------------------------------------------------------------------


class UnmixingEncoder(nn.Module):
    """GRAM encoder ending in a softmax: abundances that are non-negative and sum to one.

    The head is 1×1 (unmixing is first a per-pixel spectral task; the GRAMs add spatial
    context), which keeps the encoder cheap enough to run on every SR output during training.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.head = nn.Conv2d(config.channels, config.encoder_width, 1)
        self.body = gram_stack(config.encoder_width, config.encoder_depth, config)
        self.project = nn.Conv2d(config.encoder_width, config.endmembers, 1)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.project(self.body(self.head(spectrum))), dim=1)


class UnmixingDecoder(nn.Module):
    """The linear mixing model as a bias-free 1×1 convolution; its weights are the endmembers."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.endmembers = nn.Parameter(torch.rand(config.endmembers, config.channels) * 0.5 + 0.75)

    def forward(self, abundances: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bkhw,kc->bchw", abundances, self.endmembers)

    @torch.no_grad()
    def project_nonnegative(self) -> None:
        """Keep endmembers physical (non-negative) after each optimiser step."""
        self.endmembers.clamp_(min=0.0)


class UnmixingAutoencoder(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.encoder = UnmixingEncoder(config)
        self.decoder = UnmixingDecoder(config)

    def forward(self, spectrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abundances = self.encoder(spectrum)
        return self.decoder(abundances), abundances


# ---------------------------------------------------------------------------------------------
# The SR network
# ---------------------------------------------------------------------------------------------


class MaterialAwareModule(nn.Module):
    """Modulates every group's features with the pixel's LR abundances (per-pixel scale and shift)."""

    def __init__(self, width: int, endmembers: int):
        super().__init__()
        self.scale = nn.Conv2d(endmembers, width, 1)
        self.shift = nn.Conv2d(endmembers, width, 1)

    def forward(self, features: torch.Tensor, abundances: torch.Tensor) -> torch.Tensor:
        """features (N·groups, width, H, W); abundances (N, endmembers, h, w), shared by the N's groups."""
        abundances = F.interpolate(abundances, size=features.shape[-2:], mode="bilinear", align_corners=False)
        scale = self.scale(abundances).unsqueeze(1)
        shift = self.shift(abundances).unsqueeze(1)
        grouped = features.reshape(abundances.shape[0], -1, *features.shape[1:])
        return (grouped * (1 + scale) + shift).reshape(features.shape)


class UpsamplingStage(nn.Module):
    def __init__(self, width: int, out_width: int, factor: int):
        super().__init__()
        self.conv = nn.Conv2d(width, out_width * factor * factor, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.shuffle(self.conv(x)), 0.2)


class UnmixingSR(nn.Module):
    """``forward(groups, spectrum=None)``: residual (N·groups, group, s·h, s·w).

    ``groups`` (N·groups, group + 1, h, w): each group's bands and the scene-mean band, bands
    standardised; ``spectrum`` (N, channels, h, w): the whole LR spectrum for the unmixing
    branch (needed when ``config.unmixing``).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        width = config.width
        factors = upsampling_factors(config.scale)
        widths = stage_widths(width, config.scale)
        self.head = nn.Conv2d(config.input_channels, width, 3, padding=1)
        self.body = gram_stack(width, config.depth, config)
        self.body_conv = nn.Conv2d(width, width, 3, padding=1)
        self.stages = nn.ModuleList(
            UpsamplingStage(widths[i], widths[i + 1], factor) for i, factor in enumerate(factors[:-1])
        )
        # The last stage maps straight to each band's sub-pixels; the MAM modulates its input.
        self.tail = nn.Conv2d(widths[-1], config.group * factors[-1] ** 2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factors[-1])
        self.unmixing = UnmixingAutoencoder(config) if config.unmixing else None
        self.material = MaterialAwareModule(widths[-1], config.endmembers) if config.unmixing else None
        start_at_bicubic(self.tail)

    def forward(self, groups: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        features = self.head(groups)
        features = features + self.body_conv(self.body(features))
        for stage in self.stages:
            features = stage(features)
        if self.unmixing is not None:
            features = self.material(features, self.unmixing.encoder(spectrum))
        return self.shuffle(self.tail(features))


def start_at_bicubic(tail: nn.Conv2d) -> None:
    """A zero tail makes an untrained network return bicubic exactly, so short training only adds detail."""
    nn.init.zeros_(tail.weight)
    nn.init.zeros_(tail.bias)


def build_network(config: NetworkConfig) -> UnmixingSR:
    return UnmixingSR(config)


def inference_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """All weights (the unmixing decoder is kept although inference skips it: it holds the endmembers)."""
    return {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
