"""Scan positions and simulate_dataset: seeding, geometry, ground truth (grouping: test_grouping.py)."""
import dataclasses

import numpy as np
import pytest

from ptycho import physics
from ptycho.config import SimulationConfig
from ptycho.data import PtychoDataset
from ptycho.objects import lines_object
from ptycho.simulate import grid_positions, random_positions, simulate_dataset

SMALL = SimulationConfig(N=32, gridsize=2, object_size=64, nlines=30, n_positions=120, buffer=8.0, nphotons=1e6)


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


def test_object_and_scan_seeds_take_the_streams_of_their_seed():
    """SEED-SPLIT-001: object_seed / scan_seed draw exactly what seed = that value draws for the object / the
    positions and groups, so a second scan of one object is object_seed=S, scan_seed=T; given equal to seed
    they change nothing (files made with seed alone stay bit-identical)."""
    first, second = simulate_dataset(SMALL), simulate_dataset(dataclasses.replace(SMALL, seed=1))
    mixed = simulate_dataset(dataclasses.replace(SMALL, seed=7, object_seed=SMALL.seed, scan_seed=1))
    np.testing.assert_array_equal(mixed.obj, first.obj)
    for f in ("xcoords", "ycoords", "group_indices"):
        np.testing.assert_array_equal(getattr(mixed, f), getattr(second, f), err_msg=f)
    assert not np.array_equal(mixed.obj, second.obj)
    other_noise = simulate_dataset(dataclasses.replace(SMALL, seed=8, object_seed=SMALL.seed, scan_seed=1))
    np.testing.assert_array_equal(other_noise.xcoords, mixed.xcoords)
    assert not np.array_equal(other_noise.diffraction, mixed.diffraction)  # the noise still follows seed
    _assert_same(simulate_dataset(dataclasses.replace(SMALL, object_seed=SMALL.seed, scan_seed=SMALL.seed)), first)
    np.testing.assert_array_equal(simulate_dataset(dataclasses.replace(SMALL, object_seed=SMALL.seed,
                                                                       scan_seed=SMALL.seed)).diffraction,
                                  first.diffraction)
    with pytest.raises(ValueError, match=r"SimulationConfig.scan_seed: must be >= 0"):
        dataclasses.replace(SMALL, scan_seed=-1)


def test_gridsize_3_gets_a_default_k_and_k_is_checked():
    """GROUPING-K-DEFAULT-001: K defaults to max(7, gridsize² + 3), so gridsize 3 simulates (K was fixed at 7 < 9)."""
    from ptycho.grouping import default_neighbours

    assert [default_neighbours(g) for g in (1, 2, 3, 4)] == [7, 7, 12, 19]
    ds = simulate_dataset(dataclasses.replace(SMALL, gridsize=3))
    assert ds.group_indices.shape == (SMALL.n_positions, 9)
    assert SimulationConfig(gridsize=2).K is None  # resolved by the grouping, never stored for another gridsize
    with pytest.raises(ValueError, match=r"SimulationConfig.K: must be >= gridsize\*\*2 = 9, got 8"):
        SimulationConfig(gridsize=3, K=8)
    np.testing.assert_array_equal(simulate_dataset(dataclasses.replace(SMALL, K=7)).group_indices,
                                  simulate_dataset(SMALL).group_indices)
