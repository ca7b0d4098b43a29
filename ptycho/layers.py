"""The custom Keras layers of the PtychoPINN model (``ptycho.model`` wires them together).

B groups of C = gridsize² patterns of N×N pixels; P is the per-group canvas side::

    IntensityScale           x · s  or  x / s             s = exp(log_scale), one weight, saved with the model
    HolographicEstimate      (B, N, N, C) -> (B, N, N, 3C)  [X, Re o, Im o]: back-propagated exit-wave estimate
    EstimateFeatures         X, estimate -> (B, N, N, 3C)   [X, Re e, Im e] (estimate: ptycho.group_retrieval)
    DiffractionStandardizer  (B, N, N, K·C), per pixel     (x - mean) / std, statistics from training data
    FirstChannels            (B, H, W, F) -> (B, H, W, n)
    ComplexPatches           logits (B, N/2, N/2, C) ×2 -> (B, N, N, C) complex64
    ResidualComplexPatches   logits ×2, estimate -> (B, N, N, C) complex64: the logits correct the estimate
    MergeGroup               patches, positions -> (B, P, P, 1) complex64 canvas
    CentreCrop               (B, P, P, K) -> (B, N, N, K)
    ExtractGroup             canvas, positions -> (B, N, N, C) complex64
    ProbeIllumination        (B, N, N, C) · probe (N, N)   the probe is a weight, saved with the model
    FarFieldAmplitude        |fftshift(fft2(·, 'ortho'))|  complex64 -> float32
    Square                   amplitude -> intensity

Each is registered with Keras as ``ptycho>ClassName`` (``register_keras_serializable(package="ptycho")``), so
archives resolve them by that name whichever module defined them: archives written before this module
existed name the module ``ptycho.model``, which imports this one. Constructing a layer reads no global state.
The physics layers (MergeGroup, ExtractGroup, ProbeIllumination, FarFieldAmplitude) compute through the
operators of ``ptycho.operators``.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from ptycho import operators

_SERIALIZABLE = keras.saving.register_keras_serializable(package="ptycho")
_ILLUMINATE, _FAR_FIELD = operators.Illuminate(), operators.FarField()
_WINDOW_EPS = 1e-3
#: Floor added to the per-pixel input std, as a fraction of its mean over pixels.
_STD_FLOOR = 0.01


@_SERIALIZABLE
class IntensityScale(keras.layers.Layer):
    """Multiply (or, with ``inverse=True``, divide) by the model's intensity scale s.

    s = exp(log_scale) is one scalar weight, so the same layer instance is called at the input
    (d / s) and at the output (s · amp) of the model and is saved with it.
    """

    def __init__(self, initial_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not (math.isfinite(initial_scale) and initial_scale > 0):
            raise ValueError(f"IntensityScale: initial_scale must be finite and > 0, got {initial_scale}")
        self.initial_scale = float(initial_scale)

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            shape=(), name="log_intensity_scale", trainable=self.trainable,
            initializer=keras.initializers.Constant(math.log(self.initial_scale)))

    def call(self, x, inverse=False):
        scale = tf.cast(tf.exp(self.log_scale), x.dtype)
        return x / scale if inverse else x * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale}


@_SERIALIZABLE
class DiffractionStandardizer(keras.layers.Layer):
    """Per-pixel standardisation of the network's input features: (x - mean) / std.

    x: (B, N, N, K·C) float32, K feature kinds of C channels each, kind-major (channel k·C + c) — the
    diffraction amplitudes X = d/s (K = 1) and, with ``holographic_input``, the real and imaginary parts
    of the back-propagated exit-wave estimate (K = 3). ``mean`` and ``std`` are (N, N, K) float32
    non-trainable weights shared by the C channels of a kind, estimated from training data by ``adapt``
    (no ground truth is involved) and saved with the model; ``adapted`` (0 or 1) records whether that
    happened. Before adaptation the layer is the identity (mean 0, std 1).

    Why (ledger INPUT-STANDARDIZE-001): every pattern is dominated by the same central peak of the
    probe's far field, so raw inputs differ from each other by a few per cent and a ReLU network's output
    collapses to an input-independent object within a few Adam steps.
    """

    def __init__(self, N: int, kinds: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.N, self.kinds = int(N), int(kinds)

    def build(self, input_shape):
        shape = (self.N, self.N, self.kinds)
        self.mean = self.add_weight(shape=shape, name="mean", initializer="zeros", trainable=False)
        self.std = self.add_weight(shape=shape, name="std", initializer="ones", trainable=False)
        self.adapted = self.add_weight(shape=(), name="adapted", initializer="zeros", trainable=False)

    def _by_kind(self, features: np.ndarray) -> np.ndarray:
        """(B, N, N, K·C) -> (B·C, N, N, K) samples of each kind."""
        B, _, _, KC = features.shape
        C = KC // self.kinds
        return features.reshape(B, self.N, self.N, self.kinds, C).transpose(0, 4, 1, 2, 3).reshape(
            B * C, self.N, self.N, self.kinds)

    def adapt(self, features: np.ndarray) -> None:
        """Set mean and std per pixel and kind from features (B, N, N, K·C) float."""
        X = np.asarray(features, np.float64)
        if X.ndim != 4 or X.shape[1:3] != (self.N, self.N) or X.shape[3] % self.kinds or X.shape[0] == 0:
            raise ValueError(f"features: expected (B, {self.N}, {self.N}, {self.kinds}·C) with B >= 1, "
                             f"got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("features: contain non-finite values")
        X = self._by_kind(X)
        std = X.std(axis=0)
        std = std + _STD_FLOOR * np.maximum(std.mean(axis=(0, 1)), 1e-12)  # pixels that never change
        self.mean.assign(X.mean(axis=0).astype(np.float32))
        self.std.assign(std.astype(np.float32))
        self.adapted.assign(1.0)

    @property
    def is_adapted(self) -> bool:
        return bool(self.adapted.numpy() > 0.5)

    def call(self, x):
        C = x.shape[-1] // self.kinds
        mean = tf.repeat(self.mean, C, axis=-1)  # kind-major: channel k·C + c uses kind k
        std = tf.repeat(self.std, C, axis=-1)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "N": self.N, "kinds": self.kinds}


@_SERIALIZABLE
class HolographicEstimate(keras.layers.Layer):
    """Back-propagate measured amplitudes with the probe's far-field phase: a real-space object estimate.

    For each pattern, ψ = Fᴴ(X · e^{i·arg F[P]}) (``operators.FarField.adj``: ifft2(ifftshift(·)), 'ortho'), then
    o = ψ · conj(P) / (|P|² + 0.05·max|P|²). With a defocused (complex) probe the probe's far field
    overlaps the object's scattering and acts as a holographic reference, so Re o and Im o correlate
    with the object patch in real space (ledger HOLOGRAPHIC-INPUT-001); the network then refines a
    real-space image instead of learning a Fourier inversion.

    Input (B, N, N, C) float32 amplitudes X = d/s (zero frequency at N/2). Output (B, N, N, 3·C) float32:
    [X, Re o, Im o], kind-major. The probe is a non-trainable weight set with ``set_probe``.
    """

    def __init__(self, N: int, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)

    def build(self, input_shape):
        shape = (self.N, self.N)
        self.probe_real = self.add_weight(shape=shape, name="probe_real", initializer="zeros", trainable=False)
        self.probe_imag = self.add_weight(shape=shape, name="probe_imag", initializer="zeros", trainable=False)

    def set_probe(self, probe: np.ndarray) -> None:
        probe = np.asarray(probe).reshape(self.N, self.N)
        self.probe_real.assign(probe.real.astype(np.float32))
        self.probe_imag.assign(probe.imag.astype(np.float32))

    def call(self, x):
        probe = tf.complex(self.probe_real, self.probe_imag)
        far = tf.signal.fftshift(tf.signal.fft2d(probe))
        magnitude = tf.abs(far)
        phase = far / tf.cast(magnitude + 1e-6 * tf.reduce_max(magnitude) + 1e-30, tf.complex64)
        power = tf.abs(probe) ** 2
        inverse = tf.math.conj(probe) / tf.cast(power + 0.05 * tf.reduce_max(power) + 1e-30, tf.complex64)
        field = tf.complex(x, tf.zeros_like(x)) * phase[..., None]  # (B, N, N, C)
        estimate = _FAR_FIELD.adj(field) * inverse[..., None]
        return tf.concat([x, tf.math.real(estimate), tf.math.imag(estimate)], axis=-1)

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], self.N, self.N, 3 * x.shape[-1]), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "N": self.N}


@_SERIALIZABLE
class EstimateFeatures(keras.layers.Layer):
    """[X, Re e, Im e]: amplitudes and a complex estimate as network features, (B, N, N, C) ×2 -> (B, N, N, 3C)."""

    def call(self, x, estimate):
        return tf.concat([x, tf.math.real(estimate), tf.math.imag(estimate)], axis=-1)

    def compute_output_spec(self, x, estimate):
        return keras.KerasTensor((x.shape[0], x.shape[1], x.shape[2], 3 * x.shape[-1]), dtype="float32")


@_SERIALIZABLE
class FirstChannels(keras.layers.Layer):
    """Keep the first ``n`` feature channels: (B, H, W, F) -> (B, H, W, n)."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, x):
        return x[..., : self.n]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.n)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@_SERIALIZABLE
class ComplexPatches(keras.layers.Layer):
    """Amplitude and phase logits on the central N/2 window -> complex patches, zero elsewhere.

    Inputs (B, N/2, N/2, C) float32 each; output (B, N, N, C) complex64 with
    amplitude ``amplitude_max · sigmoid(a)`` and phase ``π · tanh(φ)``.
    """

    def __init__(self, N: int, amplitude_max: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)
        self.amplitude_max = float(amplitude_max)

    def call(self, amplitude_logits, phase_logits):
        amplitude = self.amplitude_max * tf.sigmoid(amplitude_logits)
        phase = math.pi * tf.tanh(phase_logits)
        patch = tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))
        pad = self.N // 4
        return tf.pad(patch, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

    def compute_output_spec(self, amplitude_logits, phase_logits):
        shape = (amplitude_logits.shape[0], self.N, self.N, amplitude_logits.shape[-1])
        return keras.KerasTensor(shape, dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N, "amplitude_max": self.amplitude_max}


@_SERIALIZABLE
class ResidualComplexPatches(ComplexPatches):
    """``ComplexPatches`` whose logits correct a prior estimate: with zero logits the output *is* the estimate.

    Inputs: amplitude and phase logits (B, N/2, N/2, C) float32, estimate (B, N, N, C) complex64 (its central
    N/2 window is used). Amplitude = a_max·sigmoid(a + logit(|e|/a_max)), phase = π·tanh(φ + atanh(arg e/π)),
    with |e|/a_max and arg e/π clipped to [ε, 1 − ε] and [−1 + ε, 1 − ε] (ε = 1e-3). Output as
    ``ComplexPatches``: (B, N, N, C) complex64, zero outside the central window.
    """

    def call(self, amplitude_logits, phase_logits, estimate):
        q = self.N // 4
        centre = estimate[:, q: self.N - q, q: self.N - q, :]
        eps = 1e-3
        ratio = tf.clip_by_value(tf.abs(centre) / self.amplitude_max, eps, 1.0 - eps)
        angle = tf.clip_by_value(tf.math.angle(centre) / math.pi, -1.0 + eps, 1.0 - eps)
        prior_amplitude = tf.math.log(ratio) - tf.math.log1p(-ratio)
        prior_phase = tf.math.atanh(angle)
        return super().call(amplitude_logits + prior_amplitude, phase_logits + prior_phase)

    def compute_output_spec(self, amplitude_logits, phase_logits, estimate):
        return super().compute_output_spec(amplitude_logits, phase_logits)


@_SERIALIZABLE
class MergeGroup(keras.layers.Layer):
    """Per-group merge of C patches onto one P×P canvas, normalised by the window count.

    Inputs: patches (B, N, N, C) complex64 (zero outside the central N/2 window), positions
    (B, 1, 2, C) float32 ``coords_relative``. Output (B, P, P, 1) complex64. One canvas per group.
    ``use_xla`` picks the translation path at construction; ``call`` reads no global state.
    """

    def __init__(self, N: int, C: int, padded_size: int, use_xla: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.N, self.C, self.padded_size, self.use_xla = int(N), int(C), int(padded_size), bool(use_xla)
        self._merge = operators.MergeGroup(self.N, self.C, self.padded_size, self.use_xla)

    def call(self, patches, positions):
        window = np.zeros((1, self.N, self.N, self.C), np.float32)
        quarter = self.N // 4
        window[:, quarter: self.N - quarter, quarter: self.N - quarter, :] = 1.0
        windows = tf.broadcast_to(tf.constant(window), tf.concat([tf.shape(positions)[:1], window.shape[1:]], 0))
        canvas = self._merge.fwd(patches, positions)
        count = self._merge.fwd(windows, positions)
        return canvas / tf.cast(count + _WINDOW_EPS, canvas.dtype)

    def compute_output_spec(self, patches, positions):
        return keras.KerasTensor((patches.shape[0], self.padded_size, self.padded_size, 1), dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N, "C": self.C, "padded_size": self.padded_size,
                "use_xla": self.use_xla}


@_SERIALIZABLE
class CentreCrop(keras.layers.Layer):
    """Central N×N crop: (B, P, P, K) -> (B, N, N, K)."""

    def __init__(self, N: int, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)

    def call(self, canvas):
        start = (canvas.shape[1] - self.N) // 2
        return canvas[:, start: start + self.N, start: start + self.N, :]

    def compute_output_spec(self, canvas):
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, canvas.shape[-1]), dtype=canvas.dtype)

    def get_config(self):
        return {**super().get_config(), "N": self.N}


@_SERIALIZABLE
class ExtractGroup(keras.layers.Layer):
    """Re-extract the C patches of a group from its canvas (the adjoint of the merge's translation).

    Inputs: canvas (B, P, P, 1) complex64, positions (B, 1, 2, C). Output (B, N, N, C) complex64.
    ``use_xla`` picks the translation path at construction; ``call`` reads no global state.
    """

    def __init__(self, N: int, C: int, use_xla: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.N, self.C, self.use_xla = int(N), int(C), bool(use_xla)
        self._merge = operators.MergeGroup(self.N, self.C, use_xla=self.use_xla)  # adj reads P from the canvas

    def call(self, canvas, positions):
        return self._merge.adj(canvas, positions)

    def compute_output_spec(self, canvas, positions):
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, self.C), dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N, "C": self.C, "use_xla": self.use_xla}


@_SERIALIZABLE
class ProbeIllumination(keras.layers.Layer):
    """Multiply object patches (B, N, N, C) complex64 by the probe (N, N), a Keras weight.

    The probe is stored as two float32 weights (real, imaginary), non-trainable by default; its values
    are assigned after construction (see ``set_probe``) and saved with the model.
    """

    def __init__(self, N: int, **kwargs):
        super().__init__(**kwargs)
        self.N = int(N)

    def build(self, input_shape):
        self.probe_real = self.add_weight(shape=(self.N, self.N, 1), name="probe_real",
                                          initializer="zeros", trainable=self.trainable)
        self.probe_imag = self.add_weight(shape=(self.N, self.N, 1), name="probe_imag",
                                          initializer="zeros", trainable=self.trainable)

    def set_probe(self, probe: np.ndarray) -> None:
        probe = np.asarray(probe).reshape(self.N, self.N, 1)
        self.probe_real.assign(probe.real.astype(np.float32))
        self.probe_imag.assign(probe.imag.astype(np.float32))

    def call(self, patches):
        return _ILLUMINATE.fwd(patches, tf.complex(self.probe_real, self.probe_imag))

    def compute_output_spec(self, patches):
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N}


@_SERIALIZABLE
class FarFieldAmplitude(keras.layers.Layer):
    """|fftshift(fft2(field, norm='ortho'))| per channel: (B, N, N, C) complex64 -> float32."""

    def call(self, field):
        return _FAR_FIELD.amplitude(field)

    def compute_output_spec(self, field):
        return keras.KerasTensor(field.shape, dtype="float32")


@_SERIALIZABLE
class Square(keras.layers.Layer):
    """Elementwise x²: amplitude (√counts) -> intensity (counts)."""

    def call(self, x):
        return tf.square(x)

    def compute_output_shape(self, input_shape):
        return input_shape
