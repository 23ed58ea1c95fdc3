"""Exact FCLS / NNLS over all pixels: checked against scipy's NNLS, pixel by pixel, on a few pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls

from hsiuu_cli.unmixing.fcls import fcls, gram_and_correlations, kkt_violation, nnls, solve_quadratic
from conftest import make_mixture


def noisy_problem(seed: int = 1, k: int = 5):
    """Noisy pixels and perturbed endmembers, so that many constraints are active at the optimum."""
    cube, endmembers, _, _ = make_mixture(rows=20, cols=20, bands=50, endmembers=k, seed=seed)
    rng = np.random.default_rng(seed)
    pixels = cube.reshape(-1, 50).astype(np.float64) + rng.normal(0, 0.02, (400, 50))
    return pixels, endmembers + rng.normal(0, 0.03, endmembers.shape)


def reference_fcls(pixel: np.ndarray, endmembers: np.ndarray, weight: float = 1e4) -> np.ndarray:
    """Sum-to-one by a heavily weighted extra row (Heinz & Chang), solved by scipy's NNLS."""
    design = np.vstack([endmembers.T, weight * np.ones(endmembers.shape[0])])
    return scipy_nnls(design, np.r_[pixel, weight])[0]


def test_fcls_matches_reference_and_meets_constraints():
    pixels, endmembers = noisy_problem()
    abundances, report = fcls(pixels, endmembers, return_report=True)
    assert abundances.shape == (400, 5)
    assert abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(1), 1, atol=1e-12)
    assert report.unconverged_pixels == 0
    assert report.max_kkt_violation < 1e-9
    # Some constraints must bind, or the test would not exercise the active set.
    assert (abundances == 0).sum() > 100
    reference = np.array([reference_fcls(p, endmembers) for p in pixels[:40]])
    np.testing.assert_allclose(abundances[:40], reference, atol=1e-5)


def test_nnls_matches_scipy():
    pixels, endmembers = noisy_problem(seed=3)
    abundances, report = nnls(pixels, endmembers, return_report=True)
    reference = np.array([scipy_nnls(endmembers.T, p)[0] for p in pixels[:40]])
    np.testing.assert_allclose(abundances[:40], reference, atol=1e-9)
    assert report.max_kkt_violation < 1e-9
    assert not np.allclose(abundances.sum(1), 1)  # no sum-to-one constraint here


def test_noise_free_mixture_is_recovered_exactly():
    cube, endmembers, truth, _ = make_mixture(rows=16, cols=16, bands=30, endmembers=4, seed=5)
    abundances = fcls(cube.reshape(-1, 30), endmembers)
    np.testing.assert_allclose(abundances, truth.reshape(-1, 4), atol=1e-5)


def test_pixel_outside_the_simplex_goes_to_the_nearest_face():
    endmembers = np.eye(3)
    pixels = np.array([[2.0, -1.0, 0.0], [0.2, 0.3, 0.5], [-5.0, -5.0, -5.0]])
    abundances = fcls(pixels, endmembers)
    np.testing.assert_allclose(abundances[0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(abundances[1], [0.2, 0.3, 0.5], atol=1e-12)
    np.testing.assert_allclose(abundances[2], [1 / 3, 1 / 3, 1 / 3], atol=1e-12)


def test_duplicate_endmembers_still_give_an_optimal_feasible_solution():
    pixels, endmembers = noisy_problem(k=3)
    doubled = np.vstack([endmembers, endmembers[:1]])
    abundances = fcls(pixels, doubled)
    assert abundances.min() >= 0
    np.testing.assert_allclose(abundances.sum(1), 1, atol=1e-9)
    single = fcls(pixels, endmembers)
    merged = abundances[:, :3].copy()
    merged[:, 0] += abundances[:, 3]
    residual_doubled = np.linalg.norm(pixels - abundances @ doubled, axis=1)
    residual_single = np.linalg.norm(pixels - single @ endmembers, axis=1)
    np.testing.assert_allclose(residual_doubled, residual_single, rtol=1e-6, atol=1e-9)


def test_kkt_violation_detects_a_wrong_answer():
    pixels, endmembers = noisy_problem()
    gram, b = gram_and_correlations(pixels, endmembers)
    exact, _ = solve_quadratic(gram, b, sum_to_one=True)
    uniform = np.full_like(exact, 1 / exact.shape[1])
    assert kkt_violation(gram, b, exact, sum_to_one=True).max() < 1e-9 * gram.diagonal().max()
    assert kkt_violation(gram, b, uniform, sum_to_one=True).max() > 1e-3 * gram.diagonal().max()


@pytest.mark.parametrize("k", [2, 8])
def test_many_pixels_are_solved_at_once(k):
    rng = np.random.default_rng(k)
    endmembers = rng.uniform(0.1, 1.0, (k, 40))
    truth = rng.dirichlet(np.full(k, 0.3), 5000)
    pixels = truth @ endmembers + rng.normal(0, 0.01, (5000, 40))
    abundances, report = fcls(pixels, endmembers, return_report=True)
    assert report.unconverged_pixels == 0
    assert np.abs(abundances - truth).mean() < 0.05
