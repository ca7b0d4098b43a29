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


# --------------------------------------------------------------------------------------------------
# Exact messages and boundaries (added for the mutation score, issue 13: each pins which check fired
# and what the user reads; a wording change must update them deliberately).

CATALOGUE_MESSAGES = {
    "coords_outside_object.npz": "key 'xcoords': positions outside the object [0, 39]: [107.176, 132.377]",
    "group_index_out_of_range.npz": "key 'group_indices': expected indices in [0, 30), got [0, 30]",
    "missing_diffraction.npz": "key 'diffraction': missing (neither 'diffraction' nor legacy 'diff3d'); "
                               "keys: ['objectGuess', 'probeGuess', 'xcoords', 'ycoords']",
    "missing_probe.npz": "key 'probeGuess': missing; keys: ['diff3d', 'objectGuess', 'xcoords', 'ycoords']",
    "missing_xcoords.npz": "key 'xcoords': missing; keys: ['diff3d', 'objectGuess', 'probeGuess', 'ycoords']",
    "missing_ycoords.npz": "key 'ycoords': missing; keys: ['diff3d', 'objectGuess', 'probeGuess', 'xcoords']",
    "nan_amplitude.npz": "key 'diff3d': contains NaN or infinite values",
    "nan_object.npz": "key 'objectGuess': contains NaN or infinite values",
    "negative_amplitude.npz": "key 'diff3d': negative amplitudes (they must be >= 0)",
    "object_array_needs_pickle.npz": "key 'ycoords': cannot be loaded without pickle "
                                     "(Object arrays cannot be loaded when allow_pickle=False)",
    "shape_mismatch_diffraction.npz": "key 'diff3d': expected (M, N, N) with M >= 1, got shape (30, 16, 15)",
    "shape_mismatch_ycoords.npz": "key 'ycoords': expected shape (M,) = (30,) to match diffraction, got (29,)",
    "wrong_probe_size.npz": "key 'probeGuess': expected shape (N, N) = (16, 16) to match diffraction, "
                        "got (18, 18)",
}


def _message(call):
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_malformed_catalogue_messages_are_exact():
    catalogue = json.loads((MALFORMED / "catalogue.json").read_text())
    assert sorted(catalogue) == sorted(CATALOGUE_MESSAGES)
    for name, expected in CATALOGUE_MESSAGES.items():
        path = MALFORMED / name
        assert _message(lambda: load_npz(path, gridsize=2)) == f"{path}: {expected}", name


def _legacy_file(tmp_path, name="f.npz", **changes):
    rng = np.random.default_rng(3)
    arrays = dict(diff3d=rng.uniform(0, 1, (5, 4, 4)).astype(np.float32), xcoords=np.array([0.0, 1, 2, 3, 9]),
                  ycoords=np.array([0.0, 1, 2, 3, 7]), probeGuess=np.ones((4, 4), np.complex64),
                  objectGuess=np.ones((8, 10), np.complex64))
    arrays.update(changes)
    return _write(tmp_path / name, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize("changes, expected", [
    (dict(diff3d=np.array([["a"]])), "key 'diff3d': unsupported dtype <U1"),
    (dict(diff3d=np.zeros((5, 4))), "key 'diff3d': expected a 3-D array, got shape (5, 4)"),
    (dict(xcoords=np.zeros((5, 1))), "key 'xcoords': expected a 1-D array, got shape (5, 1)"),
    (dict(xcoords=np.full(5, np.inf)), "key 'xcoords': contains NaN or infinite values"),
    (dict(ycoords=np.array([0.0, 1, 2, 3, 7.5])), "key 'ycoords': positions outside the object [0, 7]: [0.000, 7.500]"),
    (dict(xcoords=np.array([-0.5, 1, 2, 3, 9])), "key 'xcoords': positions outside the object [0, 9]: [-0.500, 9.000]"),
    (dict(scan_index=np.arange(4)), "key 'scan_index': expected (M,) = (5,) integers, got (4,) int64"),
    (dict(scan_index=np.arange(5.0)), "key 'scan_index': unsupported dtype float64"),
    (dict(nphotons=np.float64(0.0)), "key 'nphotons': must be None or a finite number > 0, got 0.0"),
    (dict(nphotons=np.float64(np.nan)), "key 'nphotons': must be None or a finite number > 0, got nan"),
    (dict(nphotons=np.array(["x"])), "key 'nphotons': unsupported dtype <U1"),
    (dict(group_indices=np.array([[0, 1, 2]])), "key 'group_indices': C = 3 is not a perfect square "
                                                "(gridsize**2)"),
    (dict(group_indices=np.array([[0, 1, -1, 2]])), "key 'group_indices': expected indices in [0, 5), "
                                                    "got [-1, 2]"),
    (dict(group_indices=np.zeros((0, 4), np.int64)), "key 'group_indices': expected a (B, C) integer array "
                                                     "with B >= 1, got (0, 4) int64"),
    (dict(group_indices=np.zeros((1, 4))), "key 'group_indices': unsupported dtype float64"),
    (dict(group_indices=np.zeros(4, np.int64)), "key 'group_indices': expected a (B, C) integer array with "
                                                "B >= 1, got (4,) int64"),
])
def test_npz_validation_messages_are_exact(tmp_path, changes, expected):
    path = _legacy_file(tmp_path, **changes)
    assert _message(lambda: load_npz(path, gridsize=2)) == f"{path}: {expected}"


def test_npz_boundaries_and_conversions(tmp_path):
    """Positions exactly on the object's edges, one pattern, a dose below one photon, integer inputs."""
    path = _legacy_file(tmp_path, diff3d=np.ones((5, 4, 4), np.float64), xcoords=np.array([0, 1, 2, 3, 9]),
                        scan_index=np.arange(5, dtype=np.int32), nphotons=np.float64(0.5),
                        group_indices=np.array([[0, 1, 2, 3], [4, 3, 2, 1]], np.int32))
    ds = load_npz(path, gridsize=2)
    assert ds.diffraction.dtype == np.float32 and ds.xcoords.dtype == np.float64
    assert ds.scan_index.dtype == np.int64 and ds.group_indices.dtype == np.int64 and ds.nphotons == 0.5
    np.testing.assert_array_equal(ds.group_indices, [[0, 1, 2, 3], [4, 3, 2, 1]])
    assert ds.obj.shape == (8, 10) and ds.probe.dtype == np.complex64
    one = _legacy_file(tmp_path, "one.npz", diff3d=np.ones((1, 4, 4), np.float32), xcoords=np.array([9.0]),
                       ycoords=np.array([7.0]))
    single = load_npz(one)
    assert single.n_positions == 1 and single.xcoords[0] == 9.0


def _valid_fields():
    rng = np.random.default_rng(1)
    return dict(diffraction=rng.uniform(0, 1, (5, 4, 4)), xcoords=np.array([0, 1, 2, 3, 9]),
                ycoords=np.array([0.0, 1, 2, 3, 7]), probe=np.ones((4, 4, 1)),
                group_indices=np.array([[0, 1, 2, 3]], np.int32), obj=np.ones((8, 10)),
                nphotons=np.float32(0.25), scan_index=np.arange(5, dtype=np.uint8))


def test_dataset_converts_dtypes_and_accepts_boundaries():
    ds = PtychoDataset(**_valid_fields())
    assert ds.diffraction.dtype == np.float32 and ds.xcoords.dtype == np.float64 and ds.ycoords.dtype == np.float64
    assert ds.probe.shape == (4, 4) and ds.probe.dtype == np.complex64 and ds.obj.dtype == np.complex64
    assert ds.group_indices.dtype == np.int64 and ds.scan_index.dtype == np.int64
    assert isinstance(ds.nphotons, float) and ds.nphotons == 0.25
    import tensorflow as tf

    as_tensor = PtychoDataset(**{**_valid_fields(), "probe": tf.ones((4, 4), tf.complex64)})
    np.testing.assert_array_equal(as_tensor.probe, np.ones((4, 4), np.complex64))
    one = PtychoDataset(diffraction=np.ones((1, 4, 4)), xcoords=[1.0], ycoords=[1.0], probe=np.ones((4, 4)))
    assert one.n_positions == 1 and one.n_groups == 1


@pytest.mark.parametrize("field, value, expected", [
    ("diffraction", np.array([[["a"]]]), "PtychoDataset.diffraction: must be a real numeric array, got dtype <U1"),
    ("diffraction", np.ones((5, 4)), "PtychoDataset.diffraction: expected a 3-D array, got shape (5, 4)"),
    ("diffraction", np.full((5, 4, 4), np.nan), "PtychoDataset.diffraction: contains NaN or infinite values"),
    ("diffraction", np.ones((5, 4, 3)), "PtychoDataset.diffraction: expected (M, N, N) with M >= 1, "
                                        "got shape (5, 4, 3)"),
    ("diffraction", -np.ones((5, 4, 4)), "PtychoDataset.diffraction: negative amplitudes (they must be >= 0)"),
    ("xcoords", np.zeros(4), "PtychoDataset.xcoords: expected shape (M,) = (5,) to match diffraction, got (4,)"),
    ("probe", np.array([["a"]]), "PtychoDataset.probe: must be a numeric array, got dtype <U1"),
    ("probe", np.ones((4, 4, 2)), "PtychoDataset.probe: expected a 2-D array, got shape (4, 4, 2)"),
    ("probe", np.full((4, 4), np.nan), "PtychoDataset.probe: contains NaN or infinite values"),
    ("probe", np.ones((3, 3)), "PtychoDataset.probe: expected shape (N, N) = (4, 4) to match diffraction, "
                                "got (3, 3)"),
    ("obj", np.full((8, 10), np.inf), "PtychoDataset.obj: contains NaN or infinite values"),
    ("xcoords", np.array([0, 1, 2, 3, 9.5]), "PtychoDataset.xcoords: positions outside the object [0, 9]: "
                                             "[0.000, 9.500]"),
    ("ycoords", np.array([-0.25, 1, 2, 3, 7]), "PtychoDataset.ycoords: positions outside the object [0, 7]: "
                                               "[-0.250, 7.000]"),
    ("group_indices", np.array([[0.0, 1, 2, 3]]), "PtychoDataset.group_indices: expected a (B, C) integer array "
                                                  "with B >= 1, got (1, 4) float64"),
    ("group_indices", np.zeros((0, 4), np.int64), "PtychoDataset.group_indices: expected a (B, C) integer array "
                                                  "with B >= 1, got (0, 4) int64"),
    ("group_indices", np.array([0, 1]), "PtychoDataset.group_indices: expected a (B, C) integer array with B >= 1, "
                                        "got (2,) int64"),
    ("group_indices", np.array([[0, 1]]), "PtychoDataset.group_indices: C = 2 is not a perfect square (gridsize**2)"),
    ("group_indices", np.array([[0, 1, 2, 5]]), "PtychoDataset.group_indices: expected indices in [0, 5), got [0, 5]"),
    ("group_indices", np.array([[-1, 1, 2, 3]]), "PtychoDataset.group_indices: expected indices in [0, 5), "
                                                 "got [-1, 3]"),
    ("nphotons", True, "PtychoDataset.nphotons: must be None or a finite number > 0, got True"),
    ("nphotons", "1e4", "PtychoDataset.nphotons: must be None or a finite number > 0, got '1e4'"),
    ("nphotons", float("inf"), "PtychoDataset.nphotons: must be None or a finite number > 0, got inf"),
    ("nphotons", 0.0, "PtychoDataset.nphotons: must be None or a finite number > 0, got 0.0"),
    ("scan_index", np.arange(4), "PtychoDataset.scan_index: expected (M,) = (5,) integers, got (4,) int64"),
    ("scan_index", np.arange(5.0), "PtychoDataset.scan_index: expected (M,) = (5,) integers, got (5,) float64"),
    ("scan_index", np.arange(5)[:, None], "PtychoDataset.scan_index: expected a 1-D array, got shape (5, 1)"),
    ("scan_index", np.array(list("abcde")), "PtychoDataset.scan_index: must be a real numeric array, got dtype <U1"),
    ("scan_index", np.arange(5) + 0j, "PtychoDataset.scan_index: must be a real numeric array, got dtype complex128"),
])
def test_dataset_validation_messages_are_exact(field, value, expected):
    f = _valid_fields()
    f[field] = value
    assert _message(lambda: PtychoDataset(**f)) == expected


def test_subset_messages_and_selectors():
    ds = PtychoDataset(**{**_valid_fields(), "group_indices": np.array([[0, 1, 2, 3], [4, 3, 2, 1]])})
    np.testing.assert_array_equal(ds.subset(1).group_indices, [[4, 3, 2, 1]])
    np.testing.assert_array_equal(ds.subset(np.int64(0)).group_indices, [[0, 1, 2, 3]])
    np.testing.assert_array_equal(ds.subset(slice(0, 2)).group_indices, ds.group_indices)
    assert _message(lambda: ds.subset(True)).startswith("group_idx: must select at least one group, got shape")
    assert _message(lambda: ds.subset([])) == "group_idx: must select at least one group, got shape (0, 4)"
    assert _message(lambda: ds.subset(7)) == ("group_idx: cannot select groups of 2: index 7 is out of bounds "
                                             "for axis 0 with size 2")
    assert _message(lambda: ds.subset(None)).startswith("group_idx: must select at least one group")


def test_load_object_reads_only_the_object_and_validates(tmp_path):
    from ptycho.data import load_object

    fixture = pathlib.Path(__file__).resolve().parent / "fixtures" / "sim_gridsize2_N32.npz"
    obj = load_object(fixture)
    with np.load(fixture, allow_pickle=False) as npz:
        np.testing.assert_array_equal(obj, npz["objectGuess"])
    assert obj.dtype == np.complex64 and obj.shape == (64, 64)
    only = _write(tmp_path / "only.npz", objectGuess=np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(load_object(only), np.arange(6).reshape(2, 3).astype(np.complex64))
    assert load_object(only).dtype == np.complex64
    cases = {
        "missing.npz": (dict(xcoords=np.zeros(2)), "key 'objectGuess': missing (the true object is needed); "
                                                   "keys: ['xcoords']"),
        "nan.npz": (dict(objectGuess=np.full((2, 2), np.nan)), "key 'objectGuess': contains NaN or infinite values"),
        "flat.npz": (dict(objectGuess=np.zeros(4)), "key 'objectGuess': expected a 2-D array, got shape (4,)"),
        "empty.npz": (dict(objectGuess=np.zeros((0, 3))), "key 'objectGuess': expected a non-empty (H, W) object, "
                                                          "got (0, 3)"),
        "text.npz": (dict(objectGuess=np.array([["a"]])), "key 'objectGuess': unsupported dtype <U1"),
        "pickled.npz": (dict(objectGuess=np.array([[None]], dtype=object)),
                        "key 'objectGuess': cannot be loaded without pickle "
                        "(Object arrays cannot be loaded when allow_pickle=False)"),
    }
    for name, (arrays, expected) in cases.items():
        path = _write(tmp_path / name, **arrays)
        assert _message(lambda: load_object(path)) == f"{path}: {expected}", name
    single = tmp_path / "single.npy"
    np.save(single, np.ones((2, 2)))
    assert _message(lambda: load_object(single)) == f"{single}: is a single .npy array, not an NPZ archive with keys"
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    assert _message(lambda: load_object(garbage)).startswith(
        f"{garbage}: cannot be read as an NPZ archive without pickle (")


def _corrupt_member(path, member):
    """Flip bytes inside ``member``'s compressed data so that reading it fails its CRC/inflate check."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 20, start + 40):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("key", ["diff3d", "xcoords", "probeGuess", "objectGuess", "scan_index", "nphotons",
                                 "group_indices"])
def test_unreadable_or_pickled_member_is_named_with_the_file(tmp_path, key, compressed):
    """Every key is read through the same guard: a corrupt member (bad CRC, or a broken deflate stream, which
    once escaped as ``zlib.error``: ledger NPZ-CORRUPT-MEMBER-001) or an object array names file and key."""
    rng = np.random.default_rng(0)
    arrays = dict(diff3d=rng.uniform(0, 1, (40, 8, 8)), xcoords=np.full(40, 2.0), ycoords=np.full(40, 2.0),
                  probeGuess=rng.standard_normal((8, 8)) + 0j, objectGuess=rng.standard_normal((12, 12)) + 0j,
                  scan_index=np.arange(40), nphotons=np.float64(1e4), group_indices=np.arange(40)[:, None])
    path = tmp_path / "corrupt.npz"
    with open(path, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    _corrupt_member(path, f"{key}.npy")
    message = _message(lambda: load_npz(path))
    assert message.startswith(f"{path}: key {key!r}: unreadable ("), message
    pickled = _write(tmp_path / "pickled.npz", **{**arrays, key: np.array([None] * 3, dtype=object)})
    assert _message(lambda: load_npz(pickled)) == (f"{pickled}: key {key!r}: cannot be loaded without pickle "
                                                   "(Object arrays cannot be loaded when allow_pickle=False)")


def test_file_without_object_loads_with_obj_none(tmp_path):
    path = _legacy_file(tmp_path, objectGuess=None)
    ds = load_npz(path)
    assert ds.obj is None and ds.Y is None and ds.n_positions == 5


def test_load_npz_arguments_groups_and_wrapped_errors(tmp_path):
    rng = np.random.default_rng(6)
    M = 10
    base = dict(diff3d=rng.uniform(0, 1, (M, 4, 4)), xcoords=rng.uniform(0, 9, M), ycoords=rng.uniform(0, 9, M),
                probeGuess=np.ones((4, 4), np.complex64))
    nine = np.array([np.roll(np.arange(9), k) for k in range(3)])           # (3, 9): gridsize 3 groups
    path9 = _write(tmp_path / "nine.npz", **base, group_indices=nine)
    np.testing.assert_array_equal(load_npz(path9, gridsize=3).group_indices, nine)   # 9 positions of 10 suffice
    four = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    path4 = _write(tmp_path / "four.npz", **base, group_indices=four)
    np.testing.assert_array_equal(load_npz(path4, gridsize=2, n_groups=2).group_indices, four)
    one = _write(tmp_path / "one.npz", **base, group_indices=four[:1])
    np.testing.assert_array_equal(load_npz(one, gridsize=2).group_indices, four[:1])   # a single group is valid
    for bad in (0, True, 1.5):
        assert _message(lambda: load_npz(path4, gridsize=bad)) == f"gridsize: must be a positive int, got {bad!r}"
    assert _message(lambda: load_npz(path4, gridsize=2, nphotons=-1.0)) == \
        f"{path4}: PtychoDataset.nphotons: must be None or a finite number > 0, got -1.0"
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    assert _message(lambda: load_npz(single)) == f"{single}: is a single .npy array, not an NPZ archive with keys"


def test_save_writes_a_hidden_temporary_beside_the_target(dataset, tmp_path, monkeypatch):
    """The temporary lives in the destination directory (os.replace is atomic only within one file system)
    and is hidden, so a crash mid-write never leaves something that looks like a data file."""
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = tmp_path / "sub" / "data.npz"
    target.parent.mkdir()
    save_npz(target, dataset)
    (src, dst), = renames
    assert os.path.dirname(src) == str(target.parent) and dst == str(target)
    assert os.path.basename(src).startswith(".")
    assert _message(lambda: save_npz(target, "not a dataset")) == "dataset: must be a PtychoDataset, got str"


def test_load_npz_default_seed_and_regrouping_bounds(tmp_path):
    """Without ``seed`` the regrouping uses seed 0; gridsize 3 needs only 9 positions (K raised to 9)."""
    rng = np.random.default_rng(9)
    M = 10
    x, y = rng.uniform(0, 9, M), rng.uniform(0, 9, M)
    path = _write(tmp_path / "plain.npz", diff3d=rng.uniform(0, 1, (M, 4, 4)), xcoords=x, ycoords=y,
                  probeGuess=np.ones((4, 4), np.complex64))
    expected = group_positions(x, y, 2, 7, None, np.random.default_rng(0))
    np.testing.assert_array_equal(load_npz(path, gridsize=2).group_indices, expected)
    assert load_npz(path, gridsize=3, K=10, n_groups=3).C == 9


def test_load_object_accepts_a_one_pixel_wide_object(tmp_path):
    from ptycho.data import load_object

    path = _write(tmp_path / "thin.npz", objectGuess=np.ones((1, 3)))
    assert load_object(path).shape == (1, 3)


def test_variants_share_the_arrays_of_the_dataset_they_come_from():
    """subset() and dataclasses.replace re-validate, but copy no array already in its stored dtype: a variant
    of a large data set costs no second diffraction stack."""
    ds = PtychoDataset(**{**_valid_fields(), "group_indices": np.array([[0, 1, 2, 3], [4, 3, 2, 1]])})
    shared = ("diffraction", "xcoords", "ycoords", "probe", "obj", "scan_index")
    for variant in (ds.subset(1), dataclasses.replace(ds, nphotons=2.0)):
        for name in shared:
            assert np.shares_memory(getattr(variant, name), getattr(ds, name)), name
    assert np.shares_memory(dataclasses.replace(ds, nphotons=2.0).group_indices, ds.group_indices)


def test_open_npz_names_the_file_and_the_expected_content(tmp_path):
    from ptycho.data import open_npz

    path = _write(tmp_path / "ok.npz", a=np.arange(3))
    with open_npz(path) as npz:
        assert npz.files == ["a"]
        np.testing.assert_array_equal(npz["a"], np.arange(3))
    single = tmp_path / "single.npy"
    np.save(single, np.ones(2))
    assert _message(lambda: open_npz(single)) == f"{single}: is a single .npy array, not an NPZ archive with keys"
    assert _message(lambda: open_npz(single, "a reconstruction NPZ")) == \
        f"{single}: is a single .npy array, not a reconstruction NPZ"
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([None], dtype=object), allow_pickle=True)
    assert _message(lambda: open_npz(pickled)).startswith(
        f"{pickled}: cannot be read as an NPZ archive without pickle (")
    assert _message(lambda: open_npz(tmp_path / "absent.npz")).startswith(
        f"{tmp_path / 'absent.npz'}: cannot be read as an NPZ archive without pickle (")


# ----- detector mask (True = measured pixel) --------------------------------------------------------------
def _mask(N=4):
    mask = np.ones((N, N), bool)
    mask[0, 1] = mask[3, 3] = False
    return mask


def test_mask_round_trips_through_npz_as_uint8_and_is_carried_by_subset(tmp_path):
    ds = PtychoDataset(**{**_valid_fields(), "mask": _mask()})
    assert ds.mask.dtype == np.bool_ and ds.mask.shape == (4, 4)
    path = tmp_path / "masked.npz"
    save_npz(path, ds)
    with np.load(path) as npz:
        assert npz["mask"].dtype == np.uint8
        np.testing.assert_array_equal(npz["mask"], _mask().astype(np.uint8))
    back = load_npz(path, gridsize=2)
    assert back.mask.dtype == np.bool_
    np.testing.assert_array_equal(back.mask, _mask())
    np.testing.assert_array_equal(ds.subset(0).mask, _mask())
    np.testing.assert_array_equal(dataclasses.replace(ds, nphotons=1.0).mask, _mask())
    save_npz(tmp_path / "plain.npz", PtychoDataset(**_valid_fields()))
    with np.load(tmp_path / "plain.npz") as npz:
        assert "mask" not in npz.files  # None = every pixel measured: nothing written
    assert load_npz(tmp_path / "plain.npz", gridsize=2).mask is None


def test_mask_accepts_zero_one_arrays_and_validates():
    ones = PtychoDataset(**{**_valid_fields(), "mask": _mask().astype(np.float32)})
    assert ones.mask.dtype == np.bool_
    np.testing.assert_array_equal(ones.mask, _mask())
    for value, expected in (
            (np.ones((4, 3)), "PtychoDataset.mask: expected shape (N, N) = (4, 4) to match diffraction, got (4, 3)"),
            (np.full((4, 4), 2), "PtychoDataset.mask: must hold only 0 and 1 (or booleans), 1 = measured pixel"),
            (np.full((4, 4), np.nan), "PtychoDataset.mask: must hold only 0 and 1 (or booleans), 1 = measured pixel"),
            (np.full((4, 4), "a"), "PtychoDataset.mask: must be a boolean or 0/1 array, got dtype <U1")):
        assert _message(lambda: PtychoDataset(**{**_valid_fields(), "mask": value})) == expected


def test_malformed_mask_in_npz_names_file_and_key(tmp_path):
    fields = _valid_fields()
    base = dict(diffraction=fields["diffraction"], xcoords=fields["xcoords"], ycoords=fields["ycoords"],
                probeGuess=np.ones((4, 4)))
    for name, mask, expected in (
            ("values", np.full((4, 4), 3, np.uint8),
             "key 'mask': must hold only 0 and 1 (or booleans), 1 = measured pixel"),
            ("shape", np.ones((4, 5), np.uint8), "key 'mask': expected shape (N, N) = (4, 4) to match diffraction, "
                                                      "got (4, 5)"),
            ("dtype", np.ones((4, 4)), "key 'mask': unsupported dtype float64")):
        path = _write(tmp_path / f"{name}.npz", **base, mask=mask)
        assert _message(lambda: load_npz(path)) == f"{path}: {expected}"
