"""Runs the SpectraMorph authors' TensorFlow code on one HyperBench case, in its own virtual
environment (tensorflow-cpu from PyPI; never a dependency of hsiuu, and its code is not part of
this repository: ``--code`` points at a checkout of github.com/ritikgshah/SpectraMorph's
``SpectraMorph_python`` folder outside it).

    <venv>/bin/python bench/spectramorph_tf_case.py --code DIR CASE_FOLDER

CASE_FOLDER holds what bench/hyperbench_driver.py writes (hr_msi.npy, lr_hsi.npy, srf.npy); the
prediction and its timing are written back (prediction.npy, stats.json). Settings are read from the
authors' ``Config_file_templates/config_template.yaml`` unchanged (2500 epochs, 1024 hidden units,
K = 7, one-cycle learning rate, no coarse spectral prior, full-batch training) but one: the
template's full-image inference (``inference_batch_size: null``) measures GPU memory and fails on a
machine without a GPU, so inference goes through the authors' tiled path with one tile as large as
the image — the same per-pixel MLP on the same pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", required=True, type=Path, help="the authors' SpectraMorph_python folder")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    import yaml
    from spectramorph_helpers import run_pipeline

    settings = yaml.safe_load((args.code / "Config_file_templates" / "config_template.yaml").read_text())
    msi = np.load(args.folder / "hr_msi.npy")
    lr = np.load(args.folder / "lr_hsi.npy")
    batched = msi.ndim == 4
    if batched:
        msi, lr = msi[0], lr[0]
    srf = np.load(args.folder / "srf.npy")
    if srf.shape[0] != msi.shape[2]:
        srf = srf.T  # the authors' code takes msi bands × hsi bands
    started = time.perf_counter()
    fused, _, _ = run_pipeline(
        msi, lr, srf,
        num_endmembers=settings["num_endmembers"], epochs=settings["epochs"], init_lr=settings["init_lr"],
        max_lr=settings["max_lr"], final_lr=settings["final_lr"], hidden_size=settings["hidden_size"],
        spec_prior=settings["spec_prior"], prior_downsample=settings["prior_downsample"],
        training_batch_size=settings["training_batch_size"],
        inference_batch_size=settings["inference_batch_size"] or max(msi.shape[:2]),
        synthetic=True, return_format=settings["figure_format"],
    )
    seconds = time.perf_counter() - started
    fused = np.asarray(fused, dtype=np.float32)
    np.save(args.folder / "prediction.npy", fused[None] if batched else fused)
    (args.folder / "stats.json").write_text(json.dumps({"fusion_seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
