"""Configuration dataclasses, validated on construction.

Every invalid value raises ``ValueError`` naming the dataclass and the field. Instances are frozen;
derive variants with ``dataclasses.replace``. Units: lengths in object pixels, doses in photons
(expected total counts per N x N diffraction pattern).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


def _fail(owner: object, field: str, message: str) -> None:
    raise ValueError(f"{type(owner).__name__}.{field}: {message}")


def _require_int(owner: object, field: str, minimum: int) -> int:
    value = getattr(owner, field)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(owner, field, f"must be an int, got {value!r}")
    if value < minimum:
        _fail(owner, field, f"must be >= {minimum}, got {value}")
    return value


def _require_float(owner: object, field: str, minimum: float = 0.0, strict: bool = True) -> float:
    value = getattr(owner, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(owner, field, f"must be a finite number, got {value!r}")
    if (value <= minimum) if strict else (value < minimum):
        _fail(owner, field, f"must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def _require_choice(owner: object, field: str, choices: tuple[str, ...]) -> str:
    value = getattr(owner, field)
    if value not in choices:
        _fail(owner, field, f"must be one of {choices}, got {value!r}")
    return value


def _validate_patch_size(owner: object) -> None:
    n = _require_int(owner, "N", 4)
    if n % 4:
        _fail(owner, "N", f"must be a multiple of 4, got {n}")
    _require_int(owner, "gridsize", 1)


def neighbour_radius(N: int) -> int:
    """Farthest a scan neighbour may lie from a pattern (object px) to join its retrieval: N // 4 (ledger
    RETRIEVAL-NEIGHBOURS-001); the retrieval canvas of a gridsize-1 model is N + 2·(N // 4) wide."""
    return int(N) // 4


def default_padded_size(N: int, gridsize: int, offset: int, max_position_jitter: int) -> int:
    """P = N + (gridsize - 1) * offset + max_position_jitter (SPEC §2.2)."""
    return N + (gridsize - 1) * offset + max_position_jitter


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and forward-model settings of one model.

    ``padded_size`` (P) is the per-group canvas side; ``None`` means the default of SPEC §2.2.
    ``object_amplitude_max`` bounds the predicted amplitude: ``object_amplitude_max * sigmoid(.)``.
    ``input_normalization``: 'standardize' (per-pixel mean/std of the training amplitudes, estimated by
    ``train``; the default, ledger INPUT-STANDARDIZE-001) or 'none' (the reference network: x = d/s).
    ``architecture``: 'retrieval' (default: the U-Net sees an estimate of each group's object from
    ``retrieval_iterations`` passes of iterative retrieval, with momentum ``retrieval_momentum``, on the
    group's own patterns (ledger RETRIEVAL-MOMENTUM-001), and its logits correct
    that estimate, so an untrained network outputs it; ledger GROUP-RETRIEVAL-001), 'unet' (the network also
    sees a holographic real-space estimate of each patch and its decoders get centre-cropped encoder skips,
    ledger HOLOGRAPHIC-INPUT-001; the dose study's network) or 'reference' (SPEC §4 exactly: 2,252,026 /
    2,257,000 trainable parameters at N=64, gridsize 1 / 2, with ``input_normalization='none'``).
    ``retrieval_neighbours``: how many scan neighbours (within ``neighbour_radius(N)`` px) join each
    pattern's retrieval at gridsize 1, as the extra model inputs ``neighbour_diffraction`` and
    ``neighbour_positions`` (``ptycho.inputs``): a single pattern leaves the twin image undetermined and its
    neighbours' overlap removes it (ledger RETRIEVAL-NEIGHBOURS-001). None (default) means 3 for the
    'retrieval' architecture at gridsize 1 and 0 otherwise; only that combination takes neighbours.
    ``conv_dtype``: the compute precision of the convolution stack, 'float32' or 'bfloat16' (weights,
    logits and all of the physics stay float32 / complex64); None (default) means bfloat16 where the device
    multiplies it natively and float32 elsewhere (``ptycho.device.default_conv_dtype``, ledger BF16-CONV-001).
    """

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 2
    offset: int = 4
    max_position_jitter: int = 10
    padded_size: Optional[int] = None
    object_amplitude_max: float = 2.0
    probe_scale: float = 4.0
    default_probe_scale: float = 0.7
    probe_trainable: bool = False
    intensity_scale_trainable: bool = False
    input_normalization: str = "standardize"
    architecture: str = "retrieval"
    conv_dtype: Optional[str] = None
    retrieval_iterations: int = 40
    retrieval_momentum: float = 0.95
    retrieval_neighbours: Optional[int] = None

    def __post_init__(self) -> None:
        _validate_patch_size(self)
        _require_choice(self, "input_normalization", ("standardize", "none"))
        _require_choice(self, "architecture", ("retrieval", "unet", "reference"))
        _require_int(self, "retrieval_iterations", 0)
        if isinstance(self.retrieval_momentum, bool) or not (isinstance(self.retrieval_momentum, (int, float))
                                                             and 0.0 <= self.retrieval_momentum < 1.0):
            raise ValueError(f"retrieval_momentum: must be a number in [0, 1), got {self.retrieval_momentum!r}")
        _require_choice(self, "conv_dtype", (None, "float32", "bfloat16"))
        if self.retrieval_neighbours is not None:
            _require_int(self, "retrieval_neighbours", 0)
            if self.retrieval_neighbours and (self.architecture != "retrieval" or self.gridsize != 1):
                _fail(self, "retrieval_neighbours", "only the 'retrieval' architecture at gridsize 1 takes "
                      f"scan neighbours, got {self.retrieval_neighbours} with architecture="
                      f"{self.architecture!r}, gridsize={self.gridsize}")
        _require_int(self, "n_filters_scale", 1)
        _require_int(self, "offset", 0)
        _require_int(self, "max_position_jitter", 0)
        _require_float(self, "object_amplitude_max")
        _require_float(self, "probe_scale")
        _require_float(self, "default_probe_scale")
        if self.padded_size is not None:
            _require_int(self, "padded_size", 1)
        extra = self.P - self.N
        if extra < 0 or extra % 2:
            _fail(self, "padded_size", f"P - N must be even and >= 0, got P={self.P}, N={self.N}")

    @property
    def C(self) -> int:
        """Channels per group, gridsize**2."""
        return self.gridsize**2

    @property
    def P(self) -> int:
        """Resolved per-group canvas side."""
        if self.padded_size is not None:
            return self.padded_size
        return default_padded_size(self.N, self.gridsize, self.offset, self.max_position_jitter)

    @property
    def neighbours(self) -> int:
        """Resolved ``retrieval_neighbours``: scan neighbours joining each pattern's retrieval."""
        if self.retrieval_neighbours is not None:
            return self.retrieval_neighbours
        return 3 if self.architecture == "retrieval" and self.gridsize == 1 else 0

    @property
    def retrieval_padded_size(self) -> int:
        """Canvas side of the retrieval: P, or N + 2·neighbour_radius(N) when neighbours join it (if larger)."""
        return max(self.P, self.N + 2 * neighbour_radius(self.N)) if self.neighbours else self.P


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, loss and callback settings (SPEC §5). ``loss`` is 'nll' (Poisson) or 'mae'.

    ``jit_compile``: True / False compile the training step with / without XLA; None (default) uses XLA
    where it is faster here: when TensorFlow sees a GPU, not on a CPU-only machine (ledger XLA-PER-DEVICE-001).
    ``cache_retrieval``: with the 'retrieval' architecture and a fixed intensity scale, compute each group's
    retrieval estimate once before fitting and train on it (the estimate depends on no trained weight, so
    every epoch would recompute the same values; ledger RETRIEVAL-CACHE-001). False recomputes it per batch.
    """

    nepochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    loss: str = "nll"
    validation_split: float = 0.05
    lr_factor: float = 0.5
    lr_patience: int = 2
    min_lr: float = 1e-4
    early_stopping_patience: int = 3
    jit_compile: Optional[bool] = None
    verbose: int = 1
    seed: int = 0
    cache_retrieval: bool = True

    def __post_init__(self) -> None:
        _require_int(self, "nepochs", 1)
        _require_int(self, "batch_size", 1)
        _require_float(self, "learning_rate")
        _require_choice(self, "loss", ("nll", "mae"))
        _require_float(self, "validation_split", 0.0, strict=False)
        if self.validation_split >= 1.0:
            _fail(self, "validation_split", f"must be < 1, got {self.validation_split}")
        _require_float(self, "lr_factor")
        if self.lr_factor >= 1.0:
            _fail(self, "lr_factor", f"must be < 1, got {self.lr_factor}")
        _require_int(self, "lr_patience", 0)
        _require_float(self, "min_lr", 0.0, strict=False)
        _require_int(self, "early_stopping_patience", 0)
        if not (self.jit_compile is None or isinstance(self.jit_compile, bool)):
            _fail(self, "jit_compile", f"must be True, False or None (XLA where it is faster), got {self.jit_compile!r}")
        _require_int(self, "verbose", 0)
        _require_int(self, "seed", 0)
        if not isinstance(self.cache_retrieval, bool):
            _fail(self, "cache_retrieval", f"must be True or False, got {self.cache_retrieval!r}")


#: Synthetic objects: amplitude-only lines and GRF, and a GRF in amplitude and phase (``ptycho.objects``).
OBJECT_KINDS = ("lines", "grf", "grf_complex")


@dataclass(frozen=True)
class SimulationConfig:
    """A synthetic data set (SPEC §3).

    ``n_positions`` scan positions on an ``object_size``² object (``scan``: 'random' or a 'grid' of step
    ``grid_step``); ``n_groups`` groups of C = gridsize² neighbours chosen among each seed's ``K`` nearest
    positions (default: one group per position; K None: ``grouping.default_neighbours(gridsize)``, 7 for
    gridsize <= 2). ``seed`` drives the object, positions, grouping and noise; ``object_seed`` (default:
    ``seed``) replaces it for the object alone and ``scan_seed`` (default: ``seed``) for the positions and the
    grouping alone, each drawing the stream that seed would have drawn: ``object_seed=0, scan_seed=1`` scans
    the object of seed 0 at the positions of seed 1. ``noise_seed`` (default: derived from ``seed``) drives
    only the Poisson noise, so data sets at different doses can share everything but their noise.
    ``probe_defocus`` (radians of quadratic phase at
    the default probe disk's edge, ``probe.defocus_probe``) makes the default probe that of a defocused
    beam; 0 keeps the real disk of SPEC §3.
    """

    N: int = 64
    gridsize: int = 1
    object_size: int = 128
    object_kind: str = "lines"
    nlines: int = 100
    n_positions: int = 512
    n_groups: Optional[int] = None
    scan: str = "random"
    grid_step: float = 4.0
    buffer: float = 15.0
    K: Optional[int] = None
    nphotons: float = 1e9
    probe_scale: float = 4.0
    default_probe_scale: float = 0.7
    probe_defocus: float = 0.0
    seed: int = 0
    noise_seed: Optional[int] = None
    object_seed: Optional[int] = None
    scan_seed: Optional[int] = None

    def __post_init__(self) -> None:
        _validate_patch_size(self)
        _require_int(self, "object_size", 1)
        _require_choice(self, "object_kind", OBJECT_KINDS)
        _require_int(self, "nlines", 1)
        _require_int(self, "n_positions", 1)
        if self.n_groups is not None:
            _require_int(self, "n_groups", 1)
        _require_choice(self, "scan", ("random", "grid"))
        _require_float(self, "grid_step")
        _require_float(self, "buffer", 0.0, strict=False)
        if 2 * self.buffer >= self.object_size:
            _fail(self, "buffer", f"must be < object_size / 2 = {self.object_size / 2}, got {self.buffer}")
        if self.K is not None:
            _require_int(self, "K", 1)
            if self.gridsize > 1 and self.K < self.C:
                _fail(self, "K", f"must be >= gridsize**2 = {self.C}, got {self.K}")
        if self.gridsize > 1 and self.n_positions < self.C:
            _fail(self, "n_positions", f"must be >= gridsize**2 = {self.C}, got {self.n_positions}")
        _require_float(self, "nphotons")
        _require_float(self, "probe_scale")
        _require_float(self, "default_probe_scale")
        if isinstance(self.probe_defocus, bool) or not isinstance(self.probe_defocus, (int, float)) \
                or not math.isfinite(self.probe_defocus):
            _fail(self, "probe_defocus", f"must be a finite number of radians, got {self.probe_defocus!r}")
        _require_int(self, "seed", 0)
        for field in ("noise_seed", "object_seed", "scan_seed"):
            if getattr(self, field) is not None:
                _require_int(self, field, 0)

    @property
    def C(self) -> int:
        """Channels per group, gridsize**2."""
        return self.gridsize**2
