"""NLL-DEVIANCE-001: near its minimum the Poisson NLL must resolve small changes at 1e9-like doses in float32.

At ~1e5 counts per pixel the plain NLL ``mean(Î - I·log(Î + ε))`` is ≈ −1.05e6 per element, so in float32
(spacing 0.125 there) a prediction changed by 1e-4 relative — a deviance change of ≈ I·(1e-4)²/2 = 5e-4 per
element — gives the same loss; the validation loss then looked constant every epoch and EarlyStopping fired.
The deviance form ``poisson_nll`` resolves the change.
"""
import numpy as np
import tensorflow as tf

from ptycho import losses


def _plain_nll(y_true, y_pred):
    """The NLL before NLL-DEVIANCE-001 (same gradient, value offset by a data-only term)."""
    counts, intensity = tf.constant(y_true), tf.constant(y_pred)
    return float(tf.reduce_mean(intensity - counts * tf.math.log(intensity + losses.nll_epsilon(counts))).numpy())


def _deviance64(counts, intensity):
    counts, intensity = np.asarray(counts, np.float64), np.asarray(intensity, np.float64)
    return float(np.mean(intensity - counts - counts * np.log(intensity / counts)))


def test_nll_resolves_a_1e_4_change_at_high_dose():
    rng = np.random.default_rng(0)
    rate = rng.uniform(0.5e5, 1.5e5, size=(16, 32, 32, 1))    # ≈ 1e8 counts per 32×32 pattern
    counts = rng.poisson(rate).astype(np.float32)
    for base in (counts, rate.astype(np.float32)):              # at the counts, and at the noise-free rate
        first = base
        second = (base.astype(np.float64) * (1 + 1e-4)).astype(np.float32)
        expected = _deviance64(counts, second) - _deviance64(counts, first)   # float64 truth, ≈ 5e-4
        assert abs(expected) > 1e-4
        change = float(losses.poisson_nll(counts, second).numpy()) - float(losses.poisson_nll(counts, first).numpy())
        assert change != 0.0
        np.testing.assert_allclose(change, expected, rtol=0.05)
        plain_change = _plain_nll(counts, second) - _plain_nll(counts, first)
        # the old form cannot see it: no change at all, or one that is mostly float32 round-off
        assert plain_change == 0.0 or abs(plain_change - expected) > 0.5 * abs(expected), (plain_change, expected)
