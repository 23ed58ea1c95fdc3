"""N-FINDR (Winter, 1999) with ATGP initialisation (Ren & Chang, 2003).

N-FINDR looks for the K pixels spanning the simplex of largest volume in the (K−1)-dimensional
principal subspace. Replacing vertex i by a pixel x changes the simplex matrix in one column,
so its determinant is linear in (1, x): the volumes of all candidate pixels come from one
matrix–vector product per vertex, and a whole sweep costs K such products.
"""

from __future__ import annotations

import numpy as np

from .vca import top_eigenvectors


def atgp(pixels: np.ndarray, n_endmembers: int) -> np.ndarray:
    """Indices of K target pixels: the brightest, then each farthest from the span of those found."""
    y = np.asarray(pixels, dtype=np.float64)
    residual_norm = np.einsum("ij,ij->i", y, y)
    indices = [int(np.argmax(residual_norm))]
    for _ in range(1, n_endmembers):
        basis, _ = np.linalg.qr(y[indices].T)
        projection = y @ basis
        residual_norm = np.einsum("ij,ij->i", y, y) - np.einsum("ij,ij->i", projection, projection)
        residual_norm[indices] = -np.inf
        indices.append(int(np.argmax(residual_norm)))
    return np.asarray(indices, dtype=np.int64)


def nfindr(
    pixels: np.ndarray, n_endmembers: int, *, max_sweeps: int = 20, initial: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Endmembers (K, B) and the indices of the pixels (N, B) they were taken from."""
    y = np.asarray(pixels, dtype=np.float64)
    k = n_endmembers
    centred = y - y.mean(axis=0)
    basis = top_eigenvectors(centred.T @ centred, k - 1)
    lifted = np.hstack([np.ones((y.shape[0], 1)), centred @ basis])  # N × K, rows (1, x)

    indices = np.array(atgp(y, k) if initial is None else initial, dtype=np.int64)
    volume = abs(np.linalg.det(lifted[indices].T))
    for _ in range(max_sweeps):
        changed = False
        for i in range(k):
            simplex = lifted[indices].T  # K × K, column j = vertex j
            cofactors = _cofactor_column(simplex, i)
            volumes = np.abs(lifted @ cofactors)
            best = int(np.argmax(volumes))
            if volumes[best] > volume * (1 + 1e-12) and best not in indices:
                indices[i] = best
                volume = volumes[best]
                changed = True
        if not changed:
            break
    return y[indices], indices


def _cofactor_column(matrix: np.ndarray, column: int) -> np.ndarray:
    """Cofactors C[j, column]: det(matrix with that column replaced by v) = v · C[:, column]."""
    k = matrix.shape[0]
    minor_columns = [c for c in range(k) if c != column]
    cofactors = np.empty(k)
    for row in range(k):
        minor = np.delete(matrix[:, minor_columns], row, axis=0)
        cofactors[row] = (-1) ** (row + column) * (np.linalg.det(minor) if k > 1 else 1.0)
    return cofactors
