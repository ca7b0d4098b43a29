"""Scan positions, grouping and simulate_dataset: seeding, geometry, ground truth."""
import dataclasses
import math

import numpy as np
import pytest

from ptycho import physics
from ptycho.config import SimulationConfig
from ptycho.data import PtychoDataset
from ptycho.objects import lines_object
from ptycho.simulate import grid_positions, group_positions, random_positions, simulate_dataset

SMALL = SimulationConfig(N=32, gridsize=2, object_size=64, nlines=30, n_positions=120, buffer=8.0, nphotons=1e6)


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


def test_ground_truth_patches_cut_at_true_positions():
    """MIRRORED-GT-PATCHES-001: Y is cut at pos, never at 2·mean − pos (asymmetric gridsize-2 group)."""
    N = 32
    obj = np.zeros((96, 96), np.complex64)
    x = np.array([40.0, 47.0, 44.0, 61.0])
    y = np.array([50.0, 52.0, 63.0, 57.0])
    mirrored_x, mirrored_y = 2 * x.mean() - x, 2 * y.mean() - y
    assert not np.allclose(np.sort(mirrored_x), np.sort(x))       # the group is not symmetric
    obj[y.astype(int), x.astype(int)] = np.array([1, 2, 3, 4]) * (1 + 1j)
    ds = PtychoDataset(diffraction=np.zeros((4, N, N), np.float32), xcoords=x, ycoords=y,
                       probe=np.ones((N, N), np.complex64), group_indices=np.array([[2, 0, 3, 1]]), obj=obj)
    Y = ds.Y
    for c, m in enumerate([2, 0, 3, 1]):
        assert Y[0, N // 2, N // 2, c] == (m + 1) * (1 + 1j)
        # a mirrored cut would read the object at 2·mean − pos, where there is no marker
        assert obj[int(round(mirrored_y[m])), int(round(mirrored_x[m]))] == 0


def test_simulated_ground_truth_matches_markers_and_diffraction():
    """Every channel of every gridsize-2 group: marker at patch centre, and X ≈ |F(P·Y)| at high dose."""
    cfg = SimulationConfig(N=32, gridsize=2, object_size=64, scan="grid", grid_step=3.0, n_positions=100,
                           buffer=8.0, nphotons=1e9, seed=3)
    x, y = grid_positions(cfg.n_positions, cfg.object_size, cfg.buffer, cfg.grid_step)
    obj = lines_object(64, 30, np.random.default_rng(0))
    obj[y.astype(int), x.astype(int)] = 10 + np.arange(x.size)     # marker m at position m
    ds = simulate_dataset(cfg, obj=obj)
    Y, X, groups = ds.Y, ds.X, ds.group_indices
    np.testing.assert_array_equal(Y[:, 16, 16, :].real, 10 + groups)
    pos = ds.positions
    mirrored = 2 * pos.mean(axis=3, keepdims=True) - pos
    assert np.any(np.abs(mirrored - pos).max(axis=(1, 2)) > 0)     # asymmetric groups are present
    model = physics.far_field_amplitude(ds.probe[None, None] * Y.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    s = ds.intensity_scale
    err = np.linalg.norm(X - model, axis=(1, 2)) / np.linalg.norm(model, axis=(1, 2))
    assert err.max() < 0.01 and s > 0


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


def test_random_and_grid_positions():
    x, y = random_positions(5000, 128, 15.0, np.random.default_rng(0))
    assert x.min() >= 15 and x.max() <= 113 and y.min() >= 15 and y.max() <= 113
    assert abs(x.mean() - 64) < 1.0 and abs(y.mean() - 64) < 1.0 and abs(np.corrcoef(x, y)[0, 1]) < 0.05
    gx, gy = grid_positions(6, 20, 2.0, 4.0)   # lattice 2, 6, 10, 14, 18 on each axis, x fastest
    np.testing.assert_array_equal(gx, [2, 6, 10, 14, 18, 2])
    np.testing.assert_array_equal(gy, [2, 2, 2, 2, 2, 6])
    with pytest.raises(ValueError, match="n"):
        grid_positions(26, 20, 2.0, 4.0)
    with pytest.raises(ValueError, match="buffer"):
        random_positions(5, 20, 10.0, np.random.default_rng(0))


def _assert_same(a, b):
    for f in ("diffraction", "xcoords", "ycoords", "probe", "group_indices", "obj"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_same_seed_bit_identical_different_seed_differs():
    a, b = simulate_dataset(SMALL), simulate_dataset(SMALL)
    _assert_same(a, b)
    c = simulate_dataset(dataclasses.replace(SMALL, seed=1))
    for f in ("diffraction", "xcoords", "ycoords", "group_indices", "obj"):
        assert not np.array_equal(getattr(a, f), getattr(c, f)), f
    np.testing.assert_array_equal(a.probe, c.probe)   # the probe is deterministic


def test_dose_and_noise_seed_change_only_the_noise():
    base = simulate_dataset(SMALL)
    for other in (dataclasses.replace(SMALL, nphotons=1e4), dataclasses.replace(SMALL, noise_seed=5)):
        ds = simulate_dataset(other)
        for f in ("xcoords", "ycoords", "probe", "group_indices", "obj"):
            np.testing.assert_array_equal(getattr(ds, f), getattr(base, f), err_msg=f)
        assert not np.array_equal(ds.diffraction, base.diffraction)
    low_a = simulate_dataset(dataclasses.replace(SMALL, nphotons=1e4, noise_seed=5))
    low_b = simulate_dataset(dataclasses.replace(SMALL, nphotons=1e4, noise_seed=5))
    np.testing.assert_array_equal(low_a.diffraction, low_b.diffraction)


def test_simulate_dataset_photon_scale_and_defaults():
    ds = simulate_dataset(dataclasses.replace(SMALL, gridsize=1, nphotons=1e4))
    assert ds.n_positions == ds.n_groups == 120 and ds.C == 1 and ds.nphotons == 1e4
    counts = (ds.diffraction.astype(np.float64) * ds.intensity_scale) ** 2
    assert abs(counts.sum(axis=(1, 2)).mean() - 1e4) < 1e-6 * 1e4      # s from the data reproduces nphotons
    mask_mean = np.mean(np.abs(ds.probe) * (np.hypot(*np.mgrid[:32, :32] - 15.5) <= 8))
    assert mask_mean == pytest.approx(1 / 4.0, rel=1e-5)              # normalised default probe
    assert ds.diffraction.dtype == np.float32 and ds.probe.dtype == np.complex64 and ds.obj.shape == (64, 64)


def test_simulate_dataset_grf_and_given_inputs():
    grf = simulate_dataset(dataclasses.replace(SMALL, object_kind="grf"))
    assert grf.obj.shape == (64, 64) and np.abs(grf.obj).min() == pytest.approx(0.5, abs=1e-6)
    probe = np.ones((32, 32), np.complex64)
    ds = simulate_dataset(SMALL, probe=probe)
    np.testing.assert_array_equal(ds.probe, probe)
    with pytest.raises(ValueError, match="probe"):
        simulate_dataset(SMALL, probe=np.ones((16, 16)))
    with pytest.raises(ValueError, match="obj"):
        simulate_dataset(SMALL, obj=np.ones((32, 64)))
    with pytest.raises(ValueError, match="config"):
        simulate_dataset({"N": 32})
