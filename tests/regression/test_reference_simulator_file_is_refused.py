"""Issue 23: a file written by the reference project's own simulator trained to a uniform 1.9995 in silence.

That file holds ``diff3d`` of an object whose amplitude spans 1.8–6.0, and its dose only inside a pickled
``_metadata``. The network's amplitude is capped at ``object_amplitude_max`` = 2.0, so it cannot explain the
counts. FORWARD-MODEL-CHECK-001 covers it: the missing dose is announced and the file is refused, in one line
naming the amplitude the data need and the ceiling, before anything is written or TensorFlow is loaded.
"""
import numpy as np

from ptycho import cli
from ptycho.config import SimulationConfig
from ptycho.objects import lines_object
from ptycho.simulate import simulate_dataset


def write_reference_simulator_file(path):
    """diff3d float64 √counts/s of an object of amplitude 1.8–6.0, complex128 probe and object, no nphotons,
    the dose in a pickled ``_metadata`` (as the reference's ``RawData.to_file`` writes it)."""
    amplitude = np.abs(lines_object(64, 100, np.random.default_rng(3)))
    obj = (1.8 + (amplitude - amplitude.min()) / np.ptp(amplitude) * 4.2).astype(np.complex64)
    data = simulate_dataset(SimulationConfig(N=32, n_positions=40, object_size=64, buffer=8.0, seed=3), obj=obj)
    np.savez(path, diff3d=data.diffraction.astype(np.float64), xcoords=data.xcoords, ycoords=data.ycoords,
             probeGuess=data.probe.astype(np.complex128), objectGuess=obj.astype(np.complex128),
             _metadata=np.array([{"nphotons": 1e9}], dtype=object))
    return obj


def test_refused_before_training(tmp_path, capsys):
    obj = write_reference_simulator_file(tmp_path / "ref.npz")
    assert np.abs(obj).min() == np.float32(1.8) and np.abs(obj).max() == np.float32(6.0)
    out = tmp_path / "run"
    assert cli.main(["train", str(tmp_path / "ref.npz"), "--out-dir", str(out), "--nepochs", "1"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"ptycho: warning: {tmp_path / 'ref.npz'} has no 'nphotons'") and "--nphotons" in warning
    assert error.startswith(f"ptycho train: error: {tmp_path / 'ref.npz'}: the probe's power")
    assert "an object amplitude of 4." in error and "the model's ceiling is 2.0" in error
    assert not out.exists()
