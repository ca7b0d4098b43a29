"""Atomic file output (ptycho.files): a file appears complete or not at all, alone or as a set."""
import json
import os

import numpy as np
import pytest

from ptycho import files


def test_to_jsonable_replaces_nonfinite_and_numpy_types():
    payload = {"a": np.float32(1.5), "b": float("inf"), "c": [np.nan, 2], "d": np.arange(3), "e": (1, None)}
    assert files.to_jsonable(payload) == {"a": 1.5, "b": None, "c": [None, 2], "d": [0, 1, 2], "e": [1, None]}


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "metrics.json"
    files.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_atomic_paths_commit_all_or_nothing(tmp_path):
    """A set of outputs: an interruption (here KeyboardInterrupt) after writing some leaves none of them."""
    targets = [tmp_path / "a.json", tmp_path / "sub" / "b.png"]
    targets[1].parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_paths(targets) as temps:
            temps[0].write_text("{}")
            raise KeyboardInterrupt
    assert not any(t.exists() for t in targets)
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []
    with pytest.raises(FileNotFoundError, match="b.png: output was not written"):
        with files.atomic_paths(targets) as temps:
            temps[0].write_text("{}")
    assert not targets[0].exists()
    with files.atomic_paths(targets) as temps:
        assert all(t.parent == target.parent and t.name.startswith(".") for t, target in zip(temps, targets))
        temps[0].write_text("1")
        temps[1].write_bytes(b"2")
    assert targets[0].read_text() == "1" and targets[1].read_bytes() == b"2"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "sub"] and os.listdir(tmp_path / "sub") == ["b.png"]


def test_write_npz_round_trip_and_refuses_object_arrays(tmp_path):
    path = tmp_path / "x.npz"
    files.write_npz(path, {"a": np.arange(3.0), "b": np.ones((2, 2), np.complex64)})
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["a"], [0.0, 1.0, 2.0])
        assert npz["b"].dtype == np.complex64
    with pytest.raises(ValueError, match=r"key 'o': object arrays"):
        files.write_npz(tmp_path / "o.npz", {"o": np.array([{}], dtype=object)})
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]


def test_ensure_directory_names_the_option(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"^--out-dir '.*file': exists and is not a directory"):
        files.ensure_directory(blocker, "--out-dir")
    made = files.ensure_directory(tmp_path / "a" / "b", "--out-dir")
    assert made.is_dir() and os.listdir(made) == []
