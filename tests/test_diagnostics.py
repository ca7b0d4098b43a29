"""No silent garbage (ptycho.diagnostics): data the forward model cannot explain is refused before training,
doubtful data and results that cannot be right are reported (ledger FORWARD-MODEL-CHECK-001,
TRAINING-WARNINGS-001)."""
import dataclasses
import json
import logging
import re

import numpy as np
import pytest

from ptycho import diagnostics
from ptycho.config import SimulationConfig, TrainingConfig
from ptycho.reconstruction import Reconstruction
from ptycho.simulate import simulate_dataset


@pytest.fixture(scope="module")
def good():
    """A correct data set: N=32, 32 positions, 1e9 photons, the lines object (r = mean ΣX²/Σ|P|² ≈ 1.4)."""
    return simulate_dataset(SimulationConfig(N=32, gridsize=1, n_positions=32, object_size=64, buffer=16))


def refusal(dataset, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        diagnostics.check_forward_model(dataset, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message  # one line
    return message


# ------------------------------------------------------------------------------------- before training


def test_a_correct_dataset_passes_without_warnings(good):
    assert 1.0 < diagnostics.probe_power_ratio(good) < 2.0
    assert diagnostics.corner_to_centre_ratio(good.diffraction) < 1e-3
    assert diagnostics.check_forward_model(good) == []
    assert diagnostics.check_forward_model(good, 2.0, source="data.npz") == []


def test_probe_in_unnormalised_fft_units_is_refused_with_the_factor(good):
    """A probe N times too small (numpy's unnormalised FFT): the data need |O| ≈ 38 against a ceiling of 2."""
    message = refusal(dataclasses.replace(good, probe=good.probe / good.N), source="data.npz")
    assert message.startswith("data.npz: the probe's power (Σ|P|² = ")
    r = diagnostics.probe_power_ratio(good) * good.N ** 2
    assert f"explains only 1/{diagnostics._num(r)} of the measured counts" in message
    assert re.search(r"an object amplitude of 3\d(\.\d)? would be needed \(the model's ceiling is 2\.0\)", message)
    assert "multiply it by N = 32" in message and "`ptycho import --format tike`" in message


def test_probe_on_another_scale_is_refused(good):
    message = refusal(dataclasses.replace(good, probe=good.probe / 128))
    needed = np.sqrt(diagnostics.probe_power_ratio(good)) * 128
    assert message.startswith("dataset: the probe's power")
    assert f"an object amplitude of {diagnostics._num(needed)} would be needed (the model's ceiling is 2.0)" in message
    assert "scale the probe by about" in message and "`ptycho import`" in message
    # the ceiling is the model's: a model allowing |O| ≤ 400 can explain these data
    assert diagnostics.check_forward_model(dataclasses.replace(good, probe=good.probe / 128), 400.0) == []


def test_probe_far_too_bright_is_refused(good):
    message = refusal(dataclasses.replace(good, probe=good.probe * 1000), source="scan.npz")
    assert message.startswith("scan.npz: the probe's power")
    assert "times the measured counts" in message and "far too bright" in message
    assert re.search(r"divide it by about \d{3} ", message)  # 1000 / the object's rms amplitude (≈ 1.2)


def test_unshifted_diffraction_is_refused(good):
    unshifted = dataclasses.replace(good, diffraction=np.fft.ifftshift(good.diffraction, axes=(-2, -1)))
    assert diagnostics.corner_to_centre_ratio(unshifted.diffraction) > 1e3
    message = refusal(unshifted, source="data.npz")
    assert message.startswith("data.npz: the diffraction looks unshifted (zero frequency at the array corner)")
    assert "apply numpy.fft.fftshift over the last two axes, or use `ptycho import`" in message


def test_empty_diffraction_or_probe_is_refused(good):
    assert "the diffraction is all zero" in refusal(dataclasses.replace(good, diffraction=0 * good.diffraction))
    assert "the probe is all zero" in refusal(dataclasses.replace(good, probe=0 * good.probe))


def test_doubtful_scales_and_unknown_dose_warn(good):
    dim = diagnostics.check_forward_model(dataclasses.replace(good, probe=good.probe * 10), source="a.npz")
    assert len(dim) == 1 and dim[0].startswith("a.npz: the probe's power")
    assert "mean amplitude would be only 0.1" in dim[0]
    near = diagnostics.check_forward_model(dataclasses.replace(good, probe=good.probe / 1.5))
    assert len(near) == 1 and "close to the model's ceiling of 2.0" in near[0]
    unknown = diagnostics.check_forward_model(dataclasses.replace(good, nphotons=None), source="ref.npz")
    assert unknown == ["ref.npz: the dose is unknown (no nphotons): s = 1 is assumed, i.e. the amplitudes are taken "
                       "as √counts; if they are not, give the photons per pattern with --nphotons"]
    assert all("\n" not in w for w in dim + near + unknown)


# ------------------------------------------------------------------------------------- after training


def test_training_warnings_flag_a_flat_loss_and_a_frozen_validation_loss():
    assert diagnostics.training_warnings({"loss": [5.0, 3.0, 2.5], "val_loss": [5.1, 3.2, 2.6]}) == []
    assert diagnostics.training_warnings({"loss": [5.0], "val_loss": [5.0]}) == []  # one epoch says nothing
    flat = diagnostics.training_warnings({"loss": [1234.5, 1234.49, 1234.48], "val_loss": [7.0, 6.0, 6.5]})
    assert len(flat) == 1 and flat[0].startswith("the training loss never left its first plateau")
    assert "1234.5 → best 1234.48" in flat[0] and "in 3 epochs" in flat[0] and "ptycho import" in flat[0]
    frozen = diagnostics.training_warnings({"loss": [9.0, 4.0, 3.0], "val_loss": [-3812345.1, -3812345.3, -3812345.2]})
    assert len(frozen) == 1 and frozen[0].startswith("the validation loss never moved: -3.81235e+06 in all 3 epochs")
    assert len(diagnostics.training_warnings({"loss": [2.0, 2.0], "val_loss": [2.0, 2.0]})) == 2
    assert diagnostics.training_warnings({"loss": [2.0, float("nan")], "val_loss": [2.0, float("nan")]}) == []


def test_training_warnings_flag_an_object_at_the_ceiling_or_constant():
    rng = np.random.default_rng(0)
    fine = (0.5 + rng.random((40, 40))) * np.exp(0.1j)
    assert diagnostics.training_warnings({}, object_amplitude=fine) == []
    saturated = np.full((40, 40), 1.99)
    saturated[:10] = 0.7  # 75 % of the pixels at ≥ 0.98 · 2.0
    (ceiling,) = diagnostics.training_warnings({}, object_amplitude=saturated, amplitude_max=2.0)
    assert ceiling.startswith("the reconstructed object sits at the amplitude ceiling: 75 % of its 1600 pixels")
    assert "probe's scale" in ceiling
    assert diagnostics.training_warnings({}, object_amplitude=saturated, amplitude_max=3.0) == []
    (constant,) = diagnostics.training_warnings({}, object_amplitude=np.full((40, 40), 0.8 + 0.1j))
    assert constant.startswith("the reconstructed object is constant: amplitude std/mean = 0 (mean 0.806)")
    both = diagnostics.object_warnings(np.full((8, 8), 2.0))
    assert len(both) == 2


@pytest.mark.filterwarnings("ignore:Could not determine RMS error")  # scikit-image, on the constant image
def test_reconstruct_and_evaluate_reports_a_constant_object(good, monkeypatch, caplog):
    from ptycho import inference, workflow

    coverage = np.zeros((48, 48), bool)
    coverage[4:44, 4:44] = True
    obj = np.where(coverage, 1.3, 0.0).astype(np.complex64)   # constant where covered, zeros elsewhere
    centroids = np.stack([good.xcoords, good.ycoords], axis=1)
    rec = Reconstruction(obj=obj, x0=float(good.xcoords.min()) - 4, y0=float(good.ycoords.min()) - 4,
                         coverage=coverage, centroids=centroids)
    monkeypatch.setattr(inference, "reconstruct", lambda *args, **kwargs: rec)
    with caplog.at_level(logging.WARNING, logger="ptycho.workflow"):
        _, scored = workflow.reconstruct_and_evaluate(object(), good, good.obj)
    # a constant object correlates with nothing: the truth-agreement warning of evaluate_on_scan comes first
    assert len(scored.warnings) == 2 and scored.warnings[0].startswith("the reconstruction does not match")
    assert scored.warnings[1].startswith("the reconstructed object is constant")
    assert scored.warnings[1] in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ptycho.workflow"):
        _, none = workflow.reconstruct_and_evaluate(object(), good)  # without truth: logged all the same
    assert none is None and "the reconstructed object is constant" in caplog.text


# ------------------------------------------------------------------------------------- train refuses


def test_train_refuses_a_corrupted_dataset_before_fitting(good, monkeypatch):
    """The end-to-end path: ``train`` (and ``workflow.train_model``) raise before compiling or fitting."""
    import keras

    from ptycho import train as train_module
    from ptycho import workflow
    from ptycho.model import create_model_with_gridsize

    def never(*args, **kwargs):
        raise AssertionError("the model was compiled or fitted before the data were checked")

    monkeypatch.setattr(keras.Model, "fit", never)
    monkeypatch.setattr(train_module, "compile_autoencoder", never)
    bad = dataclasses.replace(good, probe=good.probe / 128)
    autoencoder, _ = create_model_with_gridsize(1, 32, probe=bad.probe, intensity_scale=bad.intensity_scale,
                                                jit_compile=False)
    config = TrainingConfig(nepochs=1, batch_size=8, verbose=0, jit_compile=False)
    with pytest.raises(ValueError, match=r"^data\.npz: the probe's power .*the model's ceiling is 2\.0"):
        train_module.train(autoencoder, bad, config, source="data.npz")
    unshifted = dataclasses.replace(good, diffraction=np.fft.ifftshift(good.diffraction, axes=(-2, -1)))
    with pytest.raises(ValueError, match=r"^run\.npz: the diffraction looks unshifted"):
        workflow.train_model(unshifted, config, source="run.npz")
    with pytest.raises(ValueError, match=r"^dataset: the probe's power"):
        workflow.train_model(bad, config)


def test_train_records_warnings_in_the_history(good, tmp_path, caplog):
    """A data set without a dose trains, with the warning logged and in history['warnings'] (and its JSON)."""
    from ptycho.model import create_model_with_gridsize
    from ptycho.train import train

    autoencoder, _ = create_model_with_gridsize(1, 32, probe=good.probe, intensity_scale=good.intensity_scale,
                                                jit_compile=False, n_filters_scale=1)
    config = TrainingConfig(nepochs=1, batch_size=16, verbose=0, jit_compile=False)
    with caplog.at_level(logging.WARNING, logger="ptycho.train"):
        history = train(autoencoder, dataclasses.replace(good, nphotons=None), config,
                        history_path=str(tmp_path / "history.json"), source="ref.npz")
    assert len(history["warnings"]) == 1 and history["warnings"][0].startswith("ref.npz: the dose is unknown")
    assert history["warnings"][0] in caplog.text
    assert json.loads((tmp_path / "history.json").read_text())["warnings"] == history["warnings"]


def test_neighbour_warnings_flag_a_gridsize_1_scan_whose_patterns_mostly_stand_alone():
    """RETRIEVAL-NEIGHBOURS-001: a pattern without a scan neighbour lists itself at offset 0; more than half of
    them alone leaves most twin images undetermined."""
    offsets = np.ones((4, 1, 2, 3))
    offsets[:2] = 0
    assert diagnostics.neighbour_warnings(offsets, "scan.npz", 8) == []  # half alone: no warning
    offsets[2] = 0
    assert diagnostics.neighbour_warnings(offsets, "scan.npz", 8) == [
        "scan.npz: 75 % of the patterns have no scan neighbour within 8 px, so at gridsize 1 their twin image is "
        "not determined; use --gridsize 2 or a denser scan"]


def test_train_warns_when_a_gridsize_1_scan_is_too_sparse_for_neighbours(tmp_path):
    """A grid scan with 20 px steps at N = 32 (neighbour radius 8 px): every pattern stands alone."""
    from ptycho.model import create_model_with_gridsize
    from ptycho.train import train

    data = simulate_dataset(SimulationConfig(N=32, gridsize=1, n_positions=16, object_size=128, buffer=16,
                                             scan="grid", grid_step=20.0))
    autoencoder, _ = create_model_with_gridsize(1, 32, probe=data.probe, intensity_scale=data.intensity_scale,
                                                jit_compile=False, n_filters_scale=1)
    history = train(autoencoder, data, TrainingConfig(nepochs=1, batch_size=8, verbose=0, jit_compile=False),
                    source="sparse.npz")
    assert "sparse.npz: 100 % of the patterns have no scan neighbour within 8 px" in " ".join(history["warnings"])
