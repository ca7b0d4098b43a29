"""Align the constant phase of each group's patch before stitching (phase synchronisation).

Each group of a scan is reconstructed on its own, and the absolute phase of a wave field is not measurable:
a patch times e^{iθ} explains the same diffraction. Stitching patches whose constant phases θ_b differ mixes
them in every overlap, which smears the stitched phase (ledger PHASE-SYNC-001). This module finds the θ_b that
make overlapping patches agree, using only the patches themselves (no data, no truth)::

    A v      = Σ_b T_b(w · p_b · v_b) / Σ_b T_b(w)        the weighted stitch of the patches times v (B,)
    (H v)_b  = Σ_window w · conj(p_b) · E_b(A v)          E_b: the stitched canvas read back at group b

H is Hermitian positive semi-definite (Aᴴ D⁻¹ A up to interpolation round-off); its leading eigenvector v
maximises the weighted agreement Σ_pixels |Σ_b w p_b v_b|² / Σ w, so θ_b = arg v_b (the classic spectral
relaxation of phase synchronisation). The eigenvector is found with ``scipy.sparse.linalg.eigsh`` (Lanczos)
on H as a linear operator, a few tens of stitches, then polished by the projected power method
(v ← H·(v/|v|), which optimises unit-modulus phases rather than the relaxation). The global phase is fixed so
that the mean correction is zero (the network's absolute phase is kept); each set of transitively overlapping
windows (a connected component) is aligned on its own, and a group that overlaps no other keeps its phase.

NumPy/TF functions only; importing this module runs no TF op.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as sla
import tensorflow as tf
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ptycho.tf_helper import reassemble_position, translate

__all__ = ["align_group_phases"]

#: Components up to this many groups are solved densely (n stitches, ``numpy.linalg.eigh``); larger by Lanczos.
_DENSE_MAX = 24


def _read_back(canvas, rel: np.ndarray, M: int, chunk_size: int) -> np.ndarray:
    """The M×M window of each group on a stitched canvas (S, S, 1): (B, M, M) complex128."""
    side = int(canvas.shape[0])
    lo = side // 2 - M // 2
    out = []
    for start in range(0, rel.shape[0], chunk_size):
        shifts = tf.constant(-rel[start:start + chunk_size])
        tiled = tf.broadcast_to(canvas[None], (shifts.shape[0], side, side, 1))
        out.append(translate(tiled, shifts)[:, lo:lo + M, lo:lo + M, 0].numpy())
    return np.concatenate(out).astype(np.complex128)


def _components(rel: np.ndarray, M: int) -> list[np.ndarray]:
    """Groups whose M×M windows overlap, transitively: a list of index arrays (connected components)."""
    B = rel.shape[0]
    pairs = cKDTree(rel).query_pairs(r=M - 1e-6, p=np.inf, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(B, B)) if len(pairs) else \
        coo_matrix((B, B))
    _, labels = connected_components(graph, directed=False)
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def _leading_phases(matvec, n: int, tol: float, power_iterations: int) -> np.ndarray:
    """Unit-modulus leading eigenvector of the n×n Hermitian operator ``matvec``, polished by the projected
    power method (v ← H·(v/|v|), which optimises unit-modulus phases rather than the relaxation)."""
    if n <= _DENSE_MAX:
        H = np.stack([matvec(e) for e in np.eye(n, dtype=np.complex128)], axis=1)
        v = np.linalg.eigh((H + H.conj().T) / 2)[1][:, -1]
    else:
        operator = sla.LinearOperator((n, n), matvec=matvec, dtype=np.complex128)
        v = sla.eigsh(operator, k=1, which="LA", v0=np.ones(n, np.complex128), tol=tol)[1][:, 0]
    for _ in range(power_iterations):
        unit = v / np.maximum(np.abs(v), 1e-300)
        v = matvec(unit)
        if np.max(np.abs(np.angle(v * np.conj(unit)))) < 10 * tol:
            break
    return v / np.maximum(np.abs(v), 1e-300)


def align_group_phases(patches, offsets, M: int, window=None, tol: float = 1e-4, power_iterations: int = 30,
                       chunk_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
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
    weights = np.ones((M, M)) if window is None else np.asarray(window, np.float64)
    theta = np.zeros(p.shape[0])
    for members in _components(off[:, 0, :, 0], M):
        if len(members) > 1:
            theta[members] = _align_component(p[members], off[members], M, weights, tol, power_iterations,
                                              chunk_size)
    aligned = p * np.exp(1j * theta)[:, None, None, None]
    return aligned.astype(np.complex64), theta


def _align_component(p, off, M, weights, tol, power_iterations, chunk_size) -> np.ndarray:
    """θ (n,) for n >= 2 patches whose windows overlap transitively (see ``align_group_phases``)."""
    n, N = p.shape[0], p.shape[1]
    lo = N // 2 - M // 2
    crops = p[:, lo:lo + M, lo:lo + M, 0].astype(np.complex128) * weights
    rel = (off - off.mean(axis=0, keepdims=True))[:, 0, :, 0].astype(np.float32)

    def matvec(v):
        scaled = (p[..., 0] * np.asarray(v).reshape(n)[:, None, None])[..., None].astype(np.complex64)
        canvas = reassemble_position(scaled, off, M=M, window=weights.astype(np.float32), chunk_size=chunk_size)
        return np.sum(np.conj(crops) * _read_back(canvas, rel, M, chunk_size), axis=(1, 2))

    unit = _leading_phases(matvec, n, tol, power_iterations)
    return np.angle(unit * np.exp(-1j * np.angle(np.sum(unit))))
