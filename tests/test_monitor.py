"""Test-set SSIM monitoring (ptycho.monitor) on the shared training path, through one real study arm.

A tiny arm (N=32, 19 training groups, 2 epochs, ~30 s) runs ``ptycho.studies.dose.run_arm`` with the
monitor on; a second training of the same data without it must give the same losses (monitoring never
changes training).
"""
import json
import math

import numpy as np
import pytest

from ptycho import workflow
from ptycho.studies import dose

NEPOCHS = 2


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    """(config, directory, ArmResult) of a tiny high-dose NLL arm with test-SSIM monitoring."""
    import logging

    config = dose.StudyConfig(output_dir=tmp_path_factory.mktemp("study"), N=32, object_size=64, buffer=8.0,
                              nlines=30, n_train=20, n_test=16, nepochs=NEPOCHS, batch_size=8, stitch_M=16)
    assert config.test_ssim  # on by default in the study
    directory = config.output_dir / "high_nll"
    directory.mkdir()
    truth = dose.make_ground_truth(config)
    result = dose.run_arm(config, "high_nll", truth, directory, logging.getLogger("test_monitor"))
    return config, directory, truth, result


def test_one_real_ssim_per_epoch_and_the_final_model_scores_its_best_epoch(arm):
    _, directory, _, result = arm
    history = json.loads((directory / "history.json").read_text())
    ssim = history["test_ssim"]
    assert len(ssim) == history["epochs_run"] == NEPOCHS
    assert all(isinstance(v, float) and math.isfinite(v) and -1.0 <= v <= 1.0 for v in ssim), ssim
    assert -1.0 <= history["test_ssim_initial"] <= 1.0
    assert len(set(ssim + [history["test_ssim_initial"]])) > 1  # measured each time, not a constant
    # EarlyStopping restores the best-val_loss epoch's weights, which the arm then evaluates on the same
    # test set with the same crop and metric: the monitor's value for that epoch is that SSIM exactly.
    best = int(np.argmin(history["val_loss"]))
    assert result.metrics["amplitude_ssim"] == pytest.approx(ssim[best], rel=1e-6, abs=1e-9)


def test_every_arm_writes_training_png(arm):
    import matplotlib.image

    _, directory, _, _ = arm
    assert set(dose.ARM_FILES) - {"reconstruction.npz", "metrics.json"} <= {p.name for p in directory.iterdir()}
    png = matplotlib.image.imread(directory / "training.png")  # a valid PNG, 7 x 4.5 in at 100 dpi
    assert png.shape[:2] == (450, 700) and png[..., :3].std() > 0.05
    from ptycho.figures import training_figure

    history = json.loads((directory / "history.json").read_text())
    assert len(training_figure(history).axes) == 2  # losses, and the test SSIM on its own axis


def test_monitoring_does_not_change_training(arm):
    """Training never sees the truth: the same arm trained without the monitor has the same losses."""
    import keras

    from ptycho.simulate import simulate_dataset

    config, directory, truth, _ = arm
    keras.backend.clear_session()
    train_ds = simulate_dataset(config.simulation_config("high_nll", "train"), obj=truth)
    plain = workflow.train_model(train_ds, config.training_config("high_nll"), seed=config.seed,
                                 model_options=config.model_options())
    monitored = json.loads((directory / "history.json").read_text())
    assert "test_ssim" not in plain.history
    np.testing.assert_allclose(plain.history["loss"], monitored["loss"], rtol=1e-5)
    np.testing.assert_allclose(plain.history["val_loss"], monitored["val_loss"], rtol=1e-5)
