"""SpectraMorph on tiny synthetic scenes built with hsiuu_cli.degrade from make_mixture."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gaussian_srf, make_mixture

from hsiuu_cli import degrade, metrics
from hsiuu_cli.errors import ParameterError
import hsiuu_cli.fusion as fusion
from hsiuu_cli.fusion import fuse
from hsiuu_cli.fusion.spectramorph import SpectraMorphSettings



@pytest.fixture(scope="module")
def case():
    cube, endmembers, abundances, wavelengths = make_mixture(48, 48, 40, 3, seed=1)
    srf = gaussian_srf(wavelengths, [500, 800, 1300, 2000], 150)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    msi = degrade.spectral_degrade(cube, srf)
    return cube, lr, msi, srf, wavelengths


@pytest.fixture(scope="module")
def fused(case):
    cube, lr, msi, srf, _ = case
    return fuse(lr, msi, srf, seed=0, return_abundances=True)


def test_beats_bicubic_by_a_margin(case, fused):
    cube, lr, msi, srf, _ = case
    bicubic = fuse(lr, msi, srf, method="bicubic").fused
    assert metrics.psnr(fused.fused, cube) > metrics.psnr(bicubic, cube) + 6.0
    assert metrics.sam(fused.fused, cube) < 0.5 * metrics.sam(bicubic, cube)


def test_pan_only_still_beats_bicubic(case):
    cube, lr, _, _, wavelengths = case
    pan_srf = gaussian_srf(wavelengths, [900], 400)
    pan = degrade.spectral_degrade(cube, pan_srf)
    result = fuse(lr, pan, pan_srf, seed=0)
    bicubic = fuse(lr, pan, pan_srf, method="bicubic").fused
    assert result.fused.shape == cube.shape
    assert metrics.psnr(result.fused, cube) > metrics.psnr(bicubic, cube) + 3.0


def test_outputs_and_summary(case, fused):
    cube, lr, _, _, _ = case
    assert fused.fused.shape == cube.shape and fused.fused.dtype == np.float32
    assert fused.valid.all()
    assert fused.endmembers.shape == (8, cube.shape[2])
    assert fused.abundances.shape == cube.shape[:2] + (8,)
    info = fused.info
    assert info["method"] == "spectramorph" and info["endmembers"] == 8 and info["ratio"] == 4
    assert np.isfinite(info["training_loss"]) and info["epochs"] >= 1
    # the PSF is estimated from the data: σ = 2 px sampled at pixel 1 of every 4
    assert info["psf_sigma"] == pytest.approx(2.0, abs=0.15)
    np.testing.assert_allclose(info["psf_phase"], [1.0, 1.0], atol=0.15)


def test_deterministic_with_seed(case, fused):
    _, lr, msi, srf, _ = case
    again = fuse(lr, msi, srf, seed=0)
    np.testing.assert_array_equal(again.fused, fused.fused)
    other = fuse(lr, msi, srf, seed=5)
    assert not np.array_equal(other.fused, fused.fused)


def test_the_refit_on_hr_pixels_gains(case, fused):
    """Trained on LR pixels, the network only meets mixtures; trained further on HR pixels, their targets its own
    prediction made consistent with the LR-HSI, it maps the MSI's pixels themselves."""
    cube, lr, msi, srf, _ = case
    assert fused.info["refit_iterations"] == SpectraMorphSettings().refit_iterations > 0
    without = fuse(lr, msi, srf, seed=0, refit_iterations=0)
    assert without.info["refit_iterations"] == 0
    assert metrics.psnr(fused.fused, cube) > metrics.psnr(without.fused, cube) + 1.0


def test_the_refit_does_not_pass_on_the_msi_noise(case):
    """The refit's targets leave the MSI out: a 25 dB MSI's noise in them would teach the network to pass it on
    (measured: 1.6 dB lost against no refit)."""
    cube, lr, msi, srf, _ = case
    noisy = degrade.add_noise(msi, 25, 0)
    refitted, without = fuse(lr, noisy, srf, seed=0), fuse(lr, noisy, srf, seed=0, refit_iterations=0)
    assert metrics.psnr(refitted.fused, cube) > metrics.psnr(without.fused, cube)
    assert metrics.sam(refitted.fused, cube) <= metrics.sam(without.fused, cube)


def test_strips_give_the_same_cube_as_one_pass(case, fused, monkeypatch):
    """Memory is bounded by the strip size, not the grid: many small strips change nothing."""
    _, lr, msi, srf, _ = case
    monkeypatch.setattr(fusion.blocks, "STRIP_BYTES", 1)  # one ratio-high strip at a time
    stripped = fuse(lr, msi, srf, seed=0)
    # the strips round the network's batches differently, which the refit's training carries further
    np.testing.assert_allclose(stripped.fused, fused.fused, rtol=1e-3, atol=1e-4 * float(np.abs(fused.fused).max()))


def test_fills_a_given_output_array(case, tmp_path):
    _, lr, msi, srf, _ = case
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=msi.shape[:2] + (lr.shape[2],))
    result = fuse(lr, msi, srf, seed=0, out=out, epochs=50)
    assert result.fused is out
    assert np.isfinite(np.asarray(out)).all()


def test_no_data_is_masked_not_fused(case):
    cube, lr, msi, srf, _ = case
    msi = msi.copy()
    msi[5:15, 20:30] = np.nan  # a gap in the MSI
    lr_valid = np.ones(lr.shape[:2], bool)
    lr_valid[9, 9] = False  # and one HSI pixel without data
    lr = lr.copy()
    lr[9, 9] = 0.0
    result = fuse(lr, msi, srf, seed=0, lr_valid=lr_valid, epochs=100)
    assert np.isnan(result.fused[5:15, 20:30]).all()
    assert np.isnan(result.fused[36:40, 36:40]).all()
    keep = result.valid
    assert keep.sum() == 48 * 48 - 100 - 16
    assert np.isfinite(result.fused[keep]).all()
    # the gaps do not spoil the rest
    bicubic = degrade.resize_bicubic(lr, 48, 48)
    assert metrics.psnr(result.fused, cube, mask=keep) > metrics.psnr(bicubic, cube, mask=keep) + 6.0


@pytest.mark.parametrize("coefficients", ["nonneg", "simplex"])
def test_constrained_coefficients_respect_their_constraints(case, coefficients):
    _, lr, msi, srf, _ = case
    result = fuse(lr, msi, srf, seed=0, epochs=60, coefficients=coefficients, return_abundances=True)
    assert (result.abundances >= 0).all()
    if coefficients == "simplex":
        np.testing.assert_allclose(result.abundances.sum(axis=2), 1.0, atol=1e-4)


def test_auto_endmembers_uses_the_signal_dimension(case):
    _, lr, msi, srf, _ = case
    result = fuse(lr, msi, srf, endmembers="auto", epochs=30)
    assert 2 <= result.info["endmembers"] <= 16


def test_msi_noise_is_not_passed_on(case):
    """An MSI at 25 dB SNR: projecting it on what the HSI's signal subspace can show, and training on
    noisy copies at its estimated full-resolution noise level, each keep its noise out of the result."""
    cube, lr, msi, srf, _ = case
    noisy = degrade.add_noise(msi, 25, 0)
    default = fuse(lr, noisy, srf, seed=0)
    assert default.info["signal_subspace"] < srf.shape[1]  # so the MSI projection applies
    without_augmentation = fuse(lr, noisy, srf, seed=0, noise_augmentation=0.0)
    without_either = fuse(lr, noisy, srf, seed=0, noise_augmentation=0.0, msi_projection=False)
    psnr = lambda result: metrics.psnr(result.fused, cube)  # noqa: E731
    assert psnr(default) > psnr(without_augmentation) + 1.0
    assert psnr(without_augmentation) > psnr(without_either) + 0.6


@pytest.mark.parametrize("lr_size, has_prior", [(8, False), (12, True)])
def test_coarser_prior_needs_three_coarse_pixels_per_axis(lr_size, has_prior):
    from hsiuu_cli.fusion.observation import SensorFit, SpatialModel
    from hsiuu_cli.fusion.spectramorph import coarser_prior

    sensor = SensorFit(SpatialModel(4, 2.0, 1.5, 1.5), np.ones(3), np.zeros(3), 0.0, np.zeros(3))
    channels = np.random.default_rng(0).random((lr_size, lr_size, 5)).astype(np.float32)
    prior = coarser_prior(channels, 4, sensor)
    assert (prior is not None) == has_prior
    if has_prior:
        assert prior.shape == channels.shape


def test_a_two_pixel_coarse_scale_trains_without_the_prior():
    # 8 × 8 LR pixels at ratio 4: a 2 × 2 coarser scale, a ramp rather than a prior
    cube, _, _, wavelengths = make_mixture(32, 32, 30, 3, seed=2)
    srf = gaussian_srf(wavelengths, [500, 900, 1500], 200)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    result = fuse(lr, degrade.spectral_degrade(cube, srf), srf, seed=0, epochs=20)
    assert result.info["prior"] == "none"


def test_reconstruction_loss_is_the_mean_squared_spectral_error():
    import torch

    from hsiuu_cli.fusion.spectramorph import ReconstructionLoss

    generator = torch.Generator().manual_seed(0)
    endmembers, targets = torch.rand(5, 60, generator=generator), torch.rand(40, 60, generator=generator)
    coefficients = torch.randn(40, 5, generator=generator)
    loss = ReconstructionLoss(endmembers, targets)
    assert float(loss(coefficients)) == pytest.approx(float(torch.mean((coefficients @ endmembers - targets) ** 2)), rel=1e-5)
    rows = torch.arange(40) % 3 == 0
    expected = torch.mean((coefficients[rows] @ endmembers - targets[rows]) ** 2)
    assert float(loss.rows(rows)(coefficients[rows])) == pytest.approx(float(expected), rel=1e-5)


def test_weighted_reconstruction_loss_is_the_weighted_mean_over_pixels():
    import torch

    from hsiuu_cli.fusion.spectramorph import ReconstructionLoss

    generator = torch.Generator().manual_seed(1)
    endmembers, targets = torch.rand(4, 30, generator=generator), torch.rand(20, 30, generator=generator)
    coefficients = torch.randn(20, 4, generator=generator)
    weights = torch.rand(20, generator=generator)
    weights[3] = 0.0
    per_pixel = ((coefficients @ endmembers - targets) ** 2).mean(dim=1)
    loss = ReconstructionLoss(endmembers, targets, weights)
    assert float(loss(coefficients)) == pytest.approx(float((weights * per_pixel).sum() / weights.sum()), rel=1e-5)
    # a pixel of weight 0 does not count, whatever its error
    moved = targets.clone()
    moved[3] += 5.0
    assert float(ReconstructionLoss(endmembers, moved, weights)(coefficients)) == pytest.approx(float(loss(coefficients)), rel=1e-5)
    rows = torch.arange(20) % 2 == 0
    expected = (weights[rows] * per_pixel[rows]).sum() / weights[rows].sum()
    assert float(loss.rows(rows)(coefficients[rows])) == pytest.approx(float(expected), rel=1e-5)


def _validation_problem(learnable: bool):
    """A tiny regression from 4 inputs to 3 coefficients of 10-band spectra: the targets a smooth function
    of the inputs (learnable), or noise that only memorising can fit."""
    import torch

    from hsiuu_cli.fusion.spectramorph import ReconstructionLoss

    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((120, 4)).astype(np.float32)
    endmembers = rng.random((3, 10)).astype(np.float32)
    coefficients = np.tanh(inputs[:, :3] + inputs[:, 1:]) if learnable else rng.standard_normal((120, 3))
    targets = (coefficients @ endmembers).astype(np.float32)
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.GELU(), torch.nn.Linear(32, 3))
    return network, torch.from_numpy(inputs), ReconstructionLoss(torch.from_numpy(endmembers), torch.from_numpy(targets))


@pytest.mark.parametrize("learnable", [True, False])
def test_cross_validation_stops_early_only_where_training_longer_overfits(learnable):
    from hsiuu_cli.fusion.spectramorph import cross_validated_networks

    network, inputs, loss = _validation_problem(learnable)
    before = [p.detach().clone() for p in network.parameters()]
    settings = SpectraMorphSettings(max_epochs=300)
    epochs, members = cross_validated_networks(network, "free", loss, inputs, np.arange(120), settings)
    assert all(np.array_equal(p.detach(), q) for p, q in zip(network.parameters(), before))  # weights untouched
    # two held-out folds give a wider standard error than four, so the rule stops sooner (131 of 300 here,
    # 286 with four): still a hundred iterations or more where they generalise, one or a few where they memorise
    assert epochs > 100 if learnable else epochs < 60
    assert len(members) == settings.trained_folds < settings.validation_folds
    again, _ = cross_validated_networks(network, "free", loss, inputs, np.arange(120), settings)
    assert again == epochs


def test_the_folds_networks_are_those_after_the_chosen_count_in_any_number_of_processes(monkeypatch):

    from hsiuu_cli.device import one_thread
    from hsiuu_cli.fusion.spectramorph import SpectraMorphSettings

    network, inputs, loss = _validation_problem(True)
    settings = SpectraMorphSettings(max_epochs=100)
    with one_thread():  # as fit_spectramorph trains: the fold processes run on one thread
        _check_fold_members(network, inputs, loss, settings, monkeypatch)


def _check_fold_members(network, inputs, loss, settings, monkeypatch):
    import torch

    from hsiuu_cli.fusion import spectramorph
    from hsiuu_cli.fusion.spectramorph import cross_validated_networks, mean_coefficients

    epochs, members = cross_validated_networks(network, "free", loss, inputs, np.arange(120), settings, workers=1)
    forked, forked_members = cross_validated_networks(network, "free", loss, inputs, np.arange(120), settings, workers=2)
    assert forked == epochs
    for member, other in zip(members, forked_members):
        assert all(torch.equal(p, q) for p, q in zip(member.parameters(), other.parameters()))
    # each member is its fold trained for exactly that many iterations from the initial weights
    held = torch.from_numpy(np.random.default_rng(settings.seed).permutation(120) % settings.validation_folds == 0)
    fold_network = spectramorph.copy.deepcopy(network)
    spectramorph.train_lbfgs(fold_network, lambda: loss.rows(~held)(fold_network(inputs[~held])), epochs)
    assert all(torch.equal(p, q) for p, q in zip(fold_network.parameters(), members[0].parameters()))
    # the model's mean of the members fits the training pixels better than the initial network
    with torch.no_grad():
        assert float(loss(mean_coefficients(members, "free", inputs))) < 0.5 * float(loss(network(inputs)))
    # with room for a few snapshots only, the members are taken at the last kept iteration before the count
    monkeypatch.setattr(spectramorph, "SNAPSHOT_BYTES", 4 * 100 * sum(p.numel() for p in network.parameters()) // 7)
    sparse, sparse_members = cross_validated_networks(network, "free", loss, inputs, np.arange(120), settings)
    assert sparse == epochs
    kept = spectramorph.copy.deepcopy(network)
    spectramorph.train_lbfgs(kept, lambda: loss.rows(~held)(kept(inputs[~held])), max(epochs // 7 * 7, 7))
    assert all(torch.equal(p, q) for p, q in zip(kept.parameters(), sparse_members[0].parameters()))


def test_training_runs_in_processes_only_where_a_process_may_fork(monkeypatch):
    from hsiuu_cli.fusion import spectramorph

    assert spectramorph.training_processes(2) == 2 and spectramorph.training_processes(8) == 8
    monkeypatch.setattr(spectramorph.sys, "platform", "darwin")
    assert spectramorph.training_processes(2) == 1


def test_without_the_prior_iterations_come_from_cross_validation(case):
    _, lr, msi, srf, _ = case  # 12 × 12 LR pixels: 36 a fold
    chosen = fuse(lr, msi, srf, seed=0, prior="none", max_epochs=80)
    assert chosen.info["epochs_chosen_by"] == "cross-validation on 2 of 4 folds" and 1 <= chosen.info["epochs"] <= 80
    given = fuse(lr, msi, srf, seed=0, prior="none", epochs=40)
    assert given.info["epochs_chosen_by"] == "setting" and given.info["epochs"] == 40
    with_prior = fuse(lr, msi, srf, seed=0)
    assert with_prior.info["epochs_chosen_by"] == "setting" and with_prior.info["epochs"] == 150


def test_cross_validated_training_makes_fewer_noisy_copies(case, monkeypatch):
    """Four folds of up to 1 500 iterations train on CROSS_VALIDATED_COPIES copies of each pixel, a single
    run of 150 on AUGMENTATION_COPIES (12 × 12 LR pixels: the copies, not the pixel budget, bound both)."""
    from hsiuu_cli.fusion import spectramorph

    _, lr, msi, srf, _ = case
    rows = []

    class CountingLoss(spectramorph.ReconstructionLoss):
        def __init__(self, endmembers, targets, weights=None) -> None:
            rows.append(targets.shape[0])
            super().__init__(endmembers, targets, weights)

    monkeypatch.setattr(spectramorph, "ReconstructionLoss", CountingLoss)
    fuse(lr, msi, srf, seed=0, prior="none", max_epochs=5, refit_iterations=0)
    fuse(lr, msi, srf, seed=0, prior="none", epochs=5, refit_iterations=0)
    assert spectramorph.CROSS_VALIDATED_COPIES < spectramorph.AUGMENTATION_COPIES
    assert rows == [spectramorph.CROSS_VALIDATED_COPIES * 144, spectramorph.AUGMENTATION_COPIES * 144]


def test_too_few_pixels_for_the_folds_keep_the_set_iterations():
    cube, _, _, wavelengths = make_mixture(32, 32, 30, 3, seed=2)  # 8 × 8 LR pixels: 16 a fold
    srf = gaussian_srf(wavelengths, [500, 900, 1500], 200)
    lr = degrade.spatial_degrade(cube, 4, sigma=2.0)
    result = fuse(lr, degrade.spectral_degrade(cube, srf), srf, seed=0, max_epochs=50)
    assert result.info["prior"] == "none"
    assert result.info["epochs_chosen_by"] == "setting" and result.info["epochs"] == 150


def test_fold_processes_end_with_the_run_even_before_they_set_their_own_signal_handlers(monkeypatch):
    """A stop that reaches the parent while a fold process is still starting (it holds the stopping
    signals, as it was forked inside signals_held): the run ends at once, the fold processes with it."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from hsiuu_cli.fusion import spectramorph
    from hsiuu_cli.fusion.spectramorph import HeldOutFolds, SpectraMorphSettings

    original = spectramorph._tasks_in_this_process

    def slow_start(*args):
        time.sleep(30)  # still starting, with the inherited handler
        original(*args)

    class Stopped(Exception):
        pass

    def stop(_number, _frame):
        raise Stopped

    monkeypatch.setattr(spectramorph, "_tasks_in_this_process", slow_start)
    network, inputs, loss = _validation_problem(True)
    problem = HeldOutFolds(network, "free", loss, inputs, np.arange(120) % 4, SpectraMorphSettings(max_epochs=50))
    before = signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        started = time.monotonic()
        timer.start()
        with pytest.raises(Stopped):
            spectramorph.tasks_in_processes(problem.curve, 2, 2)
        assert time.monotonic() - started < 10
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
    assert not multiprocessing.active_children()


def test_an_ensembles_networks_are_trained_alike_from_their_own_weights_in_any_number_of_processes():
    import torch

    from hsiuu_cli.device import one_thread
    from hsiuu_cli.fusion import spectramorph

    network, inputs, loss = _validation_problem(True)
    generator = torch.Generator().manual_seed(0)
    initial = [spectramorph.initialise(spectramorph.copy.deepcopy(network), generator) for _ in range(3)]
    with one_thread():  # as fit_spectramorph trains: the training processes run on one thread
        alone = spectramorph.ensemble_networks(spectramorph.copy.deepcopy(initial), "free", loss, inputs, 40, workers=1)
        forked = spectramorph.ensemble_networks(spectramorph.copy.deepcopy(initial), "free", loss, inputs, 40, workers=2)
        single = spectramorph.copy.deepcopy(initial[1])
        spectramorph.train_lbfgs(single, lambda: loss(single(inputs)), 40)
    vectors = [torch.nn.utils.parameters_to_vector(member.parameters()) for member in alone]
    assert all(torch.equal(v, torch.nn.utils.parameters_to_vector(f.parameters())) for v, f in zip(vectors, forked))
    assert torch.equal(vectors[1], torch.nn.utils.parameters_to_vector(single.parameters()))
    assert not torch.equal(vectors[0], vectors[1]) and not torch.equal(vectors[1], vectors[2])
    with torch.no_grad():
        assert float(loss(spectramorph.mean_coefficients(alone, "free", inputs))) < 0.5 * float(loss(network(inputs)))


def test_small_training_sets_train_an_ensemble_within_the_row_budget(case, fused, monkeypatch):
    from hsiuu_cli.fusion import spectramorph

    _, lr, msi, srf, _ = case  # 12 × 12 LR pixels × 16 noisy copies: 2 304 training rows
    assert fused.info["networks"] == spectramorph.SpectraMorphSettings().ensemble == 4
    assert fused.info["epochs_chosen_by"] == "setting"
    one = fuse(lr, msi, srf, seed=0, ensemble=1)
    assert one.info["networks"] == 1 and not np.array_equal(one.fused, fused.fused)
    monkeypatch.setattr(spectramorph, "ENSEMBLE_ROWS", 2 * 2304 + 1)  # room for two networks' rows
    assert fuse(lr, msi, srf, seed=0).info["networks"] == 2
    with pytest.raises(ParameterError, match="ensemble"):
        fuse(lr, msi, srf, seed=0, ensemble=0)
