"""Issue 23: `ptycho train` said "8 epochs" when 7 ran, and `--quiet` left the terminal silent for minutes.

Why: the start line printed --nepochs, the most epochs; EarlyStopping (patience 3, SPEC §5) ended the run
after three epochs without a lower validation loss, and nothing said so. Now the start line says "at most",
the end line says how many ran and why, and --quiet prints one line per epoch (CLI-TRAIN-EPOCHS-001).
"""
import io

import pytest

from ptycho import cli, workflow
from ptycho.cli import train as train_command
from ptycho.config import TrainingConfig


def _stopped_after_seven(dataset, config, **kwargs):
    """A run that early stopping ended at epoch 7 of 8 (best epoch 4), as Keras records it."""
    val = [5.0, 4.0, 3.5, 3.0, 3.2, 3.1, 3.05]
    return workflow.TrainedModel(None, None, {"loss": [6.0] * 7, "val_loss": val, "epochs_run": 7}, 1.0)


def test_start_and_end_lines_state_the_epochs_that_ran(tmp_path, monkeypatch, capsys):
    from ptycho.config import SimulationConfig
    from ptycho.data import save_npz
    from ptycho.simulate import simulate_dataset

    save_npz(tmp_path / "d.npz", simulate_dataset(SimulationConfig(N=32, gridsize=2, n_positions=12, object_size=48,
                                                                   buffer=6.0, seed=1)))

    def write(trained, paths, metadata=None, title=""):
        for path in paths:
            with open(path, "w") as handle:
                handle.write("x")

    monkeypatch.setattr(workflow, "train_model", _stopped_after_seven)
    monkeypatch.setattr(workflow, "write_training_outputs", write)
    assert cli.main(["train", str(tmp_path / "d.npz"), "--out-dir", str(tmp_path / "run"), "--nepochs", "8",
                     "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "at most 8 epochs (stopping early after 3 without a lower validation loss)" in lines[0]
    assert lines[1] == ("trained 7 of at most 8 epochs: stopped early, the validation loss had not fallen for 3 "
                        "epochs; the best epoch, 4, is the one kept")


@pytest.mark.parametrize("nepochs, patience, plan", [(8, 3, "at most 8 epochs"), (4, 3, "4 epochs"),
                                                     (1, 3, "1 epoch"), (10, 10, "10 epochs")])
def test_the_plan_says_at_most_only_when_early_stopping_can_end_the_run(nepochs, patience, plan):
    assert train_command._epoch_plan(TrainingConfig(nepochs=nepochs, early_stopping_patience=patience)).startswith(plan)


def test_quiet_progress_line_per_epoch():
    from ptycho.monitor import EpochLine

    stream = io.StringIO()
    line = EpochLine(8, stream, initial_lr=1e-3)
    line.on_epoch_begin(2)
    line.on_epoch_end(2, {"loss": 1234.5678, "val_loss": 2345.6, "learning_rate": 1e-3})
    line.on_epoch_end(3, {"loss": 1000.0, "val_loss": 2000.0, "learning_rate": 5e-4})
    first, second = stream.getvalue().splitlines()
    assert first.startswith("epoch 3/8  loss=1234.6  val_loss=2345.6  (") and first.endswith(" s)")
    assert second.startswith("epoch 4/8  loss=1000  val_loss=2000  lr=0.0005  (")


def test_the_epoch_logger_line(caplog):
    """The one epoch logger: ``EpochLog`` (a caller's run log) and ``train.EpochLogger`` (train's default, on
    ``ptycho.train``) write the same line; without nepochs the ``/n`` is left out."""
    import logging

    from ptycho.monitor import EpochLog
    from ptycho.train import EpochLogger

    log = logging.getLogger("ptycho.test_epoch_log")
    with caplog.at_level(logging.INFO):
        for callback in (EpochLog(log, "arm a", 8), EpochLogger(8), EpochLogger()):
            callback.on_epoch_begin(2)
            callback.on_epoch_end(2, {"loss": 1234.5678, "val_loss": 2345.6, "note": "text"})
    assert [(r.name, r.getMessage().split("  (")[0]) for r in caplog.records] == [
        ("ptycho.test_epoch_log", "arm a: epoch 3/8  loss=1234.6 val_loss=2345.6"),
        ("ptycho.train", "train: epoch 3/8  loss=1234.6 val_loss=2345.6"),
        ("ptycho.train", "train: epoch 3  loss=1234.6 val_loss=2345.6")]
