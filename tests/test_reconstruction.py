"""The reconstruction file (ptycho.reconstruction): NPZ round trip, extent, validation without pickle."""
import re

import numpy as np
import pytest

from ptycho.reconstruction import Reconstruction, load_reconstruction, save_reconstruction


def _rec():
    rng = np.random.default_rng(0)
    obj = (rng.normal(size=(24, 24)) + 1j * rng.normal(size=(24, 24))).astype(np.complex64)
    coverage = np.zeros((24, 24), bool)
    coverage[3:20, 4:22] = True
    return Reconstruction(obj=obj, x0=10.5, y0=-2.25, coverage=coverage,
                          centroids=np.array([[20.0, 8.0], [25.5, 12.0]]))


def test_round_trip_and_extent(tmp_path):
    rec = _rec()
    path = tmp_path / "rec.npz"
    save_reconstruction(path, rec)
    back = load_reconstruction(path)
    np.testing.assert_array_equal(back.obj, rec.obj)
    np.testing.assert_array_equal(back.coverage, rec.coverage)
    np.testing.assert_array_equal(back.centroids, rec.centroids)
    assert back.origin == (10.5, -2.25)
    assert rec.extent == (10.0, 34.0, 21.25, -2.75)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["centroids", "coverage", "extent", "object", "origin"]
        np.testing.assert_array_equal(npz["extent"], rec.extent)


def test_malformed_file_names_file_and_key(tmp_path):
    rec = _rec()
    good = {"object": rec.obj, "origin": np.array(rec.origin), "coverage": rec.coverage,
            "centroids": rec.centroids}
    cases = {
        "object": {k: v for k, v in good.items() if k != "object"},
        "coverage": {**good, "coverage": rec.coverage[:-1]},
        "centroids": {**good, "centroids": np.array([[np.nan, 1.0]])},
        "origin": {**good, "origin": np.array([1.0, 2.0, 3.0])},
    }
    for key, arrays in cases.items():
        path = tmp_path / f"bad-{key}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=re.escape(str(path)) + f": key '{key}'"):
            load_reconstruction(path)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="cannot be read as an NPZ archive"):
        load_reconstruction(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="rec.centroids"):
        save_reconstruction(tmp_path / "x.npz", Reconstruction(obj=rec.obj, x0=0.0, y0=0.0, coverage=rec.coverage))
