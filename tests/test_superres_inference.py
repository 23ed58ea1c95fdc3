"""Export, registry and tiled inference of super-resolution models (tiny random networks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hsiuu_cli.cube import Cube
from hsiuu_cli.degrade import resize_bicubic
from hsiuu_cli.errors import ModelError, ParameterError
from hsiuu_cli.superres import super_resolve
from hsiuu_cli.superres import registry
from hsiuu_cli.superres.export import ModelInfo, export_model, sha256_file
from hsiuu_cli.superres.inference import OnnxBackend, SuperResolver, TorchBackend, super_resolve_cube
from hsiuu_cli.superres.config import NetworkConfig
from hsiuu_cli.superres.network import build_network
from hsiuu_cli.superres.registry import load_model, load_model_file

from conftest import make_mixture

torch.set_num_threads(1)


def make_model(tmp_path, kind="unmixingsr", scale=2, name="tiny", bands=(1, None), **info):
    config = NetworkConfig(
        unmixing=kind == "unmixingsr", scale=scale, channels=6, width=8, depth=1, endmembers=3, encoder_width=4, group=3
    )
    torch.manual_seed(3)
    network = build_network(config)
    torch.nn.init.normal_(network.tail.weight, std=0.05)
    paths = export_model(network, ModelInfo(config, bands[0], bands[1], **info), tmp_path / name, {"training": {}})
    return network, paths


@pytest.fixture(scope="module")
def scene():
    cube, _, _, wavelengths = make_mixture(rows=22, cols=26, bands=10, seed=4)
    return cube, wavelengths


@pytest.mark.parametrize("kind", ["unmixingsr", "bandwise"])
def test_onnx_matches_pytorch(tmp_path, kind):
    network, paths = make_model(tmp_path, kind)
    model = load_model_file(paths["onnx"])
    rng = np.random.default_rng(0)
    groups = rng.random((5, network.config.input_channels, 9, 11)).astype(np.float32)
    spectrum = rng.random((1, 6, 9, 11)).astype(np.float32) if kind == "unmixingsr" else None
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(groups), None if spectrum is None else torch.from_numpy(spectrum))
    np.testing.assert_allclose(OnnxBackend(model, threads=1).run(groups, spectrum), expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(TorchBackend(model, "cpu").run(groups, spectrum), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["unmixingsr", "bandwise"])
def test_tiled_inference_equals_whole_scene(tmp_path, scene, kind):
    cube, _ = scene
    _, paths = make_model(tmp_path, kind)
    model = load_model(paths["onnx"])
    whole = super_resolve(cube, 2, model, tile=64, calibrate=False)
    tiled = super_resolve(cube, 2, model, tile=8, calibrate=False)
    baseline = super_resolve(cube, 2, method="bicubic")
    assert whole.shape == (44, 52, 10)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    assert np.abs(whole - baseline).max() > 1e-4  # the model did change the pixels


def test_bicubic_method_is_the_degrade_baseline(scene):
    cube, _ = scene
    np.testing.assert_allclose(
        super_resolve(cube, 3, method="bicubic", tile=8), resize_bicubic(cube, 66, 78), rtol=1e-5, atol=1e-6
    )


def test_tampered_model_is_refused(tmp_path):
    _, paths = make_model(tmp_path)
    data = bytearray(paths["onnx"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths["onnx"].write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(paths["onnx"])


def test_corrupted_model_without_card_is_refused(tmp_path):
    _, paths = make_model(tmp_path)
    paths["json"].unlink()
    paths["onnx"].write_bytes(paths["onnx"].read_bytes()[:500])
    with pytest.raises(ModelError, match="not a valid ONNX"):
        load_model(paths["onnx"])


def test_registry_verifies_shipped_checksums(tmp_path, monkeypatch):
    _, paths = make_model(tmp_path, name="shipped_x2")
    entry = registry.RegistryEntry(
        "shipped_x2", sha256_file(paths["onnx"]), sha256_file(paths["safetensors"]), "test"
    )
    monkeypatch.setenv(registry.MODELS_ENV, str(tmp_path))
    monkeypatch.setattr(registry, "SHIPPED", {"shipped_x2": entry})
    assert registry.get_model("shipped_x2").scale == 2
    assert registry.select_model(2, 10).name == "shipped_x2"
    with pytest.raises(ModelError, match="no shipped model for ×4 .*shipped scales: ×2"):
        registry.select_model(4, 10)
    paths["safetensors"].write_bytes(paths["safetensors"].read_bytes()[:-1] + b"!")
    with pytest.raises(ModelError, match="checksum"):
        registry.get_model("shipped_x2").weights()
    paths["onnx"].write_bytes(paths["onnx"].read_bytes() + b"\0")
    with pytest.raises(ModelError, match="registry checksum"):
        registry.get_model("shipped_x2")


def test_model_that_does_not_fit_names_the_problem(tmp_path):
    _, paths = make_model(tmp_path, bands=(150, 230), wavelength_range=(400.0, 2500.0))
    model = load_model(paths["onnx"])
    with pytest.raises(ModelError, match="takes 150–230 bands and the scene has 10"):
        registry.check_fits(model, 2, 10)
    with pytest.raises(ModelError, match="×2, not ×4"):
        registry.check_fits(model, 4, 200)
    with pytest.raises(ModelError, match="trained on 400–2500 nm"):
        registry.check_fits(model, 2, 200, np.linspace(400, 1000, 200))
    registry.check_fits(model, 2, 200, np.linspace(380, 2480, 200))
    with pytest.raises(ParameterError, match="supported: 2, 3, 4, 8"):
        registry.check_scale(5)


def test_no_data_pixels_stay_no_data(tmp_path, scene):
    cube, _ = scene
    _, paths = make_model(tmp_path, "bandwise")
    holed = cube.copy()
    holed[3, 4, :] = np.nan
    out = super_resolve(holed, 2, load_model(paths["onnx"]), calibrate=False)
    assert np.isnan(out[6:8, 8:10]).all()
    assert np.isfinite(np.delete(out.reshape(-1, 10), [i * 52 + j for i in (6, 7) for j in (8, 9)], axis=0)).all()


def test_valid_pixels_beside_no_data_keep_their_level():
    """No-data must not leak the scene mean into its neighbours: a dark field stays dark up to a no-data corner."""
    data = np.full((24, 24, 5), 0.3, np.float32)
    data[:, :12] = 0.02
    data[:3, :3] = -9999
    result, _ = super_resolve_cube(Cube(data=data, nodata=-9999.0), 2, None, method="bicubic", dtype=np.float32)
    out = np.asarray(result.data)
    out[out == -9999] = np.nan
    assert np.isnan(out[:6, :6]).all()
    np.testing.assert_allclose(out[:6, 6:16], 0.02, atol=1e-6)
    np.testing.assert_allclose(out[6:12, :16], 0.02, atol=1e-6)


@pytest.mark.parametrize("kind", ["unmixingsr", "bandwise"])
def test_tiled_inference_with_no_data_equals_whole_scene(tmp_path, scene, kind):
    cube, _ = scene
    _, paths = make_model(tmp_path, kind)
    model = load_model(paths["onnx"])
    holed = cube.copy()
    holed[6:12, 7:10] = np.nan  # across the 8-pixel tile boundary
    holed[:2, 20:] = np.nan
    whole = super_resolve(holed, 2, model, tile=64, calibrate=False)
    tiled = super_resolve(holed, 2, model, tile=8, calibrate=False)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    assert np.isnan(whole[12:24, 14:20]).all() and np.isfinite(whole[12:24, 24:30]).all()


def test_integer_output_never_turns_valid_pixels_into_no_data():
    """Bicubic undershoot at a dark edge clips to the type's floor; with no-data = 0 those pixels must stay valid."""
    stored = np.full((16, 16, 4), 3000, np.uint16)
    stored[:, :8] = 2
    stored[:2, :2] = 0
    result, _ = super_resolve_cube(Cube(data=stored, nodata=0.0, scale_factor=10000.0), 2, None, method="bicubic")
    out = np.asarray(result.data)
    nodata_pixels = (out == 0).all(axis=2)
    assert nodata_pixels[:4, :4].all() and nodata_pixels.sum() == 16
    assert (out[4:, :20] > 0).all()


def test_header_fields_of_the_old_grid_are_dropped(scene):
    cube, _ = scene
    grid_fields = {"x start": "101", "y start": "57", "pixel size": "{20, 20, units=Meters}", "geo points": "{1, 1, 34.1, -117.2}"}
    source = Cube(data=cube, metadata={**grid_fields, "sensor type": "AVIRIS"})
    result, _ = super_resolve_cube(source, 2, None, method="bicubic")
    assert result.metadata == {"sensor type": "AVIRIS"}


def test_all_nan_bad_bands_do_not_void_pixels(tmp_path, scene):
    cube, _ = scene
    _, paths = make_model(tmp_path)
    data = cube.copy()
    data[:, :, 2] = np.nan
    bad = np.zeros(10, bool)
    bad[2] = True
    out = super_resolve(data, 2, load_model(paths["onnx"]), bad_bands=bad, calibrate=False)
    assert np.isnan(out[:, :, 2]).all()
    assert np.isfinite(np.delete(out, 2, axis=2)).all()


def test_integer_cube_keeps_type_and_scale_factor(tmp_path, scene):
    cube, _ = scene
    stored = np.round(cube * 10000).astype(np.int16)
    source = Cube(data=stored, scale_factor=10000.0)
    result, plan = super_resolve_cube(source, 2, None, method="bicubic")
    out = np.asarray(result.data)
    assert out.dtype == np.int16 and result.scale_factor == 10000.0
    expected = resize_bicubic(stored.astype(np.float32) / 10000, 44, 52) * 10000
    assert np.abs(out - expected).max() <= 0.51
    as_float, _ = super_resolve_cube(source, 2, None, method="bicubic", dtype=np.float32)
    assert as_float.scale_factor is None
    np.testing.assert_allclose(np.asarray(as_float.data), expected / 10000, atol=1e-5)


def test_calibration_pulls_a_harmful_model_back_to_bicubic(tmp_path):
    cube, *_ = make_mixture(rows=60, cols=60, bands=6, seed=2)
    config = NetworkConfig(unmixing=False, scale=2, width=8, depth=1, group=3)
    network = build_network(config)
    torch.nn.init.normal_(network.tail.weight, std=1.0)  # a model that only adds noise
    paths = export_model(network, ModelInfo(config), tmp_path / "noisy", {})
    model = load_model(paths["onnx"])
    resolver = SuperResolver(Cube(data=cube), 2, model, calibrate=True)
    assert resolver.plan.gain < 0.05
    uncalibrated = super_resolve(cube, 2, model, calibrate=False)
    calibrated = super_resolve(cube, 2, model, calibrate=True)
    baseline = super_resolve(cube, 2, method="bicubic")
    assert np.abs(calibrated - baseline).mean() < 0.1 * np.abs(uncalibrated - baseline).mean()


def test_scene_smaller_than_tile_and_halo(tmp_path):
    _, paths = make_model(tmp_path, scale=4)
    tiny = np.random.default_rng(5).random((3, 2, 10)).astype(np.float32)
    out = super_resolve(tiny, 4, load_model(paths["onnx"]), tile=128)
    assert out.shape == (12, 8, 10) and np.isfinite(out).all()


def test_lazy_rows_match_the_whole(tmp_path, scene):
    cube, _ = scene
    _, paths = make_model(tmp_path)
    result, _ = super_resolve_cube(Cube(data=cube), 2, load_model(paths["onnx"]), tile=8, calibrate=False)
    whole = np.asarray(result.data)
    np.testing.assert_array_equal(result.data[5:23], whole[5:23])
    np.testing.assert_array_equal(result.data[40], whole[40])
    np.testing.assert_array_equal(result.data[3:9, 2, 1:4], whole[3:9, 2, 1:4])


def test_same_weights_give_the_same_safetensors_bytes(tmp_path):
    """The card and registry checksum the weights file, so its bytes must not depend on the run."""
    exports = []
    for i in range(4):
        (tmp_path / str(i)).mkdir()
        exports.append(make_model(tmp_path / str(i))[1]["safetensors"].read_bytes())
    assert all(data == exports[0] for data in exports)


def test_model_card_records_checksums(tmp_path):
    _, paths = make_model(tmp_path)
    card = json.loads(paths["json"].read_text())
    assert card["files"]["onnx"]["sha256"] == sha256_file(paths["onnx"])
    assert card["files"]["safetensors"]["sha256"] == sha256_file(paths["safetensors"])
    assert card["scale"] == 2 and card["halo_lr_pixels"] > 0
    assert card["files"]["onnx"]["sha256"] in paths["md"].read_text()


@pytest.mark.parametrize("name", sorted(registry.SHIPPED))
def test_shipped_model_files_card_and_registry_agree(name):
    entry = registry.SHIPPED[name]
    stem = registry.models_dir() / name
    card = json.loads(stem.with_suffix(".json").read_text())
    assert sha256_file(stem.with_suffix(".onnx")) == card["files"]["onnx"]["sha256"] == entry.onnx_sha256
    assert sha256_file(stem.with_suffix(".safetensors")) == card["files"]["safetensors"]["sha256"] == entry.safetensors_sha256
    assert entry.onnx_sha256 in stem.with_suffix(".md").read_text()


def blurred_and_decimated(hr: np.ndarray, scale: int, mode: str) -> np.ndarray:
    """A Gaussian PSF (σ = scale HR pixels) with the given border mode, then scale × scale block means."""
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(hr, sigma=(scale, scale, 0), mode=mode)
    rows, cols = hr.shape[0] // scale, hr.shape[1] // scale
    return blurred[: rows * scale, : cols * scale].reshape(rows, scale, cols, scale, -1).mean(axis=(1, 3)).astype(np.float32)


def test_dimmed_lines_need_every_side():
    from hsiuu_cli.superres.guard import dimmed_lines

    bright = (np.ones((3, 9, 4)), np.ones((3, 9), dtype=bool))
    dim = (np.array([0.7, 1.0, 1.0])[:, None, None] * np.ones((3, 9, 4)), np.ones((3, 9), dtype=bool))
    assert dimmed_lines([dim] * 4) == 1
    assert dimmed_lines([dim, dim, dim, bright]) == 0
    twice = (np.array([0.5, 0.8, 1.0])[:, None, None] * np.ones((3, 9, 4)), np.ones((3, 9), dtype=bool))
    assert dimmed_lines([twice] * 4) == 2
    unseen = (dim[0], np.zeros((3, 9), dtype=bool))  # a side without data is not judged dimmed
    assert dimmed_lines([dim, dim, dim, unseen]) == 0


def test_edges_dimmed_by_zero_padding_keep_bicubic(tmp_path):
    # a blur with zeros beyond the edges (HyperBench's protocol) dims the outermost LR pixels; a model
    # would sharpen that into a dark rim, so those pixels keep bicubic, tile by tile as for the whole
    hr, *_ = make_mixture(rows=64, cols=72, bands=10, seed=6)
    _, paths = make_model(tmp_path, scale=2)
    model = load_model(paths["onnx"])
    padded = blurred_and_decimated(hr, 2, "constant")
    resolver = SuperResolver(Cube(data=padded), 2, model, calibrate=False)
    assert resolver.plan.dimmed_lines >= 1
    rim = 2 * resolver.plan.dimmed_lines
    whole = super_resolve(padded, 2, model, calibrate=False)
    tiled = super_resolve(padded, 2, model, calibrate=False, tile=8)
    baseline = super_resolve(padded, 2, method="bicubic")
    inside = np.zeros(whole.shape[:2], dtype=bool)
    inside[rim:-rim, rim:-rim] = True
    np.testing.assert_allclose(whole[~inside], baseline[~inside], atol=1e-6)
    assert np.abs(whole[inside] - baseline[inside]).max() > 1e-4
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)

    mirrored = blurred_and_decimated(hr, 2, "reflect")
    assert SuperResolver(Cube(data=mirrored), 2, model, calibrate=False).plan.dimmed_lines == 0
    result = super_resolve(mirrored, 2, model, calibrate=False)
    assert np.abs(result[~inside] - super_resolve(mirrored, 2, method="bicubic")[~inside]).max() > 1e-4
