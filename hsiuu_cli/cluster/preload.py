"""Loads what hsiuu's tasks run on when a Dask worker starts, for standing clusters:

    dask worker tcp://head-node:8786 --nthreads 1 --preload hsiuu_cli.cluster.preload

A fresh worker otherwise spends the first seconds of its first task importing PyTorch, ONNX,
ONNX Runtime and SciPy (3–5 s on a 2-core machine): with a campaign of small scenes, that is a
fixed cost every worker pays inside the run, which is what keeps a just-started cluster from
scaling. Preloaded, the worker pays it before it reports ready.
"""

from __future__ import annotations

import importlib

TASK_MODULES = (
    "torch",
    "onnx",
    "onnxruntime",
    "rasterio",
    "scipy.ndimage",
    "scipy.optimize",
    "threadpoolctl",
    "hsiuu_cli.cli.app",
    "hsiuu_cli.metrics",
    "hsiuu_cli.superres.inference",
    "hsiuu_cli.superres.adapt",
    "hsiuu_cli.unmixing",
    "hsiuu_cli.fusion",
    "hsiuu_cli.fusion.blocks",
    "hsiuu_cli.simulate",
)
"""The heavy modules the tasks of ``superres``, ``unmix``, ``fuse`` and ``simulate`` import (a
preloaded worker that ran 24 ``superres`` tasks had imported nothing more); rarer paths
(``nmf``'s scikit-learn, SMILE's training) still load in their first task."""


def dask_setup(worker=None) -> None:
    """Dask's preload hook, called once as the worker starts."""
    for name in TASK_MODULES:
        importlib.import_module(name)
