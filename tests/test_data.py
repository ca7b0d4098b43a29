"""PtychoDataset views and validation; NPZ round trip, legacy keys, malformed files, atomic save."""
import dataclasses
import json
import os
import pathlib
import re

import numpy as np
import pytest

from ptycho.config import SimulationConfig
from ptycho.data import PtychoDataset, load_npz, save_npz
from ptycho.simulate import group_positions, simulate_dataset

CFG = SimulationConfig(N=16, gridsize=2, object_size=48, nlines=20, n_positions=40, buffer=6.0, nphotons=1e5)


@pytest.fixture(scope="module")
def dataset():
    return simulate_dataset(CFG)


def _fields(M=6, N=8, seed=0):
    rng = np.random.default_rng(seed)
    return dict(diffraction=rng.uniform(0, 2, (M, N, N)).astype(np.float32),
                xcoords=rng.uniform(5, 25, M), ycoords=rng.uniform(5, 25, M),
                probe=(rng.standard_normal((N, N)) + 1j).astype(np.complex64),
                group_indices=np.array([[0, 1, 2, 3], [5, 4, 3, 2]]),
                obj=np.ones((30, 30), np.complex64), nphotons=1e4, scan_index=np.arange(M))


def test_grouped_views_follow_group_indices():
    f = _fields()
    ds = PtychoDataset(**f)
    g = f["group_indices"]
    assert (ds.N, ds.C, ds.gridsize, ds.n_groups, ds.n_positions) == (8, 4, 2, 2, 6)
    for b in range(2):
        for c in range(4):
            np.testing.assert_array_equal(ds.X[b, :, :, c], f["diffraction"][g[b, c]])
            assert ds.positions[b, 0, 0, c] == np.float32(f["xcoords"][g[b, c]])
            assert ds.positions[b, 0, 1, c] == np.float32(f["ycoords"][g[b, c]])
    centroid = np.array([f["xcoords"][g[0]].mean(), f["ycoords"][g[0]].mean()])
    np.testing.assert_allclose(ds.coords_offsets[0, 0, :, 0], centroid, rtol=1e-6)
    np.testing.assert_allclose(ds.coords_relative[0, 0, 0, :], -(f["xcoords"][g[0]] - centroid[0]), atol=1e-5)
    assert ds.X.dtype == np.float32 and ds.positions.dtype == np.float32 and ds.Y.dtype == np.complex64
    np.testing.assert_allclose(ds.Y, 1.0, atol=0)  # all-ones object, positions well inside


def test_default_groups_and_intensity_scale():
    f = _fields()
    del f["group_indices"]
    ds = PtychoDataset(**f)
    np.testing.assert_array_equal(ds.group_indices, np.arange(6)[:, None])
    power = np.mean(np.sum(f["diffraction"].astype(np.float64) ** 2, axis=(1, 2)))
    assert ds.intensity_scale == pytest.approx(np.sqrt(1e4 / power), rel=1e-12)
    with pytest.raises(ValueError, match="nphotons"):
        _ = dataclasses.replace(ds, nphotons=None).intensity_scale
    assert dataclasses.replace(ds, obj=None).Y is None


def test_subset_keeps_positions_and_selects_groups():
    ds = PtychoDataset(**_fields())
    sub = ds.subset([1])
    assert sub.n_groups == 1 and sub.n_positions == 6
    np.testing.assert_array_equal(sub.group_indices, [[5, 4, 3, 2]])
    np.testing.assert_array_equal(sub.X[0], ds.X[1])
    np.testing.assert_array_equal(ds.group_indices, [[0, 1, 2, 3], [5, 4, 3, 2]])  # original unchanged
    np.testing.assert_array_equal(ds.subset(np.array([False, True])).group_indices, sub.group_indices)
    with pytest.raises(ValueError, match="group_idx"):
        ds.subset([5])
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.nphotons = 3.0


@pytest.mark.parametrize("field, value", [
    ("diffraction", np.full((6, 8, 8), -1.0)),
    ("diffraction", np.full((6, 8, 8), np.nan)),
    ("diffraction", np.zeros((6, 8, 7))),
    ("xcoords", np.zeros(5)),
    ("ycoords", np.full(6, np.inf)),
    ("probe", np.ones((7, 7))),
    ("group_indices", np.array([[0, 1, 2]])),
    ("group_indices", np.array([[0, 1, 2, 6]])),
    ("obj", np.full((30, 30), np.nan)),
    ("xcoords", np.full(6, 40.0)),          # outside the 30x30 object
    ("nphotons", -1.0),
    ("scan_index", np.arange(5)),
])
def test_dataset_validation_names_the_field(field, value):
    f = _fields()
    f[field] = value
    with pytest.raises(ValueError, match=f"PtychoDataset.{field}"):
        PtychoDataset(**f)


def test_npz_round_trip_is_lossless(dataset, tmp_path):
    path = tmp_path / "data.npz"
    save_npz(path, dataclasses.replace(dataset, scan_index=np.arange(dataset.n_positions) * 2))
    back = load_npz(path, gridsize=2)
    for field in dataclasses.fields(PtychoDataset):
        a = getattr(back, field.name)
        b = getattr(dataset, field.name) if field.name != "scan_index" else np.arange(dataset.n_positions) * 2
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, field.name
            np.testing.assert_array_equal(a, b, err_msg=field.name)
        else:
            assert a == b, field.name
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]  # no temporary files left


def test_load_regroups_when_gridsize_differs(dataset, tmp_path):
    path = tmp_path / "data.npz"
    save_npz(path, dataset)
    single = load_npz(path)
    np.testing.assert_array_equal(single.group_indices, np.arange(40)[:, None])
    regrouped = load_npz(path, gridsize=2, n_groups=80, seed=4)
    expected = group_positions(dataset.xcoords, dataset.ycoords, 2, 7, 80, np.random.default_rng(4))
    np.testing.assert_array_equal(regrouped.group_indices, expected)
    assert load_npz(path, nphotons=7.0).nphotons == 7.0


def test_grouping_errors_name_the_file_and_the_setting(dataset, tmp_path):
    """gridsize² above the number of positions, or too many groups requested: file and setting named."""
    path = tmp_path / "data.npz"
    save_npz(path, dataclasses.replace(dataset, group_indices=None))
    few = tmp_path / "few.npz"
    save_npz(few, PtychoDataset(diffraction=dataset.diffraction[:5], xcoords=dataset.xcoords[:5],
                                ycoords=dataset.ycoords[:5], probe=dataset.probe))
    with pytest.raises(ValueError, match=re.escape(str(few)) + r": gridsize: .*= 9 .*the file has 5"):
        load_npz(few, gridsize=3)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": n_groups: asked for 100000"):
        load_npz(path, gridsize=2, n_groups=100000)


def _write(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _legacy_arrays(ds):
    return dict(diff3d=ds.diffraction, xcoords=ds.xcoords, ycoords=ds.ycoords, probeGuess=ds.probe,
                objectGuess=ds.obj)


def test_legacy_diff3d_key_loads(dataset, tmp_path):
    path = _write(tmp_path / "legacy.npz", **_legacy_arrays(dataset))
    ds = load_npz(path, gridsize=2, seed=0)
    np.testing.assert_array_equal(ds.diffraction, dataset.diffraction)
    np.testing.assert_array_equal(ds.obj, dataset.obj)
    assert ds.nphotons is None and ds.C == 4


class _Payload:
    """Unpickling this would create ``self.marker``: proof that loading executed pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


MALFORMED = pathlib.Path(__file__).resolve().parent / "fixtures" / "malformed"


def test_malformed_files_raise_naming_file_and_key(dataset, tmp_path):
    """Every file of the malformed catalogue (tests/fixtures/malformed) raises naming the file and the key."""
    catalogue = json.loads((MALFORMED / "catalogue.json").read_text())
    assert len(catalogue) >= 13
    for name, case in catalogue.items():
        path = MALFORMED / name
        pattern = re.escape(str(path)) + ".*" + re.escape(repr(case["key"])) + ".*" + case["match"]
        with pytest.raises(ValueError, match=pattern):
            load_npz(path, gridsize=2)
    # and a live payload in an object member: refused, nothing executed
    M = dataset.n_positions
    path = _write(tmp_path / "pickled.npz", **{**_legacy_arrays(dataset),
                                               "xcoords": np.array([_Payload(tmp_path / "pwned")] * M, dtype=object)})
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*'xcoords'.*pickle"):
        load_npz(path, gridsize=2)
    assert not (tmp_path / "pwned").exists()


def test_loading_never_executes_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "payload.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with open(tmp_path / "pickle.npz", "wb") as fh:
        import pickle
        pickle.dump({"diffraction": _Payload(marker)}, fh)
    for name in ("payload.npy", "pickle.npz"):
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / name))):
            load_npz(tmp_path / name)
    assert not marker.exists()


def test_save_is_atomic(dataset, tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    save_npz(path, dataset)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, dataclasses.replace(dataset, nphotons=1.0))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]
    with pytest.raises(ValueError, match="dataset"):
        save_npz(path, {"diffraction": 1})
