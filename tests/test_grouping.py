"""Neighbour grouping (ptycho.grouping): C = gridsize² distinct neighbours per group, oversampling, seeding."""
import math

import numpy as np
import pytest

from ptycho import simulate
from ptycho.data import PtychoDataset
from ptycho.grouping import gridsize_of, group_positions
from ptycho.simulate import random_positions


def _knn_sets(x, y, K):
    """Brute-force K nearest neighbours (including itself) of every position, as sets."""
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    return [set(row) for row in np.argsort(d, axis=1, kind="stable")[:, :K]]


def _check_groups(groups, x, y, C, K):
    knn = _knn_sets(x, y, K)
    for g in groups:
        members = set(g.tolist())
        assert len(members) == C                                     # C distinct positions
        assert any(members <= knn[j] for j in members)               # all among one member's K neighbours
    assert len({frozenset(g.tolist()) for g in groups}) == len(groups)  # distinct as sets


def test_grouping_neighbours_distinct_and_relative_coords():
    rng = np.random.default_rng(0)
    x, y = random_positions(150, 100, 10.0, rng)
    groups = group_positions(x, y, 2, K=7, rng=np.random.default_rng(1))
    assert groups.shape == (150, 4) and groups.dtype == np.int64
    _check_groups(groups, x, y, 4, 7)
    ds = PtychoDataset(diffraction=np.zeros((150, 8, 8), np.float32), xcoords=x, ycoords=y,
                       probe=np.ones((8, 8)), group_indices=groups)
    rel, off, pos = ds.coords_relative, ds.coords_offsets, ds.positions
    assert rel.shape == (150, 1, 2, 4) and off.shape == (150, 1, 2, 1) and rel.dtype == np.float32
    np.testing.assert_allclose(rel.sum(axis=3), 0, atol=1e-4)
    np.testing.assert_allclose(off - rel, pos, atol=1e-4)
    np.testing.assert_allclose(pos[:, 0, 0, :], x[groups], rtol=1e-6)
    np.testing.assert_allclose(pos[:, 0, 1, :], y[groups], rtol=1e-6)


def test_grouping_oversamples_distinct_combinations():
    x, y = random_positions(60, 80, 5.0, np.random.default_rng(2))
    groups = group_positions(x, y, 2, K=7, n_groups=600, rng=np.random.default_rng(3))
    assert groups.shape == (600, 4)
    _check_groups(groups, x, y, 4, 7)
    # gridsize 3 (C=9) with K=12
    groups9 = group_positions(x, y, 3, K=12, n_groups=130, rng=np.random.default_rng(3))
    _check_groups(groups9, x, y, 9, 12)


def test_grouping_impossible_request_names_n_groups():
    x, y = np.array([0.0, 1, 2, 3, 4]), np.zeros(5)
    assert len(group_positions(x, y, 2, K=5, n_groups=5, rng=np.random.default_rng(0))) == 5
    with pytest.raises(ValueError, match="n_groups"):  # only C(5, 4) = 5 distinct sets exist
        group_positions(x, y, 2, K=5, n_groups=6, rng=np.random.default_rng(0))
    assert math.comb(5, 4) == 5


def test_grouping_gridsize_one():
    x, y = random_positions(20, 50, 5.0, np.random.default_rng(0))
    np.testing.assert_array_equal(group_positions(x, y, 1), np.arange(20)[:, None])
    sub = group_positions(x, y, 1, n_groups=7, rng=np.random.default_rng(0))
    assert sub.shape == (7, 1) and len(set(sub[:, 0])) == 7
    more = group_positions(x, y, 1, n_groups=50, rng=np.random.default_rng(0))
    assert more.shape == (50, 1) and set(more[:, 0]) == set(range(20))


def test_grouping_is_seeded():
    x, y = random_positions(80, 80, 5.0, np.random.default_rng(0))
    a = group_positions(x, y, 2, rng=np.random.default_rng(9))
    b = group_positions(x, y, 2, rng=np.random.default_rng(9))
    c = group_positions(x, y, 2, rng=np.random.default_rng(10))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_grouping_rejects_bad_arguments():
    x, y = np.arange(10.0), np.zeros(10)
    with pytest.raises(ValueError, match="K"):
        group_positions(x, y, 2, K=3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="gridsize"):
        group_positions(x, y, 0)
    with pytest.raises(ValueError, match="xcoords"):
        group_positions(x, y[:5], 2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        group_positions(x, y, 2)


def test_gridsize_of_is_the_square_root_of_c():
    """The one C -> gridsize conversion (data, model geometry, manifest check): exact squares >= 1 only."""
    assert [gridsize_of(C) for C in (1, 4, 9, 16)] == [1, 2, 3, 4]
    assert gridsize_of(np.int64(9)) == 3
    for C in (0, 2, 3, 8, -4):
        with pytest.raises(ValueError, match=rf"^C = {C} is not a perfect square \(gridsize\*\*2\)$"):
            gridsize_of(C)
    data = PtychoDataset(diffraction=np.ones((9, 4, 4)), xcoords=np.arange(9.0), ycoords=np.arange(9.0),
                         probe=np.ones((4, 4)), group_indices=np.arange(9)[None, :])
    assert data.gridsize == 3


def test_simulate_re_exports_the_grouping_function():
    """``ptycho.simulate.group_positions`` (SPEC §1 layout) is the grouping module's function."""
    assert simulate.group_positions is group_positions


def test_grouping_does_not_import_the_simulator_or_the_data_module(fresh_python):
    """The data <-> simulate import circle is gone: grouping depends on NumPy and SciPy only."""
    out = fresh_python("import sys, ptycho.grouping, ptycho.data\n"
                       "print(sorted(m for m in sys.modules if m.startswith('ptycho')))")
    assert out.strip().splitlines()[-1] == "['ptycho', 'ptycho.data', 'ptycho.grouping']"


def test_scan_neighbours_are_the_nearest_within_the_radius_else_the_centre():
    """Oracle: brute-force distances. Each row lists the K nearest other positions within the radius, nearest
    first, and repeats the centre where fewer lie that close (RETRIEVAL-NEIGHBOURS-001)."""
    from ptycho.grouping import scan_neighbours

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 50, 60), rng.uniform(0, 50, 60)
    centres, K, radius = np.arange(0, 60, 3), 4, 8.0
    got = scan_neighbours(x, y, centres, K, radius)
    assert got.shape == (20, K) and got.dtype == np.int64
    for row, c in zip(got, centres):
        distance = np.hypot(x - x[c], y - y[c])
        distance[c] = np.inf
        near = [j for j in np.argsort(distance) if distance[j] <= radius][:K]
        assert list(row) == near + [c] * (K - len(near))
    assert (got != centres[:, None]).any() and (got == centres[:, None]).any()  # both branches taken
    np.testing.assert_array_equal(scan_neighbours(x, y, centres, 2, 0.0), np.repeat(centres[:, None], 2, 1))
    with pytest.raises(ValueError, match=r"^K: must be an int >= 1, got 0$"):
        scan_neighbours(x, y, centres, 0, radius)
