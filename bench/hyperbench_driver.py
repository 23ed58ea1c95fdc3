"""Runs HyperBench 0.1.0's own benchmark (its case generation, runner and metrics) on one scene for
one method, in HyperBench's own virtual environment (its numpy pin conflicts with ours).

Not imported by hsiuu: ``bench/fuse.py hyperbench`` starts it as

    <hyperbench venv>/bin/python bench/hyperbench_driver.py JOB.json

JOB.json: ``scene`` (an .npy cube, rows × cols × bands), ``name``, ``cases`` ([[ratio, msi bands,
HSI SNR dB, MSI SNR dB], ...]), ``method``, ``command`` (argv that fuses the arrays saved in the
folder appended to it: lr_hsi.npy, hr_msi.npy, srf.npy, psf.npy, metadata.json → prediction.npy,
stats.json) and ``csv`` (where HyperBench writes its results). Everything else is HyperBench's
default configuration. With ``dump`` (a folder) instead of ``method``, nothing is run: each case's arrays as
HyperBench makes them (gt_hsi, lr_hsi, hr_msi, srf, psf) are saved under ``dump/<name>_<ratio>_<bands>/`` for
benchmarks that need the reference too (``bench/superres.py guard``). The method sees exactly the arrays HyperBench hands to a ``run_pipeline``
adapter; their SHA-256 go into the CSV so runs of different methods can be checked for equal inputs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
from hyperbench.adapters import PipelineAdapter
from hyperbench.benchmark.case import BenchmarkConfig, DegradationSpec
from hyperbench.benchmark.generator import generate_cases
from hyperbench.benchmark.runner import _build_synthetic_case, run_benchmark


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(array, dtype=np.float32)).tobytes()).hexdigest()[:16]


def external_pipeline(command: list[str]):
    """A run_pipeline that hands the arrays to ``command`` (another interpreter) through .npy files."""

    def run_pipeline(HR_MSI, LR_HSI, srf, psf=None, metadata=None):  # noqa: N803 - HyperBench's names
        with tempfile.TemporaryDirectory(prefix="hyperbench-case-") as folder:
            folder = Path(folder)
            np.save(folder / "hr_msi.npy", np.asarray(HR_MSI, dtype=np.float32))
            np.save(folder / "lr_hsi.npy", np.asarray(LR_HSI, dtype=np.float32))
            np.save(folder / "srf.npy", np.asarray(srf, dtype=np.float32))
            if psf is not None:
                np.save(folder / "psf.npy", np.asarray(psf, dtype=np.float32))
            plain = {k: v for k, v in (metadata or {}).items() if isinstance(v, (str, int, float, bool, type(None)))}
            (folder / "metadata.json").write_text(json.dumps(plain))
            done = subprocess.run([*command, str(folder)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            prediction = np.load(folder / "prediction.npy")
            stats = json.loads((folder / "stats.json").read_text())
        stats.update(lr_sha=_digest(np.squeeze(LR_HSI, 0) if np.ndim(LR_HSI) == 4 else LR_HSI),
                     msi_sha=_digest(np.squeeze(HR_MSI, 0) if np.ndim(HR_MSI) == 4 else HR_MSI))
        return prediction, stats

    return run_pipeline


def dump_cases(config: BenchmarkConfig, scene: np.ndarray, name: str, folder: Path) -> None:
    """Each case's arrays, made by HyperBench's own case builder (the one its runner calls)."""
    for case in generate_cases(config):
        built = _build_synthetic_case(case, scene)
        target = folder / f"{name}_{case.downsample_ratio}_{case.msi_band_count}"
        target.mkdir(parents=True, exist_ok=True)
        for key in ("gt_hsi", "lr_hsi", "hr_msi", "srf", "psf"):
            value = getattr(built, key)
            if value is not None:
                np.save(target / f"{key}.npy", np.squeeze(value))


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    with tempfile.TemporaryDirectory(prefix="hyperbench-scene-") as folder:
        # HyperBench reads scenes from MATLAB files only
        scene_path = Path(folder) / f"{job['name']}.mat"
        scipy.io.savemat(scene_path, {"scene": np.load(job["scene"]).astype(np.float32)})
        specs = [DegradationSpec(downsample_ratio=int(r), msi_band_count=int(b), spatial_snr_db=float(s),
                                 spectral_snr_db=float(m)) for r, b, s, m in job["cases"]]
        config = BenchmarkConfig(scene_path=str(scene_path), scene_key="scene", degradation_specs=specs,
                                 output_csv_path=job.get("csv", str(Path(folder) / "unused.csv")), fail_fast=False)
        if "dump" in job:
            dump_cases(config, np.load(job["scene"]).astype(np.float32), job["name"], Path(job["dump"]))
            return
        adapter = PipelineAdapter(external_pipeline(job["command"]), name=job["method"])
        run_benchmark(adapter, config)


if __name__ == "__main__":
    main()
