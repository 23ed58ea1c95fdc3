"""`hsiuu train superres` and `hsiuu superres` from the command line (tiny cubes, tiny networks)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from affine import Affine

from hsiuu_cli.cli.app import app
from hsiuu_cli.cube import Cube
from hsiuu_cli.errors import ModelError, ParameterError
from hsiuu_cli.io import read_cube, write_cube
from hsiuu_cli.superres import registry
from hsiuu_cli.superres.export import sha256_file
from hsiuu_cli.superres.inference import DEFAULT_TILE
from hsiuu_cli.superres.training import TrainingOptions, train

from conftest import make_mixture

TINY = ["--width", "8", "--depth", "1", "--channels", "6", "--endmembers", "3", "--batch", "2",
        "--steps-per-epoch", "2", "--unmixing-steps", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for seed in range(3):
        cube, _, _, wavelengths = make_mixture(rows=24, cols=24, bands=12, seed=seed)
        write_cube(Cube(data=cube, wavelengths=wavelengths), folder / f"scene{seed}.hdr")
    return folder


@pytest.fixture
def georeferenced(tmp_path):
    cube, _, _, wavelengths = make_mixture(rows=12, cols=10, bands=7, seed=9)
    transform = Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0) @ Affine.rotation(10)
    source = Cube(
        data=np.round(cube * 10000).astype(np.int16),
        wavelengths=wavelengths[:7],
        fwhm=np.full(7, 10.0),
        bad_bands=np.array([False] * 6 + [True]),
        band_names=[f"b{i}" for i in range(7)],
        scale_factor=10000.0,
        crs="EPSG:32611",
        transform=transform,
    )
    path = tmp_path / "scene.hdr"
    write_cube(source, path)
    return path, source


def test_train_writes_onnx_safetensors_and_card(runner, cubes, tmp_path):
    stem = tmp_path / "models" / "tiny_x2"
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(stem), "--epochs", "2", *TINY])
    assert result.exit_code == 0, result.output
    # what trains is counted after the validation split: 3 cubes found, 2 train, 1 validates
    assert "training on 2 cubes, validating on 1 (×2, UnmixingSR)" in result.stderr
    written = {p.suffix for p in map(lambda line: stem.with_name(line.split("/")[-1]), result.stdout.split())}
    assert written == {".onnx", ".safetensors", ".json", ".md"}
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["files"]["onnx"]["sha256"] == sha256_file(stem.with_suffix(".onnx"))
    assert card["files"]["safetensors"]["sha256"] == sha256_file(stem.with_suffix(".safetensors"))
    assert card["training"]["command"].startswith("hsiuu train superres")
    assert "--scale 2" in card["training"]["command"] and "--epochs 2" in card["training"]["command"]
    assert len(card["training"]["val_scenes"]) == 1 and len(card["training"]["train_scenes"]) == 2
    assert set(card["metrics"]["mean"]) >= {"psnr", "psnr_bicubic", "sam", "sam_bicubic", "ergas", "ssim"}
    assert card["config"]["unmixing"] is True
    assert not list(stem.parent.glob("*.checkpoint.*"))
    # The trained model runs through `hsiuu superres`.
    scene = cubes / "scene0.hdr"
    out = tmp_path / "out.hdr"
    run = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--model", str(stem.with_suffix(".onnx")), "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert read_cube(out).shape == (48, 48, 12)


def test_a_degradation_mix_trains_on_every_version_and_validates_on_the_first(runner, cubes, tmp_path):
    stem = tmp_path / "mix_x2"
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(stem), "--epochs", "1",
                                 "--degradation", "gaussian:0.8,gaussian:0,bicubic", *TINY])
    assert result.exit_code == 0, result.output
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["training"]["degradation"] == "gaussian:0.8,gaussian:0,bicubic"
    assert card["metrics"]["degradation"] == "gaussian:0.8"
    assert "| LR degradation in training | gaussian:0.8,gaussian:0,bicubic |" in stem.with_suffix(".md").read_text()
    # the first item is what the model's self-check degrades by
    info = registry.load_model(stem.with_suffix(".onnx")).info
    assert (info.degradation, info.psf_sigma) == ("gaussian", 0.8)
    assert len(card["training"]["train_scenes"]) == 2  # HR scenes, not their versions
    run = runner.invoke(app, ["superres", str(cubes / "scene0.hdr"), "--scale", "2", "--model", str(stem.with_suffix(".onnx")),
                              "--no-adapt", "-o", str(tmp_path / "out.hdr"), "--json"])
    assert run.exit_code == 0, run.output
    assert "degraded ×2 by gaussian σ = 0.8 px, as the model was trained" in json.loads(run.stdout)["gain_source"]


def test_other_degradations_are_the_mix_items_after_the_first():
    from hsiuu_cli.degrade import spatial_degrade
    from hsiuu_cli.superres.training import make_pair, other_degradations, parse_degradations

    hr = np.random.default_rng(0).random((8, 12, 3)).astype(np.float32)
    options = TrainingOptions(scale=4, degradation="bicubic, gaussian:0,gaussian")
    assert options.degradations == [("bicubic", None), ("gaussian", 0.0), ("gaussian", None)]
    scene = make_pair("a", hr, 4, options.degradations[0])
    versions = other_degradations([scene], options)
    assert [v.name for v in versions] == ["a (gaussian:0)", "a (gaussian)"]
    assert np.array_equal(versions[0].lr, hr[1::4, 1::4])  # σ = 0: every 4th pixel from the block's centre
    assert np.allclose(versions[1].lr, spatial_degrade(hr, 4, method="gaussian"))
    assert all(np.shares_memory(v.hr, scene.hr) for v in versions)  # no copy of the HR per version
    for bad in ("box", "bicubic:1", "gaussian:-1", "gaussian:x", "bicubic,,gaussian"):
        with pytest.raises(ParameterError, match="unknown degradation"):
            parse_degradations(bad)


def test_an_unknown_degradation_is_a_usage_error(runner, cubes, tmp_path):
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(tmp_path / "m"),
                                 "--degradation", "bicubic,box", *TINY])
    assert result.exit_code == 2
    assert "unknown degradation 'box'" in result.stderr and "Traceback" not in result.output
    assert not list(tmp_path.glob("m*"))


def test_train_band_agnostic_self_supervised(runner, cubes, tmp_path):
    stem = tmp_path / "self_x2"
    result = runner.invoke(
        app,
        ["train", "superres", str(cubes / "scene1.hdr"), "--scale", "2", "-o", str(stem), "--self",
         "--band-agnostic", "--epochs", "1", "--width", "8", "--depth", "1", "--batch", "2",
         "--steps-per-epoch", "2", "--val-fraction", "0.25"],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["kind"] == "bandwise" and card["bands"] == {"min": 1, "max": None}
    training = card["training"]
    assert training["self_supervised"] is True
    # the whole scene trains (no bottom rows held out), and the card says its figures are not held out
    assert training["train_scenes"] == training["val_scenes"] == [str(cubes / "scene1.hdr")]
    assert training["val_held_out"] is False
    assert "## Metrics on training (not held-out) scenes" in stem.with_suffix(".md").read_text()
    assert "(×2, band-wise)" in result.stderr
    assert "fit on the training scenes (not held out): PSNR" in result.stderr and "validation:" not in result.stderr
    # refining it: the network is the --init model's (band-wise), whatever --band-agnostic says
    refined = runner.invoke(
        app,
        ["train", "superres", str(cubes / "scene2.hdr"), "--scale", "2", "-o", str(tmp_path / "refined_x2"), "--self",
         "--init", str(stem.with_suffix(".onnx")), "--epochs", "1", "--batch", "2", "--steps-per-epoch", "2"],
    )
    assert refined.exit_code == 0, refined.output
    assert "training on 1 cube, self-supervised: the fit is measured on the same scenes (×2, band-wise)" in refined.stderr


def test_an_interrupted_training_leaves_no_empty_model_folder(runner, cubes, tmp_path, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hsiuu_cli.superres.training.train", interrupted)
    folder = tmp_path / "new" / "models"
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(folder / "m_x2"), *TINY])
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (tmp_path / "new").exists()


def test_superres_says_when_a_cube_is_not_hyperspectral(runner, tmp_path):
    cube, _, _, wavelengths = make_mixture(rows=12, cols=12, bands=12, seed=2)
    single = write_cube(Cube(data=cube[:, :, :1], wavelengths=wavelengths[:1]), tmp_path / "pan.hdr")
    result = runner.invoke(app, ["superres", str(single), "-s", "2", "-o", str(tmp_path / "pan_x2.hdr")])
    assert result.exit_code == 0, result.output
    assert "warning: pan.hdr has 1 band: not a hyperspectral cube" in result.stderr
    twelve = write_cube(Cube(data=cube, wavelengths=wavelengths), tmp_path / "hsi.hdr")
    result = runner.invoke(app, ["superres", str(twelve), "-s", "2", "-o", str(tmp_path / "hsi_x2.hdr")])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_training_is_deterministic_and_resumable(cubes, tmp_path):
    paths = sorted(cubes.glob("*.hdr"))
    options = dict(scale=2, width=8, depth=1, channels=6, endmembers=3, batch=2, steps_per_epoch=2, unmixing_steps=2, threads=1)
    one = train(paths, TrainingOptions(epochs=2, **options))
    two = train(paths, TrainingOptions(epochs=2, **options))
    for (name, a), b in zip(one.network.state_dict().items(), two.network.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    checkpoint = tmp_path / "run.checkpoint.safetensors"

    def interrupt_after_first_epoch(event):
        if event["phase"] == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(paths, TrainingOptions(epochs=2, **options), checkpoint=checkpoint, on_progress=interrupt_after_first_epoch)
    resumed = train(paths, TrainingOptions(epochs=2, **options), checkpoint=checkpoint, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history == one.history
    for (name, a), b in zip(one.network.state_dict().items(), resumed.network.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    with pytest.raises(Exception, match="width"):
        train(paths, TrainingOptions(epochs=3, **{**options, "width": 16}), checkpoint=checkpoint, resume=True)


def test_resume_refuses_a_checkpoint_of_another_run(cubes, tmp_path):
    paths = sorted(cubes.glob("*.hdr"))
    options = dict(scale=2, width=8, depth=1, channels=6, endmembers=3, batch=2, steps_per_epoch=2, unmixing_steps=2, threads=1)
    checkpoint = tmp_path / "run.checkpoint.safetensors"

    def interrupt_after_second_epoch(event):
        if event["phase"] == "epoch" and event["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(paths, TrainingOptions(epochs=3, **options), checkpoint=checkpoint, on_progress=interrupt_after_second_epoch)
    before = checkpoint.read_bytes()
    refusals = [
        (paths, {"seed": 1}, "seed=0, not 1"),
        (paths, {"learning_rate": 2e-3}, "learning_rate=0.001, not 0.002"),
        (paths, {"degradation": "gaussian"}, "degradation='bicubic', not 'gaussian'"),
        (paths, {"steps_per_epoch": 3}, "steps_per_epoch=2, not 3"),
        (paths[:2], {}, f"training cube 3 = {paths[2].resolve()}, not none"),
    ]
    for data, change, expected in refusals:
        with pytest.raises(ModelError) as caught:
            train(data, TrainingOptions(epochs=3, **{**options, **change}), checkpoint=checkpoint, resume=True)
        assert str(caught.value).startswith(f"{checkpoint}: checkpoint was made with {expected};"), change
    with pytest.raises(ParameterError, match="finished 2 epochs; --epochs must be at least that"):
        train(paths, TrainingOptions(epochs=1, **options), checkpoint=checkpoint, resume=True)
    assert checkpoint.read_bytes() == before
    # --epochs is the one setting that may change (be raised) on resume.
    resumed = train(paths, TrainingOptions(epochs=4, **options), checkpoint=checkpoint, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_val_cube_among_the_data_is_left_out_of_training(runner, cubes, tmp_path):
    stem = tmp_path / "val_x2"
    held = cubes / "scene1.hdr"
    result = runner.invoke(app, ["train", "superres", str(cubes), "--val", str(held), "--scale", "2", "-o", str(stem),
                                 "--epochs", "1", *TINY], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"left out of training, as they are --val cubes: {held}" in result.stderr.splitlines()
    assert "training on 2 cubes, validating on 1 (×2, UnmixingSR)" in result.stderr
    training = json.loads(stem.with_suffix(".json").read_text())["training"]
    assert training["train_scenes"] == [str(cubes / "scene0.hdr"), str(cubes / "scene2.hdr")]
    assert training["val_scenes"] == [str(held)] and training["val_held_out"] is True
    # The same cube named by its ENVI data file is the same cube; with nothing else there is nothing to train on.
    result = runner.invoke(app, ["train", "superres", str(held), "--val", str(held.with_suffix(".img")), "--scale", "2",
                                 "-o", str(tmp_path / "none_x2"), "--epochs", "1", *TINY])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: nothing left to train on: every training cube is also a --val cube ({held})"


def test_scene_too_small_to_split_trains_without_validation_and_says_so(runner, tmp_path):
    cube, _, _, wavelengths = make_mixture(rows=10, cols=16, bands=12, seed=4)
    scene = tmp_path / "small.hdr"
    write_cube(Cube(data=cube, wavelengths=wavelengths), scene)
    stem = tmp_path / "small_x2"
    result = runner.invoke(app, ["train", "superres", str(scene), "--scale", "2", "-o", str(stem), "--epochs", "1", *TINY],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert (f"no validation: {scene} has 10 rows, too few to hold out 0.2 of them at ×2 (each part needs 4); "
            "all of it trains and the model card has no metrics") in result.stderr.splitlines()
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["training"]["train_scenes"] == [str(scene)] and card["training"]["val_scenes"] == []
    assert "val_held_out" not in card["training"] and card["metrics"] is None
    text = stem.with_suffix(".md").read_text()
    assert "Validation scenes" not in text and "## Metrics" not in text


def test_checkpoint_replaced_or_missing_is_reported(runner, cubes, tmp_path):
    stem = tmp_path / "ck_x2"
    checkpoint = tmp_path / "ck_x2.checkpoint.safetensors"
    args = ["train", "superres", str(cubes / "scene0.hdr"), "--scale", "2", "-o", str(stem), "--epochs", "1", *TINY]
    result = runner.invoke(app, [*args, "--resume"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"no checkpoint {checkpoint} to resume; starting from the beginning" in result.stderr.splitlines()
    checkpoint.write_bytes(b"an earlier run's")
    result = runner.invoke(app, [*args, "--overwrite"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"an earlier run's checkpoint {checkpoint} is replaced; use --resume to continue it" in result.stderr.splitlines()
    assert not checkpoint.exists()


def test_empty_data_folder_is_named(runner, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no cube here")
    result = runner.invoke(app, ["train", "superres", str(empty), "--scale", "2", "-o", str(tmp_path / "m"), *TINY])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: no cubes found in {empty} "
                                     "(searched recursively for .hdr, .tif, .tiff files that are not spectral libraries)")


def test_train_rejects_bad_scale_and_existing_output(runner, cubes, tmp_path):
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "5", "-o", str(tmp_path / "m")])
    assert result.exit_code == 1 and "scale 5 is not supported" in result.output
    (tmp_path / "m.onnx").write_bytes(b"x")
    result = runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(tmp_path / "m"), *TINY])
    assert result.exit_code == 1 and "exists" in result.output
    assert (tmp_path / "m.onnx").read_bytes() == b"x"


def test_superres_with_shipped_model_updates_geo_and_keeps_metadata(runner, georeferenced, tmp_path):
    if not registry.SHIPPED:
        pytest.fail("no shipped models registered")
    source_path, source = georeferenced
    out = tmp_path / "sharp.hdr"
    result = runner.invoke(app, ["superres", str(source_path), "--scale", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    sharp = read_cube(out)
    assert sharp.shape == (24, 20, 7)
    assert sharp.data.dtype == np.int16 and sharp.scale_factor == 10000.0
    expected = source.transform @ Affine.scale(0.5)
    assert sharp.transform.almost_equals(expected, precision=1e-6)
    assert sharp.transform.c == source.transform.c and sharp.transform.f == source.transform.f
    np.testing.assert_allclose(sharp.wavelengths, source.wavelengths)
    np.testing.assert_allclose(sharp.fwhm, source.fwhm)
    np.testing.assert_array_equal(sharp.bad_bands, source.bad_bands)
    assert sharp.band_names == source.band_names
    # Values stay close to the scene's own (a sharpened, not a different, image).
    lr_mean = source.data[:, :, :6].astype(float).mean()
    assert abs(np.asarray(sharp.data)[:, :, :6].astype(float).mean() - lr_mean) < 0.05 * lr_mean


def test_batch_naming_and_bicubic(runner, cubes, tmp_path):
    result = runner.invoke(
        app, ["superres", str(cubes / "scene0.hdr"), str(cubes / "scene1.hdr"), "--scale", "3", "--method", "bicubic",
              "--out-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.hdr")) == ["scene0_x3.hdr", "scene1_x3.hdr"]
    assert read_cube(tmp_path / "scene0_x3.hdr").shape == (72, 72, 12)


def test_bad_inputs(runner, cubes, georeferenced, tmp_path):
    scene = str(cubes / "scene0.hdr")
    result = runner.invoke(app, ["superres", scene, "--scale", "5", "-o", str(tmp_path / "a.hdr")])
    assert result.exit_code == 1 and "scale 5 is not supported (supported: 2, 3, 4, 8)" in result.output
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    result = runner.invoke(app, ["superres", scene, "--scale", "2", "--model", str(broken), "-o", str(tmp_path / "b.hdr")])
    assert result.exit_code == 1 and "not a valid ONNX model" in result.output
    assert not list(tmp_path.glob("b.*"))
    existing = tmp_path / "c.hdr"
    write_cube(read_cube(scene), existing)
    before = existing.read_bytes()
    result = runner.invoke(app, ["superres", scene, "--scale", "2", "--method", "bicubic", "-o", str(existing)])
    assert result.exit_code == 1 and "exists" in result.output and existing.read_bytes() == before


def test_model_that_does_not_fit_names_what_fits(runner, cubes, tmp_path):
    stem = tmp_path / "wide_x2"
    assert runner.invoke(app, ["train", "superres", str(cubes), "--scale", "2", "-o", str(stem), "--epochs", "1", *TINY]).exit_code == 0
    narrow, *_ = make_mixture(rows=8, cols=8, bands=3, seed=1)
    write_cube(Cube(data=narrow), tmp_path / "rgb.hdr")
    result = runner.invoke(app, ["superres", str(tmp_path / "rgb.hdr"), "--scale", "2", "--model", str(stem) + ".onnx",
                                 "-o", str(tmp_path / "x.hdr")])
    assert result.exit_code == 1
    assert "takes 10–14 bands and the scene has 3" in result.output
    if registry.SHIPPED:
        assert "models that fit:" in result.output


def test_superres_help_states_the_shipped_band_ranges_and_tile(runner):
    """The help quotes figures that live elsewhere (model metadata, the inference default); retraining must not leave them stale."""
    result = runner.invoke(app, ["superres", "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert f"(default {DEFAULT_TILE})" in text
    for name in ("aviris_x2", "aviris_x4"):
        info = registry.get_model(name).info
        stated = re.search(rf"{name} \((\d+)-(\d+)", text)
        assert stated is not None, name
        assert (int(stated.group(1)), int(stated.group(2))) == (info.bands_min, info.bands_max)


def test_integer_output_of_a_float_cube_without_scale_factor_warns(runner, tmp_path):
    cube, _, _, _ = make_mixture(rows=10, cols=10, bands=4, seed=1)
    write_cube(Cube(data=cube), tmp_path / "float.hdr")
    result = runner.invoke(app, ["superres", str(tmp_path / "float.hdr"), "--scale", "2", "--method", "bicubic",
                                 "--dtype", "int16", "-o", str(tmp_path / "out.hdr")], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "rounded to whole numbers in int16" in result.stderr
    assert read_cube(tmp_path / "out.hdr").data.dtype == np.int16


def test_integer_output_that_clips_warns_and_unstorable_types_are_refused(runner, tmp_path):
    stored = (np.random.default_rng(0).random((10, 10, 4)) * 9000 + 500).astype(np.int16)
    write_cube(Cube(data=stored, scale_factor=10000.0), tmp_path / "refl.hdr")
    run = ["superres", str(tmp_path / "refl.hdr"), "--scale", "2", "--method", "bicubic"]
    result = runner.invoke(app, [*run, "--dtype", "uint8", "-o", str(tmp_path / "r8.hdr")], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "of the values fell outside uint8's range and were clipped" in result.stderr
    result = runner.invoke(app, [*run, "-o", str(tmp_path / "r16.hdr")], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "clipped" not in result.stderr
    for dtype in ("int8", "float16"):
        result = runner.invoke(app, [*run, "--dtype", dtype, "-o", str(tmp_path / f"{dtype}.hdr")])
        assert result.exit_code == 2 and not (tmp_path / f"{dtype}.hdr").exists()


# -- scene adaptation (`superres --adapt`) -------------------------------------------------------


@pytest.fixture
def adaptable(tmp_path):
    """A 56 × 56 scene (large enough to adapt on at ×2) and a tiny ×2 model file."""
    from hsiuu_cli.superres.export import ModelInfo, export_model
    from hsiuu_cli.superres.config import NetworkConfig
    from hsiuu_cli.superres.network import build_network

    import torch

    cube, _, _, wavelengths = make_mixture(rows=56, cols=56, bands=6, seed=11)
    scene = tmp_path / "scene.hdr"
    write_cube(Cube(data=cube, wavelengths=wavelengths), scene)
    config = NetworkConfig(unmixing=False, scale=2, width=8, depth=1, group=3)
    torch.manual_seed(0)
    paths = export_model(build_network(config), ModelInfo(config), tmp_path / "tiny_x2", {"training": {}})
    return scene, paths["onnx"]


def test_adapt_writes_the_guard_choice_and_saves_the_model_with_a_card(runner, adaptable, tmp_path):
    scene, model = adaptable
    before = sha256_file(model)
    out, saved = tmp_path / "out.hdr", tmp_path / "adapted"
    result = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--model", str(model), "--adapt",
                                 "--adapt-time", "5", "--save-model", str(saved), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    adaptation = summary["adaptation"]
    assert adaptation["ran"] is True and adaptation["fine_tuned"] is True
    if adaptation["result"] == "adapted":
        assert summary["result"] == "adapted" and summary["gain_source"] == "from the held-back pairs"
    else:  # the unadapted model, run as with --no-adapt: its self-check may still fall back to bicubic
        assert summary["result"] in ("model", "bicubic") and "self_check" in summary
    assert set(adaptation["held_back"]) == {"model", "adapted"}
    for check in adaptation["held_back"].values():
        assert {"psnr", "sam", "psnr_bicubic", "sam_bicubic", "gain"} <= set(check)
    assert 0 < adaptation["psf"]["sigma_hr_pixels"] and adaptation["time_limit_s"] == 5
    assert adaptation["stopped_by"] in ("steps", "time limit", "no improvement on held-back pairs")
    assert read_cube(out).shape == (112, 112, 6)
    stem = saved / "scene_tiny_x2_adapted"
    assert sorted(summary["saved_model"]) == sorted(str(stem) + ext for ext in (".json", ".md", ".onnx", ".safetensors"))
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["adaptation"]["scene"] == str(scene) and "--adapt" in card["adaptation"]["command"]
    assert card["degradation"] == "gaussian" and "fine-tuned on scene.hdr" in card["description"]
    assert "## Adaptation" in stem.with_suffix(".md").read_text()
    adapted = registry.load_model(stem.with_suffix(".onnx"))  # checked against its card
    assert adapted.info.psf_sigma == pytest.approx(adaptation["psf"]["sigma_hr_pixels"], abs=1e-3)
    assert sha256_file(model) == before  # the model it came from is never written


def test_adapt_on_a_scene_too_small_is_an_error_and_the_default_skips_it(runner, adaptable, tmp_path):
    _, model = adaptable
    cube, *_ = make_mixture(rows=30, cols=40, bands=6, seed=1)
    small = tmp_path / "small.hdr"
    write_cube(Cube(data=cube), small)
    result = runner.invoke(app, ["superres", str(small), "--scale", "2", "--model", str(model), "--adapt", "-o", str(tmp_path / "a.hdr")])
    assert result.exit_code == 1
    assert "too small to adapt on at ×2 (it needs at least 48×48 pixels); use --no-adapt" in result.output
    assert not (tmp_path / "a.hdr").exists()
    result = runner.invoke(app, ["superres", str(small), "--scale", "2", "--model", str(model), "-o", str(tmp_path / "b.hdr"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["adaptation"] == {"ran": False, "reason": "a 30×40 scene is too small to adapt on at ×2 (it needs at least 48×48 pixels)"}
    assert summary["result"] in ("model", "bicubic") and "self_check" in summary


def test_no_adapt_reports_the_sam_guard(runner, adaptable, tmp_path):
    scene, model = adaptable
    result = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--model", str(model), "--no-adapt",
                                 "-o", str(tmp_path / "o.hdr"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "adaptation" not in summary
    check = summary["self_check"]
    assert summary["gain"] == pytest.approx(check["gain"], abs=1e-4)
    assert check["psnr"] >= check["psnr_bicubic"] and check["sam"] <= check["sam_bicubic"]
    assert summary["result"] == ("bicubic" if check["gain"] == 0 else "model")
    assert summary["dimmed_lines"] == 0


def test_edges_dimmed_by_zero_padding_are_reported(runner, adaptable, tmp_path):
    from scipy import ndimage

    _, model = adaptable
    hr, _, _, wavelengths = make_mixture(rows=96, cols=96, bands=6, seed=12)
    lr = ndimage.gaussian_filter(hr, sigma=(2, 2, 0), mode="constant")[::2, ::2]
    scene = tmp_path / "padded.hdr"
    write_cube(Cube(data=lr, wavelengths=wavelengths), scene)
    result = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--model", str(model), "--no-adapt",
                                 "-o", str(tmp_path / "o.hdr"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dimmed_lines"] >= 1


@pytest.mark.parametrize("flags", [["--method", "bicubic", "--adapt"], ["--no-adapt", "--save-model", "d"],
                                   ["--method", "bicubic", "--save-model", "d"],
                                   ["--adapt", "--scheduler", "tcp://127.0.0.1:9"]])  # refused before connecting
def test_adapt_option_conflicts_are_usage_errors(runner, adaptable, tmp_path, flags):
    scene, _ = adaptable
    result = runner.invoke(app, ["superres", str(scene), "--scale", "2", *flags, "-o", str(tmp_path / "o.hdr")])
    assert result.exit_code == 2


def test_adapt_on_an_all_no_data_scene_is_one_line_and_exit_1(runner, adaptable, tmp_path):
    _, model = adaptable
    empty = tmp_path / "empty.hdr"
    write_cube(Cube(data=np.full((60, 60, 4), np.nan, np.float32)), empty)
    result = runner.invoke(app, ["superres", str(empty), "--scale", "2", "--model", str(model), "--adapt", "-o", str(tmp_path / "o.hdr")])
    assert result.exit_code == 1
    assert "empty.hdr: the scene has no valid pixels" in result.output and "Traceback" not in result.output


def test_noise_is_removed_first_and_reported(runner, adaptable, tmp_path):
    from hsiuu_cli.degrade import add_noise

    _, model = adaptable
    cube, _, _, wavelengths = make_mixture(rows=40, cols=40, bands=40, seed=13)
    scene = tmp_path / "noisy.hdr"
    write_cube(Cube(data=add_noise(cube, 25.0, 0).astype(np.float32), wavelengths=wavelengths), scene)
    for flags, applied in (([], True), (["--no-denoise"], False)):
        out = tmp_path / f"out{len(flags)}.hdr"
        result = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--model", str(model), "--no-adapt",
                                     "-o", str(out), "--json", *flags])
        assert result.exit_code == 0, result.output
        noise = json.loads(result.stdout)["noise"]
        assert noise["applied"] is applied and noise["snr_db"] == pytest.approx(25.0, abs=1.5)
        assert out.exists()
    result = runner.invoke(app, ["superres", str(scene), "--scale", "2", "--method", "bicubic", "--denoise", "-o", str(tmp_path / "b.hdr")])
    assert result.exit_code == 2 and not (tmp_path / "b.hdr").exists()
