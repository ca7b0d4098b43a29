"""Neighbour grouping: scan positions -> groups of C = gridsize² neighbouring positions (SPEC §3).

Both the simulator (``ptycho.simulate``) and the NPZ loader (``ptycho.data.load_npz``) group positions
with :func:`group_positions`; it depends on NumPy and SciPy only. Every random choice is drawn from an
explicit ``numpy.random.Generator``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.spatial import cKDTree

#: Above this many C-subsets per seed, ``group_positions`` samples combinations instead of listing them.
_MAX_ENUMERATED_COMBINATIONS = 256
#: The reference project's K (neighbours per seed, the seed included) for gridsize <= 2.
DEFAULT_K = 7


def default_neighbours(gridsize: int) -> int:
    """K used when none is given: ``max(7, gridsize² + 3)``: 7 (SPEC §3) for gridsize 1 and 2, 12 for 3, 19 for 4.

    K must be at least C = gridsize² for a group to exist at all, and K = C leaves each seed a single group;
    C + 3 leaves it C(C + 2, C − 1) to choose from (20 at gridsize 2, 165 at 3) while keeping the groups
    compact (ledger GROUPING-K-DEFAULT-001).
    """
    return max(DEFAULT_K, int(gridsize) ** 2 + 3)


def gridsize_of(C: int) -> int:
    """gridsize g of groups of C = g² positions (the channel count C of a (B, N, N, C) stack of patterns).

    The one place the package turns C back into a gridsize; ValueError ``"C = <C> is not a perfect square
    (gridsize**2)"`` if C is not the square of an int >= 1.
    """
    C = int(C)
    gridsize = math.isqrt(C) if C >= 1 else 0
    if gridsize < 1 or gridsize * gridsize != C:
        raise ValueError(f"C = {C} is not a perfect square (gridsize**2)")
    return gridsize


def require_generator(rng) -> np.random.Generator:
    """``rng`` if it is a ``numpy.random.Generator``; ValueError naming ``rng`` otherwise."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _neighbours_seed_first(points: np.ndarray, K: int) -> np.ndarray:
    """(M, K) int64 indices of each point's K nearest neighbours, the point itself in column 0."""
    M = points.shape[0]
    _, nbrs = cKDTree(points).query(points, k=K)
    nbrs = np.asarray(nbrs, dtype=np.int64).reshape(M, K)
    seed = np.arange(M)[:, None]
    is_seed = nbrs == seed
    present = is_seed.any(axis=1)
    # Seed present (the usual case): stable-sort it to the front; absent (coincident points): prepend it.
    order = np.argsort(~is_seed, axis=1, kind="stable")
    fronted = np.take_along_axis(nbrs, order, axis=1)
    prepended = np.concatenate([seed, nbrs[:, :-1]], axis=1)
    return np.where(present[:, None], fronted, prepended)


def _candidate_rounds(nbrs: np.ndarray, C: int, rng: np.random.Generator) -> np.ndarray:
    """(R, M, C) candidate groups: round r gives each seed its r-th (random) C-subset of its neighbours.

    Every candidate holds the seed plus C-1 of its K-1 other neighbours. When C(K-1, C-1) is small all
    subsets are listed (in a random order per seed), otherwise ``_MAX_ENUMERATED_COMBINATIONS`` random
    subsets are drawn per seed.
    """
    M, K = nbrs.shape
    n_comb = math.comb(K - 1, C - 1)
    if n_comb <= _MAX_ENUMERATED_COMBINATIONS:
        combos = np.array(list(itertools.combinations(range(1, K), C - 1)), dtype=np.int64)  # (R, C-1)
        order = np.argsort(rng.random((M, n_comb)), axis=1)                                 # (M, R)
        picks = combos[order]                                                               # (M, R, C-1)
    else:
        keys = rng.random((M, _MAX_ENUMERATED_COMBINATIONS, K - 1))
        picks = np.argsort(keys, axis=2)[:, :, :C - 1] + 1
    others = np.take_along_axis(nbrs[:, None, :], picks, axis=2)                              # (M, R, C-1)
    seeds = np.broadcast_to(nbrs[:, None, :1], others.shape[:2] + (1,))
    return np.concatenate([seeds, others], axis=2).transpose(1, 0, 2)


def _distinct_groups(candidates: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """First ``n_groups`` candidates whose index *sets* are new, scanning round by round, seeds in a
    random order per round. ``candidates`` (R, M, C) -> (n_groups, C) int64 (channel order shuffled)."""
    R, M, C = candidates.shape
    seed_order = np.argsort(rng.random((R, M)), axis=1)
    flat = np.take_along_axis(candidates, seed_order[:, :, None], axis=1).reshape(R * M, C)
    _, first = np.unique(np.sort(flat, axis=1), axis=0, return_index=True)
    if first.size < n_groups:
        raise ValueError(f"n_groups: asked for {n_groups} groups but only {first.size} distinct "
                         f"combinations of {C} neighbours exist; lower n_groups or raise K")
    chosen = flat[np.sort(first)[:n_groups]]
    channel_order = np.argsort(rng.random(chosen.shape), axis=1)
    return np.take_along_axis(chosen, channel_order, axis=1)


def _single_position_groups(M: int, n_groups: int | None, rng: np.random.Generator) -> np.ndarray:
    if n_groups is None or n_groups == M:
        return np.arange(M, dtype=np.int64)[:, None]
    if n_groups < M:
        return np.sort(rng.choice(M, size=n_groups, replace=False)).astype(np.int64)[:, None]
    extra = [rng.permutation(M) for _ in range(-(-(n_groups - M) // M))]
    return np.concatenate([np.arange(M)] + extra)[:n_groups].astype(np.int64)[:, None]


def group_positions(xcoords, ycoords, gridsize: int, K: int | None = None, n_groups: int | None = None,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Group scan positions into sets of C = gridsize² neighbours.

    C == 1: group i = [i] (``n_groups`` None); a seeded subset (sorted) if ``n_groups`` < M; all M then
    seeded permutations (resampling) if ``n_groups`` > M.
    C > 1: each group is a seed position plus C-1 of its K-1 nearest other positions (scipy cKDTree),
    chosen at random; all groups are distinct as sets. ``n_groups`` None -> M groups; ``n_groups`` > M
    oversamples distinct combinations. ``ValueError`` naming ``n_groups`` if too few distinct exist.

    Parameters
    ----------
    xcoords, ycoords : (M,) float, object pixels.
    gridsize : int >= 1.   K : neighbours per seed including itself (capped at M), K >= C; None ->
        :func:`default_neighbours` (7 for gridsize <= 2).
    rng : numpy Generator (required when a random choice is needed).

    Returns
    -------
    (B, C) int64 indices into the positions.
    """
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"xcoords, ycoords: must both be (M,) with M >= 1, got {x.shape} and {y.shape}")
    if isinstance(gridsize, bool) or not isinstance(gridsize, (int, np.integer)) or gridsize < 1:
        raise ValueError(f"gridsize: must be a positive int, got {gridsize!r}")
    if n_groups is not None and (isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer))
                                 or n_groups < 1):
        raise ValueError(f"n_groups: must be None or a positive int, got {n_groups!r}")
    M, C = x.size, int(gridsize) ** 2
    if K is None:
        K = default_neighbours(gridsize)
    if C == 1:
        if n_groups is not None and n_groups != M:
            require_generator(rng)
        return _single_position_groups(M, n_groups, rng)
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < C:
        raise ValueError(f"K: must be an int >= gridsize**2 = {C}, got {K!r}")
    if M < C:
        raise ValueError(f"xcoords: {M} positions cannot form groups of gridsize**2 = {C}")
    rng = require_generator(rng)
    nbrs = _neighbours_seed_first(np.stack([x, y], axis=1), min(int(K), M))
    candidates = _candidate_rounds(nbrs, C, rng)
    return _distinct_groups(candidates, M if n_groups is None else int(n_groups), rng)


def scan_neighbours(xcoords, ycoords, centres, K: int, radius: float) -> np.ndarray:
    """The ``K`` scan positions nearest each centre position, itself left out, within ``radius``.

    xcoords, ycoords: (M,) float object pixels; centres: (B,) int indices into them; radius in object
    pixels. Returns (B, K) int64 indices, nearest first; where fewer than K other positions lie within
    ``radius`` the row is filled with the centre's own index (a pattern repeated at its own position adds
    no new constraint to a retrieval). Deterministic: equally near positions in index order.
    """
    points = np.stack([np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64)], axis=1)
    centres = np.asarray(centres, np.int64).reshape(-1)
    K = int(K)
    if K < 1:
        raise ValueError(f"K: must be an int >= 1, got {K}")
    distance, index = cKDTree(points).query(points[centres], k=K + 1)
    valid = (index != centres[:, None]) & (distance <= float(radius))  # missing neighbours: distance inf
    order = np.lexsort((index, np.where(valid, distance, np.inf), ~valid), axis=1)  # ties: the lower index
    index = np.take_along_axis(index, order, axis=1)[:, :K]
    valid = np.take_along_axis(valid, order, axis=1)[:, :K]
    return np.where(valid, index, centres[:, None]).astype(np.int64)
