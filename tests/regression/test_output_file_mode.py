"""FILE-MODE-001: `ptycho simulate` wrote its data file with mode 0600, and `ptycho train` its model archive.

Every writer that goes through ``tempfile.mkstemp`` and ``os.replace`` kept mkstemp's private mode. Outputs now
get what ``open()`` would give: 0o666 less the umask (0644 under the usual 022).
"""
import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

from ptycho import cli, files
from ptycho.config import SimulationConfig
from ptycho.data import save_npz
from ptycho.simulate import simulate_dataset


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def test_every_writer_gives_ordinary_permissions(tmp_path, umask, capsys):
    expected = 0o666 & ~umask
    assert cli.main(["simulate", "--out", str(tmp_path / "sim.npz"), "--N", "32", "--n-positions", "8",
                     "--object-size", "48", "--buffer", "6"]) == 0
    assert _mode(tmp_path / "sim.npz") == expected
    save_npz(tmp_path / "direct.npz", simulate_dataset(SimulationConfig(N=16, n_positions=4, object_size=32,
                                                                        buffer=4.0)))
    files.write_json(tmp_path / "m.json", {"a": 1.0})
    files.write_npz(tmp_path / "a.npz", {"x": np.zeros(3)})
    with files.atomic_path(tmp_path / "private.bin") as tmp:  # a writer that itself made a 0600 file
        with open(tmp, "wb") as handle:
            handle.write(b"x")
        os.chmod(tmp, 0o600)
    from ptycho import persistence, train

    train.write_json_atomic(str(tmp_path / "history.json"), {"loss": [1.0]})
    persistence._write_atomically(str(tmp_path / "model.zip"), {"member": b"bytes"})
    for name in ("direct.npz", "m.json", "a.npz", "private.bin", "history.json", "model.zip"):
        assert _mode(tmp_path / name) == expected, name


def test_every_writer_goes_through_the_one_atomic_writer(tmp_path, monkeypatch):
    """One atomic writer (``files.atomic_paths``): the data file, the model archive and the history JSON all
    take it, so all get its temporary naming, cleanup and file mode; the JSON writer still makes its directory."""
    from ptycho import persistence, train

    taken = []
    real = files.atomic_paths

    @contextlib.contextmanager
    def spy(paths):
        taken.extend(Path(p).name for p in paths)
        with real(paths) as temps:
            yield temps

    monkeypatch.setattr(files, "atomic_paths", spy)
    save_npz(tmp_path / "data.npz", simulate_dataset(SimulationConfig(N=16, n_positions=4, object_size=32,
                                                                      buffer=4.0)))
    persistence._write_atomically(str(tmp_path / "model.zip"), {"member": b"bytes"})
    train.write_json_atomic(str(tmp_path / "new" / "history.json"), {"loss": [1.0, float("nan")]})
    assert taken == ["data.npz", "model.zip", "history.json"]
    assert (tmp_path / "new" / "history.json").read_text() == '{\n  "loss": [\n    1.0,\n    null\n  ]\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["data.npz", "model.zip", "new"]
