"""Losses (SPEC §5): closed forms, gradients, zero counts at low dose, the deviance form, XLA, Keras registration."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ptycho import losses


def _nll_numpy(counts, intensity):
    """The deviance form of the Poisson NLL (NLL-DEVIANCE-001) in float64, and ε."""
    counts = np.asarray(counts, np.float64)
    intensity = np.asarray(intensity, np.float64)
    eps = 1e-8 * max(1.0, counts.mean())
    return np.mean(intensity - counts - counts * (np.log(intensity + eps) - np.log(counts + eps))), eps


def _plain_nll(y_true, y_pred):
    """The NLL before NLL-DEVIANCE-001, ``mean(Î - I·log(Î + ε))``: same gradient, offset value."""
    counts, intensity = tf.cast(y_true, y_pred.dtype), y_pred
    return tf.reduce_mean(intensity - counts * tf.math.log(intensity + losses.nll_epsilon(counts)))


def _low_dose_pair(rng, shape=(4, 16, 16, 2), nphotons=1e4):
    """Counts and a prediction at ~1e4 photons per pattern, both with exact zeros."""
    per_pixel = nphotons / (shape[1] * shape[2])
    rate = rng.gamma(0.5, 2 * per_pixel, size=shape)
    rate[:, :3] = 0.0                             # dark region: the prediction is exactly 0 there
    counts = rng.poisson(rate).astype(np.float32)
    counts[0, -1, -1, 0] = 7.0                    # nonzero counts where the prediction vanishes...
    rate[0, -1, -1, 0] = 0.0                      # ...the case that gave NaN in the reference
    assert (counts == 0).any() and (rate == 0).any()
    return counts, rate.astype(np.float32)


def _value_and_grad(loss, y_true, y_pred):
    y_pred = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(tf.constant(y_true), y_pred)
    return value, tape.gradient(value, y_pred)


def test_poisson_nll_finite_with_zero_counts():
    """NLL-NAN-LOW-DOSE-001: at 1e4 photons, zero counts and zero predictions give a finite loss and
    gradient, and the value is the NumPy closed form of the deviance (ε = 1e-8·max(1, mean I))."""
    counts, intensity = _low_dose_pair(np.random.default_rng(0))
    value, grad = _value_and_grad(losses.poisson_nll, counts, intensity)
    expected, eps = _nll_numpy(counts, intensity)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5)
    expected_grad = (1.0 - counts / (intensity.astype(np.float64) + eps)) / counts.size
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-4, atol=1e-6 / counts.size)


def test_poisson_nll_matches_closed_form_on_random_data():
    rng = np.random.default_rng(1)
    intensity = rng.uniform(0.1, 500.0, size=(3, 8, 8, 4)).astype(np.float32)
    counts = rng.poisson(intensity).astype(np.float32)
    value = losses.poisson_nll(counts, intensity).numpy()
    np.testing.assert_allclose(value, _nll_numpy(counts, intensity)[0], rtol=1e-5)


def test_poisson_nll_epsilon_scales_with_mean_counts():
    """ε = 1e-8 at low mean counts and 1e-8·mean I above one count per pixel."""
    low = np.full((2, 2), 0.25, np.float32)
    high = np.full((2, 2), 3.0e6, np.float32)
    assert losses.nll_epsilon(tf.constant(low)).numpy() == pytest.approx(1e-8)
    assert losses.nll_epsilon(tf.constant(high)).numpy() == pytest.approx(3e-2, rel=1e-6)


def test_poisson_nll_gradient_closed_form_and_zero_at_truth():
    """∂L/∂Î = (1 - I/(Î + ε)) / n, and it vanishes (to ε) at Î = I."""
    rng = np.random.default_rng(2)
    counts = rng.poisson(50.0, size=(2, 8, 8, 1)).astype(np.float32) + 1.0
    intensity = rng.uniform(1.0, 100.0, size=counts.shape).astype(np.float32)
    _, grad = _value_and_grad(losses.poisson_nll, counts, intensity)
    eps = 1e-8 * max(1.0, counts.mean())
    np.testing.assert_allclose(
        grad.numpy(), (1.0 - counts / (intensity + eps)) / counts.size, rtol=1e-5, atol=1e-6 / counts.size)
    _, grad_at_truth = _value_and_grad(losses.poisson_nll, counts, counts)
    np.testing.assert_allclose(grad_at_truth.numpy(), 0.0, atol=1e-9)


def test_poisson_nll_minimised_at_the_counts():
    """Scaling the prediction away from Î = I raises the loss (Poisson MLE)."""
    counts = np.random.default_rng(3).poisson(20.0, size=(2, 8, 8, 1)).astype(np.float32) + 1.0
    at_truth = losses.poisson_nll(counts, counts).numpy()
    for factor in (0.8, 0.95, 1.05, 1.25):
        assert losses.poisson_nll(counts, factor * counts).numpy() > at_truth


def test_poisson_nll_has_the_gradient_of_the_plain_nll():
    """NLL-DEVIANCE-001: the deviance differs from mean(Î - I·log(Î + ε)) by a term of the data alone, so the
    gradient with respect to Î is the same (to 1e-6 of its largest element), at high and at low counts."""
    rng = np.random.default_rng(6)
    for rate in (20.0, 1e5):
        counts = rng.poisson(rate, size=(3, 8, 8, 2)).astype(np.float32)
        intensity = (counts * rng.uniform(0.3, 3.0, size=counts.shape)).astype(np.float32)
        intensity[0, 0, 0, 0] = 0.0  # a vanishing prediction, and zero counts, are in the sample
        counts[0, 0, 1, 0] = 0.0
        _, grad = _value_and_grad(losses.poisson_nll, counts, intensity)
        _, grad_plain = _value_and_grad(_plain_nll, counts, intensity)
        scale = np.max(np.abs(grad_plain.numpy()))
        np.testing.assert_allclose(grad.numpy(), grad_plain.numpy(), rtol=1e-6, atol=1e-6 * scale)
        # and the values differ by the data-only term mean(I - I·log(I + ε))
        eps = _nll_numpy(counts, counts)[1]
        data_term = np.mean(counts - counts * np.log(counts.astype(np.float64) + eps))
        np.testing.assert_allclose(losses.poisson_nll(counts, intensity).numpy(),
                                   _plain_nll(tf.constant(counts), tf.constant(intensity)).numpy() - data_term,
                                   rtol=1e-4, atol=1e-5 * abs(data_term))


def test_poisson_nll_is_zero_at_the_counts_and_never_negative():
    """NLL-DEVIANCE-001: 0 at Î = I (any dose, zeros included), ≥ 0 elsewhere, finite at I = 0 or Î = 0."""
    rng = np.random.default_rng(7)
    for rate in (0.5, 50.0, 1e5, 1e7):
        counts = rng.poisson(rate, size=(2, 8, 8, 1)).astype(np.float32)
        counts[0, 0, 0, 0] = 0.0
        assert losses.poisson_nll(counts, counts).numpy() == 0.0
        for _ in range(5):
            intensity = (counts * rng.uniform(0.0, 2.0, size=counts.shape)).astype(np.float32)
            intensity[1, 0, 0, 0] = 0.0                  # Î = 0 where I > 0
            intensity[0, 0, 0, 0] = 3.0                  # Î > 0 where I = 0
            value, grad = _value_and_grad(losses.poisson_nll, counts, intensity)
            assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))
            assert value.numpy() >= 0.0
    zeros = np.zeros((1, 4, 4, 1), np.float32)
    value, grad = _value_and_grad(losses.poisson_nll, zeros, zeros)  # I = Î = 0 everywhere
    assert value.numpy() == 0.0 and np.all(np.isfinite(grad.numpy()))


def test_losses_compile_with_xla():
    counts, intensity = _low_dose_pair(np.random.default_rng(4))
    for loss, expected in (
        (losses.poisson_nll, _nll_numpy(counts, intensity)[0]),
        (losses.mae, np.mean(np.abs(intensity.astype(np.float64) - counts))),
    ):
        compiled = tf.function(loss, jit_compile=True)
        np.testing.assert_allclose(compiled(counts, intensity).numpy(), expected, rtol=1e-5)


def test_mae_closed_form_and_gradient():
    rng = np.random.default_rng(5)
    amp_true = rng.uniform(0.0, 30.0, size=(3, 8, 8, 2)).astype(np.float32)
    amp_pred = amp_true + rng.normal(0.0, 2.0, size=amp_true.shape).astype(np.float32)
    value, grad = _value_and_grad(losses.mae, amp_true, amp_pred)
    np.testing.assert_allclose(value.numpy(), np.mean(np.abs(amp_pred - amp_true)), rtol=1e-6)
    np.testing.assert_allclose(grad.numpy(), np.sign(amp_pred - amp_true) / amp_true.size, rtol=1e-6)
    assert losses.mae(amp_true, amp_true).numpy() == 0.0


def test_losses_are_registered_and_usable_by_name():
    for name in ("poisson_nll", "mae"):
        fn = keras.saving.get_registered_object(f"ptycho>{name}")
        assert fn is getattr(losses, name)
        assert keras.losses.deserialize(keras.losses.serialize(fn)) is fn


def test_losses_cast_integer_predictions_and_keep_float64():
    """Integer predictions are cast to float32; float64 inputs stay float64 (no silent downcast)."""
    counts = np.array([[0.0, 4.0], [9.0, 1.0]])
    for loss in (losses.poisson_nll, losses.mae):
        as_int = loss(counts, tf.constant([[1, 4], [9, 2]], tf.int32))
        as_float = loss(counts.astype(np.float32), np.array([[1, 4], [9, 2]], np.float32))
        assert as_int.dtype == tf.float32
        np.testing.assert_allclose(as_int.numpy(), as_float.numpy(), rtol=1e-6)
        as_f64 = loss(counts, counts + 0.5)
        assert as_f64.dtype == tf.float64
