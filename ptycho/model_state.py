"""The state of a built model, read and set outside the factory: its intensity scale, probe and convolution
precision, its input standardiser's statistics, and its compilation for a training loss.

``ptycho.model`` builds the two models; training (``ptycho.train``), inference and the CLI work on a built
model through these functions, so a training run enters the model module once (to build). Each function
finds a layer by the name ``ptycho.model.build_models`` gives it (``intensity_scale``, ``probe``,
``input_standardizer``, ``input_features``, ``enc0_conv_a``).
"""
from __future__ import annotations

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from ptycho.device import resolve_jit_compile


def compile_autoencoder(autoencoder, *, nll_weight: float = 1.0, mae_weight: float = 0.0,
                        learning_rate: float = 1e-3, jit_compile: Optional[bool] = None) -> None:
    """Compile the autoencoder with Adam and weighted losses, XLA explicit (None: ``device.default_jit_compile``).

    Poisson NLL acts on the ``intensity`` output (counts), MAE on the ``amplitude`` output (√counts).
    """
    from ptycho.losses import mae, poisson_nll

    if nll_weight < 0 or mae_weight < 0 or nll_weight + mae_weight == 0:
        raise ValueError(f"loss weights: need nll_weight, mae_weight >= 0 and not both 0, "
                         f"got nll_weight={nll_weight}, mae_weight={mae_weight}")
    losses = [None, mae if mae_weight else None, poisson_nll if nll_weight else None]
    weights = [0.0, float(mae_weight), float(nll_weight)]
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=weights,
                        jit_compile=resolve_jit_compile(jit_compile))


def adapt_input_normalization(model: keras.Model, amplitudes: np.ndarray, force: bool = False,
                              positions: Optional[np.ndarray] = None, batch_size: int = 128,
                              estimates: Optional[np.ndarray] = None,
                              neighbours: Optional[dict] = None) -> bool:
    """Estimate the input standardisation of ``model`` from diffraction amplitudes X = d/s.

    amplitudes: (B, N, N, C) grouped patterns, float, amplitude units of X. positions: (B, 1, 2, C) float32
    ``coords_relative`` of the same groups, needed by the 'retrieval' architecture (its estimate retrieves
    each group's object from its patterns at their offsets). The features the standardiser sees (X, and the
    real-space estimate of the 'retrieval' and 'unet' architectures) are computed by the model's own
    layers; ``estimates`` (B, N, N, C) complex64, the groups' ``retrieval_estimates`` when already computed,
    saves computing them again. A gridsize-1 model that takes scan neighbours (RETRIEVAL-NEIGHBOURS-001) needs
    them, unless ``estimates`` are given: ``neighbours`` = {'neighbour_diffraction': (B, N, N, K) s·X,
    'neighbour_positions': (B, 1, 2, K)} of the same groups (``ptycho.inputs.model_inputs``).
    Returns True if the statistics were set, False if the model has no standardiser
    (``input_normalization='none'``) or it is already adapted and ``force`` is False (a trained model keeps
    the statistics it was trained with).
    """
    try:
        layer = model.get_layer("input_standardizer")
    except ValueError:
        return False
    if layer.is_adapted and not force:
        return False
    X = np.asarray(amplitudes, np.float32)
    layer.adapt(_input_features(model, X, positions, batch_size, estimates, neighbours))
    return True


def _input_features(model: keras.Model, X: np.ndarray, positions, batch_size: int,
                    estimates: Optional[np.ndarray] = None, neighbours: Optional[dict] = None) -> np.ndarray:
    """The features the standardiser of ``model`` sees for amplitudes X (B, N, N, C): (B, N, N, K·C)."""
    names = {layer.name for layer in model.layers}
    if "input_features" not in names:
        return X
    features = model.get_layer("input_features")
    if "group_retrieval" not in names:
        return features(tf.constant(X)).numpy()
    if estimates is not None:
        estimates = np.asarray(estimates, np.complex64)
        if estimates.shape != X.shape:
            raise ValueError(f"estimates: expected shape {X.shape}, got {estimates.shape}")
        return np.concatenate([features(tf.constant(X[start:start + batch_size]),
                                        tf.constant(estimates[start:start + batch_size])).numpy()
                               for start in range(0, X.shape[0], batch_size)])
    if positions is None:
        raise ValueError("positions: the 'retrieval' architecture needs the groups' coords_relative "
                         "(B, 1, 2, C) to estimate its input statistics")
    positions = np.asarray(positions, np.float32)
    if positions.shape != (X.shape[0], 1, 2, X.shape[3]):
        raise ValueError(f"positions: expected shape {(X.shape[0], 1, 2, X.shape[3])}, got {positions.shape}")
    inputs = {"diffraction": X * np.float32(get_intensity_scale(model)), "positions": positions}
    names = [t.name for t in model.inputs]
    if len(names) > 2:
        missing = [name for name in names[2:] if name not in (neighbours or {})]
        if missing:
            raise ValueError(f"neighbours: this model's retrieval also takes each pattern's scan neighbours; "
                             f"give {missing} (ptycho.inputs.model_inputs) or the estimates")
        inputs.update({name: np.asarray(neighbours[name], np.float32) for name in names[2:]})
    estimates = retrieval_estimates(model, inputs, batch_size)
    return _input_features(model, X, None, batch_size, estimates)


def has_group_retrieval(model: keras.Model) -> bool:
    """Whether ``model`` (autoencoder or object head) starts from a ``GroupRetrieval`` estimate."""
    return any(layer.name == "group_retrieval" for layer in model.layers)


def retrieval_estimates(model: keras.Model, inputs: dict, batch_size: int = 64) -> np.ndarray:
    """The ``GroupRetrieval`` estimate of each group: (B, N, N, C) complex64, by a compiled predict.

    inputs: the model's inputs {'diffraction': (B, N, N, C) s·X, 'positions': (B, 1, 2, C)}
    (``ptycho.inputs.model_inputs``). ValueError if the model has no retrieval layer.
    """
    if not has_group_retrieval(model):
        raise ValueError(f"model: {model.name!r} has no 'group_retrieval' layer (architecture 'retrieval')")
    head = keras.Model(model.inputs, model.get_layer("group_retrieval").output, name="retrieval_estimate")
    return np.asarray(head.predict(inputs, batch_size=batch_size, verbose=0), np.complex64)


def model_on_cached_estimates(autoencoder: keras.Model) -> keras.Model:
    """A copy of the autoencoder with its retrieval estimate as a third input: [diffraction, positions, estimate].
    A gridsize-1 model's scan-neighbour inputs feed only the retrieval, so the copy does not take them.

    The ``GroupRetrieval`` layer is left out, so its passes are not recomputed for every batch (ledger
    RETRIEVAL-CACHE-001). The copy has its own layers (rebuilt from the autoencoder's config) holding the
    autoencoder's current weights: a model cut at an intermediate tensor adds nodes to the layers it reuses,
    after which Keras can no longer save the autoencoder, so the original's layers are left untouched and
    :func:`copy_weights` brings the trained weights back. Uncompiled.
    """
    copy = keras.Model.from_config(autoencoder.get_config())
    copy_weights(autoencoder, copy)
    estimate = copy.get_layer("group_retrieval").output
    own = [t for t in copy.inputs if t.name in ("diffraction", "positions")]  # neighbours feed the retrieval only
    return keras.Model([*own, estimate], copy.outputs, name="autoencoder_cached")


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Set every layer of ``target`` that ``source`` has (by name, with weights) to ``source``'s weights."""
    names = {layer.name for layer in source.layers}
    for layer in target.layers:
        if layer.weights and layer.name in names:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def get_intensity_scale(model: keras.Model) -> float:
    """The intensity scale s of a model built by this module."""
    return float(np.exp(model.get_layer("intensity_scale").log_scale.numpy()))


def get_conv_dtype(model: keras.Model) -> str:
    """The compute precision of a model's convolution stack: 'float32' or 'bfloat16'."""
    policy = model.get_layer("enc0_conv_a").dtype_policy.compute_dtype
    return "bfloat16" if policy == "bfloat16" else "float32"


def get_probe(model: keras.Model) -> np.ndarray:
    """The probe (N, N) complex64 of an autoencoder built by this module."""
    layer = model.get_layer("probe")
    return (layer.probe_real.numpy() + 1j * layer.probe_imag.numpy())[..., 0].astype(np.complex64)
