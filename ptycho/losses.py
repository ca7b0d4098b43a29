"""Training losses on the model's diffraction outputs (SPEC §5).

Both losses are plain functions of ``(y_true, y_pred)`` built from TF ops, so Keras can use them in
``compile`` and XLA can compile them. Each returns the scalar mean over *all* elements (batch, pixels
and channels), not a per-sample vector.

Poisson negative log-likelihood on counts (constant ``log I!`` dropped)::

    L(I, Î) = mean( Î - I · log(Î + ε) ),      ε = 1e-8 · max(1, mean(I))

    y_true = I = (s·X)²   measured counts,            (B, N, N, C) float32, photons
    y_pred = Î = (s·Â)²   predicted intensity,        (B, N, N, C) float32, photons

ε keeps ``log`` finite where the prediction vanishes (the reference produced NaN at 1e4 photons,
ledger NLL-NAN-LOW-DOSE-001). It scales with the mean count so that it stays negligible at any dose,
is computed per call from ``y_true`` only and carries no gradient. ∂L/∂Î = (1 - I/(Î + ε)) / n_elements,
which vanishes at Î = I (the maximum-likelihood point, up to ε).

Mean absolute error on amplitudes::

    L(A, Â) = mean| Â - A |,   y_true = s·X, y_pred = s·Â   (B, N, N, C) float32, √photons
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: Relative size of the NLL regulariser: ε = NLL_EPSILON_REL · max(1, mean I).
NLL_EPSILON_REL = 1e-8


def _as_pair(y_true, y_pred):
    """Convert both to tensors of ``y_pred``'s (floating) dtype."""
    y_pred = tf.convert_to_tensor(y_pred)
    if not y_pred.dtype.is_floating:
        y_pred = tf.cast(y_pred, tf.float32)
    return tf.cast(y_true, y_pred.dtype), y_pred


def nll_epsilon(y_true):
    """ε = 1e-8 · max(1, mean(y_true)) as a gradient-free scalar tensor of ``y_true``'s dtype."""
    mean_counts = tf.reduce_mean(y_true)
    eps = NLL_EPSILON_REL * tf.maximum(tf.ones_like(mean_counts), mean_counts)
    return tf.stop_gradient(eps)


@keras.saving.register_keras_serializable(package="ptycho")
def poisson_nll(y_true, y_pred):
    """Poisson NLL ``mean(Î - I·log(Î + ε))``; scalar.

    y_true : (..., ) float, measured counts I = (s·X)² (photons, ≥ 0)
    y_pred : (..., ) float, predicted intensity Î = (s·Â)² (photons, ≥ 0), same shape
    Returns a scalar tensor of ``y_pred``'s dtype. Finite whenever I and Î are finite and ≥ 0.
    """
    counts, intensity = _as_pair(y_true, y_pred)
    eps = nll_epsilon(counts)
    return tf.reduce_mean(intensity - counts * tf.math.log(intensity + eps))


@keras.saving.register_keras_serializable(package="ptycho")
def mae(y_true, y_pred):
    """Mean absolute error ``mean|Â - A|`` on amplitudes; scalar.

    y_true : (..., ) float, measured amplitude s·X (√photons)
    y_pred : (..., ) float, predicted amplitude s·Â (√photons), same shape
    """
    amplitude, predicted = _as_pair(y_true, y_pred)
    return tf.reduce_mean(tf.abs(predicted - amplitude))
