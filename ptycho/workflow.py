"""The one path every run takes: train a model on a data set, write its outputs, reconstruct, evaluate.

Used by the ``ptycho`` command (``ptycho.cli``) and by every arm of the dose-response study
(``ptycho.studies.dose``), so both build, train, save and evaluate models the same way::

    trained = train_model(dataset, TrainingConfig(...), seed=0, monitor=Monitoring(test_set, truth))
    write_training_outputs(trained, training_paths(directory), metadata)  # wts.h5.zip, history.json, training.png
    rec, scored = reconstruct_and_evaluate(trained.diffraction_to_obj, test_set, truth)

``train_model`` builds the model for the data set's N, gridsize and probe with the intensity scale of the
data (SPEC §4), and trains it without ground truth (``ptycho.train.train``); with ``monitor`` it also
records the test-set amplitude SSIM per epoch as ``history['test_ssim']`` (``ptycho.monitor``).

Importing this module does no work: TensorFlow, Keras and the model modules are imported inside the
functions that train, save or reconstruct.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ptycho import history as history_lib
from ptycho.config import TrainingConfig
from ptycho.data import PtychoDataset
from ptycho.reconstruction import Reconstruction
from ptycho.scan_region import ScanEvaluation, evaluate_on_scan

logger = logging.getLogger(__name__)

MODEL_FILE = "wts.h5.zip"
#: The files a training run writes, in the order they are written (the model archive last).
TRAINING_FILES = (history_lib.HISTORY_FILE, history_lib.FIGURE_FILE, MODEL_FILE)


@dataclass(frozen=True)
class Monitoring:
    """A test set with ground truth to reconstruct after every epoch (``ptycho.monitor.TestSSIMMonitor``).

    dataset : grouped test set (same N and gridsize as the training data). truth : (H, W) complex object.
    M : stitch window (px).
    """

    dataset: PtychoDataset
    truth: np.ndarray
    M: int = 20


@dataclass
class TrainedModel:
    """The two weight-sharing models of one run, their history and the intensity scale s they were built with."""

    autoencoder: Any  # keras.Model
    diffraction_to_obj: Any  # keras.Model
    history: dict[str, Any]
    intensity_scale: float


def train_model(dataset: PtychoDataset, config: TrainingConfig, *, seed: int = 0,
                monitor: Optional[Monitoring] = None, callbacks: Sequence[Any] = (),
                log=None, model_options: Optional[Mapping[str, Any]] = None,
                source: Optional[str] = None) -> TrainedModel:
    """Build a fresh model for ``dataset`` (its N, gridsize, probe and intensity scale) and train it.

    ``seed`` fixes the weight initialisation (``config.seed`` the batch order and validation split).
    ``model_options``: further keyword arguments of ``create_model_with_gridsize`` (e.g. ``n_filters_scale``,
    ``architecture``); None builds the package default.
    ``callbacks`` run after the monitor, so an epoch logger among them sees ``test_ssim``. The returned
    history holds plain floats; with ``monitor`` it has ``test_ssim`` (one value per epoch) and
    ``test_ssim_initial`` (before training).
    ``source`` (the data file's name, for messages) goes to ``ptycho.train.train``, which refuses data the
    model cannot explain (``ValueError``) and lists its warnings in ``history['warnings']``.
    """
    from ptycho.model import create_model_with_gridsize
    from ptycho.monitor import TEST_SSIM, TEST_SSIM_INITIAL, TestSSIMMonitor
    from ptycho.train import train

    scale = float(dataset.intensity_scale)
    autoencoder, diffraction_to_obj = create_model_with_gridsize(
        dataset.gridsize, dataset.N, probe=dataset.probe, intensity_scale=scale, seed=seed, compile=False,
        **dict(model_options or {}))
    monitors = []
    if monitor is not None:
        monitors.append(TestSSIMMonitor(diffraction_to_obj, monitor.dataset, monitor.truth, M=monitor.M, log=log))
    fitted = train(autoencoder, dataset, config, callbacks=monitors + list(callbacks), source=source)
    fitted = history_lib.as_plain(fitted)
    for callback in monitors:  # the monitor's own record is authoritative
        fitted[TEST_SSIM] = list(callback.values)
        fitted[TEST_SSIM_INITIAL] = callback.initial
    return TrainedModel(autoencoder, diffraction_to_obj, fitted, scale)


def training_paths(directory: os.PathLike | str) -> list[Path]:
    """``directory``/history.json, training.png, wts.h5.zip (the order of ``TRAINING_FILES``)."""
    return [Path(directory) / name for name in TRAINING_FILES]


def write_training_outputs(trained: TrainedModel, paths: Sequence[os.PathLike | str],
                           metadata: Optional[Mapping[str, Any]] = None, title: str = "Training") -> None:
    """Write history.json, training.png and the model archive to ``paths`` (in that order), each atomically.

    ``metadata`` (JSON-serialisable) is stored in the archive's manifest with N, gridsize and s.
    """
    from ptycho import persistence
    from ptycho.inputs import model_geometry

    history_path, figure_path, model_path = paths
    history_lib.write_history(trained.history, history_path, figure_path, title=title)
    N, gridsize = model_geometry(trained.autoencoder)
    meta = {"N": N, "gridsize": gridsize, "intensity_scale": trained.intensity_scale, **dict(metadata or {})}
    persistence.save_model(model_path, trained.autoencoder, trained.diffraction_to_obj, metadata=meta)


def reconstruct_and_evaluate(diffraction_to_obj: Any, dataset: PtychoDataset,
                             truth: Optional[np.ndarray] = None, M: int = 20,
                             intensity_scale: Optional[float] = None
                             ) -> tuple[Reconstruction, Optional[ScanEvaluation]]:
    """Reconstruct ``dataset`` (inference + stitching) and, given ``truth`` (H, W) complex, evaluate it on
    the scanned region (None without truth). ``intensity_scale``: see ``ptycho.inference.reconstruct``.

    A stitched object that cannot be right (at the model's amplitude ceiling, or constant, on the covered
    pixels: ``ptycho.diagnostics.object_warnings``) is reported as a logged warning and, with truth, in the
    returned ``ScanEvaluation.warnings``."""
    from ptycho import diagnostics, inference

    rec = inference.reconstruct(diffraction_to_obj, dataset, M=M, intensity_scale=intensity_scale)
    scored = None if truth is None else evaluate_on_scan(rec, truth)
    # --- no silent garbage: an object at the amplitude ceiling or constant is reported ---
    covered = np.asarray(rec.obj)[np.asarray(rec.coverage, dtype=bool)]
    warnings = diagnostics.object_warnings(covered, diagnostics.model_amplitude_max(diffraction_to_obj))
    diagnostics.log_warnings(logger, warnings)
    if scored is not None and warnings:
        scored = dataclasses.replace(scored, warnings=tuple(scored.warnings) + tuple(warnings))
    return rec, scored
