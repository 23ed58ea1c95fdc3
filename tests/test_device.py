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
