"""Where PyTorch runs: the one reading of the ``--device`` choice (auto, cpu or cuda), and on how many threads."""

from __future__ import annotations

import glob
import sys
from contextlib import contextmanager

from .errors import ParameterError

DEVICES = ("auto", "cpu", "cuda")

GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia[0-9]*", "/dev/dxg", "/dev/kfd")
"""What a Linux kernel shows when a GPU driver PyTorch could use is loaded (NVIDIA, WSL's GPU
paravirtualisation, AMD ROCm)."""


def _no_gpu_driver() -> bool:
    """True where PyTorch cannot see a GPU for certain, known without importing it (which costs
    1.5–3 s, most of a short CPU run): Linux with none of :data:`GPU_DRIVER_FILES`."""
    return sys.platform.startswith("linux") and "torch" not in sys.modules and not any(
        glob.glob(pattern) for pattern in GPU_DRIVER_FILES
    )


def resolve_device(device: str | None) -> str:
    """'cpu' or 'cuda' for a requested auto/cpu/cuda (None: auto); auto takes CUDA when PyTorch sees it."""
    choice = (device or "auto").strip().lower()
    if choice not in DEVICES:
        raise ParameterError(f"unknown device '{device}' (use auto, cpu or cuda)")
    if choice == "cpu":
        return "cpu"  # without importing torch: CPU super-resolution runs on ONNX Runtime alone
    if choice == "auto" and _no_gpu_driver():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise ParameterError("--device cuda was asked for but PyTorch sees no CUDA device")
    return "cpu"


@contextmanager
def one_thread():
    """BLAS and PyTorch on one thread: as on a cluster's worker, where a block's bytes then do not depend
    on how many threads the process has (float32 products may round differently with more), and for
    small networks, whose steps are too short to share between threads."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)
