"""The PtychoPINN model: a CNN that maps diffraction to object patches, closed by a physics forward model.

Forward model (per group of C = gridsize² scan positions, SPEC §4)::

    x        = d / s                                  d: (B, N, N, C) float32, √counts
    x        = (x - mean) / std                       per pixel, from training data (input_normalization)
    A, φ     = decoders(encoder(x))                   (B, N/2, N/2, C) each
    O_c      = pad_N(a_max·sigmoid(A) · exp(iπ·tanh(φ)))          (B, N, N, C) complex64
    canvas   = merge(O, r) / (merge(window, r) + 1e-3)            (B, P, P, 1), r = coords_relative
    object   = crop_N(canvas)                                      output 0
    Ô_c      = extract(canvas, r)                                  (B, N, N, C)
    amp      = s · |fftshift(fft2(P · Ô_c, norm='ortho'))|          output 1, √counts
    intensity = amp²                                               output 2, counts

``create_model_with_gridsize`` builds ``(autoencoder, diffraction_to_obj)`` sharing weights. The probe and
the intensity scale ``s`` (stored as log s) are Keras weights of the model, so each model keeps its own.

Importing this module builds nothing: ``autoencoder`` / ``diffraction_to_obj`` are resolved lazily from the
legacy ``params.cfg`` on first access (module ``__getattr__``) and cached in ``_lazy_cache``.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from ptycho import params
from ptycho.config import ModelConfig
from ptycho.probe import get_default_probe, normalize_probe
from ptycho.tf_helper import (_flat_to_channel, _reassemble_patches_position_real, extract_patches_position,
                              should_use_xla)

logger = logging.getLogger(__name__)

_lazy_cache: dict[str, Any] = {}
_model_construction_done: bool = False

_LAZY_NAMES = ("autoencoder", "diffraction_to_obj")
_SERIALIZABLE = keras.saving.register_keras_serializable(package="ptycho")
_WINDOW_EPS = 1e-3
#: Floor added to the per-pixel input std, as a fraction of its mean over pixels.
_STD_FLOOR = 0.01


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------
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

    For each pattern, ψ = ifft2(ifftshift(X · e^{i·arg F[P]})) (norm 'ortho'), then
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
        amp = tf.transpose(x, [0, 3, 1, 2])  # (B, C, N, N)
        field = tf.complex(amp, tf.zeros_like(amp)) * phase
        # ifft2d divides by N²; 'ortho' wants 1/N, so multiply by N.
        psi = tf.signal.ifft2d(tf.signal.ifftshift(field, axes=(-2, -1))) * tf.cast(self.N, tf.complex64)
        estimate = psi * inverse
        out = tf.concat([amp, tf.math.real(estimate), tf.math.imag(estimate)], axis=1)
        return tf.transpose(out, [0, 2, 3, 1])

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], self.N, self.N, 3 * x.shape[-1]), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "N": self.N}


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
class MergeGroup(keras.layers.Layer):
    """Per-group merge of C patches onto one P×P canvas, normalised by the window count.

    Inputs: patches (B, N, N, C) complex64 (zero outside the central N/2 window), positions
    (B, 1, 2, C) float32 ``coords_relative``. Output (B, P, P, 1) complex64. One canvas per group.
    ``use_xla`` picks the translation path at construction; ``call`` reads no global state.
    """

    def __init__(self, N: int, C: int, padded_size: int, use_xla: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.N, self.C, self.padded_size, self.use_xla = int(N), int(C), int(padded_size), bool(use_xla)

    def call(self, patches, positions):
        window = np.zeros((1, self.N, self.N, self.C), np.float32)
        quarter = self.N // 4
        window[:, quarter: self.N - quarter, quarter: self.N - quarter, :] = 1.0
        windows = tf.broadcast_to(tf.constant(window), tf.concat([tf.shape(positions)[:1], window.shape[1:]], 0))
        canvas = _reassemble_patches_position_real(patches, positions, agg=True, padded_size=self.padded_size,
                                                   use_xla=self.use_xla)
        count = _reassemble_patches_position_real(windows, positions, agg=True, padded_size=self.padded_size,
                                                  use_xla=self.use_xla)
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

    def call(self, canvas, positions):
        flat = extract_patches_position(canvas, positions, self.N, use_xla=self.use_xla)
        return _flat_to_channel(flat, self.C)

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
        return patches * tf.complex(self.probe_real, self.probe_imag)

    def compute_output_spec(self, patches):
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "N": self.N}


@_SERIALIZABLE
class FarFieldAmplitude(keras.layers.Layer):
    """|fftshift(fft2(field, norm='ortho'))| per channel: (B, N, N, C) complex64 -> float32."""

    def call(self, field):
        n = tf.cast(tf.shape(field)[1], tf.float32)
        spectrum = tf.signal.fft2d(tf.transpose(field, [0, 3, 1, 2]))
        spectrum = tf.signal.fftshift(spectrum, axes=(-2, -1))
        return tf.transpose(tf.abs(spectrum), [0, 2, 3, 1]) / n

    def compute_output_spec(self, field):
        return keras.KerasTensor(field.shape, dtype="float32")


@_SERIALIZABLE
class Square(keras.layers.Layer):
    """Elementwise x²: amplitude (√counts) -> intensity (counts)."""

    def call(self, x):
        return tf.square(x)

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------
def _n_encoder_blocks(N: int) -> int:
    """Blocks that take N down to the 8×8 bottleneck; N must be 8·2^k with k >= 2."""
    blocks = round(math.log2(N / 8)) if N >= 8 else -1
    if blocks < 2 or 8 * 2**blocks != N:
        raise ValueError(f"N: the architecture needs N = 8·2^k >= 32 (an 8×8 bottleneck), got N={N}")
    return blocks


def encoder_filters(N: int, n_filters_scale: int = 2) -> tuple[int, ...]:
    """(64, 128, 256) for N=64 and (32, 64, 128, 256) for N=128 at n_filters_scale=2."""
    blocks = _n_encoder_blocks(N)
    return tuple(n_filters_scale * (128 >> (blocks - 1 - i)) for i in range(blocks))


def decoder_filters(N: int, n_filters_scale: int = 2) -> tuple[int, ...]:
    """(128, 64) for N=64 and (256, 128, 64) for N=128 at n_filters_scale=2 (ends at N/2 × N/2)."""
    blocks = _n_encoder_blocks(N) - 1
    return tuple(n_filters_scale * (32 << (blocks - 1 - i)) for i in range(blocks))


class _SeededInit:
    """Distinct, reproducible Glorot-uniform seeds for each conv layer of one model."""

    def __init__(self, seed: int):
        self._seeds = np.random.SeedSequence(seed)

    def __call__(self) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=int(self._seeds.spawn(1)[0].generate_state(1)[0] >> 1))


def _conv(filters: int, name: str, init: _SeededInit, activation: Optional[str] = "relu",
          dtype: str = "float32") -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, 3, padding="same", activation=activation, name=name,
                               kernel_initializer=init(), dtype=dtype)


def _encoder(x, filters: tuple[int, ...], init: _SeededInit, dtype: str):
    """Conv blocks with max pooling; returns the bottleneck and each block's pre-pool features."""
    levels = []
    for i, f in enumerate(filters):
        x = _conv(f, f"enc{i}_conv_a", init, dtype=dtype)(x)
        x = _conv(f, f"enc{i}_conv_b", init, dtype=dtype)(x)
        levels.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool", dtype=dtype)(x)
    return x, levels


def _skip_for(levels, side: int, prefix: str, i: int, dtype: str):
    """The encoder level twice ``side`` wide (the whole N×N patch at the scale of the decoder's N/2 window),
    centre-cropped to side × side, so decoder and skip features cover the same object pixels."""
    level = next(f for f in levels if f.shape[1] == 2 * side)
    margin = side // 2
    return keras.layers.Cropping2D(margin, name=f"{prefix}{i}_skip_crop", dtype=dtype)(level)


def _decoder(x, filters: tuple[int, ...], C: int, prefix: str, init: _SeededInit, dtype: str, levels=None):
    """Conv blocks with upsampling to N/2 × N/2, then C logits from the first 60 features.

    With ``levels`` (encoder features; the 'unet' architecture) each upsampled block is concatenated with
    the matching centre-cropped encoder level (U-Net skip connections).
    """
    for i, f in enumerate(filters):
        x = _conv(f, f"{prefix}{i}_conv_a", init, dtype=dtype)(x)
        x = _conv(f, f"{prefix}{i}_conv_b", init, dtype=dtype)(x)
        x = keras.layers.UpSampling2D(2, name=f"{prefix}{i}_up", dtype=dtype)(x)
        if levels is not None:
            skip = _skip_for(levels, x.shape[1], prefix, i, dtype)
            x = keras.layers.Concatenate(name=f"{prefix}{i}_skip", dtype=dtype)([x, skip])
    x = FirstChannels(min(60, x.shape[-1]), name=f"{prefix}_first_features", dtype=dtype)(x)
    # The logits (cheap: C filters) are computed in float32 from the block features.
    return _conv(C, f"{prefix}_logits", init, activation=None)(x)


# --------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------
def _resolve(name: str, explicit, legacy_key: Optional[str] = None):
    """Keyword argument, else the ``params.cfg`` value (legacy scripts set it there), else None.

    ``params.DEFAULTS`` equal the ``ModelConfig`` defaults, so an untouched cfg changes nothing.
    """
    if explicit is not None:
        return explicit
    return params.cfg.get(legacy_key or name)


def resolve_probe(N: int, probe, probe_scale: float, default_probe_scale: float) -> np.ndarray:
    """The probe a model for size N uses: (N, N) complex64.

    An explicit ``probe`` must be (N, N) or (N, N, 1). A legacy ``params.cfg['probe']`` of the right size is
    used as is; one of another size is replaced, with a warning, by the normalised default probe for N.
    """
    if probe is not None:
        arr = np.asarray(probe)
        if arr.shape not in ((N, N), (N, N, 1)):
            raise ValueError(f"probe: expected shape ({N}, {N}) or ({N}, {N}, 1) for N={N}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("probe: contains non-finite values")
        return arr.reshape(N, N).astype(np.complex64)
    legacy = params.cfg.get("probe")
    if legacy is not None:
        arr = np.asarray(legacy)
        if arr.shape in ((N, N), (N, N, 1)):
            return arr.reshape(N, N).astype(np.complex64)
        logger.warning("params.cfg['probe'] has shape %s but the model has N=%d: using the normalised "
                       "default probe for N=%d instead", arr.shape, N, N)
    default = get_default_probe(N, fmt="np", default_probe_scale=default_probe_scale)
    return np.asarray(normalize_probe(default, probe_scale)).astype(np.complex64)


def default_intensity_scale(N: int, nphotons: float) -> float:
    """Fallback s when no data set is given: sqrt(nphotons) / (N / 2) (the legacy default)."""
    return math.sqrt(nphotons) / (N / 2)


def create_model_with_gridsize(gridsize: int, N: int, *, probe=None, intensity_scale: Optional[float] = None,
                               offset: Optional[int] = None, max_position_jitter: Optional[int] = None,
                               padded_size: Optional[int] = None, n_filters_scale: Optional[int] = None,
                               object_amplitude_max: Optional[float] = None, probe_scale: Optional[float] = None,
                               default_probe_scale: Optional[float] = None, probe_trainable: Optional[bool] = None,
                               intensity_scale_trainable: Optional[bool] = None, nphotons: Optional[float] = None,
                               nll_weight: Optional[float] = None, mae_weight: Optional[float] = None,
                               learning_rate: Optional[float] = None, input_normalization: Optional[str] = None,
                               architecture: Optional[str] = None, conv_dtype: Optional[str] = None,
                               jit_compile: Optional[bool] = None, seed: int = 0):
    """Build ``(autoencoder, diffraction_to_obj)`` for patches of N×N pixels and gridsize² channels.

    Each setting comes from its keyword argument, else from ``params.cfg`` where a legacy script set it,
    else from the ``ModelConfig`` default. ``intensity_scale`` (s, √counts per unit amplitude) should
    come from the training data (``PtychoDataset.intensity_scale``); without it the legacy default
    sqrt(nphotons)/(N/2) is used. Both models are compiled with ``jit_compile`` (XLA) explicit, None meaning
    :func:`default_jit_compile` (on with a GPU, off on CPU); the autoencoder with Adam and the loss weights (Poisson NLL on intensity, MAE on amplitude). ``seed`` fixes
    the weight initialisation. ``input_normalization`` 'standardize' (default) adds a per-pixel input
    standardiser whose statistics ``train`` estimates from the training data on first use (or call
    ``adapt_input_normalization``); 'none' feeds x = d/s. ``architecture`` 'unet' (default) adds the
    holographic input estimate and U-Net skips; 'reference' with ``input_normalization='none'`` builds the
    SPEC §4 network exactly. ``conv_dtype`` 'float32' / 'bfloat16' sets the convolution stack's compute
    precision; None means bfloat16 where the device computes it natively (:func:`default_conv_dtype`).

    Returns two Keras models sharing weights. Inputs: ``diffraction`` (B, N, N, C) float32 = s·X and
    ``positions`` (B, 1, 2, C) float32 = coords_relative. Outputs: object (B, N, N, 1) complex64,
    amplitude (B, N, N, C) float32 (s·Â), intensity (B, N, N, C) float32 ((s·Â)²).
    """
    defaults = ModelConfig()
    values = {
        "offset": _resolve("offset", offset),
        "max_position_jitter": _resolve("max_position_jitter", max_position_jitter),
        "padded_size": padded_size,
        "n_filters_scale": _resolve("n_filters_scale", n_filters_scale),
        "object_amplitude_max": _resolve("object_amplitude_max", object_amplitude_max),
        "probe_scale": _resolve("probe_scale", probe_scale),
        "default_probe_scale": _resolve("default_probe_scale", default_probe_scale),
        "probe_trainable": _resolve("probe_trainable", probe_trainable, "probe.trainable"),
        "intensity_scale_trainable": _resolve("intensity_scale_trainable", intensity_scale_trainable,
                                              "intensity_scale.trainable"),
        "input_normalization": _resolve("input_normalization", input_normalization),
        "architecture": _resolve("architecture", architecture),
        "conv_dtype": resolve_conv_dtype(_resolve("conv_dtype", conv_dtype)),
    }
    config = ModelConfig(N=N, gridsize=gridsize,
                         **{k: (getattr(defaults, k) if v is None else v) for k, v in values.items()})
    _n_encoder_blocks(config.N)
    probe_array = resolve_probe(config.N, probe, config.probe_scale, config.default_probe_scale)
    scale = _resolve("intensity_scale", intensity_scale)
    if scale is None:
        scale = default_intensity_scale(config.N, _resolve("nphotons", nphotons) or params.DEFAULTS["nphotons"])
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"intensity_scale: must be a finite number > 0, got {scale!r}")

    # The legacy XLA switch (params.cfg / USE_XLA_TRANSLATE) is read once, here, and fixed in the layers.
    autoencoder, diffraction_to_obj = build_models(config, probe_array, float(scale), seed=seed,
                                                   use_xla=should_use_xla())
    nll = _resolve("nll_weight", nll_weight)
    mae = _resolve("mae_weight", mae_weight)
    jit_compile = resolve_jit_compile(jit_compile)
    compile_autoencoder(autoencoder, nll_weight=params.DEFAULTS["nll_weight"] if nll is None else nll,
                        mae_weight=params.DEFAULTS["mae_weight"] if mae is None else mae,
                        learning_rate=_resolve("learning_rate", learning_rate) or params.DEFAULTS["learning_rate"],
                        jit_compile=jit_compile)
    diffraction_to_obj.compile(jit_compile=jit_compile)
    return autoencoder, diffraction_to_obj


def _conv_stack(x, config: ModelConfig, init: _SeededInit):
    """Encoder and the two decoders: features (B, N, N, K) -> amplitude and phase logits (B, N/2, N/2, C).

    The blocks compute in ``resolve_conv_dtype(config.conv_dtype)`` (Keras' 'mixed_bfloat16' policy for
    bfloat16: float32 weights, bfloat16 arithmetic); the logits layers and everything after are float32.
    """
    dtype = _KERAS_POLICY[resolve_conv_dtype(config.conv_dtype)]
    features, levels = _encoder(x, encoder_filters(config.N, config.n_filters_scale), init, dtype)
    dec = decoder_filters(config.N, config.n_filters_scale)
    skips = levels if config.architecture == "unet" else None
    return (_decoder(features, dec, config.C, "dec_amp", init, dtype, skips),
            _decoder(features, dec, config.C, "dec_phase", init, dtype, skips))


def build_conv_stack(config: ModelConfig, seed: int = 0) -> keras.Model:
    """The trainable convolution stack of ``build_models`` alone (no probe, merge, translation or FFT).

    Input (B, N, N, K) float32 network features (K = 3C for 'unet', C for 'reference'); outputs the
    amplitude and phase logits (B, N/2, N/2, C). Same layers and initialisation as the full model: the
    benchmarks time it to separate the physics' cost from the convolutions'.
    """
    channels = 3 * config.C if config.architecture == "unet" else config.C
    features = keras.Input((config.N, config.N, channels), name="features", dtype="float32")
    return keras.Model(features, list(_conv_stack(features, config, _SeededInit(seed))), name="conv_stack")


def build_models(config: ModelConfig, probe: np.ndarray, intensity_scale: float, seed: int = 0,
                 use_xla: bool = True):
    """Build the two (uncompiled) models of SPEC §4 from an explicit config, probe and scale.

    ``use_xla`` selects the translation path of the merge/extract layers (fixed in their config).
    """
    init = _SeededInit(seed)
    N, C, P = config.N, config.C, config.P
    diffraction = keras.Input((N, N, C), name="diffraction", dtype="float32")
    positions = keras.Input((1, 2, C), name="positions", dtype="float32")

    scaler = IntensityScale(intensity_scale, trainable=config.intensity_scale_trainable, name="intensity_scale")
    x = scaler(diffraction, inverse=True)
    unet = config.architecture == "unet"
    if unet:
        x = HolographicEstimate(N, name="input_features")(x)
    if config.input_normalization == "standardize":
        x = DiffractionStandardizer(N, kinds=3 if unet else 1, name="input_standardizer")(x)
    amplitude_logits, phase_logits = _conv_stack(x, config, init)
    patches = ComplexPatches(N, config.object_amplitude_max, name="object_patches")(amplitude_logits, phase_logits)
    canvas = MergeGroup(N, C, P, use_xla=use_xla, name="merge_group")(patches, positions)
    obj = CentreCrop(N, name="object")(canvas)
    illuminated = ProbeIllumination(N, trainable=config.probe_trainable, name="probe")(
        ExtractGroup(N, C, use_xla=use_xla, name="extract_group")(canvas, positions))
    amplitude = scaler(FarFieldAmplitude(name="far_field")(illuminated))
    amplitude = keras.layers.Identity(name="amplitude")(amplitude)
    intensity = Square(name="intensity")(amplitude)

    autoencoder = keras.Model([diffraction, positions], [obj, amplitude, intensity], name="autoencoder")
    autoencoder.get_layer("probe").set_probe(probe)
    if unet:
        autoencoder.get_layer("input_features").set_probe(probe)
    diffraction_to_obj = keras.Model([diffraction, positions], obj, name="diffraction_to_obj")
    return autoencoder, diffraction_to_obj


def default_jit_compile() -> bool:
    """Whether XLA compiles training and inference by default: where it is faster, i.e. when TensorFlow sees
    a GPU, not on a CPU-only machine (the same rule as Keras 3's ``jit_compile='auto'``; ledger
    XLA-PER-DEVICE-001)."""
    return bool(tf.config.list_physical_devices("GPU"))


_KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 dot products, which oneDNN's convolutions use.
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo; empty where that file does not exist (not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def default_conv_dtype() -> str:
    """The convolution stack's default precision: 'bfloat16' where the device computes it natively (a GPU of
    compute capability >= 8.0, or a CPU with AVX-512 BF16 / AMX under TF's oneDNN kernels), else 'float32'.

    Where bfloat16 is only emulated it is slower than float32, so it is never the default there
    (ledger BF16-CONV-001).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return "bfloat16" if capability and tuple(capability) >= (8, 0) else "float32"
    from tensorflow.python.util import _pywrap_util_port

    return "bfloat16" if _pywrap_util_port.IsMklEnabled() and _cpu_flags() & _BF16_CPU_FLAGS else "float32"


def resolve_conv_dtype(conv_dtype: Optional[str]) -> str:
    """``conv_dtype`` as given ('float32' / 'bfloat16'), or :func:`default_conv_dtype` for None."""
    if conv_dtype is None:
        return default_conv_dtype()
    if conv_dtype not in _KERAS_POLICY:
        raise ValueError(f"conv_dtype: must be 'float32', 'bfloat16' or None (bfloat16 where the device "
                         f"computes it natively), got {conv_dtype!r}")
    return conv_dtype


def resolve_jit_compile(jit_compile: Optional[bool]) -> bool:
    """``jit_compile`` as given (True / False), or :func:`default_jit_compile` for None."""
    if jit_compile is None:
        return default_jit_compile()
    if not isinstance(jit_compile, (bool, np.bool_)):
        raise ValueError(f"jit_compile: must be True, False or None (XLA where it is faster), got {jit_compile!r}")
    return bool(jit_compile)


def compile_autoencoder(autoencoder, *, nll_weight: float = 1.0, mae_weight: float = 0.0,
                        learning_rate: float = 1e-3, jit_compile: Optional[bool] = None) -> None:
    """Compile the autoencoder with Adam and weighted losses, XLA explicit (None: :func:`default_jit_compile`).

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


def adapt_input_normalization(model: keras.Model, amplitudes: np.ndarray, force: bool = False) -> bool:
    """Estimate the input standardisation of ``model`` from diffraction amplitudes X = d/s.

    amplitudes: (B, N, N, C) grouped patterns, float, amplitude units of X. The features the standardiser
    sees (X, and the holographic estimate for the 'unet' architecture) are computed by the model's own
    layers. Returns True if the statistics were set, False if the model has no standardiser
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
    try:
        features = model.get_layer("input_features")(tf.constant(X)).numpy()
    except ValueError:
        features = X
    layer.adapt(features)
    return True


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


# --------------------------------------------------------------------------------------------------
# Legacy lazy module attributes
# --------------------------------------------------------------------------------------------------
def __getattr__(name: str):
    if name in _LAZY_NAMES:
        if name not in _lazy_cache:
            _build_from_legacy_cfg()
        return _lazy_cache[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build_from_legacy_cfg() -> None:
    """Build the legacy singletons from ``params.cfg`` on first access."""
    global _model_construction_done
    autoencoder, diffraction_to_obj = create_model_with_gridsize(int(params.cfg["gridsize"]), int(params.cfg["N"]))
    _lazy_cache.update(autoencoder=autoencoder, diffraction_to_obj=diffraction_to_obj)
    _model_construction_done = True
