"""Training losses on the model's diffraction outputs (SPEC §5).

Both losses are plain functions of ``(y_true, y_pred)`` built from TF ops, so Keras can use them in
``compile`` and XLA can compile them. Each returns the scalar mean over *all* elements (batch, pixels
and channels), not a per-sample vector.

Poisson negative log-likelihood on counts, in its *deviance* form (ledger NLL-DEVIANCE-001)::

    L(I, Î) = mean( Î − I − I · (log(Î + ε) − log(I + ε)) ),      ε = 1e-8 · max(1, mean(I))

    y_true = I = (s·X)²   measured counts,            (B, N, N, C) float32, photons
    y_pred = Î = (s·Â)²   predicted intensity,        (B, N, N, C) float32, photons

This is the NLL ``mean(Î − I·log(Î + ε))`` minus a term of the data alone, ``mean(I − I·log(I + ε))``
(and the constant ``log I!``): the gradient with respect to Î is the same,
∂L/∂Î = (1 − I/(Î + ε)) / n_elements, but the value is ≥ 0 (up to ε, per element), 0 at Î = I, and
resolves small changes near the minimum. The plain NLL is dominated by −I·log I: at ~1e5 counts per pixel
(1e9-like doses) it is ≈ −1.06e6 per element, where float32 is spaced 0.125, so a prediction changed by
1e-4 relative gave the same value, and the validation loss looked frozen to EarlyStopping and
ReduceLROnPlateau. Each element is ``d − I·log1p(d / (I + ε))`` with d = Î − I, which keeps float32
accuracy when Î ≈ I; where Î < (I + ε)/2 it uses ``log((Î + ε)/(I + ε))`` instead, finite at Î = 0.

ε keeps ``log`` finite where the prediction vanishes (the reference produced NaN at 1e4 photons,
ledger NLL-NAN-LOW-DOSE-001). It scales with the mean count so that it stays negligible at any dose,
is computed per call from ``y_true`` only and carries no gradient.

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
    """Poisson NLL as a deviance, ``mean(Î − I − I·(log(Î + ε) − log(I + ε)))``; scalar (module docstring).

    y_true : (..., ) float, measured counts I = (s·X)² (photons, ≥ 0)
    y_pred : (..., ) float, predicted intensity Î = (s·Â)² (photons, ≥ 0), same shape
    Returns a scalar tensor of ``y_pred``'s dtype: ≥ 0 up to ε effects, 0 at Î = I, with the gradient of
    ``mean(Î − I·log(Î + ε))``. Finite whenever I and Î are finite and ≥ 0.
    """
    counts, intensity = _as_pair(y_true, y_pred)
    eps = nll_epsilon(counts)
    diff = intensity - counts
    reference = counts + eps
    ratio = diff / reference
    near = ratio > -0.5  # log1p is accurate here; below, log of the ratio (finite at Î = 0)
    log_ratio = tf.where(near, tf.math.log1p(tf.where(near, ratio, tf.zeros_like(ratio))),
                         tf.math.log(tf.where(near, tf.ones_like(ratio), (intensity + eps) / reference)))
    return tf.reduce_mean(diff - counts * log_ratio)


@keras.saving.register_keras_serializable(package="ptycho")
def mae(y_true, y_pred):
    """Mean absolute error ``mean|Â - A|`` on amplitudes; scalar.

    y_true : (..., ) float, measured amplitude s·X (√photons)
    y_pred : (..., ) float, predicted amplitude s·Â (√photons), same shape
    """
    amplitude, predicted = _as_pair(y_true, y_pred)
    return tf.reduce_mean(tf.abs(predicted - amplitude))
