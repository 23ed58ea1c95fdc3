"""Where PyTorch runs: the one reading of the ``--device`` choice (auto, cpu or cuda)."""

from __future__ import annotations

from .errors import ParameterError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None) -> str:
    """'cpu' or 'cuda' for a requested auto/cpu/cuda (None: auto); auto takes CUDA when PyTorch sees it."""
    choice = (device or "auto").strip().lower()
    if choice not in DEVICES:
        raise ParameterError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if choice == "cpu":
        return "cpu"  # without importing torch: CPU super-resolution runs on ONNX Runtime alone
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise ParameterError("--device cuda was asked for but PyTorch sees no CUDA device")
    return "cpu"
