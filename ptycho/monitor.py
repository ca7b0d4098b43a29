"""Training monitors: Keras callbacks that report on a run while it trains (they never change it).

:class:`EpochLog` logs one line per epoch to a run's logger, :class:`EpochLine` prints one to the terminal.
:class:`TestSSIMMonitor` reconstructs a
held-out test set that has ground truth after every epoch and records the amplitude SSIM on its scanned
region (``ptycho.scan_region.evaluate_on_scan``): monitoring only — the truth never reaches the loss,
the optimiser or any callback that acts on training (early stopping and the learning-rate schedule
watch ``val_loss``). It costs one inference pass over the test set per epoch (a few seconds for 128
groups on a CPU).
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import keras
import numpy as np

from ptycho import inference
from ptycho.data import PtychoDataset
from ptycho.scan_region import evaluate_on_scan

#: The history key of the per-epoch test SSIM, and of the SSIM before the first epoch.
TEST_SSIM = "test_ssim"
TEST_SSIM_INITIAL = "test_ssim_initial"


class EpochLog(keras.callbacks.Callback):
    """Log ``"<label>: epoch e/n  key=value ...  (t s)"`` to ``log`` at the end of each epoch.

    The package's one epoch logger (``ptycho.train.train`` adds one on its own logger when its caller passes
    none). ``nepochs`` None logs ``epoch e`` (the run's length unknown). Values are the epoch's numeric logs
    (losses, ``learning_rate``, ``test_ssim`` when a monitor before it recorded one); t is wall seconds.
    """

    def __init__(self, log: logging.Logger, label: str, nepochs: Optional[int]):
        super().__init__()
        self.log, self.label, self.nepochs = log, label, nepochs
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        parts = []
        for key, value in sorted((logs or {}).items()):
            try:
                parts.append(f"{key}={float(value):.5g}")
            except (TypeError, ValueError):
                continue
        count = f"{epoch + 1}" if self.nepochs is None else f"{epoch + 1}/{self.nepochs}"
        self.log.info("%s: epoch %s  %s  (%.1f s)", self.label, count, " ".join(parts),
                      time.perf_counter() - self._start)


class EpochLine(keras.callbacks.Callback):
    """Print ``"epoch e/n  loss=...  val_loss=...  (t s)"`` to ``stream`` at the end of each epoch (flushed).

    The terminal's progress report when Keras' progress bar is off (``ptycho train --quiet``): short, one
    line per epoch; ``test_ssim`` is added when a monitor recorded it, the learning rate once it was reduced.
    """

    def __init__(self, nepochs: int, stream, initial_lr: Optional[float] = None):
        super().__init__()
        self.nepochs, self.stream, self.initial_lr = nepochs, stream, initial_lr
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"{key}={float(logs[key]):.5g}" for key in ("loss", "val_loss", "test_ssim") if key in logs]
        lr = logs.get("learning_rate")
        if lr is not None and self.initial_lr is not None and float(lr) < self.initial_lr * (1 - 1e-6):
            parts.append(f"lr={float(lr):.3g}")
        print(f"epoch {epoch + 1}/{self.nepochs}  {'  '.join(parts)}  ({time.perf_counter() - self._start:.1f} s)",
              file=self.stream, flush=True)


class TestSSIMMonitor(keras.callbacks.Callback):
    """Amplitude SSIM of the test-set reconstruction after every epoch (monitoring only).

    diffraction_to_obj : the model being trained's object head (shares its weights).
    dataset : grouped test set, (B, N, N, C) like the training data.
    truth : (H, W) complex, the object the test set was measured on.
    M : stitch window (px), as in ``ptycho.inference.reconstruct``.

    ``values`` holds one SSIM per completed epoch (in [-1, 1]), also written into the epoch's logs as
    ``test_ssim`` so Keras's History (and any epoch logger after this callback) records it; ``initial``
    is the SSIM of the untrained model, measured in ``on_train_begin`` — which also surfaces a test set
    too small to evaluate before any training time is spent.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, diffraction_to_obj: keras.Model, dataset: PtychoDataset, truth: np.ndarray, M: int = 20,
                 log: Optional[logging.Logger] = None):
        super().__init__()
        if not isinstance(dataset, PtychoDataset):
            raise TypeError(f"dataset: expected PtychoDataset, got {type(dataset).__name__}")
        truth = np.asarray(truth)
        if truth.ndim != 2 or not np.all(np.isfinite(truth)):
            raise ValueError(f"truth: must be a finite (H, W) object, got shape {truth.shape}")
        self.diffraction_to_obj, self.dataset, self.truth, self.M = diffraction_to_obj, dataset, truth, M
        self.log = log
        self.values: list[float] = []
        self.initial: Optional[float] = None

    def measure(self) -> float:
        """Reconstruct the test set with the current weights; its amplitude SSIM on the scanned region."""
        rec = inference.reconstruct(self.diffraction_to_obj, self.dataset, M=self.M)
        return float(evaluate_on_scan(rec, self.truth).metrics["amplitude_ssim"])

    def on_train_begin(self, logs=None):
        self.values = []
        self.initial = self.measure()
        if self.log is not None:
            self.log.info("test amplitude SSIM before training: %.4f", self.initial)

    def on_epoch_end(self, epoch, logs=None):
        value = self.measure()
        self.values.append(value)
        if logs is not None:
            logs[TEST_SSIM] = value
