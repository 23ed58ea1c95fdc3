"""Loss terms in PyTorch shared by the networks trained here (SMILE unmixing, UnmixingSR).

torch is imported inside the functions: importing this module must not cost a torch import.
"""

from __future__ import annotations

COSINE_MARGIN = 1e-6
"""The cosine is kept this far inside ±1, where the gradient of acos is infinite."""


def spectral_angles(estimate, reference, *, eps: float | None = None):
    """Per-pixel spectral angle (radians) between two (N, C, H, W) tensors, as (N, 1, H, W).

    The product of the two norms is kept off zero by adding ``eps`` to it or, without ``eps``, by
    flooring it at 1e-12. The two guards give different angles for spectra of tiny norm; each
    network keeps the one it was developed and benchmarked with (UnmixingSR: ``eps=1e-6``; SMILE:
    the floor).
    """
    import torch

    dot = (estimate * reference).sum(1, keepdim=True)
    norms = estimate.norm(dim=1, keepdim=True) * reference.norm(dim=1, keepdim=True)
    cosine = dot / (norms.clamp_min(1e-12) if eps is None else norms + eps)
    return torch.acos(cosine.clamp(-1 + COSINE_MARGIN, 1 - COSINE_MARGIN))
