"""Reading of the --device choice."""

import pytest

from hsiuu_cli.device import resolve_device
from hsiuu_cli.errors import ParameterError


def test_cpu_and_auto():
    torch = pytest.importorskip("torch")
    assert resolve_device("CPU") == "cpu"
    assert resolve_device(None) == resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_or_unavailable_device_is_a_parameter_error(monkeypatch):
    torch = pytest.importorskip("torch")
    with pytest.raises(ParameterError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


def test_auto_without_a_gpu_driver_does_not_import_torch(tmp_path):
    # a CPU run of superres needs ONNX Runtime only: importing torch just to hear "no CUDA" costs seconds
    import subprocess
    import sys

    code = (
        "import sys, hsiuu_cli.device as d\n"
        f"d.GPU_DRIVER_FILES = ({str(tmp_path / 'absent')!r},)\n"
        "print(d.resolve_device('auto'), 'torch' in sys.modules)\n"
        f"d.GPU_DRIVER_FILES = ({str(tmp_path)!r},)\n"  # a driver seems present: torch decides
        "chosen, asked = d.resolve_device('auto'), 'torch' in sys.modules\n"
        "import torch\n"
        "print(asked, chosen == ('cuda' if torch.cuda.is_available() else 'cpu'))\n"
    )
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    if sys.platform.startswith("linux"):
        assert lines[0] == "cpu False"
    assert lines[1] == "True True"
