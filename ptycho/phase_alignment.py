"""Align the constant phase of each group's patch before stitching (phase synchronisation).

Each group of a scan is reconstructed on its own, and the absolute phase of a wave field is not measurable:
a patch times e^{iθ} explains the same diffraction. Stitching patches whose constant phases θ_b differ mixes
them in every overlap, which smears the stitched phase (ledger PHASE-SYNC-001). This module finds the θ_b that
make overlapping patches agree, using only the patches themselves (no data, no truth)::

    H[b, c] = Σ_shared pixels conj(w · p_b) · (w · p_c)      (b ≠ c; w: the stitch window's weights)

H is a sparse Hermitian matrix over the groups whose windows overlap (each pair's overlap at its relative
shift rounded to whole pixels); its leading eigenvector v maximises the weighted agreement
Σ_bc Re(conj(v_b) H[b, c] v_c) over |v| = 1 relaxed to ‖v‖ = 1, so θ_b = arg v_b (the spectral relaxation of
phase synchronisation), polished by the projected power method (v ← H·(v/|v|)). The eigenvector is exact
(dense ``eigh`` up to 3000 groups, else Lanczos at a tight tolerance): with many densely overlapping groups
the leading eigenvalue's gap is small, and an iterative solve on a stitch operator stopped at a loose
tolerance left a slow phase twist across the field (PHASE-SYNC-002). The global phase is fixed so that the
mean correction is zero (the network's absolute phase is kept); each set of transitively overlapping windows
(a connected component) is aligned on its own, and a group that overlaps no other keeps its phase.

NumPy/SciPy only; importing this module runs no TF op.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from scipy.spatial import cKDTree

__all__ = ["align_group_phases"]

#: Components up to this many groups take the leading eigenvector densely (``numpy.linalg.eigh``), larger ones
#: by Lanczos on the sparse matrix at a tight tolerance.
_DENSE_MAX = 3000
#: Pairs whose overlap is computed in one vectorised step (memory: this × M² complex128).
_CHUNK = 2048


def align_group_phases(patches, offsets, M: int, window=None, power_iterations: int = 100,
                       tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Multiply each patch by the constant phase that makes overlapping patches agree.

    patches : (B, N, N, 1) complex, one reconstructed patch per group, centred on its group centroid.
    offsets : (B, 1, 2, 1) float, group centroids [x, y] in object pixels (as ``reassemble_position``).
    M : the stitched central window (pixels); window : (M, M) weights (``tf_helper.taper_window``) or None.
    Each set of transitively overlapping windows is aligned on its own, with a mean correction of zero; a
    group whose window overlaps no other keeps its phase (θ = 0).
    Returns (aligned patches (B, N, N, 1) complex64, θ (B,) float64 radians, the phase added to each patch).
    """
    p = np.asarray(patches)
    if p.ndim != 4 or p.shape[3] != 1 or p.shape[1] != p.shape[2]:
        raise ValueError(f"patches: expected (B, N, N, 1), got {p.shape}")
    off = np.asarray(offsets, np.float64)
    if off.shape != (p.shape[0], 1, 2, 1) or not np.all(np.isfinite(off)):
        raise ValueError(f"offsets: expected finite ({p.shape[0]}, 1, 2, 1), got {off.shape}")
    if not (isinstance(M, (int, np.integer)) and 0 < M <= p.shape[1]):
        raise ValueError(f"M: must be an int in 1..N={p.shape[1]}, got {M!r}")
    weights = np.ones((M, M)) if window is None else np.asarray(window, np.float64)
    lo = p.shape[1] // 2 - M // 2
    crops = p[:, lo:lo + M, lo:lo + M, 0].astype(np.complex128) * weights
    centres = off[:, 0, :, 0]
    H = _overlap_matrix(crops, centres)
    theta = np.zeros(p.shape[0])
    _, labels = connected_components(abs(H), directed=False)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) > 1:
            unit = _leading_phases(H[members][:, members], power_iterations, tol)
            theta[members] = np.angle(unit * np.exp(-1j * np.angle(np.sum(unit))))
    aligned = p * np.exp(1j * theta)[:, None, None, None]
    return aligned.astype(np.complex64), theta


def _overlap_matrix(crops: np.ndarray, centres: np.ndarray):
    """Sparse Hermitian (B, B): H[b, c] = Σ conj(a_b) · a_c over the pixels windows b and c share (b ≠ c).

    crops (B, M, M) complex128 are the weighted windows a = w·p; centres (B, 2) [x, y] object pixels. The
    relative shift of two windows is rounded to whole pixels (a sub-pixel misregistration changes the phase
    of a smooth overlap by little and averages out over the many pairs).
    """
    B, M = crops.shape[0], crops.shape[1]
    pairs = cKDTree(centres).query_pairs(r=M - 0.5, p=np.inf, output_type="ndarray")
    if len(pairs) == 0:
        return coo_matrix((B, B), dtype=np.complex128).tocsr()
    lag = np.rint(centres[pairs[:, 1]] - centres[pairs[:, 0]]).astype(int)  # [dx, dy] of c relative to b
    keep = np.all(np.abs(lag) < M, axis=1)
    pairs, lag = pairs[keep], lag[keep]
    values = np.empty(len(pairs), np.complex128)
    order = np.lexsort((lag[:, 0], lag[:, 1]))
    keys = lag[order]
    bounds = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    for group in np.split(order, bounds):
        dx, dy = lag[group[0]]
        rows_b, rows_c = slice(max(dy, 0), M + min(dy, 0)), slice(max(-dy, 0), M + min(-dy, 0))
        cols_b, cols_c = slice(max(dx, 0), M + min(dx, 0)), slice(max(-dx, 0), M + min(-dx, 0))
        for start in range(0, len(group), _CHUNK):
            chunk = group[start:start + _CHUNK]
            a_b = crops[pairs[chunk, 0]][:, rows_b, cols_b]
            a_c = crops[pairs[chunk, 1]][:, rows_c, cols_c]
            values[chunk] = np.sum(np.conj(a_b) * a_c, axis=(1, 2))
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return coo_matrix((np.concatenate([values, np.conj(values)]), (rows, cols)), shape=(B, B)).tocsr()


def _leading_phases(H, power_iterations: int, tol: float) -> np.ndarray:
    """Unit-modulus leading eigenvector of the sparse Hermitian H (n, n), polished by the projected power
    method (v ← H·(v/|v|), which optimises unit-modulus phases rather than the relaxation)."""
    n = H.shape[0]
    if n <= _DENSE_MAX:
        v = np.linalg.eigh(H.toarray())[1][:, -1]
    else:
        v = eigsh(H, k=1, which="LA", v0=np.ones(n, np.complex128), tol=tol)[1][:, 0]
    for _ in range(power_iterations):
        unit = v / np.maximum(np.abs(v), 1e-300)
        v = H @ unit
        if np.max(np.abs(np.angle(v * np.conj(unit)))) < 1e-6:
            break
    return v / np.maximum(np.abs(v), 1e-300)
