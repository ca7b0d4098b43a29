"""The dose-response study's settings: its arms, its presets and the validated ``StudyConfig``.

``PRESETS`` is the one place the study's preset budgets live (``--preset quick|paper``); the defaults of
``StudyConfig`` below are the study's other settings (SPEC §6). Importing this module does no work.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ptycho.config import SimulationConfig, TrainingConfig

#: The network arms of SPEC §6: arm name -> (photons per pattern, training loss), in run order.
ARMS: dict[str, tuple[float, str]] = {
    "high_nll": (1e9, "nll"),
    "high_mae": (1e9, "mae"),
    "low_nll": (1e4, "nll"),
    "low_mae": (1e4, "mae"),
}
#: The default ``--arms`` (what ``tox -e study`` runs): the four network arms.
ARM_NAMES: tuple[str, ...] = tuple(ARMS)
DOSES: dict[str, float] = {"high": 1e9, "low": 1e4}

#: Opt-in arms without training of their own (issue 21; ledger STUDY-REFINE-ARMS-001): arm name ->
#: (photons per pattern, start). ``ptycho.refine`` reconstructs the arm's *test* scan, from ones when the
#: start is None (the iterative baseline: no network, never the truth), else from the stored network
#: reconstruction of that scan by the named network arm (network + refinement).
REFINE_ARMS: dict[str, tuple[float, Optional[str]]] = {
    "high_iterative": (1e9, None),
    "low_iterative": (1e4, None),
    "high_nll_refined": (1e9, "high_nll"),
    "low_nll_refined": (1e4, "low_nll"),
}
#: Every arm, in run order (a refined arm runs after the network arm it starts from); ``--arms all``.
ALL_ARM_NAMES: tuple[str, ...] = ARM_NAMES + tuple(REFINE_ARMS)
#: The refinement misfit of the refine arms, at both doses: the Poisson likelihood (ledger STUDY-REFINE-LOSS-001).
REFINE_LOSS = "nll"
#: Default passes over the test scan of the refine arms (``--refine-iterations``).
DEFAULT_REFINE_ITERATIONS = 30


#: The dose sweep's methods (issue 21 item 3), in run order; a sweep arm is named ``<dose>_<method>`` (``1e3_nll``,
#: ``1e3_nll_refined``; ``dose_label``) and is the study arm of that kind at that dose (ledger STUDY-SWEEP-001).
SWEEP_METHODS: tuple[str, ...] = ("nll", "mae", "nll_refined", "iterative")
_SWEEP_ARM = re.compile(r"^(?P<dose>[0-9]+(?:\.[0-9]+)?e-?[0-9]+)_(?P<method>nll|mae|nll_refined|iterative)$")


def dose_label(nphotons: float) -> str:
    """The shortest ``<mantissa>e<exponent>`` that reads back as ``nphotons`` exactly: 1e3, 2.5e4, 1e9."""
    for digits in range(17):
        mantissa, exponent = f"{float(nphotons):.{digits}e}".split("e")
        label = f"{mantissa}e{int(exponent)}"
        if float(label) == float(nphotons):
            return label
    raise ValueError(f"no exact label for {nphotons!r}")  # unreachable for a finite float


def sweep_arm(nphotons: float, method: str) -> str:
    """The name of the sweep arm of ``method`` (one of ``SWEEP_METHODS``) at ``nphotons`` photons per pattern."""
    if method not in SWEEP_METHODS:
        raise KeyError(f"unknown sweep method {method!r}; choose from {list(SWEEP_METHODS)}")
    if not (math.isfinite(nphotons) and nphotons > 0):
        raise ValueError(f"a dose must be a finite number of photons > 0, got {nphotons!r}")
    return f"{dose_label(nphotons)}_{method}"


def parse_sweep_arm(arm: str) -> Optional[tuple[float, str]]:
    """(photons, method) of a sweep arm name in canonical form (``sweep_arm``); None for any other name."""
    match = _SWEEP_ARM.match(arm) if isinstance(arm, str) else None
    if match is None:
        return None
    nphotons = float(match["dose"])
    if not (math.isfinite(nphotons) and nphotons > 0) or dose_label(nphotons) != match["dose"]:
        return None
    return nphotons, match["method"]


def arm_method(arm: str) -> str:
    """'network' (an arm of ``ARMS``), 'iterative' (refinement from ones) or 'refined' (network + refinement);
    a sweep arm (``<dose>_<method>``) is the kind its method names."""
    if arm in ARMS:
        return "network"
    if arm in REFINE_ARMS:
        return "iterative" if REFINE_ARMS[arm][1] is None else "refined"
    sweep = parse_sweep_arm(arm)
    if sweep is not None:
        return {"nll": "network", "mae": "network", "iterative": "iterative", "nll_refined": "refined"}[sweep[1]]
    raise KeyError(f"unknown arm {arm!r}; choose from {list(ALL_ARM_NAMES)} (or a sweep arm <dose>_<method>)")


def arm_nphotons(arm: str) -> float:
    """Photons per pattern of ``arm``'s data."""
    if arm in ARMS:
        return ARMS[arm][0]
    if arm in REFINE_ARMS:
        return REFINE_ARMS[arm][0]
    arm_method(arm)  # KeyError for an unknown arm
    return parse_sweep_arm(arm)[0]


def arm_loss(arm: str) -> str:
    """The network arm's training loss, or the refine arm's refinement misfit (``REFINE_LOSS``)."""
    if arm_method(arm) != "network":
        return REFINE_LOSS
    return ARMS[arm][1] if arm in ARMS else parse_sweep_arm(arm)[1]


def arm_source(arm: str) -> Optional[str]:
    """The network arm whose stored reconstruction a 'refined' arm starts from; None for every other arm."""
    if arm_method(arm) != "refined":
        return None
    if arm in REFINE_ARMS:
        return REFINE_ARMS[arm][1]
    return sweep_arm(parse_sweep_arm(arm)[0], "nll")


def noise_dose_key(nphotons: float) -> int:
    """The dose's key in the noise stream (``stream_seed(seed, STREAM_NOISE, key, split)``).

    The study's two doses keep their index in ``DOSES`` (0, 1: stored arms and their data stay as they were);
    any other dose gets 2 + the bit pattern of its float64, distinct for distinct doses (SEED-STREAMS-001).
    """
    nphotons = float(nphotons)
    study = list(DOSES.values())
    if nphotons in study:
        return study.index(nphotons)
    return 2 + struct.unpack("<Q", struct.pack("<d", nphotons))[0]


def with_dependencies(arms: tuple[str, ...]) -> tuple[str, ...]:
    """``arms`` plus the network arms their refined arms start from, in run order."""
    needed = set(arms) | {arm_source(a) for a in arms if arm_source(a) is not None}
    return tuple(a for a in ALL_ARM_NAMES if a in needed)

#: Settings a preset fixes; any of them given explicitly (CLI flag or keyword) overrides the preset.
#: 'quick' fits four arms in <= 20 min on a 2-core CPU (ledger STUDY-QUICK-PRESET-001).
#: 'sweep' is the dose sweep's training budget (``--preset sweep``; ledger STUDY-SWEEP-001): the quick budget, so
#: a sweep's seed-0 arms at 1e4 and 1e9 train on the quick study's data with its budget.
PRESETS: dict[str, dict[str, int]] = {
    "quick": {"n_train": 1024, "n_test": 512, "nepochs": 8, "batch_size": 8},
    "paper": {"n_train": 2000, "n_test": 512, "nepochs": 50, "batch_size": 16},
    "sweep": {"n_train": 1024, "n_test": 512, "nepochs": 8, "batch_size": 8},
}
DEFAULT_PRESET = "quick"
#: Quadratic probe phase at the disk edge, radians (a defocused beam; ledger HOLOGRAPHIC-INPUT-001).
STUDY_PROBE_DEFOCUS = 5 * math.pi
DEFAULT_OUTPUT_DIR = "runs/dose_response"

#: Bumped when the meaning of stored outputs changes, so old outputs are not reused.
#: 3: every arm also writes training.png; history.json may hold test_ssim.
#: 4: defocused probe, U-Net model with holographic input (issue 12).
OUTPUT_FORMAT_VERSION = 4
#: The same for the refine arms (issue 21); their fingerprint also holds their source arm's.
REFINE_FORMAT_VERSION = 1
#: Training split reserved for validation (TrainingConfig default); n_train must leave >= 1 sample.
VALIDATION_SPLIT = 0.05

# Stream ids for seeds derived from the study seed (see stream_seed).
STREAM_OBJECT, STREAM_POSITIONS, STREAM_NOISE = 0, 1, 2
SPLITS = ("train", "test")


def stream_seed(seed: int, *key: int) -> int:
    """A non-negative int seed for the stream ``key`` of study seed ``seed`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer, False for bool and everything else."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class StudyConfig:
    """Settings of one dose-response study. Invalid values raise ``ValueError`` naming the option.

    ``nepochs``, ``batch_size``, ``n_train`` and ``n_test`` default to the ``preset``'s values (None =
    "take the preset's"). ``n_train`` / ``n_test`` are numbers of scan positions, each also the number
    of groups of C = gridsize² neighbours (one group per position). Lengths in object pixels.
    ``keras_verbose`` is the Keras progress-bar level (0: epochs are logged by the study instead).
    ``test_ssim``: reconstruct the test set after every epoch and record its amplitude SSIM in the
    history (monitoring only; a few seconds per epoch).
    ``arms``: names from ``ALL_ARM_NAMES`` or 'all'; the default is the four network arms (``ARM_NAMES``).
    ``refine_iterations``: passes of ``ptycho.refine`` over the test scan in the iterative and refined arms.
    """

    output_dir: Path
    preset: str = DEFAULT_PRESET
    nepochs: Optional[int] = None
    batch_size: Optional[int] = None
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    seed: int = 0
    arms: tuple[str, ...] = ARM_NAMES
    force: bool = False
    N: int = 64
    gridsize: int = 2
    object_size: int = 128
    nlines: int = 100
    buffer: float = 15.0
    stitch_M: int = 20
    keras_verbose: int = 0
    test_ssim: bool = True
    refine_iterations: int = DEFAULT_REFINE_ITERATIONS
    probe_defocus: float = STUDY_PROBE_DEFOCUS
    n_filters_scale: int = 1
    architecture: str = "unet"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            self._fail("preset", f"must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not isinstance(self.output_dir, (str, os.PathLike)) or not str(self.output_dir):
            self._fail("output_dir", f"must be a non-empty path, got {self.output_dir!r}")
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "arms", self._normalise_arms(self.arms))
        for name, minimum in (("nepochs", 1), ("batch_size", 1), ("seed", 0), ("N", 4), ("gridsize", 1),
                              ("object_size", 1), ("nlines", 1), ("stitch_M", 2), ("keras_verbose", 0),
                              ("n_filters_scale", 1), ("refine_iterations", 1)):
            self._require_int(name, minimum)
        if self.keras_verbose > 2:
            self._fail("keras_verbose", f"must be 0, 1 or 2, got {self.keras_verbose}")
        self._require_int("n_train", math.ceil(1 / VALIDATION_SPLIT))
        self._require_int("n_test", self.gridsize**2)
        if self.architecture not in ("unet", "reference"):
            self._fail("architecture", f"must be 'unet' or 'reference', got {self.architecture!r}")
        if isinstance(self.probe_defocus, bool) or not isinstance(self.probe_defocus, (int, float)) \
                or not math.isfinite(self.probe_defocus):
            self._fail("probe_defocus", f"must be a finite number of radians, got {self.probe_defocus!r}")
        for name in ("force", "test_ssim"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, f"must be a bool, got {getattr(self, name)!r}")
        for arm in with_dependencies(self.arms):  # surface simulation/training errors now, before any work
            for split in SPLITS:
                self.simulation_config(arm, split)
            if arm_method(arm) == "network":
                self.training_config(arm)
            else:
                self.refine_config(arm)

    def _fail(self, name: str, message: str) -> None:
        raise ValueError(f"StudyConfig.{name} (--{name.replace('_', '-')}): {message}")

    def _require_int(self, name: str, minimum: int) -> None:
        value = getattr(self, name)
        if not is_int(value):
            self._fail(name, f"must be an int, got {value!r}")
        if value < minimum:
            self._fail(name, f"must be >= {minimum}, got {value}")
        object.__setattr__(self, name, int(value))

    def _normalise_arms(self, arms: Any) -> tuple[str, ...]:
        if isinstance(arms, str):
            arms = [arms]
        try:
            names = [a.strip() for item in arms for a in str(item).split(",") if a.strip()]
        except TypeError:
            self._fail("arms", f"must be a sequence of arm names, got {arms!r}")
        if "all" in names:
            names = list(ALL_ARM_NAMES)
        unknown = sorted(set(names) - set(ALL_ARM_NAMES))
        if unknown:
            self._fail("arms", f"unknown arm(s) {unknown}; choose from {list(ALL_ARM_NAMES)} or 'all'")
        if not names:
            self._fail("arms", "must name at least one arm")
        return tuple(a for a in ALL_ARM_NAMES if a in names)  # canonical order, no duplicates

    def simulation_config(self, arm: str, split: str) -> SimulationConfig:
        """The SimulationConfig of ``arm``'s ``split`` ('train' or 'test') data set.

        Positions depend on (seed, split) only, noise on (seed, dose, split) only: a refine arm's test set is
        the network arms' test set at its dose, pattern for pattern.
        """
        nphotons = arm_nphotons(arm)
        n = self.n_train if split == "train" else self.n_test
        split_id = SPLITS.index(split)
        dose_id = noise_dose_key(nphotons)
        return SimulationConfig(
            N=self.N, gridsize=self.gridsize, object_size=self.object_size, object_kind="lines",
            nlines=self.nlines, n_positions=n, n_groups=n, scan="random", buffer=float(self.buffer),
            nphotons=nphotons, probe_defocus=float(self.probe_defocus),
            seed=stream_seed(self.seed, STREAM_POSITIONS, split_id),
            noise_seed=stream_seed(self.seed, STREAM_NOISE, dose_id, split_id),
        )

    def training_config(self, arm: str) -> TrainingConfig:
        """The TrainingConfig of ``arm`` (its loss; epochs, batch size and seed from the study).

        Every arm trains the same number of epochs: early stopping's patience is the epoch budget, so
        an arm is not cut at the uniform-object plateau while another trains on (ledger
        STUDY-EQUAL-BUDGET-001). The learning-rate schedule (ReduceLROnPlateau) still applies.
        """
        if arm_method(arm) != "network":
            raise KeyError(f"{arm!r} is not a network arm")
        return TrainingConfig(nepochs=self.nepochs, batch_size=self.batch_size, loss=arm_loss(arm),
                              validation_split=VALIDATION_SPLIT, seed=self.seed, verbose=self.keras_verbose,
                              early_stopping_patience=self.nepochs)

    def refine_config(self, arm: str) -> Any:
        """The ``ptycho.refine.RefineConfig`` of a refine arm: ``refine_iterations`` passes, ``REFINE_LOSS``,
        the object only (the probe is known), batch order seeded by the study seed."""
        from ptycho.refine import RefineConfig

        if arm_method(arm) == "network":
            raise KeyError(f"{arm!r} is not a refine arm; choose from {list(REFINE_ARMS)} or a sweep arm")
        return RefineConfig(iterations=self.refine_iterations, loss=REFINE_LOSS, refine_probe=False, seed=self.seed)

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments of ``create_model_with_gridsize`` that the study sets (ledger STUDY-MODEL-001)."""
        if self.architecture == "reference":
            return {"architecture": "reference", "input_normalization": "none",
                    "n_filters_scale": self.n_filters_scale}
        return {"architecture": self.architecture, "input_normalization": "standardize",
                "n_filters_scale": self.n_filters_scale}

    def arm_fingerprint(self, arm: str) -> dict[str, Any]:
        """Everything that determines ``arm``'s outputs; stored outputs are reused only if it matches.

        ``test_ssim`` is left out: monitoring adds to the history but does not change what is trained. The
        convolution precision is the one this machine's models get (``default_conv_dtype``).

        A refine arm's fingerprint holds its test set's settings and every ``RefineConfig`` field; a refined
        arm's also holds its source network arm's whole fingerprint (ledger STUDY-REFINE-REUSE-001). The
        network arms' fingerprints do not hold ``refine_iterations``: it does not change them.
        """
        if arm_method(arm) != "network":
            return self._refine_fingerprint(arm)
        from ptycho.model import default_conv_dtype

        nphotons, loss = arm_nphotons(arm), arm_loss(arm)
        return {
            "format": OUTPUT_FORMAT_VERSION, "arm": arm, "nphotons": nphotons, "loss": loss,
            "nepochs": self.nepochs, "batch_size": self.batch_size, "n_train": self.n_train,
            "n_test": self.n_test, "seed": self.seed, "N": self.N, "gridsize": self.gridsize,
            "object_size": self.object_size, "nlines": self.nlines, "buffer": float(self.buffer),
            "stitch_M": self.stitch_M, "validation_split": VALIDATION_SPLIT,
            "probe_defocus": float(self.probe_defocus), **self.model_options(),
            "conv_dtype": default_conv_dtype(),
        }

    def _refine_fingerprint(self, arm: str) -> dict[str, Any]:
        source = arm_source(arm)
        out = {
            "format": REFINE_FORMAT_VERSION, "arm": arm, "method": arm_method(arm), "nphotons": arm_nphotons(arm),
            "n_test": self.n_test, "seed": self.seed, "N": self.N, "gridsize": self.gridsize,
            "object_size": self.object_size, "nlines": self.nlines, "buffer": float(self.buffer),
            "probe_defocus": float(self.probe_defocus), "refine": dataclasses.asdict(self.refine_config(arm)),
        }
        if source is not None:
            out["source"] = self.arm_fingerprint(source)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["arms"] = list(self.arms)
        return out
