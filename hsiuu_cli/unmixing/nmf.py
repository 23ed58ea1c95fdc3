"""Non-negative matrix factorisation with sum-to-one abundances, by alternating exact solves.

Y ≈ A M with A ≥ 0, A 1 = 1 and M ≥ 0. Each half-step is solved exactly with the batched
active-set solver: the abundances by FCLS over pixels, the endmembers by NNLS over bands
(Y ≈ A M is, band by band, a non-negative least-squares problem in the column of M). The
objective therefore never increases; iterations stop when it changes by less than ``tol``
(relative) or after ``max_iter``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fcls import fcls, solve_quadratic


@dataclass
class NMFResult:
    endmembers: np.ndarray  # (K, B)
    abundances: np.ndarray  # (N, K)
    iterations: int
    objective: list[float]
    """½‖Y − A M‖² after each iteration."""


def nmf_sum_to_one(
    pixels: np.ndarray,
    initial_endmembers: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> NMFResult:
    """Refine ``initial_endmembers`` (K, B) on pixels (N, B)."""
    y = np.asarray(pixels, dtype=np.float64)
    endmembers = np.maximum(np.asarray(initial_endmembers, dtype=np.float64), 0.0)
    abundances = fcls(y, endmembers)
    objective = [_half_squared_error(y, abundances, endmembers)]
    iterations = 0
    for iterations in range(1, max_iter + 1):
        gram = abundances.T @ abundances
        correlations = y.T @ abundances  # B × K: one NNLS problem per band
        endmembers = solve_quadratic(gram, correlations, sum_to_one=False)[0].T
        abundances = fcls(y, endmembers)
        objective.append(_half_squared_error(y, abundances, endmembers))
        if objective[-2] - objective[-1] <= tol * max(objective[-2], np.finfo(float).tiny):
            break
    return NMFResult(endmembers, abundances, iterations, objective)


def _half_squared_error(y: np.ndarray, abundances: np.ndarray, endmembers: np.ndarray) -> float:
    return 0.5 * float(np.sum((y - abundances @ endmembers) ** 2))
