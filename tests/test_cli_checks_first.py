"""Every refusal that needs no computation comes before the computation (the computing function of
each command is replaced by one that fails the test if it is reached), and inputs are never written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from conftest import make_mixture

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.io import write_cube

HR = Affine.translation(500000.0, 4000000.0) @ Affine.scale(2.0, -2.0)


def never(*_args, **_kwargs):
    raise AssertionError("the computation ran before an obvious refusal")


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    cube, _, _, wavelengths = make_mixture(rows=16, cols=16, bands=12, seed=1)
    folder = tmp_path / "in"
    folder.mkdir()
    scene = write_cube(Cube(cube, wavelengths=wavelengths, crs="EPSG:32611", transform=HR), folder / "scene.hdr")
    lr = write_cube(Cube(cube[::4, ::4], wavelengths=wavelengths, crs="EPSG:32611", transform=HR @ Affine.scale(4)),
                    folder / "lr.hdr")
    msi = write_cube(Cube(cube[:, :, ::4], crs="EPSG:32611", transform=HR), folder / "msi.tif")
    existing = write_cube(Cube(cube), folder / "existing.hdr")
    return {"scene": scene, "lr": lr, "msi": msi, "existing": existing, "folder": folder}


def fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def refused(runner, arguments: list[str], message: str, code: int = 1) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == code, (arguments, result.output)
    assert message in result.output, (arguments, result.output)
    assert "Traceback" not in result.output and "computation ran" not in result.output


def test_superres_refuses_before_it_computes(runner, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("hsiuu_cli.superres.inference.super_resolve_cube", never)
    scene, folder = str(inputs["scene"]), inputs["folder"]
    before = fingerprint(folder)
    for arguments, message in [
        (["-o", scene, "--overwrite"], "output is the input"),
        (["-o", str(scene).replace(".hdr", ".img"), "--overwrite"], "output is the input"),
        (["-o", str(inputs["existing"])], "output exists; use --overwrite"),
        (["-o", str(tmp_path / "x.hdr"), "--co", "COMPRESS=DEFLATE"], "COMPRESS does not apply to ENVI"),
        (["-o", str(tmp_path / "x.tif"), "--co", "BOGUS=1"], "creation option rejected"),
        (["-o", str(tmp_path / "x.tif"), "--co", "PREDICTOR=3", "--dtype", "uint16"], "PREDICTOR=3 is only supported"),
        (["-o", str(tmp_path / "x.xyz")], "cannot tell the output format"),
        (["-o", str(tmp_path / "x.hdr"), "-f", "bogus"], "unknown output format 'bogus'"),
        (["-o", str(tmp_path / "file" / "x.hdr")], "file: is a file, not a directory"),
    ]:
        if "file" in arguments[1]:
            (tmp_path / "file").write_text("a file, not a folder")
        refused(runner, ["superres", scene, "-s", "2", *arguments], message)
    assert fingerprint(folder) == before


def test_a_batch_reports_every_obvious_refusal_before_the_first_input_is_processed(runner, inputs, tmp_path, monkeypatch):
    computed = []

    def record(cube, *args, **kwargs):
        computed.append(cube.rows)
        raise RuntimeError("stop here")

    monkeypatch.setattr("hsiuu_cli.superres.inference.super_resolve_cube", record)
    out = tmp_path / "out"
    out.mkdir()
    (out / "lr_x2.hdr").write_text("already there")
    result = runner.invoke(app, ["superres", str(inputs["scene"]), str(inputs["lr"]), "-s", "2", "--out-dir", str(out)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "lr_x2.hdr: output exists" in lines[0]  # the second input's refusal, before the first input ran
    assert computed == [16]  # only the first input was processed


def test_fuse_refuses_before_it_computes(runner, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("hsiuu_cli.fusion.cubes.plan_cubes", never)
    lr, msi = str(inputs["lr"]), str(inputs["msi"])
    before = fingerprint(inputs["folder"])
    for arguments, message in [
        (["-o", lr, "--overwrite"], "output is the input"),
        (["-o", msi, "--overwrite"], "output is the input"),
        (["-o", str(inputs["existing"])], "output exists"),
        (["-o", str(tmp_path / "f.hdr"), "--co", "COMPRESS=DEFLATE"], "COMPRESS does not apply to ENVI"),
        (["-o", str(tmp_path / "f.tif"), "--co", "COMPRESS=NOPE"], "creation option rejected"),
    ]:
        refused(runner, ["fuse", lr, msi, "--srf-matrix", str(tmp_path / "unused.csv"), *arguments], message)
    assert fingerprint(inputs["folder"]) == before


def test_simulate_refuses_before_it_computes(runner, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("hsiuu_cli.simulate.plan_simulation", never)
    before = fingerprint(inputs["folder"])
    # the prefix "in/lr" with a cube named in/lr_lr.hdr would write over it; here: lr_lr → make one
    lr_lr = write_cube(Cube(np.ones((8, 8, 3), np.float32)), inputs["folder"] / "x_lr.hdr")
    refused(runner, ["simulate", str(lr_lr), "-r", "2", "-o", str(inputs["folder"] / "x"), "--overwrite"], "output is the input")
    refused(runner, ["simulate", str(inputs["scene"]), "-r", "2", "-o", str(tmp_path / "c"), "--co", "COMPRESS=LZW"],
            "COMPRESS does not apply to ENVI")
    before["x_lr.hdr"] = fingerprint(inputs["folder"])["x_lr.hdr"]
    before["x_lr.img"] = fingerprint(inputs["folder"])["x_lr.img"]
    assert fingerprint(inputs["folder"]) == before


def test_unmix_refuses_before_it_computes(runner, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("hsiuu_cli.unmixing.unmix", never)
    out = tmp_path / "u"
    out.mkdir()
    own = write_cube(Cube(np.ones((8, 8, 12), np.float32)), out / "abundances.hdr")
    before = fingerprint(out)
    refused(runner, ["unmix", str(own), "-k", "3", "-o", str(out), "--overwrite"], "output is the input")
    refused(runner, ["unmix", str(inputs["scene"]), "-k", "3", "-o", str(out)], "output exists")
    assert fingerprint(out) == before


def test_evaluate_never_writes_its_table_over_an_input(runner, inputs):
    scene = inputs["scene"]
    before = fingerprint(inputs["folder"])
    refused(runner, ["evaluate", str(scene), "-r", str(scene), "--per-band", str(scene), "--overwrite"], "output is the input")
    refused(runner, ["evaluate", str(scene), "-r", str(scene), "--per-band", str(scene.with_suffix(".img")), "--overwrite"],
            "output is the input")
    assert fingerprint(inputs["folder"]) == before


def test_train_refuses_an_existing_model_before_it_trains(runner, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("hsiuu_cli.superres.training.train", never)
    stem = tmp_path / "models" / "m_x2"
    stem.parent.mkdir()
    stem.with_suffix(".onnx").write_bytes(b"x")
    refused(runner, ["train", "superres", str(inputs["scene"]), "-s", "2", "-o", str(stem)], "output exists")
