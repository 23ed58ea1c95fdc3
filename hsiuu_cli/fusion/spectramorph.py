"""SpectraMorph HSI–MSI fusion: an unmixing bottleneck learnt self-supervised at low resolution.

1. Endmembers E (K × B) by NMF of the LR-HSI pixels (scikit-learn).
2. A compact MLP maps a pixel's multispectral values to K coefficients; the spectrum is
   coefficients · E. The coarse spectral prior (CSP) gives spectral context, so that a one-band
   pan still works: by default (``prior="residual"``) the CSP — the LR-HSI enlarged to the pixel's
   grid — is the base spectrum, the network sees the MSI's detail against it (MSI − CSP·R, and
   the MSI values themselves when it has more than one band) and its coefficients · E correct the
   base. ``prior="input"`` feeds the CSP's principal components to the network as the paper does;
   ``prior="none"`` leaves the CSP out.
3. Training at low resolution, full batch: input = the MSI taken to the LR grid (``train_input=
   "msi"``; or the LR-HSI through the SRF, ``"srf"``, as the paper: the same on a consistent pair)
   with the CSP one scale coarser, target = the LR-HSI; noisy copies of the inputs stand in for
   the MSI's full-resolution noise, which the LR grid averages away.
4. Inference on the HR-MSI, strip by strip (memory bounded by the strip, not the grid); the
   network's correction is scaled by the MSI's trust.
5. Consistency: the cube closest to that prediction that, blurred and sampled by the PSF
   (estimated from the data or given), reproduces the LR-HSI and, through the SRF, the MSI, each
   weighted by its estimated error (:class:`hsiuu_cli.fusion.observation.ConsistencySolver`).
6. Refit: the networks trained further on HR pixels of the MSI, their targets the prediction made
   consistent with the LR-HSI alone (step 5 without the MSI term), then steps 4 and 5 again
   (:meth:`SpectraMorphModel.refit`, run by :func:`hsiuu_cli.fusion.blocks.run_blocks`). Step 3
   could only show the network LR pixels, mixtures of what it is then asked for at HR.

docs/benchmarks.md (section Fusion) has the measurements behind each default. All arrays handled
here are already scaled (LR-HSI / its peak), gap-filled and, by default, denoised on the LR-HSI's
signal subspace (the MSI too, where that subspace seen through the SRF is smaller than its band
count) by :func:`hsiuu_cli.fusion.fuse`.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import sparse

from ..degrade import resize_bicubic
from ..device import one_thread, resolve_device
from ..errors import ParameterError
from ..stopping import STOPPING_SIGNALS, signals_held
from .bicubic import BicubicStrips
from .observation import (
    ERROR_FLOOR,
    SAMPLE_PIXELS,
    ConsistencySolver,
    SensorFit,
    Trust,
    apply_spatial,
    msi_on_lr_grid,
    spread_sample,
)

COEFFICIENTS = ("free", "nonneg", "simplex")
PRIORS = ("residual", "input", "none")
DENOISERS = ("shrink", "project", "none")
AUGMENTATION_COPIES = 16
AUGMENTED_PIXELS = 4096
"""Noise augmentation makes up to 16 noisy copies of the training pixels, until about this many."""
CROSS_VALIDATED_COPIES = 8
"""Where the iterations are cross-validated (two folds of up to 1 500 iterations instead of one run of
150), up to this many copies: as good as 16 on HyperBench's twelve such cases, in less time
(docs/benchmarks.md, § "Less training where the iterations are cross-validated"); outside
cross-validation 8 copies lost up to 0.9 dB (Pavia University ×8) for a saving of a second."""
AUGMENTATION_FLOOR = 0.008
"""The MSI noise estimate is trusted up to the LR fit's bound or this share of the training inputs'
variance per band, whichever is larger (with ``noise_augmentation`` 0.25: added noise at most 27 dB
under the inputs' spread when the bound is tighter; chosen on HyperBench's Pavia University and
EnMAP and the simulated pairs, docs/benchmarks.md)."""

REFIT_MIN_TRUST = 0.5
"""The refit trains the network's correction, which the prior scales by the MSI's trust: where the MSI is
trusted less than this on average (its bands' mean relative weight), the correction hardly enters the result
and the refit has little to teach it (Houston 2018, trust 0.003: −0.01 dB, SAM +0.09°; docs/benchmarks.md)."""


@dataclass
class SpectraMorphSettings:
    endmembers: int = 8
    epochs: int = 150
    """Full-batch optimiser iterations (with the coarse prior; without it, see ``validation_folds``)."""
    validation_folds: int = 4
    """Without the coarse prior (an LR grid under 3 × ratio pixels a side, or ``prior="none"``), L-BFGS
    iterations are chosen by cross-validation over the LR pixels split into this many folds, up to
    ``max_epochs`` (0, or under :data:`MIN_HELD_OUT_PIXELS` pixels a fold: ``epochs``). With the
    prior, training pairs are one scale coarser than the HR use, which a same-scale hold-out cannot
    judge: there ``epochs`` stays (docs/benchmarks.md, § The ×8 cases)."""
    trained_folds: int = 2
    """Of those folds, how many are held out in turn (each network trained on the other folds' pixels):
    two train at once on two cores, and did as well as four on HyperBench's twelve cross-validated
    cases in half the time (docs/benchmarks.md). Not tied to the core count, so the result is not."""
    max_epochs: int = 1500
    hidden: int = 32
    """Units in each of the MLP's two hidden layers."""
    max_train_pixels: int = 16384
    """Training uses every valid LR pixel up to this many, else this many spread evenly over the
    scene (still full batch): ample for a network of about 1 500 weights, and it bounds the time."""
    optimizer: str = "lbfgs"
    """lbfgs (scipy's L-BFGS-B) or adam (cosine-annealed from ``learning_rate``)."""
    learning_rate: float = 1e-2
    coefficients: str = "free"
    """free (as the reference code), nonneg (softplus) or simplex (softmax: non-negative, sum to one)."""
    prior: str = "residual"
    """How the coarse spectral prior enters: residual, input or none (see the module docstring)."""
    prior_components: int = 4
    """Principal components of the prior fed to the network with ``prior="input"``."""
    train_input: str = "msi"
    """msi (the MSI taken to the LR grid through the fitted PSF and gain) or srf (the LR-HSI
    through the SRF, as the paper)."""
    shrink_detail: bool = True
    """Scale the network's correction of the coarse prior by the MSI's trust (residual prior)."""
    consistency: bool = True
    msi_weight: float = 1.0
    """Multiplies the MSI term's weight in the consistency step, which is otherwise the maximum a
    posteriori one (:func:`hsiuu_cli.fusion.observation.msi_trust`); 0: LR-HSI consistency only."""
    prior_weight: float = 1e-3
    """μ: weight of the network's prediction in the consistency step (for a noise-free LR-HSI)."""
    refit_iterations: int = 100
    """L-BFGS iterations of the refit (step 6 above; 0: no refit). Only with the consistency step and an MSI
    trusted on average at least :data:`REFIT_MIN_TRUST`."""
    refit_pixels: int = 4096
    """The refit trains on at most this many HR pixels (a lattice over the grid): as good as 16 384 on
    HyperBench's 42 cases (+5.50 against +5.47 dB summed), in a quarter of the refit's time."""
    noise_adaptive: bool = True
    """Scale μ with the LR-HSI's estimated noise power (relative to 40 dB)."""
    correction_rank: int = 64
    """Spectral directions the consistency step may correct (the LR-HSI's leading ones, plus the SRF's)."""
    denoise: str = "shrink"
    """What :func:`hsiuu_cli.fusion.fuse` does to the LR-HSI first: shrink (each direction of its
    signal subspace scaled by its signal share), project (on the subspace) or none."""
    msi_projection: bool = True
    """Project the MSI on the HSI's signal subspace seen through the SRF (when that has fewer
    dimensions than the MSI has bands)."""
    noise_augmentation: float = 0.25
    """Share of the MSI's estimated full-resolution noise variance added to noisy copies of the
    training inputs (0: none). The estimate is an upper bound (scene detail that the other bands do
    not explain counts as noise); 0.25 measured best of 0.25/0.5/1 (docs/benchmarks.md)."""
    ensemble: int = 4
    """Outside cross-validation, the model is the mean of this many networks trained alike from different
    initial weights, as far as :data:`ENSEMBLE_ROWS` allows (below). On a few dozen to a few thousand LR
    pixels one network's result depends on its initial weights by up to 2.5 dB (HyperBench Pavia
    University, five seeds); the mean of four gained up to 1.6 dB there and lost at most 0.03 dB on
    HyperBench's other cases (docs/benchmarks.md, § "An ensemble where the training set is small")."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.coefficients not in COEFFICIENTS:
            raise ParameterError(f"coefficients must be one of {', '.join(COEFFICIENTS)}, got '{self.coefficients}'")
        if self.prior not in PRIORS:
            raise ParameterError(f"prior must be one of {', '.join(PRIORS)}, got '{self.prior}'")
        if self.train_input not in ("msi", "srf"):
            raise ParameterError(f"train_input must be msi or srf, got '{self.train_input}'")
        if self.denoise not in DENOISERS:
            raise ParameterError(f"denoise must be one of {', '.join(DENOISERS)}, got '{self.denoise}'")
        if not self.noise_augmentation >= 0:
            raise ParameterError(f"noise_augmentation must be non-negative, got {self.noise_augmentation}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ParameterError(f"optimizer must be lbfgs or adam, got '{self.optimizer}'")
        if self.refit_iterations < 0 or self.refit_pixels < 1:
            raise ParameterError(f"refit_iterations must be 0 or more and refit_pixels at least 1, got {self.refit_iterations}, "
                                 f"{self.refit_pixels}")
        if self.epochs < 1 or self.hidden < 1 or self.max_epochs < 1:
            raise ParameterError("epochs, max_epochs and hidden units must be at least 1")
        if self.validation_folds < 0 or self.validation_folds == 1:
            raise ParameterError(f"validation_folds must be 0 or at least 2, got {self.validation_folds}")
        if self.ensemble < 1:
            raise ParameterError(f"ensemble must be at least 1, got {self.ensemble}")
        if not 2 <= self.trained_folds <= max(self.validation_folds, 2):
            raise ParameterError(f"trained_folds must be from 2 to validation_folds, got {self.trained_folds}")


def endmembers_nmf(pixels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """NMF endmembers (K × B, rows scaled to unit peak) of non-negative-clipped pixels (N × B), from
    a random :data:`SAMPLE_PIXELS` of them when there are more."""
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    if pixels.shape[0] > SAMPLE_PIXELS:
        pixels = pixels[np.sort(rng.choice(pixels.shape[0], SAMPLE_PIXELS, replace=False))]
    data = np.clip(pixels, 0.0, None).astype(np.float64)
    model = NMF(n_components=k, init="nndsvda", max_iter=300, tol=1e-4, random_state=seed)
    # small matrices: BLAS threads only add overhead (and contention on a busy machine)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data)
    spectra = model.components_
    peaks = spectra.max(axis=1, keepdims=True)
    return (spectra / np.where(peaks > 0, peaks, 1.0)).astype(np.float32)


MIN_COARSE_PIXELS = 3
"""The coarser scale needs this many pixels along each axis to stand in for the LR grid."""


def coarser_prior(channels: np.ndarray, ratio: int, sensor: SensorFit) -> np.ndarray | None:
    """``channels`` (LR grid) one scale coarser through the same PSF, enlarged back: the training-time
    counterpart of the enlarged LR-HSI at HR. None when the LR grid is under
    :data:`MIN_COARSE_PIXELS` × ratio pixels along either axis."""
    rows, cols, _ = channels.shape
    coarse_rows, coarse_cols = rows // ratio, cols // ratio
    # With 2 coarse pixels along an axis, neither has a neighbour on both sides: their enlargement is a
    # single ramp from edge to edge, and the residuals the network learns against it (the whole scene's
    # structure) are not the fine detail it is asked for against the enlarged LR-HSI at HR, which over-
    # corrects the prior there (HyperBench Houston ×8, 16 × 16 LR pixels: −0.7 to −1.8 dB against no
    # prior, docs/benchmarks.md). From 3 on, the middle pixels are interpolated, not extrapolated.
    if coarse_rows < MIN_COARSE_PIXELS or coarse_cols < MIN_COARSE_PIXELS:
        return None
    # the LR-HSI it starts from has its edges restored already (see fuse_spectramorph)
    gr, gc = sensor.spatial.replace(border="reflect").matrices(coarse_rows, coarse_cols, coarse_rows * ratio, coarse_cols * ratio)
    coarse = apply_spatial(channels[: coarse_rows * ratio, : coarse_cols * ratio], gr, gc)
    enlarged = resize_bicubic(coarse, coarse_rows * ratio, coarse_cols * ratio)
    return np.pad(enlarged, ((0, rows - coarse_rows * ratio), (0, cols - coarse_cols * ratio), (0, 0)), mode="edge")


def prior_features(msi: np.ndarray, coarse: np.ndarray | None, prior: str, mean: np.ndarray | None,
                   components: np.ndarray | None, srf: np.ndarray, with_msi: bool) -> np.ndarray:
    """The network's inputs: the MSI values, with the coarse prior as the ``prior`` mode says."""
    if prior == "none":
        return msi
    if prior == "input":
        return np.concatenate([msi, (coarse - mean) @ components.T], axis=-1)
    detail = msi - coarse @ srf
    return np.concatenate([detail, msi], axis=-1) if with_msi else detail


def coefficient_map(raw, kind: str):
    """The network's raw outputs as coefficients of the ``kind`` asked for."""
    import torch

    if kind == "simplex":
        return torch.softmax(raw, dim=1)
    if kind == "nonneg":
        return torch.nn.functional.softplus(raw)
    return raw


def mean_coefficients(networks: list, kind: str, x):
    """The coefficients of one network, or the mean of several's (each mapped first: non-negative or
    sum-to-one coefficients stay so)."""
    total = coefficient_map(networks[0](x), kind)
    for member in networks[1:]:
        total = total + coefficient_map(member(x), kind)
    return total / len(networks)


def fit_spectramorph(
    lr: np.ndarray,
    lr_valid: np.ndarray,
    msi_strip: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    hr_shape: tuple[int, int],
    srf: np.ndarray,
    sensor: SensorFit,
    settings: SpectraMorphSettings,
    trust: Trust,
    line_weights: tuple[np.ndarray, np.ndarray] | None = None,
    pixel_weights: np.ndarray | None = None,
) -> "SpectraMorphModel":
    """Everything SpectraMorph learns from the whole scene, at LR scale: endmembers, the network, the
    prior and the consistency step's LR-scale terms (:class:`SpectraMorphModel` then fuses any strip
    of HR rows).

    ``lr`` is the scaled, gap-filled LR-HSI (h × w × B) with ``lr_valid`` marking real pixels;
    ``msi_strip(start, stop)`` returns HR rows start:stop of the calibrated MSI (in the units of
    ``lr`` seen through ``srf``) and their validity (read here only to take the MSI to the LR grid).
    ``line_weights`` (per LR row, per LR column; :func:`hsiuu_cli.fusion.guard.edge_line_weights`)
    weigh the LR-HSI's rows and columns in the consistency step; ``pixel_weights`` (LR grid;
    :func:`hsiuu_cli.fusion.guard.edge_pixel_weights`) the LR pixels in the network's training loss.
    """
    import torch

    ratio = sensor.spatial.ratio
    rows_hr, cols_hr = hr_shape
    rows_lr, cols_lr, bands = lr.shape
    msi_bands = srf.shape[1]
    device = torch.device(resolve_device(settings.device))
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)

    gr, gc = sensor.spatial.matrices(rows_lr, cols_lr, rows_hr, cols_hr)
    lr_measured = lr
    attenuation = None
    if sensor.spatial.border == "zero":
        # zero-padded PSF: edge pixels are darkened by the share of their PSF outside the image; the prior,
        # the endmembers and the training see them restored (the consistency step keeps the exact model)
        attenuation = (np.asarray(gr.sum(axis=1)).ravel()[:, None] * np.asarray(gc.sum(axis=1)).ravel()[None, :]).astype(np.float32)
        lr = lr / np.maximum(attenuation, 0.05)[:, :, None]
    pixels = lr[lr_valid]
    endmembers = endmembers_nmf(pixels, settings.endmembers, settings.seed)
    train_valid = lr_valid
    if settings.train_input == "msi":
        # the real MSI taken to the LR grid: its actual relation to the HSI (SRF mismatch, misregistration)
        lr_msi, complete = msi_on_lr_grid(msi_strip, gr, gc, ratio)
        if attenuation is not None:
            lr_msi = lr_msi / np.maximum(attenuation, 0.05)[:, :, None]
        train_valid = lr_valid & complete
        if train_valid.sum() < max(2 * settings.endmembers, 8):
            lr_msi, train_valid = lr @ srf, lr_valid
    else:
        lr_msi = lr @ srf

    # the coarse spectral prior: at HR the LR-HSI enlarged; in training the LR-HSI one scale coarser, enlarged
    prior = settings.prior
    coarse_lr = coarser_prior(lr, ratio, sensor) if prior != "none" else None
    if coarse_lr is None:
        prior = "none"  # an LR-HSI under 3 × ratio pixels has no coarser scale to learn from
    if prior == "input":
        sample = spread_sample(pixels)
        mean = sample.mean(axis=0)
        components = np.linalg.svd(sample - mean, full_matrices=False)[2][: settings.prior_components].astype(np.float32)
    # a single band is brightness only: as an input it lets the network memorise the few LR pixels
    with_msi = msi_bands > 1

    prior_mean, prior_components = (mean, components) if prior == "input" else (None, None)

    def features(msi: np.ndarray, coarse: np.ndarray | None) -> np.ndarray:
        return prior_features(msi, coarse, prior, prior_mean, prior_components, srf, with_msi)

    msi_sample = spread_sample(lr_msi[train_valid], settings.max_train_pixels)
    coarse_sample = None if prior == "none" else spread_sample(coarse_lr[train_valid], settings.max_train_pixels)
    train_y = lr[train_valid] - coarse_lr[train_valid] if prior == "residual" else lr[train_valid]
    train_y = spread_sample(train_y, settings.max_train_pixels)
    row_weights = None if pixel_weights is None else spread_sample(pixel_weights[train_valid], settings.max_train_pixels)
    cross_validated = (settings.optimizer == "lbfgs" and prior == "none" and settings.validation_folds > 0
                       and msi_sample.shape[0] >= settings.validation_folds * MIN_HELD_OUT_PIXELS)
    msi_inputs = [msi_sample]
    if settings.noise_augmentation > 0 and trust.msi_noise_variance is not None:
        # the LR-grid MSI has had its noise averaged away by the PSF; the HR-MSI the network will see has
        # not: noisy copies of the training pixels teach it not to pass that noise on
        most = CROSS_VALIDATED_COPIES if cross_validated else AUGMENTATION_COPIES
        copies = max(1, min(most, AUGMENTED_PIXELS // msi_sample.shape[0]))
        # the estimate still takes some of a dense texture for noise (HyperBench's Pavia University, 80 × 48 pixels
        # of city: 1.6–13× the noise added): it is cut to what the LR fit allows, but not below a share of the
        # inputs' own spread, the mild augmentation that helps even noise-free pairs (docs/benchmarks.md)
        allowed = np.fmax(trust.msi_noise_bound, AUGMENTATION_FLOOR * msi_sample.var(axis=0))  # fmax: a NaN bound gives way
        sigma = np.sqrt(settings.noise_augmentation * np.fmin(trust.msi_noise_variance, allowed)).astype(np.float32)
        noise_rng = np.random.default_rng(settings.seed)
        msi_inputs = [msi_sample + noise_rng.standard_normal(msi_sample.shape).astype(np.float32) * sigma for _ in range(copies)]
        train_y = np.tile(train_y, (copies, 1))
        row_weights = None if row_weights is None else np.tile(row_weights, copies)
    train_x = np.concatenate([features(msi, coarse_sample) for msi in msi_inputs]).astype(np.float32)
    feature_mean = train_x.mean(axis=0)
    feature_scale = train_x.std(axis=0) + 1e-6 * max(float(np.abs(train_x).max()), 1e-12)

    def standardise(values: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(((values - feature_mean) / feature_scale).astype(np.float32)).to(device)

    k = settings.endmembers
    network = torch.nn.Sequential(
        torch.nn.Linear(train_x.shape[1], settings.hidden),
        torch.nn.GELU(),
        torch.nn.Linear(settings.hidden, settings.hidden),
        torch.nn.GELU(),
        torch.nn.Linear(settings.hidden, k),
    )
    initialise(network, generator)
    network = network.to(device)
    e = torch.from_numpy(endmembers).to(device)

    def coefficients(x: "torch.Tensor") -> "torch.Tensor":
        return coefficient_map(network(x), settings.coefficients)

    inputs = standardise(train_x)
    loss = ReconstructionLoss(e, torch.from_numpy(train_y.astype(np.float32)).to(device),
                              None if row_weights is None else torch.from_numpy(row_weights).to(device))
    epochs, epochs_chosen_by, networks = settings.epochs, "setting", [network]
    workers = training_processes(torch.get_num_threads()) if device.type == "cpu" else 1
    # the network and its data are small: threads cost more than they save, and much more on a busy machine
    with one_thread() if device.type == "cpu" else contextlib.nullcontext():
        if settings.optimizer == "lbfgs":
            if cross_validated:
                # the copies of the noise augmentation repeat the pixels in order: a pixel is held out with its copies
                pixel_of_row = np.tile(np.arange(msi_sample.shape[0]), inputs.shape[0] // msi_sample.shape[0])
                epochs, networks = cross_validated_networks(network, settings.coefficients, loss, inputs, pixel_of_row,
                                                            settings, workers=workers)
                epochs_chosen_by = f"cross-validation on {settings.trained_folds} of {settings.validation_folds} folds"
            else:
                members = min(settings.ensemble, max(1, ENSEMBLE_ROWS // inputs.shape[0]))
                others = [initialise(copy.deepcopy(network).cpu(), generator).to(device) for _ in range(members - 1)]
                networks = ensemble_networks([network, *others], settings.coefficients, loss, inputs, epochs, workers)
        else:
            train_adam(network, lambda: loss(coefficients(inputs)), settings)
    for member in networks:
        member.eval()
    with torch.no_grad():
        loss_value = float(loss(mean_coefficients(networks, settings.coefficients, inputs)))

    # the prior on the HR grid where the fit found the LR pixels (their blocks' centres on a registered pair)
    spatial = sensor.spatial
    enlarged = BicubicStrips(lr, ratio, (spatial.phase_rows - spatial.nominal_phase, spatial.phase_cols - spatial.nominal_phase))
    detail_gain = np.float32(np.mean(trust.relative)) if settings.shrink_detail else np.float32(1.0)
    solver = target_solver = None
    if settings.consistency:
        basis = correction_basis(pixels, srf, settings.correction_rank)
        weights = settings.msi_weight * trust.weights
        # the prior's weight grows with the LR-HSI's noise (a fixed prior variance against noisier data),
        # so that the LR consistency does not turn into noise-amplifying deconvolution
        prior_weight = settings.prior_weight * trust.hsi_error / ERROR_FLOOR if settings.noise_adaptive else settings.prior_weight
        if line_weights is not None:
            # each LR row and column's data term scaled by its weight: ‖Dr (Gr X Gcᵀ − Y) Dc‖², still separable
            row_scale, col_scale = np.sqrt(line_weights[0]), np.sqrt(line_weights[1])
            gr, gc = sparse.csr_array(sparse.diags(row_scale) @ gr), sparse.csr_array(sparse.diags(col_scale) @ gc)
            lr_measured = (lr_measured * row_scale[:, None, None] * col_scale[None, :, None]).astype(lr_measured.dtype)
        solver = ConsistencySolver(gr, gc, lr_measured, lr_valid, srf, basis, weights, prior_weight)
        if settings.refit_iterations > 0 and np.mean(trust.relative) >= REFIT_MIN_TRUST:
            # the refit's targets leave the MSI term out: with it they carry the MSI's noise, which the network then
            # learns to pass on (a 25 dB MSI: −1.6 dB against no refit; docs/benchmarks.md)
            target_solver = ConsistencySolver(gr, gc, lr_measured, lr_valid, srf, basis, np.zeros_like(weights), prior_weight)
    for member in networks:
        member.to("cpu")
    return SpectraMorphModel(
        networks=networks, endmembers=endmembers, coefficients_kind=settings.coefficients, prior=prior,
        prior_mean=prior_mean, prior_components=prior_components,
        with_msi=with_msi, srf=srf, feature_mean=feature_mean, feature_scale=feature_scale, detail_gain=detail_gain,
        enlarged=enlarged, solver=solver, device=settings.device, training_loss=loss_value, epochs=epochs,
        epochs_chosen_by=epochs_chosen_by,
        refit_iterations=0 if target_solver is None else settings.refit_iterations, target_solver=target_solver,
        refit_pixels=settings.refit_pixels,
    )


@dataclass
class SpectraMorphModel:
    """A fitted SpectraMorph: fuses any strip of HR rows from its MSI alone (plus LR-scale state),
    so that strips can be fused in any order, in any process. It pickles (the networks on the CPU)."""

    networks: list
    """One network, or the cross-validation's folds or an ensemble, whose coefficients are averaged."""
    endmembers: np.ndarray
    coefficients_kind: str
    prior: str
    prior_mean: np.ndarray | None
    prior_components: np.ndarray | None
    with_msi: bool
    srf: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    detail_gain: np.float32
    enlarged: BicubicStrips
    solver: ConsistencySolver | None
    device: str
    training_loss: float
    epochs: int
    epochs_chosen_by: str
    refit_iterations: int = 0
    """L-BFGS iterations of :meth:`refit` (0: the model is not refitted)."""
    refit_pixels: int = 4096
    """The refit's HR pixels are taken on a lattice of at most this many."""
    target_solver: ConsistencySolver | None = None
    """The consistency step without the MSI term, which makes the refit's targets from the first prediction."""

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_on_device", None)
        return state

    def _networks(self):
        """The networks on this process's device (moved there once)."""
        if "_on_device" not in self.__dict__:
            import torch

            device = torch.device(resolve_device(self.device))
            networks = [member.to(device) for member in self.networks]
            self._on_device = (networks, torch.from_numpy(self.endmembers).to(device), device)
        return self._on_device

    def predict(self, msi: np.ndarray, valid: np.ndarray, start: int, stop: int,
                picked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, "RefitInputs | None"]:
        """The network's spectra (rows × cols × B) and coefficients (rows × cols × K) for HR rows
        start:stop, from their calibrated MSI and its validity; ``start`` and ``stop`` are multiples
        of the ratio. With ``picked`` (rows × cols), also the refit's inputs at those pixels."""
        import torch

        ratio = self.enlarged.ratio
        rows, cols = msi.shape[:2]
        coarse = self.enlarged.strip(start // ratio, stop // ratio)
        # MSI gaps take the enlarged LR-HSI's SRF image, so the network sees plausible values there
        filled = np.where(valid[:, :, None], msi, coarse @ self.srf)
        networks, e, device = self._networks()
        inputs = prior_features(filled, coarse, self.prior, self.prior_mean, self.prior_components, self.srf, self.with_msi)
        lattice = None if picked is None else RefitInputs(inputs[picked].astype(np.float32), coarse[picked].astype(np.float32))
        inputs = inputs.reshape(-1, self.feature_mean.size)
        with torch.no_grad():
            x = torch.from_numpy(((inputs - self.feature_mean) / self.feature_scale).astype(np.float32)).to(device)
            coef = mean_coefficients(networks, self.coefficients_kind, x)
            spectra = (coef @ e).cpu().numpy().reshape(rows, cols, -1)
        if self.prior == "residual":
            # the MSI-borne correction, shrunk by how far the MSI agrees with the HSI (1 on a consistent pair)
            spectra = coarse + self.detail_gain * spectra
        return spectra.astype(np.float32, copy=False), coef.cpu().numpy().reshape(rows, cols, -1), lattice

    def refit(self, lattice: "RefitInputs", fused: np.ndarray) -> None:
        """Every network trained further, for ``refit_iterations`` L-BFGS iterations, to map the inputs of
        HR pixels (:meth:`predict`'s ``picked``) to their consistent result ``fused`` (N × B), on the CPU."""
        import torch

        if fused.shape[0] < max(2 * self.endmembers.shape[0], 16):
            return  # too few pixels with data to learn from: the first fit stays
        targets = (fused - lattice.coarse) / self.detail_gain if self.prior == "residual" else fused
        self.__dict__.pop("_on_device", None)
        networks = [member.to("cpu") for member in self.networks]
        inputs = torch.from_numpy(((lattice.inputs - self.feature_mean) / self.feature_scale).astype(np.float32))
        loss = ReconstructionLoss(torch.from_numpy(self.endmembers), torch.from_numpy(targets.astype(np.float32)))
        workers = training_processes(torch.get_num_threads())
        with one_thread():
            ensemble_networks(networks, self.coefficients_kind, loss, inputs, self.refit_iterations, workers)
        for member in networks:
            member.eval()

    @staticmethod
    def msi_for_solve(spectra: np.ndarray, msi: np.ndarray, valid: np.ndarray, srf: np.ndarray) -> np.ndarray:
        """Where the MSI has a gap, the prior's own SRF image: no pull either way."""
        return np.where(valid[:, :, None], msi, spectra @ srf)


@dataclass
class RefitInputs:
    """HR pixels' network inputs (N × features) and the enlarged LR-HSI there (N × B, what the residual prior
    adds): taken while the network predicts them, so the refit does not enlarge the LR-HSI again."""

    inputs: np.ndarray
    coarse: np.ndarray

    @classmethod
    def joined(cls, parts: list["RefitInputs"]) -> "RefitInputs":
        return cls(np.concatenate([part.inputs for part in parts]), np.concatenate([part.coarse for part in parts]))


VALIDATION_PATIENCE = 300
"""A fold stops once its held-out loss has not improved for this many iterations."""
SNAPSHOT_BYTES = 64 * 2**20
"""A fold keeps its weights after every iteration up to this many bytes (for a network of about 1 500
weights, 9 MB), after every few iterations beyond."""
MIN_HELD_OUT_PIXELS = 25
"""Fewer LR pixels per fold than this and the held-out loss is too noisy to choose by: ``epochs`` stays
(HyperBench Salton Sea ×8, 6 × 7 LR pixels: the folds chose 11–14 iterations, worse on 2 of 3 cases)."""


ENSEMBLE_ROWS = 16384
"""The ensemble has as many networks as fit into this many training rows (LR pixels × noisy copies), up to
``SpectraMorphSettings.ensemble``: where one network trains on 4 096 rows or fewer (every HyperBench
scene, an LR grid of up to 64 × 64 pixels) four do, on larger scenes fewer, from 16 384 rows one, so
the ensemble never trains longer than one network on ``max_train_pixels`` would."""


def initialise(network, generator):
    """``network``'s linear layers drawn afresh from ``generator`` (PyTorch's default bounds): seeded, and
    independent of the global RNG's history."""
    import torch

    with torch.no_grad():
        for layer in network:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return network


def training_processes(threads: int) -> int:
    """How many processes the folds or an ensemble's networks may train in: one per thread the caller
    allows, where a process can fork (Linux: the tensors are inherited, not copied) and may have children
    (not in a daemonic process such as a Dask worker). Threads do not do: the training steps are too
    short to leave the interpreter lock for long."""
    import multiprocessing

    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return 1
    return max(1, threads)


@dataclass
class Ensemble:
    """Networks to train alike (full-batch L-BFGS, the same iterations) from their own initial weights."""

    initial: list
    coefficients_kind: str
    loss: "ReconstructionLoss"
    inputs: object
    epochs: int

    def train(self, member: int) -> np.ndarray:
        """Member ``member`` trained, as its weight vector."""
        import torch

        network = copy.deepcopy(self.initial[member])
        train_lbfgs(network, lambda: self.loss(coefficient_map(network(self.inputs), self.coefficients_kind)), self.epochs)
        return torch.nn.utils.parameters_to_vector(network.parameters()).detach().cpu().numpy()


def ensemble_networks(initial: list, coefficients_kind: str, loss: "ReconstructionLoss", inputs, epochs: int,
                      workers: int = 1) -> list:
    """The ``initial`` networks, each trained for ``epochs`` L-BFGS iterations, in up to ``workers`` forked
    processes (the result does not depend on their number)."""
    import torch

    weights = tasks_in_processes(Ensemble(initial, coefficients_kind, loss, inputs, epochs).train, len(initial), workers)
    for network, vector in zip(initial, weights):
        torch.nn.utils.vector_to_parameters(torch.from_numpy(vector).to(inputs.device), network.parameters())
    return initial


@dataclass
class HeldOutFolds:
    """The cross-validation problem: the network's initial weights, its training rows and their folds."""

    network: object
    coefficients_kind: str
    loss: "ReconstructionLoss"
    inputs: object
    fold_of_row: np.ndarray
    settings: SpectraMorphSettings

    def curve(self, fold: int) -> "FoldResult":
        """The held-out loss after each of up to ``max_epochs`` L-BFGS iterations, trained on the other
        folds from a copy of the initial weights, and the weights along the way; a fold that stops
        early (no better held-out loss for :data:`VALIDATION_PATIENCE` iterations, or converged) keeps
        its last loss and weights for the rest."""
        import torch

        network = copy.deepcopy(self.network)
        held = torch.from_numpy(self.fold_of_row == fold).to(self.inputs.device)
        held_inputs, held_loss = self.inputs[held], self.loss.rows(held)
        train_inputs, train_loss = self.inputs[~held], self.loss.rows(~held)
        history: list[float] = []
        weights: list[np.ndarray] = []
        parameters = sum(p.numel() for p in network.parameters())
        every = max(1, -(-parameters * 4 * self.settings.max_epochs // SNAPSHOT_BYTES))

        def keep_weights() -> None:
            weights.append(torch.nn.utils.parameters_to_vector(network.parameters()).detach().cpu().numpy())

        def held_out_loss() -> None:
            with torch.no_grad():
                history.append(float(held_loss(coefficient_map(network(held_inputs), self.coefficients_kind))))
            if len(history) % every == 0:
                keep_weights()
            if len(history) - 1 - int(np.argmin(history)) >= VALIDATION_PATIENCE:
                raise StopIteration

        train_lbfgs(network, lambda: train_loss(coefficient_map(network(train_inputs), self.coefficients_kind)),
                    self.settings.max_epochs, callback=held_out_loss)
        if len(history) % every:  # where the fold stopped
            keep_weights()
        curve = np.concatenate([history, np.full(self.settings.max_epochs - len(history), history[-1])])
        return FoldResult(curve, np.stack(weights), every)


@dataclass
class FoldResult:
    """What a fold sends back from its process."""

    curve: np.ndarray
    """Held-out loss after each iteration (``max_epochs``)."""
    weights: np.ndarray
    """The network's weights after iterations every, 2 × every, …, and where the fold stopped."""
    every: int

    def weights_after(self, iterations: int) -> np.ndarray:
        """The weights after the given iterations, or the last kept before (the last, past a stop)."""
        return self.weights[min(max(iterations // self.every, 1), len(self.weights)) - 1]


def _tasks_in_this_process(task: Callable[[int], object], numbers: range, results, inherited: list) -> None:
    """A training process: ``task(n)`` for its ``numbers`` sent back through ``results``. Ctrl-C is the
    parent's to handle (it ends the training processes); SIGTERM and SIGHUP end this one at once, not through the
    CLI's clean-up, which is inherited through fork but the parent's to run. The read ends inherited
    through fork are closed, so that a send to a parent that is gone fails instead of waiting."""
    import signal

    import torch
    from threadpoolctl import threadpool_limits

    for number in STOPPING_SIGNALS:
        signal.signal(number, signal.SIG_IGN if number == signal.SIGINT else signal.SIG_DFL)
    for connection in inherited:
        connection.close()
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")
    try:
        results.send([task(number) for number in numbers])
    except BrokenPipeError:
        pass  # the parent is gone: nobody wants these


def tasks_in_processes(task: Callable[[int], object], count: int, workers: int) -> list:
    """``task(0)`` … ``task(count − 1)`` (the folds of a cross-validation, the networks of an ensemble),
    shared out over up to ``workers`` forked processes, which are ended whatever happens here (a signal,
    an error) before this returns; in this process, one after another, where one worker would do."""
    import multiprocessing

    workers = min(workers, count)
    if workers <= 1:
        return [task(number) for number in range(count)]
    context = multiprocessing.get_context("fork")
    processes, pipes = [], []
    try:
        with signals_held():
            for worker in range(workers):
                receiving, sending = context.Pipe(duplex=False)
                pipes.append(receiving)
                processes.append(context.Process(target=_tasks_in_this_process, daemon=True,
                                                 args=(task, range(worker, count, workers), sending, list(pipes))))
                processes[-1].start()
                sending.close()
        results: dict[int, object] = {}
        for worker, (process, receiving) in enumerate(zip(processes, pipes)):
            try:
                results.update(zip(range(worker, count, workers), receiving.recv()))
            except EOFError:
                process.join()
                raise RuntimeError(f"a training process ended without its result (exit code {process.exitcode})") from None
        return [results[number] for number in range(count)]
    finally:
        # SIGKILL, not SIGTERM: a process forked a moment ago still holds signals_held's handler, which
        # would keep a SIGTERM until its work was done (found hung on a loaded machine); a training
        # process has nothing to clean up
        for process in processes:
            if process.is_alive():
                process.kill()
            if process.pid is not None:
                process.join()


def cross_validated_networks(network, coefficients_kind: str, loss: "ReconstructionLoss", inputs,
                             pixel_of_row: np.ndarray, settings: SpectraMorphSettings, workers: int = 1) -> tuple[int, list]:
    """The L-BFGS iteration count chosen on the held-out loss of the first ``trained_folds`` of
    ``validation_folds`` folds of the training pixels, each network trained on the pixels outside its
    fold from a copy of the network's present (initial) weights, in ``workers`` processes (forked; the
    result does not depend on their number); and those networks after that many iterations, whose
    mean the model uses instead of training once more on all pixels (as good on HyperBench's twelve
    cross-validated cases, within ±0.07 dB, for one training run less: docs/benchmarks.md).

    On a few hundred LR pixels a fixed count under- or over-fits depending on the scene and the MSI's
    bands (HyperBench Jasper ×8: 8 bands gain up to 1000 iterations, 3 bands lose past 300).
    """
    import torch

    fold_of_pixel = np.random.default_rng(settings.seed).permutation(int(pixel_of_row.max()) + 1) % settings.validation_folds
    problem = HeldOutFolds(network, coefficients_kind, loss, inputs, fold_of_pixel[pixel_of_row], settings)
    folds = settings.trained_folds
    results = tasks_in_processes(problem.curve, folds, workers)
    curves = np.stack([result.curve for result in results])
    # the fewest iterations not worse than the best count by more than the standard error of their paired
    # difference over the held-out folds: on a flat curve the minimum's place is noise, and fewer iterations fit less of it
    best = int(np.argmin(curves.mean(axis=0)))
    excess = curves - curves[:, best : best + 1]
    within = excess.mean(axis=0) <= excess.std(axis=0, ddof=1) / np.sqrt(folds)
    epochs = int(np.argmax(within)) + 1
    members = []
    for result in results:
        member = copy.deepcopy(network)
        torch.nn.utils.vector_to_parameters(torch.from_numpy(result.weights_after(epochs)), member.parameters())
        members.append(member)
    return epochs, members


class ReconstructionLoss:
    """mean((c·E − Y)²) over the pixels and bands of targets Y (N × B), for coefficients c (N × K) and
    endmembers E (K × B), from K × K and N × K statistics: the cost of a training step does not grow
    with the hundreds of HSI bands. In float64, because the expansion subtracts nearly equal terms.
    With ``weights`` (N), the weighted mean over the pixels."""

    def __init__(self, endmembers, targets, weights=None) -> None:
        e, y = endmembers.double(), targets.double()
        self.gram = e @ e.T
        self.projections = y @ e.T
        self.energy = (y**2).sum(dim=1)
        self.bands = y.shape[1]
        self.weights = None if weights is None else weights.double()

    def rows(self, selected) -> "ReconstructionLoss":
        """The same loss over the targets' ``selected`` rows (a boolean mask) only."""
        subset = copy.copy(self)
        subset.projections, subset.energy = self.projections[selected], self.energy[selected]
        subset.weights = None if self.weights is None else self.weights[selected]
        return subset

    def __call__(self, coefficients):
        c = coefficients.double()
        if self.weights is None:
            return ((c @ self.gram * c).sum() - 2 * (c * self.projections).sum() + self.energy.sum()) / (c.shape[0] * self.bands)
        per_pixel = (c @ self.gram * c).sum(dim=1) - 2 * (c * self.projections).sum(dim=1) + self.energy
        return (self.weights * per_pixel).sum() / (self.weights.sum() * self.bands)


def train_lbfgs(network, loss_function, iterations: int, callback: Callable[[], None] | None = None) -> None:
    """Full-batch L-BFGS (scipy's L-BFGS-B, with torch computing loss and gradient). ``callback`` runs
    after each iteration with the network holding that iterate's weights; it may raise StopIteration.

    scipy rather than torch.optim: the first torch.optim optimiser imports torch._dynamo, which
    takes seconds — longer than this whole training on typical scenes.
    """
    import torch
    from scipy.optimize import minimize

    parameters = list(network.parameters())
    sizes = [p.numel() for p in parameters]

    def load(vector: np.ndarray) -> None:
        with torch.no_grad():
            for parameter, chunk in zip(parameters, np.split(vector, np.cumsum(sizes)[:-1])):
                parameter.copy_(torch.from_numpy(chunk.reshape(parameter.shape)))

    def objective(vector: np.ndarray) -> tuple[float, np.ndarray]:
        load(vector)
        for parameter in parameters:
            parameter.grad = None
        loss = loss_function()
        loss.backward()
        gradient = np.concatenate([p.grad.detach().cpu().numpy().ravel() for p in parameters])
        return float(loss.detach()), gradient.astype(np.float64)

    start = np.concatenate([p.detach().cpu().numpy().ravel() for p in parameters]).astype(np.float64)

    def after_iteration(vector: np.ndarray) -> None:
        load(vector)
        callback()

    result = minimize(objective, start, jac=True, method="L-BFGS-B", callback=callback and after_iteration,
                      options={"maxiter": iterations, "maxcor": 20, "ftol": 0.0, "gtol": 0.0})
    load(result.x)


def train_adam(network, loss_function, settings: SpectraMorphSettings) -> None:
    """Full-batch Adam with a cosine-annealed learning rate."""
    import torch

    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, settings.epochs)
    for _ in range(settings.epochs):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_function()
        loss.backward()
        optimiser.step()
        schedule.step()


def correction_basis(pixels: np.ndarray, srf: np.ndarray, rank: int) -> np.ndarray:
    """Orthonormal B × p basis: the LR-HSI's leading right singular vectors and the SRF's columns."""
    bands = pixels.shape[1]
    if rank >= bands:
        return np.eye(bands)
    leading = np.linalg.svd(spread_sample(pixels).astype(np.float64), full_matrices=False)[2][:rank].T
    q, _ = np.linalg.qr(np.concatenate([srf / np.linalg.norm(srf, axis=0), leading], axis=1))
    return q[:, : min(bands, rank + srf.shape[1])]
