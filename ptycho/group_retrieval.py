"""Iterative phase retrieval within each group of C patterns: the real-space estimate the default network refines.

``GroupRetrieval`` is a Keras layer of the model (architecture 'retrieval', ``ptycho.model``): it runs a few
passes of a PIE-type solver on each group's own patterns, through the model's own operators
(``ptycho.operators``), and hands the network an estimate of each pattern's object patch (ledger
GROUP-RETRIEVAL-001). The whole-scan solver is ``ptycho.refine``; this one sees one group at a time, so it runs
inside a single forward pass, batched over groups. Importing this module runs no TF op.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ptycho import operators

__all__ = ["GroupRetrieval"]

_FAR_FIELD = operators.FarField()
#: GroupRetrieval's modulus projection X·ψ/(|ψ| + floor): floor = this × max|ψ| of the pattern, so far-field
#: pixels where the current wave is round-off (|ψ| ≈ 0) take no phase from that round-off.
_MODULUS_FLOOR = 1e-3


@keras.saving.register_keras_serializable(package="ptycho")
class GroupRetrieval(keras.layers.Layer):
    """A few passes of iterative phase retrieval on each group's own C patterns: a real-space object estimate.

    For each group the canvas (B, P, P, 1) starts at ones and takes ``iterations`` parallel PIE-type passes
    through the model's own forward model (``operators.ExtractGroup``, the probe, ``operators.FarField``),
    with heavy-ball momentum μ evaluated ahead (Nesterov): with a = canvas + μ·v,
    ψ = F[P·E(a)], ψ' = X·ψ/(|ψ| + 1e-3·max|ψ|),
    v ← μ·v + Eᴴ(conj(P)·Fᴴ(ψ' − ψ)) / (Eᴴ(|P|²) + α·max Eᴴ(|P|²)), canvas += v, α = 0.1. The momentum
    carries the slowly converging low spatial frequencies of the phase (RETRIEVAL-MOMENTUM-001; μ = 0 is the
    plain update, the default here so that archives saved before it load unchanged). It uses only the
    measured amplitudes, the scan offsets within the group and the known probe; with gridsize 2 the overlap of
    the four patterns removes the twin ambiguity of a single pattern (ledger GROUP-RETRIEVAL-001), and at
    gridsize 1 the model passes each pattern's scan neighbours for the same purpose (RETRIEVAL-NEIGHBOURS-001). It is
    differentiable, but in the model nothing trainable lies upstream of it (unless the intensity scale is
    trainable), so training does not back-propagate through its passes.

    Inputs: x (B, N, N, C) float32 amplitudes X = d/s; positions (B, 1, 2, C) float32 ``coords_relative``.
    Output (B, N, N, keep) complex64: the estimate read back in the frames of the first ``keep`` patterns
    (None: all C), E(canvas). A gridsize-1 model passes its pattern first and its scan neighbours after it,
    and keeps one (ledger RETRIEVAL-NEIGHBOURS-001).
    The probe is a non-trainable weight set with ``set_probe`` (the data's probe; a probe trained later in
    the ``probe`` layer does not change it).
    """

    def __init__(self, N: int, C: int, padded_size: int, iterations: int = 10, use_xla: bool = True,
                 momentum: float = 0.0, keep: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.N, self.C, self.padded_size = int(N), int(C), int(padded_size)
        self.keep = None if keep is None else int(keep)
        self.iterations, self.use_xla, self.momentum = int(iterations), bool(use_xla), float(momentum)
        self._extract = operators.ExtractGroup(self.N, self.C, self.padded_size, self.use_xla)
        self._read_back = operators.ExtractGroup(self.N, self.keep or self.C, self.padded_size, self.use_xla)

    def build(self, input_shape):
        shape = (self.N, self.N, 1)
        self.probe_real = self.add_weight(shape=shape, name="probe_real", initializer="zeros", trainable=False)
        self.probe_imag = self.add_weight(shape=shape, name="probe_imag", initializer="zeros", trainable=False)

    def set_probe(self, probe: np.ndarray) -> None:
        probe = np.asarray(probe).reshape(self.N, self.N, 1)
        self.probe_real.assign(probe.real.astype(np.float32))
        self.probe_imag.assign(probe.imag.astype(np.float32))

    def call(self, x, positions):
        probe = tf.complex(self.probe_real, self.probe_imag)
        amplitude = tf.cast(x, tf.float32)
        power = tf.cast(tf.abs(probe) ** 2, tf.complex64) * tf.ones_like(tf.cast(amplitude, tf.complex64))
        norm = tf.math.real(self._extract.adj(power, offsets=positions))
        step = tf.cast(1.0 / (norm + 0.1 * tf.reduce_max(norm, axis=(1, 2, 3), keepdims=True) + 1e-30),
                       tf.complex64)
        momentum = tf.constant(self.momentum, tf.complex64)

        def one_pass(i, canvas, velocity):
            ahead = canvas + momentum * velocity
            wave = _FAR_FIELD.fwd(self._extract.fwd(ahead, offsets=positions) * probe)
            magnitude = tf.abs(wave)
            floor = _MODULUS_FLOOR * tf.reduce_max(magnitude, axis=(1, 2), keepdims=True)
            modulus = tf.cast(amplitude / (magnitude + floor + 1e-30), tf.complex64)
            update = tf.math.conj(probe) * _FAR_FIELD.adj(wave * modulus - wave)
            velocity = momentum * velocity + self._extract.adj(update, offsets=positions) * step
            return i + 1, canvas + velocity, velocity

        canvas = tf.ones((tf.shape(x)[0], self.padded_size, self.padded_size, 1), tf.complex64)
        # A symbolic loop: XLA compiles one pass, not `iterations` unrolled copies (first predict at N=128:
        # 10.3 s unrolled, 3.8 s as a loop).
        _, canvas, _ = tf.while_loop(lambda i, *_: i < self.iterations, one_pass,
                                     (tf.constant(0), canvas, tf.zeros_like(canvas)),
                                     maximum_iterations=self.iterations)
        return self._read_back.fwd(canvas, offsets=positions[..., :self.keep or self.C])

    def compute_output_spec(self, x, positions):
        return keras.KerasTensor((x.shape[0], self.N, self.N, self.keep or self.C), dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N, "C": self.C, "padded_size": self.padded_size,
                "iterations": self.iterations, "use_xla": self.use_xla, "momentum": self.momentum, "keep": self.keep}
