"""UnmixingSR / BandwiseSR networks and the pre-processing they share with inference (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsiuu_cli.superres.config import NetworkConfig, receptive_field, upsampling_factors
from hsiuu_cli.superres.network import build_network
from hsiuu_cli.superres.preprocess import (
    adapter_matrix,
    add_groups,
    band_groups,
    group_context,
    scene_statistics,
    slots_per_band,
)

torch.set_num_threads(1)


def tiny(unmixing: bool, scale: int, **changes) -> NetworkConfig:
    values = dict(unmixing=unmixing, scale=scale, channels=6, width=8, depth=1, endmembers=3, encoder_width=4, group=3)
    values.update(changes)
    return NetworkConfig(**values)


def run(network, groups: torch.Tensor, scenes: int = 1) -> torch.Tensor:
    """Forward with a random spectrum for the unmixing branch when there is one."""
    config = network.config
    spectrum = torch.rand(scenes, config.channels, *groups.shape[-2:], dtype=groups.dtype) if config.unmixing else None
    return network(groups, spectrum)


def randomise_tail(network) -> None:
    """Networks start at bicubic (zero tail); give the tail weights so outputs depend on inputs."""
    torch.nn.init.normal_(network.tail.weight, std=0.2)


@pytest.mark.parametrize("unmixing", [True, False])
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_output_shape_for_every_scale(unmixing, scale):
    config = tiny(unmixing, scale)
    network = build_network(config).eval()
    groups = torch.rand(4, config.group + 1, 7, 5)
    with torch.no_grad():
        out = run(network, groups, scenes=2)  # two scenes of two groups each
    assert out.shape == (4, config.group, 7 * scale, 5 * scale)


def test_untrained_network_returns_bicubic():
    """A zero residual: training starts from the baseline, not from noise."""
    network = build_network(tiny(True, 4)).eval()
    with torch.no_grad():
        assert torch.count_nonzero(run(network, torch.rand(2, 4, 6, 6))) == 0


@pytest.mark.parametrize("unmixing", [True, False])
def test_receptive_field_bounds_the_influence_of_distant_pixels(unmixing):
    config = tiny(unmixing, 2, depth=2)
    network = build_network(config).eval().double()
    randomise_tail(network)
    radius = receptive_field(config)
    size = 2 * radius + 9
    centre = size // 2
    groups = torch.rand(1, config.input_channels, size, size, dtype=torch.float64)
    spectrum = torch.rand(1, config.channels, size, size, dtype=torch.float64) if unmixing else None

    def centre_output(groups, spectrum):
        return network(groups, spectrum)[..., 2 * centre : 2 * centre + 2, 2 * centre : 2 * centre + 2]

    with torch.no_grad():
        reference = centre_output(groups, spectrum)
        far = groups.clone()
        far[..., centre, centre + radius + 1] += 5.0
        changed_far = centre_output(far, spectrum)
        near = groups.clone()
        near[..., centre, centre + 1] += 5.0
        changed_near = centre_output(near, spectrum)
        if unmixing:
            far_spectrum = spectrum.clone()
            far_spectrum[..., centre, centre + radius + 1] += 5.0
            assert torch.equal(reference, centre_output(groups, far_spectrum))
    assert torch.equal(reference, changed_far)
    assert not torch.allclose(reference, changed_near)


def test_progressive_upsampling_steps():
    assert upsampling_factors(2) == [2]
    assert upsampling_factors(4) == [2, 2]
    assert upsampling_factors(8) == [2, 2, 2]
    assert upsampling_factors(3) == [3]


def test_config_round_trip_and_validation():
    config = tiny(False, 4)
    assert NetworkConfig.from_json(config.to_json()) == config
    assert config.kind == "bandwise" and tiny(True, 4).kind == "unmixingsr"
    with pytest.raises(ValueError, match="scale"):
        NetworkConfig(scale=5)
    with pytest.raises(ValueError, match="group"):
        NetworkConfig(group=0)
    with pytest.raises(ValueError, match="odd"):
        NetworkConfig(attention_window=4)


def test_ablation_network_has_no_unmixing_branch():
    with_unmixing = build_network(tiny(True, 2))
    without = build_network(tiny(False, 2))
    assert with_unmixing.unmixing is not None and with_unmixing.material is not None
    assert without.unmixing is None and without.material is None
    assert not any(name.startswith("unmixing.") for name, _ in without.named_parameters())


def test_unmixing_abundances_are_a_partition_of_unity_and_endmembers_stay_non_negative():
    network = build_network(tiny(True, 2))
    reconstruction, abundances = network.unmixing(torch.rand(2, 6, 5, 5))
    assert reconstruction.shape == (2, 6, 5, 5)
    assert torch.all(abundances >= 0)
    torch.testing.assert_close(abundances.sum(dim=1), torch.ones(2, 5, 5))
    with torch.no_grad():
        network.unmixing.decoder.endmembers.fill_(-1.0)
    network.unmixing.decoder.project_nonnegative()
    assert torch.all(network.unmixing.decoder.endmembers >= 0)


@pytest.mark.parametrize("bands,channels", [(10, 10), (200, 64), (3, 8)])
def test_spectral_adapter(bands, channels):
    matrix = adapter_matrix(bands, channels)
    assert matrix.shape == (channels, bands)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(matrix.sum(axis=0) > 0)  # every band feeds some channel
    if bands == channels:
        np.testing.assert_allclose(matrix, np.eye(bands), atol=1e-7)


@pytest.mark.parametrize("bands", [1, 3, 4, 10, 12])
def test_band_groups_cover_every_band(bands):
    groups = band_groups(bands, 4)
    assert all(len(g) == 4 for g in groups)
    covered = np.unique(np.concatenate(groups))
    np.testing.assert_array_equal(covered, np.arange(bands))
    values = np.random.default_rng(0).random((bands, 2, 2)).astype(np.float32)
    context = group_context(values, groups)
    assert context.shape == (len(groups), 5, 2, 2)
    np.testing.assert_allclose(context[0, 4], values.mean(axis=0), rtol=1e-6)
    # Groups that predict their inputs give the inputs back, overlaps averaged.
    total = np.zeros_like(values)
    add_groups(total, context[:, :4], groups)
    np.testing.assert_allclose(total / slots_per_band(groups, bands)[:, None, None], values, rtol=1e-6)


def test_scene_statistics():
    rng = np.random.default_rng(1)
    values = (rng.random((20, 20, 5)) * [1, 10, 100, 1000, 0] + [0, 0, 0, 0, 7]).astype(np.float32)
    stats = scene_statistics(values)
    np.testing.assert_allclose(stats.mean, values.reshape(-1, 5).mean(axis=0), rtol=1e-4)
    assert np.all(stats.std > 0) and np.all(stats.level > 0)  # a flat band gets a floor, not a division by zero
    normalised = stats.normalise(values)
    np.testing.assert_allclose(normalised[..., :4].reshape(-1, 4).std(axis=0), 1.0, rtol=1e-3)
    np.testing.assert_allclose(stats.relative(values).reshape(-1, 5).mean(axis=0), 1.0, rtol=1e-3)
