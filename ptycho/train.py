"""Training: a seeded ``tf.data`` pipeline, the callbacks of SPEC §5, XLA-compiled steps, JSON history."""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from ptycho import diagnostics, files
from ptycho.config import TrainingConfig, neighbour_radius
from ptycho.data import PtychoDataset
from ptycho.device import resolve_jit_compile
from ptycho.inputs import NEIGHBOUR_INPUTS, check_dataset, model_inputs, neighbour_count
from ptycho.model_state import (adapt_input_normalization, compile_autoencoder, get_conv_dtype,
                                copy_weights, get_intensity_scale, has_group_retrieval,
                                model_on_cached_estimates, retrieval_estimates)
from ptycho.monitor import EpochLog

logger = logging.getLogger(__name__)


def split_indices(n_groups: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of group indices; validation gets round(n·split), at least 1 if split > 0."""
    order = np.random.default_rng(seed).permutation(n_groups)
    n_val = 0 if validation_split == 0 else max(1, int(round(n_groups * validation_split)))
    if n_groups - n_val < 1:
        raise ValueError(f"dataset: {n_groups} groups leave none for training with validation_split="
                         f"{validation_split}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def make_pipeline(inputs: dict[str, np.ndarray], indices: np.ndarray, batch_size: int, *,
                  shuffle: bool, seed: int, estimates: Optional[np.ndarray] = None) -> tf.data.Dataset:
    """``tf.data`` pipeline of (inputs, (placeholder, s·X, (s·X)²)); inputs: the dict ``inputs`` (the model's
    inputs by name: diffraction, positions and a gridsize-1 model's scan neighbours) at ``indices``.

    With ``estimates`` ((B, N, N, C) complex64 retrieval estimates of all groups) the inputs are the tuple
    (diffraction, positions, estimate) of ``model_state.model_on_cached_estimates``.

    Targets follow the autoencoder's outputs [object, amplitude, intensity]; the object has no loss
    (training needs no ground truth), so its slot holds the amplitude as a free placeholder.

    Training batches drop the remainder (fixed shapes: one XLA compilation) when there is at least one full
    batch; shuffling is reshuffled every epoch from the op seed ``seed``.
    """
    if estimates is None:
        columns = {name: values[indices] for name, values in inputs.items()}
    else:
        columns = {"diffraction": inputs["diffraction"][indices], "positions": inputs["positions"][indices],
                   "estimate": estimates[indices]}
    data = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        data = data.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)

    def with_targets(row):
        d = row["diffraction"]
        model_inputs = row if estimates is None else (d, row["positions"], row["estimate"])
        return model_inputs, (d, d, tf.square(d))

    drop = shuffle and len(indices) >= batch_size
    return data.batch(batch_size, drop_remainder=drop).map(with_targets).prefetch(tf.data.AUTOTUNE)


class EpochLogger(EpochLog):
    """The epoch logger ``train`` adds when its caller gave none: ``monitor.EpochLog`` on this module's logger
    (``ptycho.train``), labelled ``train``; ``nepochs`` None drops the ``/n`` of ``epoch e/n``."""

    def __init__(self, nepochs: Optional[int] = None):
        super().__init__(logger, "train", nepochs)


class WeightsBack(keras.callbacks.Callback):
    """Copy the fitted copy's weights into the autoencoder after every epoch and at the end of training (the
    cached-estimate copy of RETRIEVAL-CACHE-001): callbacks after it, and the caller's object head, which shares
    the autoencoder's weights, see the trained weights."""

    def __init__(self, autoencoder: keras.Model):
        super().__init__()
        self.autoencoder = autoencoder

    def on_epoch_end(self, epoch, logs=None):
        copy_weights(self.model, self.autoencoder)

    def on_train_end(self, logs=None):
        copy_weights(self.model, self.autoencoder)


def _callbacks(config: TrainingConfig, has_validation: bool,
               extra: Sequence[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
    """SPEC §5's callbacks, then ``extra``, then one epoch logger unless ``extra`` holds one already.

    The logger comes last so that it sees what the caller's monitors write into an epoch's logs
    (``test_ssim``); there is one per run, so every epoch is logged once. A ``WeightsBack`` in ``extra`` comes
    first there: after EarlyStopping (whose restored best weights it copies at the end) and before the monitors.
    """
    monitor = "val_loss" if has_validation else "loss"
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=config.lr_factor, patience=config.lr_patience,
                                          min_lr=config.min_lr, verbose=0),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience,
                                      restore_best_weights=True, verbose=0),
        keras.callbacks.TerminateOnNaN(),
        *extra,
    ]
    if not any(isinstance(callback, EpochLog) for callback in extra):
        callbacks.append(EpochLogger(config.nepochs))
    return callbacks


def _model_probe(autoencoder: keras.Model, dataset: PtychoDataset) -> np.ndarray:
    """The probe the model's forward model uses (the dataset's if the model has no ``probe`` layer)."""
    from ptycho.model_state import get_probe

    try:
        return get_probe(autoencoder)
    except (AttributeError, ValueError):
        return dataset.probe


def _cached_estimates(autoencoder: keras.Model, inputs: dict, config: TrainingConfig) -> Optional[np.ndarray]:
    """All groups' retrieval estimates when training may reuse them (RETRIEVAL-CACHE-001), else None.

    They are reusable when the model has a ``GroupRetrieval`` layer and its intensity scale is fixed: then
    nothing upstream of the retrieval is trained, and every epoch would recompute the same estimates.
    """
    if not (config.cache_retrieval and has_group_retrieval(autoencoder)):
        return None
    if any(w.trainable for w in autoencoder.get_layer("intensity_scale").weights):
        return None
    return retrieval_estimates(autoencoder, inputs)


def train(autoencoder: keras.Model, dataset: PtychoDataset, config: TrainingConfig,
          history_path: Optional[str] = None, callbacks: Optional[Sequence[keras.callbacks.Callback]] = None,
          source: Optional[str] = None) -> dict:
    """Train ``autoencoder`` on ``dataset`` without ground truth; return the history dict.

    The model is (re)compiled for ``config.loss`` ('nll': Poisson NLL on intensity; 'mae': MAE on amplitude)
    with Adam(``config.learning_rate``) and XLA as ``config.jit_compile`` says (recorded as ``jit_compile``, with
    the convolution precision as ``conv_dtype``). Its inputs are s·X with s the model's own intensity scale.
    History (per-epoch lists plus ``epochs_run``) is written atomically as JSON to ``history_path`` when given.
    Each epoch is logged once: by the ``ptycho.monitor.EpochLog`` among ``callbacks`` if there is one, else by
    :class:`EpochLogger` on this module's logger.

    Before anything is compiled or fitted, ``ptycho.diagnostics.check_forward_model`` checks that the model's
    probe and amplitude ceiling can explain the data, and raises ``ValueError`` (naming ``source``, the data
    file, or 'dataset') when they cannot. Its warnings, and after fitting those of
    ``diagnostics.training_warnings`` (a loss that never moved), are logged and listed in ``history['warnings']``.
    """
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config: expected TrainingConfig, got {type(config).__name__}")
    check_dataset(autoencoder, dataset)
    warnings = diagnostics.check_forward_model(dataset, diagnostics.model_amplitude_max(autoencoder), source,
                                               probe=_model_probe(autoencoder, dataset))
    diagnostics.log_warnings(logger, warnings)

    jit_compile = resolve_jit_compile(config.jit_compile)
    scale = get_intensity_scale(autoencoder)
    inputs = model_inputs(dataset, scale, neighbour_count(autoencoder))
    if NEIGHBOUR_INPUTS[1] in inputs:
        lonely = diagnostics.neighbour_warnings(inputs[NEIGHBOUR_INPUTS[1]], source, neighbour_radius(dataset.N))
        diagnostics.log_warnings(logger, lonely)
        warnings = warnings + lonely
    estimates = _cached_estimates(autoencoder, inputs, config)
    compile_autoencoder(autoencoder, nll_weight=float(config.loss == "nll"), mae_weight=float(config.loss == "mae"),
                        learning_rate=config.learning_rate, jit_compile=jit_compile)
    train_idx, val_idx = split_indices(dataset.n_groups, config.validation_split, config.seed)
    # The input standardiser's statistics come from the training split only (never from validation).
    adapted = adapt_input_normalization(autoencoder, inputs["diffraction"][train_idx] / np.float32(scale),
                                        positions=inputs["positions"][train_idx],
                                        estimates=None if estimates is None else estimates[train_idx],
                                        neighbours={k: inputs[k][train_idx] for k in NEIGHBOUR_INPUTS
                                                    if k in inputs})
    fitted = autoencoder if estimates is None else model_on_cached_estimates(autoencoder)  # after adapting
    if fitted is not autoencoder:
        compile_autoencoder(fitted, nll_weight=float(config.loss == "nll"), mae_weight=float(config.loss == "mae"),
                            learning_rate=config.learning_rate, jit_compile=jit_compile)
    train_data = make_pipeline(inputs, train_idx, config.batch_size, shuffle=True, seed=config.seed,
                               estimates=estimates)
    val_data = make_pipeline(inputs, val_idx, config.batch_size, shuffle=False, seed=config.seed,
                             estimates=estimates) if len(val_idx) else None

    start = time.perf_counter()
    weights_back = [] if fitted is autoencoder else [WeightsBack(autoencoder)]
    fit = fitted.fit(train_data, validation_data=val_data, epochs=config.nepochs, verbose=config.verbose,
                     shuffle=False,  # the pipeline shuffles, seeded
                     callbacks=_callbacks(config, val_data is not None, weights_back + list(callbacks or [])))
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    history["epochs_run"] = len(history.get("loss", []))
    history["input_statistics_adapted"] = bool(adapted)
    history["jit_compile"] = jit_compile
    history["conv_dtype"] = get_conv_dtype(autoencoder)
    history["wall_time_s"] = time.perf_counter() - start
    history["retrieval_cached"] = estimates is not None
    after = diagnostics.training_warnings(history)  # a loss that never moved (no object here)
    diagnostics.log_warnings(logger, after)
    history["warnings"] = warnings + after
    if history_path is not None:
        write_json_atomic(history_path, history)
    return history


def write_json_atomic(path: str, payload: dict) -> None:
    """Write ``payload`` as strict JSON to ``path`` (``files.write_json``: atomic, non-finite floats -> null),
    creating ``path``'s directory first if it does not exist."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    files.write_json(path, payload)
