"""Exact fully constrained (FCLS) and non-negative (NNLS) least squares for every pixel at once.

Both problems depend on a pixel only through ``b = M y`` (K values), because the Gram matrix
``G = M Mᵀ`` is the same for every pixel:

    minimise ½ aᵀ G a − bᵀ a   subject to  a ≥ 0  (and 1ᵀ a = 1 for FCLS).

The solver is the Lawson–Hanson active-set method run for all pixels together. Pixels that
share a passive set share the small KKT matrix, so each iteration solves one linear system per
distinct passive set (the "fast combinatorial" idea of Van Benthem & Keenan, 2004) with all
those pixels as right-hand sides. The result is exact up to floating-point rounding: it meets
the KKT conditions, which :func:`kkt_violation` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_PIXELS = 65536
"""Pixels per block when forming ``b = M y`` in float64 (bounds the temporary memory)."""


@dataclass
class SolverReport:
    """How the active-set solver ended, for the summary and for tests."""

    iterations: int
    unconverged_pixels: int
    max_kkt_violation: float
    """Largest KKT violation over pixels, relative to the largest diagonal entry of G."""


def fcls(pixels: np.ndarray, endmembers: np.ndarray, *, return_report: bool = False):
    """Fully constrained abundances (non-negative, summing to one) of ``pixels`` (N, B).

    ``endmembers`` is (K, B). Returns (N, K) float64, and a :class:`SolverReport` with
    ``return_report=True``.
    """
    return _solve(pixels, endmembers, sum_to_one=True, return_report=return_report)


def nnls(pixels: np.ndarray, endmembers: np.ndarray, *, return_report: bool = False):
    """Non-negative abundances of ``pixels`` (N, B) for ``endmembers`` (K, B); (N, K) float64."""
    return _solve(pixels, endmembers, sum_to_one=False, return_report=return_report)


def gram_and_correlations(pixels: np.ndarray, endmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``G = M Mᵀ`` (K, K) and ``b = Y Mᵀ`` (N, K), in float64, ``Y`` processed in blocks."""
    m = np.asarray(endmembers, dtype=np.float64)
    gram = m @ m.T
    pixels = np.asarray(pixels)
    b = np.empty((pixels.shape[0], m.shape[0]), dtype=np.float64)
    for start in range(0, pixels.shape[0], _CHUNK_PIXELS):
        block = np.asarray(pixels[start : start + _CHUNK_PIXELS], dtype=np.float64)
        b[start : start + block.shape[0]] = block @ m.T
    return gram, b


def solve_quadratic(gram: np.ndarray, b: np.ndarray, *, sum_to_one: bool) -> tuple[np.ndarray, SolverReport]:
    """Minimise ½ aᵀ G a − bᵀ a over a ≥ 0 (and 1ᵀa = 1) for each row of ``b`` (N, K)."""
    gram = np.asarray(gram, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, k = b.shape
    scale = max(float(np.max(np.abs(np.diag(gram)))), np.finfo(float).tiny)
    tol = 1e-10 * scale
    solver = _PatternSolver(gram, sum_to_one)

    a = np.zeros((n, k))
    passive = np.zeros((n, k), dtype=bool)
    wants_new_index = np.ones(n, dtype=bool)
    if sum_to_one:
        # Feasible start: the sum-to-one least-squares solution clipped to the simplex. Most
        # coefficients that are positive there stay positive, which saves most of the rounds
        # of the textbook start from a single vertex; the first round then starts inside.
        full = solver.solve(np.ones((n, k), dtype=bool), b)
        np.maximum(full, 0.0, out=full)
        total = full.sum(1)
        empty = total <= 0
        full[empty, np.argmin(np.diag(gram)[None, :] - 2 * b[empty], axis=1)] = 1.0
        a = full / np.where(empty, 1.0, total)[:, None]
        passive = a > 0
        wants_new_index[:] = False

    # Working set: the pixels still iterating, compacted as pixels finish.
    ids = np.arange(n)
    work_a, work_passive, work_b = a.copy(), passive, b
    added = np.full(n, -1)
    max_rounds = 10 * k + 100
    rounds = 0
    while ids.size and rounds < max_rounds:
        rounds += 1
        finished = np.zeros(ids.size, dtype=bool)
        # Outer step: pixels optimal on their passive set look for one more index to free.
        look = np.flatnonzero(wants_new_index)
        if look.size:
            gradient = work_b[look] - work_a[look] @ gram
            look_passive = work_passive[look]
            if sum_to_one:
                multiplier = (gradient * look_passive).sum(1) / np.maximum(look_passive.sum(1), 1)
                gradient -= multiplier[:, None]
            gradient[look_passive] = -np.inf
            best = np.argmax(gradient, axis=1)
            improvable = gradient[np.arange(look.size), best] > tol
            finished[look[~improvable]] = True
            look, best = look[improvable], best[improvable]
            work_passive[look, best] = True
            added[look] = best
        if finished.any():
            a[ids[finished]] = work_a[finished]
            keep = ~finished
            ids, work_a, work_passive, work_b = ids[keep], work_a[keep], work_passive[keep], work_b[keep]
            wants_new_index, added = wants_new_index[keep], added[keep]
            if not ids.size:
                break

        z = solver.solve(work_passive, work_b)
        rows = np.arange(ids.size)
        # Rounding can make the freshly freed index non-positive, which would cycle: stop there.
        stalled = wants_new_index & (z[rows, np.maximum(added, 0)] <= 0)
        work_passive[stalled, added[stalled]] = False

        negative = work_passive & (z <= 0)
        feasible = ~negative.any(1) & ~stalled
        work_a[feasible] = z[feasible]

        # Inner step: move towards z until the first passive coefficient hits zero, then drop it.
        blocked = np.flatnonzero(~feasible & ~stalled)
        if blocked.size:
            current, target = work_a[blocked], z[blocked]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(negative[blocked], current / (current - target), np.inf)
            step = np.clip(ratio.min(1), 0.0, 1.0)
            moved = current + step[:, None] * (target - current)
            leaving = work_passive[blocked] & (moved <= tol / scale)
            leaving[np.arange(blocked.size), np.argmin(ratio, axis=1)] = True
            moved[leaving] = 0.0
            work_passive[blocked] &= ~leaving
            if sum_to_one:
                moved /= moved.sum(1, keepdims=True)
            work_a[blocked] = moved

        wants_new_index = feasible
        added[:] = -1
        if stalled.any():
            a[ids[stalled]] = work_a[stalled]
            keep = ~stalled
            ids, work_a, work_passive, work_b = ids[keep], work_a[keep], work_passive[keep], work_b[keep]
            wants_new_index, added = wants_new_index[keep], added[keep]
    a[ids] = work_a
    unconverged = ids.size

    np.maximum(a, 0.0, out=a)
    if sum_to_one:
        a /= a.sum(1, keepdims=True)
    violation = kkt_violation(gram, b, a, sum_to_one=sum_to_one)
    report = SolverReport(
        iterations=rounds,
        unconverged_pixels=int(unconverged),
        max_kkt_violation=float(violation.max(initial=0.0) / scale),
    )
    return a, report


def kkt_violation(gram: np.ndarray, b: np.ndarray, a: np.ndarray, *, sum_to_one: bool) -> np.ndarray:
    """Per-pixel size of the largest KKT violation (in units of the gradient).

    At the optimum the gradient ``g = b − G a`` is equal to the multiplier ``μ`` (0 without
    sum-to-one) on every positive coefficient and at most ``μ`` on every zero one.
    """
    gradient = b - a @ gram
    positive = a > 0
    if sum_to_one:
        weights = a / np.maximum(a.sum(1, keepdims=True), np.finfo(float).tiny)
        multiplier = (gradient * weights).sum(1, keepdims=True)
    else:
        multiplier = np.zeros((a.shape[0], 1))
    on_support = np.where(positive, np.abs(gradient - multiplier), 0.0)
    off_support = np.where(positive, 0.0, np.maximum(gradient - multiplier, 0.0))
    return np.maximum(on_support.max(1), off_support.max(1))


class _PatternSolver:
    """Solves the equality-constrained least squares on a passive set, grouped by passive set."""

    def __init__(self, gram: np.ndarray, sum_to_one: bool):
        self.gram = gram
        self.sum_to_one = sum_to_one
        self.k = gram.shape[0]
        self._inverses: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def _inverse(self, key: bytes, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cached = self._inverses.get(key)
        if cached is not None:
            return cached
        index = np.flatnonzero(pattern)
        if not index.size:
            return index, np.zeros((0, 0))
        sub = self.gram[np.ix_(index, index)]
        if self.sum_to_one:
            size = index.size
            system = np.zeros((size + 1, size + 1))
            system[:size, :size] = sub
            system[:size, size] = 1.0
            system[size, :size] = 1.0
        else:
            system = sub
        try:
            inverse = np.linalg.inv(system)
            if not np.all(np.isfinite(inverse)):
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            # Linearly dependent endmembers: the minimum-norm solution is still optimal.
            inverse = np.linalg.pinv(system)
        if len(self._inverses) < 65536:
            self._inverses[key] = (index, inverse)
        return index, inverse

    def solve(self, passive: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = passive.shape[0]
        z = np.zeros((n, self.k))
        if self.k <= 63:
            keys = passive @ (np.int64(1) << np.arange(self.k, dtype=np.int64))
        else:
            packed = np.ascontiguousarray(np.packbits(passive, axis=1))
            keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        bounds = np.concatenate([[0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, [n]])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            index, inv = self._inverse(sorted_keys[lo].tobytes(), passive[rows[0]])
            if not index.size:
                continue
            rhs = b[np.ix_(rows, index)]
            if self.sum_to_one:
                # [G_PP 1; 1ᵀ 0] [a; −μ] = [b_P; 1]
                solution = rhs @ inv[: index.size, : index.size].T + inv[: index.size, index.size]
            else:
                solution = rhs @ inv.T
            z[np.ix_(rows, index)] = solution
        return z


def _solve(pixels, endmembers, *, sum_to_one: bool, return_report: bool):
    gram, b = gram_and_correlations(pixels, endmembers)
    abundances, report = solve_quadratic(gram, b, sum_to_one=sum_to_one)
    return (abundances, report) if return_report else abundances
