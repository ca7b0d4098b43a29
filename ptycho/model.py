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

The default 'retrieval' architecture first retrieves each group's object from its own patterns
(``GroupRetrieval``); at gridsize 1 the pattern's K scan neighbours join that retrieval through two extra inputs,
``neighbour_diffraction`` (B, N, N, K) and ``neighbour_positions`` (B, 1, 2, K) (``ptycho.inputs``; ledger
RETRIEVAL-NEIGHBOURS-001), and only the pattern's own estimate goes on.

``build_models(config, probe, scale)`` builds ``(autoencoder, diffraction_to_obj)`` sharing weights from an
explicit ``ModelConfig``; ``create_model_with_gridsize`` is the adapter that also takes legacy settings
(``ptycho.legacy``) and compiles (``ptycho.model_state``, re-exported here, reads and sets a built model's
state and compiles it for a loss). The probe and the intensity scale ``s`` (stored as log s) are Keras weights
of the model, so each model keeps its own. The layers live in ``ptycho.layers`` and the device defaults
(XLA, bfloat16) in ``ptycho.device``; both are re-exported here.

Importing this module builds nothing: ``autoencoder`` / ``diffraction_to_obj`` are resolved lazily from the
legacy settings on first access (module ``__getattr__``) and cached in ``_lazy_cache``.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

import keras
import numpy as np

from ptycho import legacy
from ptycho.config import ModelConfig
from ptycho.device import (KERAS_POLICY, default_conv_dtype, default_jit_compile,  # noqa: F401 (re-exported)
                           resolve_conv_dtype, resolve_jit_compile)
from ptycho.layers import (CentreCrop, ComplexPatches, DiffractionStandardizer,  # noqa: F401 (re-exported)
                           EstimateFeatures, ExtractGroup, FarFieldAmplitude, FirstChannels,
                           HolographicEstimate, IntensityScale, MergeGroup, ProbeIllumination,
                           ResidualComplexPatches, Square)
from ptycho.group_retrieval import GroupRetrieval  # noqa: F401 (re-exported)
from ptycho.model_state import (adapt_input_normalization, compile_autoencoder,  # noqa: F401 (re-exported)
                                get_conv_dtype, get_intensity_scale, get_probe)
from ptycho.probe import get_default_probe, normalize_probe
from ptycho.tf_helper import should_use_xla

logger = logging.getLogger(__name__)

_lazy_cache: dict[str, Any] = {}
_model_construction_done: bool = False

_LAZY_NAMES = ("autoencoder", "diffraction_to_obj")
#: Architectures whose network also sees a real-space estimate ([X, Re e, Im e]) and has U-Net skips.
_ESTIMATE_ARCHITECTURES = ("retrieval", "unet")


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


def _decoder(x, filters: tuple[int, ...], C: int, prefix: str, init: _SeededInit, dtype: str, levels=None,
             zero_logits: bool = False):
    """Conv blocks with upsampling to N/2 × N/2, then C logits from the first 60 features.

    With ``levels`` (encoder features; the 'unet' and 'retrieval' architectures) each upsampled block is
    concatenated with the matching centre-cropped encoder level (U-Net skip connections). ``zero_logits``
    initialises the logits layer to zero (its seed is still drawn, so the other layers' seeds do not move).
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
    logits = _conv(C, f"{prefix}_logits", init, activation=None)
    if zero_logits:  # a residual network starts as the identity on its prior estimate (ResidualComplexPatches)
        logits = _conv(C, f"{prefix}_logits", lambda: keras.initializers.Zeros(), activation=None)
    return logits(x)


def _conv_stack(x, config: ModelConfig, init: _SeededInit):
    """Encoder and the two decoders: features (B, N, N, K) -> amplitude and phase logits (B, N/2, N/2, C).

    The blocks compute in ``resolve_conv_dtype(config.conv_dtype)`` (Keras' 'mixed_bfloat16' policy for
    bfloat16: float32 weights, bfloat16 arithmetic); the logits layers and everything after are float32.
    """
    dtype = KERAS_POLICY[resolve_conv_dtype(config.conv_dtype)]
    features, levels = _encoder(x, encoder_filters(config.N, config.n_filters_scale), init, dtype)
    dec = decoder_filters(config.N, config.n_filters_scale)
    skips = levels if config.architecture in _ESTIMATE_ARCHITECTURES else None
    residual = config.architecture == "retrieval"
    return (_decoder(features, dec, config.C, "dec_amp", init, dtype, skips, residual),
            _decoder(features, dec, config.C, "dec_phase", init, dtype, skips, residual))


def build_conv_stack(config: ModelConfig, seed: int = 0) -> keras.Model:
    """The trainable convolution stack of ``build_models`` alone (no probe, merge, translation or FFT).

    Input (B, N, N, K) float32 network features (K = 3C for 'unet', C for 'reference'); outputs the
    amplitude and phase logits (B, N/2, N/2, C). Same layers and initialisation as the full model: the
    benchmarks time it to separate the physics' cost from the convolutions'.
    """
    channels = 3 * config.C if config.architecture in _ESTIMATE_ARCHITECTURES else config.C
    features = keras.Input((config.N, config.N, channels), name="features", dtype="float32")
    return keras.Model(features, list(_conv_stack(features, config, _SeededInit(seed))), name="conv_stack")


def build_models(config: ModelConfig, probe: np.ndarray, intensity_scale: float, seed: int = 0,
                 use_xla: bool = True):
    """Build the two (uncompiled) models of SPEC §4 from an explicit config, probe and scale.

    ``use_xla`` selects the translation path of the merge/extract layers (fixed in their config). Inputs
    ``diffraction`` and ``positions``, and ``neighbour_diffraction`` and ``neighbour_positions`` when
    ``config.neighbours`` > 0 (``ptycho.inputs.model_inputs`` builds all of them from a data set).
    """
    init = _SeededInit(seed)
    N, C, P = config.N, config.C, config.P
    diffraction = keras.Input((N, N, C), name="diffraction", dtype="float32")
    positions = keras.Input((1, 2, C), name="positions", dtype="float32")

    inputs = [diffraction, positions]
    scaler = IntensityScale(intensity_scale, trainable=config.intensity_scale_trainable, name="intensity_scale")
    x = scaler(diffraction, inverse=True)
    estimate = None
    if config.architecture == "retrieval":
        seen, seen_at = x, positions
        if config.neighbours:  # RETRIEVAL-NEIGHBOURS-001: the pattern first, its scan neighbours after it
            K = config.neighbours
            inputs += [keras.Input((N, N, K), name="neighbour_diffraction", dtype="float32"),
                       keras.Input((1, 2, K), name="neighbour_positions", dtype="float32")]
            seen = keras.layers.Concatenate(name="retrieval_patterns")([x, scaler(inputs[2], inverse=True)])
            seen_at = keras.layers.Concatenate(name="retrieval_positions")([positions, inputs[3]])
        estimate = GroupRetrieval(N, C + config.neighbours, config.retrieval_padded_size,
                                  config.retrieval_iterations, use_xla=use_xla, momentum=config.retrieval_momentum,
                                  keep=C if config.neighbours else None, name="group_retrieval")(seen, seen_at)
        x = EstimateFeatures(name="input_features")(x, estimate)
    elif config.architecture == "unet":
        x = HolographicEstimate(N, name="input_features")(x)
    with_estimate = config.architecture in _ESTIMATE_ARCHITECTURES
    if config.input_normalization == "standardize":
        x = DiffractionStandardizer(N, kinds=3 if with_estimate else 1, name="input_standardizer")(x)
    amplitude_logits, phase_logits = _conv_stack(x, config, init)
    if estimate is None:
        patches = ComplexPatches(N, config.object_amplitude_max, name="object_patches")(amplitude_logits,
                                                                                          phase_logits)
    else:
        patches = ResidualComplexPatches(N, config.object_amplitude_max, name="object_patches")(
            amplitude_logits, phase_logits, estimate)
    canvas = MergeGroup(N, C, P, use_xla=use_xla, name="merge_group")(patches, positions)
    obj = CentreCrop(N, name="object")(canvas)
    illuminated = ProbeIllumination(N, trainable=config.probe_trainable, name="probe")(
        ExtractGroup(N, C, use_xla=use_xla, name="extract_group")(canvas, positions))
    amplitude = scaler(FarFieldAmplitude(name="far_field")(illuminated))
    amplitude = keras.layers.Identity(name="amplitude")(amplitude)
    intensity = Square(name="intensity")(amplitude)

    autoencoder = keras.Model(inputs, [obj, amplitude, intensity], name="autoencoder")
    autoencoder.get_layer("probe").set_probe(probe)
    if config.architecture == "unet":
        autoencoder.get_layer("input_features").set_probe(probe)
    if config.architecture == "retrieval":
        autoencoder.get_layer("group_retrieval").set_probe(probe)
    diffraction_to_obj = keras.Model(inputs, obj, name="diffraction_to_obj")
    return autoencoder, diffraction_to_obj


# --------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------
def resolve_probe(N: int, probe, probe_scale: float, default_probe_scale: float) -> np.ndarray:
    """The probe a model for size N uses: (N, N) complex64.

    An explicit ``probe`` must be (N, N) or (N, N, 1). A legacy probe (``legacy.legacy_probe``) of the right
    size is used as is; one of another size is replaced, with a warning, by the normalised default probe for N.
    """
    if probe is not None:
        arr = np.asarray(probe)
        if arr.shape not in ((N, N), (N, N, 1)):
            raise ValueError(f"probe: expected shape ({N}, {N}) or ({N}, {N}, 1) for N={N}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("probe: contains non-finite values")
        return arr.reshape(N, N).astype(np.complex64)
    from_legacy = legacy.legacy_probe(N)
    if from_legacy is not None:
        return from_legacy
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
                               jit_compile: Optional[bool] = None, seed: int = 0, compile: bool = True):
    """Build ``(autoencoder, diffraction_to_obj)`` for patches of N×N pixels and gridsize² channels.

    Each setting comes from its keyword argument, else from the legacy ``params`` dict where a legacy script
    set it, else from the ``ModelConfig`` default (``ptycho.legacy.config_from_legacy``). ``intensity_scale``
    (s, √counts per unit amplitude) should come from the training data (``PtychoDataset.intensity_scale``);
    without it the legacy default sqrt(nphotons)/(N/2) is used. Both models are compiled with ``jit_compile``
    (XLA) explicit, None meaning :func:`default_jit_compile` (on with a GPU, off on CPU); the autoencoder with
    Adam and the loss weights (Poisson NLL on intensity, MAE on amplitude). ``seed`` fixes
    the weight initialisation. ``input_normalization`` 'standardize' (default) adds a per-pixel input
    standardiser whose statistics ``train`` estimates from the training data on first use (or call
    ``adapt_input_normalization``); 'none' feeds x = d/s. ``architecture`` 'retrieval' (default) starts from
    each group's iterative retrieval (at gridsize 1 with the pattern's scan neighbours) and corrects it; 'unet'
    adds the holographic input estimate and U-Net skips; 'reference' with ``input_normalization='none'`` builds the
    SPEC §4 network exactly. ``conv_dtype`` 'float32' / 'bfloat16' sets the convolution stack's compute
    precision; None means bfloat16 where the device computes it natively (:func:`default_conv_dtype`).

    ``compile=False`` leaves the autoencoder uncompiled for a caller that compiles it itself
    (``ptycho.workflow.train_model``: ``ptycho.train.train`` compiles it for its loss, the one place a
    training run compiles); ``diffraction_to_obj`` is compiled for prediction either way.

    Returns two Keras models sharing weights. Inputs: ``diffraction`` (B, N, N, C) float32 = s·X and
    ``positions`` (B, 1, 2, C) float32 = coords_relative (at gridsize 1 with the default architecture also the
    scan neighbours, ``ptycho.inputs.model_inputs``). Outputs: object (B, N, N, 1) complex64,
    amplitude (B, N, N, C) float32 (s·Â), intensity (B, N, N, C) float32 ((s·Â)²).
    """
    settings = legacy.config_from_legacy(
        gridsize, N, padded_size=padded_size, offset=offset, max_position_jitter=max_position_jitter,
        n_filters_scale=n_filters_scale, object_amplitude_max=object_amplitude_max, probe_scale=probe_scale,
        default_probe_scale=default_probe_scale, probe_trainable=probe_trainable,
        intensity_scale_trainable=intensity_scale_trainable, input_normalization=input_normalization,
        architecture=architecture, conv_dtype=conv_dtype, intensity_scale=intensity_scale, nphotons=nphotons,
        nll_weight=nll_weight, mae_weight=mae_weight, learning_rate=learning_rate)
    config = settings.config
    _n_encoder_blocks(config.N)
    probe_array = resolve_probe(config.N, probe, config.probe_scale, config.default_probe_scale)
    scale = settings.intensity_scale
    if scale is None:
        scale = default_intensity_scale(config.N, settings.nphotons)
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"intensity_scale: must be a finite number > 0, got {scale!r}")

    # The XLA translation switch (USE_XLA_TRANSLATE, else the legacy setting) is read once, here, and fixed
    # in the layers.
    autoencoder, diffraction_to_obj = build_models(config, probe_array, float(scale), seed=seed,
                                                   use_xla=should_use_xla())
    jit_compile = resolve_jit_compile(jit_compile)
    if compile:
        compile_autoencoder(autoencoder, nll_weight=settings.nll_weight, mae_weight=settings.mae_weight,
                            learning_rate=settings.learning_rate, jit_compile=jit_compile)
    diffraction_to_obj.compile(jit_compile=jit_compile)
    return autoencoder, diffraction_to_obj


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
    """Build the legacy singletons from the legacy settings (gridsize, N, ...) on first access."""
    global _model_construction_done
    autoencoder, diffraction_to_obj = create_model_with_gridsize(int(legacy.value("gridsize")), int(legacy.value("N")))
    _lazy_cache.update(autoencoder=autoencoder, diffraction_to_obj=diffraction_to_obj)
    _model_construction_done = True
