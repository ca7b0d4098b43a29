"""The dose-response study (SPEC §6): does a Poisson-NLL-trained PINN beat an MAE-trained one at low dose?

Four arms, each a fresh model trained on its own simulated data set::

    arm        photons per pattern   loss
    high_nll   1e9                   Poisson NLL
    high_mae   1e9                   MAE
    low_nll    1e4                   Poisson NLL
    low_mae    1e4                   MAE

Shared ground truth. One lines object (``object_size``², complex64) is drawn once from ``seed`` and
passed to ``simulate_dataset(config, obj=obj)`` for every arm; the probe is the package default for N;
train and test scan positions (random, ``buffer`` px from the edge) come from two distinct streams
derived from ``seed``, so test patterns are unseen and every arm sees the same positions and groups.
The Poisson noise stream depends on ``seed``, the dose and the split only: the NLL and MAE arms at one
dose train on *identical* data (a paired design), so their difference is the loss alone.

Per arm: simulate train/test → ``create_model_with_gridsize`` with the train set's intensity scale →
``train.train`` (loss 'nll' or 'mae') → ``inference.reconstruct`` on the test set → crop the stitched
reconstruction and the truth to the bounding box of the test group centroids → ``evaluation.evaluate``.

Outputs, all under ``output_dir`` (nothing is written elsewhere; every file is written to a temporary
name in its own directory and then renamed, so a crash never leaves a truncated file)::

    <arm>/wts.h5.zip            the trained models (ptycho.persistence)
    <arm>/history.json          per-epoch losses
    <arm>/reconstruction.npz    reconstruction/truth crops (H, W) complex64, their origin [x, y] in
                                object pixels, a test diffraction pattern (N, N) float32 (amplitude √counts
                                / s and counts), the full stitch and its origin, the crop's coverage
                                (H, W) bool (pixels some stitched window covers; uncovered ones are 0
                                in the stitch and masked in the figures)
    <arm>/metrics.json          this arm's metrics and configuration; written last = "arm complete"
    metrics.json                {"arms": {arm: {...}}, "config": {...}, "versions": {...}}
    dose_comparison.png         the six panels of SPEC §6
    reconstructions.png         truth beside the four reconstructions, amplitude and phase
    run.log                     progress per arm and per epoch, errors with tracebacks

JSON files never hold NaN or infinity: a non-finite float is written as ``null``.
A re-run skips an arm whose four files exist and whose stored configuration matches (``force`` retrains).
A failing arm is logged with its traceback and recorded as ``"status": "failed"``; the other arms still run
and ``main`` returns 1.

Importing this module does no work: TensorFlow, Keras, matplotlib and the model modules are imported
inside the functions that need them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import inspect
import json
import logging
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

from ptycho.config import SimulationConfig, TrainingConfig

#: arm name -> (photons per pattern, training loss), in run order.
ARMS: dict[str, tuple[float, str]] = {
    "high_nll": (1e9, "nll"),
    "high_mae": (1e9, "mae"),
    "low_nll": (1e4, "nll"),
    "low_mae": (1e4, "mae"),
}
ARM_NAMES: tuple[str, ...] = tuple(ARMS)
DOSES: dict[str, float] = {"high": 1e9, "low": 1e4}

#: Settings a preset fixes; any of them given explicitly (CLI flag or keyword) overrides the preset.
#: 'quick' values are tentative until the model's throughput on the target machine is measured.
PRESETS: dict[str, dict[str, int]] = {
    "quick": {"n_train": 256, "n_test": 128, "nepochs": 10, "batch_size": 16},
    "paper": {"n_train": 2000, "n_test": 128, "nepochs": 50, "batch_size": 16},
}
DEFAULT_PRESET = "quick"
DEFAULT_OUTPUT_DIR = "runs/dose_response"

#: Files that make an arm complete; the per-arm metrics file is written last.
ARM_FILES = ("wts.h5.zip", "history.json", "reconstruction.npz", "metrics.json")
#: Bumped when the meaning of stored outputs changes, so old outputs are not reused.
OUTPUT_FORMAT_VERSION = 2
#: Training split reserved for validation (TrainingConfig default); n_train must leave >= 1 sample.
VALIDATION_SPLIT = 0.05
#: Smallest side (px) of the evaluated crop (ptycho.evaluation needs 16).
MIN_CROP = 16

# Stream ids for seeds derived from the study seed (see _stream_seed).
_STREAM_OBJECT, _STREAM_POSITIONS, _STREAM_NOISE = 0, 1, 2
_SPLITS = ("train", "test")

LOGGER_NAME = "ptycho.studies.dose"


# --------------------------------------------------------------------------------------------------
# Configuration


def _stream_seed(seed: int, *key: int) -> int:
    """A non-negative int seed for the stream ``key`` of study seed ``seed`` (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class StudyConfig:
    """Settings of one dose-response study. Invalid values raise ``ValueError`` naming the option.

    ``nepochs``, ``batch_size``, ``n_train`` and ``n_test`` default to the ``preset``'s values (None =
    "take the preset's"). ``n_train`` / ``n_test`` are numbers of scan positions, each also the number
    of groups of C = gridsize² neighbours (one group per position). Lengths in object pixels.
    ``keras_verbose`` is the Keras progress-bar level (0: epochs are logged by the study instead).
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
                              ("object_size", 1), ("nlines", 1), ("stitch_M", 2), ("keras_verbose", 0)):
            self._require_int(name, minimum)
        if self.keras_verbose > 2:
            self._fail("keras_verbose", f"must be 0, 1 or 2, got {self.keras_verbose}")
        self._require_int("n_train", math.ceil(1 / VALIDATION_SPLIT))
        self._require_int("n_test", self.gridsize**2)
        if not isinstance(self.force, bool):
            self._fail("force", f"must be a bool, got {self.force!r}")
        for arm in self.arms:  # surface simulation/training errors now, before any work
            for split in _SPLITS:
                self.simulation_config(arm, split)
            self.training_config(arm)

    def _fail(self, name: str, message: str) -> None:
        raise ValueError(f"StudyConfig.{name} (--{name.replace('_', '-')}): {message}")

    def _require_int(self, name: str, minimum: int) -> None:
        value = getattr(self, name)
        if not _is_int(value):
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
            names = list(ARM_NAMES)
        unknown = sorted(set(names) - set(ARM_NAMES))
        if unknown:
            self._fail("arms", f"unknown arm(s) {unknown}; choose from {list(ARM_NAMES)} or 'all'")
        if not names:
            self._fail("arms", "must name at least one arm")
        return tuple(a for a in ARM_NAMES if a in names)  # canonical order, no duplicates

    def simulation_config(self, arm: str, split: str) -> SimulationConfig:
        """The SimulationConfig of ``arm``'s ``split`` ('train' or 'test') data set.

        Positions depend on (seed, split) only, noise on (seed, dose, split) only.
        """
        nphotons, _ = ARMS[arm]
        n = self.n_train if split == "train" else self.n_test
        split_id = _SPLITS.index(split)
        dose_id = list(DOSES.values()).index(nphotons)
        return SimulationConfig(
            N=self.N, gridsize=self.gridsize, object_size=self.object_size, object_kind="lines",
            nlines=self.nlines, n_positions=n, n_groups=n, scan="random", buffer=float(self.buffer),
            nphotons=nphotons, seed=_stream_seed(self.seed, _STREAM_POSITIONS, split_id),
            noise_seed=_stream_seed(self.seed, _STREAM_NOISE, dose_id, split_id),
        )

    def training_config(self, arm: str) -> TrainingConfig:
        """The TrainingConfig of ``arm`` (its loss; epochs, batch size and seed from the study).

        Every arm trains the same number of epochs: early stopping's patience is the epoch budget, so
        an arm is not cut at the uniform-object plateau while another trains on (ledger
        STUDY-EQUAL-BUDGET-001). The learning-rate schedule (ReduceLROnPlateau) still applies.
        """
        return TrainingConfig(nepochs=self.nepochs, batch_size=self.batch_size, loss=ARMS[arm][1],
                              validation_split=VALIDATION_SPLIT, seed=self.seed, verbose=self.keras_verbose,
                              early_stopping_patience=self.nepochs)

    def arm_fingerprint(self, arm: str) -> dict[str, Any]:
        """Everything that determines ``arm``'s outputs; stored outputs are reused only if it matches."""
        nphotons, loss = ARMS[arm]
        return {
            "format": OUTPUT_FORMAT_VERSION, "arm": arm, "nphotons": nphotons, "loss": loss,
            "nepochs": self.nepochs, "batch_size": self.batch_size, "n_train": self.n_train,
            "n_test": self.n_test, "seed": self.seed, "N": self.N, "gridsize": self.gridsize,
            "object_size": self.object_size, "nlines": self.nlines, "buffer": float(self.buffer),
            "stitch_M": self.stitch_M, "validation_split": VALIDATION_SPLIT,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        out = dataclasses.asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["arms"] = list(self.arms)
        return out


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class ArmResult:
    """What one arm produced.

    status: 'ok', 'failed' or 'not run'.  metrics: JSON-ready scalars (evaluation metrics, losses, ...).
    reconstruction, truth: (H, W) complex64 crops on the same object-pixel grid, pixel (0, 0) at
    object position ``origin`` = (x, y).  diffraction_counts: (N, N) float32, photons, one test pattern.
    extras: further arrays saved in reconstruction.npz.  skipped: outputs were read back from disk.
    """

    arm: str
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reconstruction: Optional[np.ndarray] = None
    truth: Optional[np.ndarray] = None
    origin: tuple[float, float] = (math.nan, math.nan)
    diffraction_counts: Optional[np.ndarray] = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    error: Optional[str] = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class StudyResult:
    """All arms' results (every arm name, in run order) and whether everything requested succeeded."""

    arms: dict[str, ArmResult]
    ok: bool
    output_dir: Path


ArmRunner = Callable[["StudyConfig", str, np.ndarray, Path, logging.Logger], ArmResult]


# --------------------------------------------------------------------------------------------------
# Atomic file output


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); on success rename it onto ``path``.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def to_jsonable(value: Any) -> Any:
    """Convert numpy/TF scalars and arrays, paths and tuples to JSON types; NaN and ±inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, complex):
        return [to_jsonable(value.real), to_jsonable(value.imag)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "numpy"):  # a TF / Keras tensor or variable
        return to_jsonable(np.asarray(value.numpy()))
    return str(value)


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as strict JSON (non-finite floats as null), atomically."""
    text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Save a matplotlib Figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def versions() -> dict[str, Optional[str]]:
    """Versions of Python and of the packages the study depends on (None if not installed)."""
    import ptycho

    out: dict[str, Optional[str]] = {"python": sys.version.split()[0], "ptycho": ptycho.__version__}
    for dist in ("numpy", "scipy", "tensorflow", "keras", "matplotlib", "scikit-image"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --------------------------------------------------------------------------------------------------
# Per-arm outputs on disk


def arm_dir(config: StudyConfig, arm: str) -> Path:
    return config.output_dir / arm


def write_arm_outputs(directory: Path, result: ArmResult, fingerprint: Mapping[str, Any]) -> None:
    """Write ``reconstruction.npz`` and then (last, marking completion) the per-arm ``metrics.json``."""
    arrays = {
        "reconstruction": np.asarray(result.reconstruction, dtype=np.complex64),
        "truth": np.asarray(result.truth, dtype=np.complex64),
        "origin": np.asarray(result.origin, dtype=np.float64),
        "diffraction_counts": np.asarray(result.diffraction_counts, dtype=np.float32),
    }
    arrays.update({k: np.asarray(v) for k, v in result.extras.items()})
    with atomic_path(directory / "reconstruction.npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    write_json(directory / "metrics.json", {"status": "ok", "metrics": result.metrics, "config": fingerprint})


def _read_arm_metrics(directory: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(config: StudyConfig, arm: str) -> bool:
    """True if all of ``arm``'s files exist and were produced by the same configuration."""
    directory = arm_dir(config, arm)
    if not all((directory / name).is_file() for name in ARM_FILES):
        return False
    stored = _read_arm_metrics(directory)
    return bool(stored) and stored.get("status") == "ok" and stored.get("config") == to_jsonable(
        config.arm_fingerprint(arm))


def load_arm(config: StudyConfig, arm: str) -> ArmResult:
    """Read a complete arm back from disk (``skipped=True``)."""
    directory = arm_dir(config, arm)
    stored = _read_arm_metrics(directory)
    if stored is None:
        raise ValueError(f"{directory / 'metrics.json'}: unreadable")
    with np.load(directory / "reconstruction.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    core = ("reconstruction", "truth", "origin", "diffraction_counts")
    return ArmResult(
        arm=arm, status="ok", metrics=dict(stored.get("metrics", {})),
        reconstruction=arrays["reconstruction"], truth=arrays["truth"],
        origin=(float(arrays["origin"][0]), float(arrays["origin"][1])),
        diffraction_counts=arrays["diffraction_counts"],
        extras={k: v for k, v in arrays.items() if k not in core}, skipped=True,
    )


# --------------------------------------------------------------------------------------------------
# One arm (the real runner; tests inject a fake)


def make_ground_truth(config: StudyConfig) -> np.ndarray:
    """The shared lines object, (object_size, object_size) complex64, from the object stream of ``seed``."""
    from ptycho import objects

    rng = np.random.default_rng(_stream_seed(config.seed, _STREAM_OBJECT))
    obj = objects.lines_object(config.object_size, config.nlines, rng)
    return np.asarray(obj, dtype=np.complex64)


def summarise_history(history: Mapping[str, Any]) -> dict[str, Any]:
    """final_loss, final_val_loss, best_val_loss (None if absent) and epochs_run of a Keras history dict."""
    loss = [float(v) for v in history.get("loss", [])]
    val = [float(v) for v in history.get("val_loss", [])]
    finite_val = [v for v in val if math.isfinite(v)]
    return {
        "final_loss": loss[-1] if loss else None,
        "final_val_loss": val[-1] if val else None,
        "best_val_loss": min(finite_val) if finite_val else None,
        "epochs_run": len(loss),
    }


def crop_to_scan(recon: np.ndarray, x0: float, y0: float, truth: np.ndarray,
                 centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop a stitched reconstruction and the truth to the bounding box of the scan.

    recon: (H', W') complex, pixel (r, c) at object position (x0 + c, y0 + r).  truth: (H, W) complex
    object.  centroids: (B, 2) float, [x, y] of the test group centroids (the stitch's patch centres).
    Returns (recon_crop (h, w) complex64, truth_crop (h, w) complex64, origin (x, y) of pixel (0, 0));
    the truth is sampled bilinearly (zero outside) on the reconstruction's grid, exactly when x0, y0
    are integers.
    """
    from scipy import ndimage

    recon = np.asarray(recon)
    xs, ys = centroids[:, 0], centroids[:, 1]
    c0, c1 = max(0, math.ceil(xs.min() - x0)), min(recon.shape[1], math.floor(xs.max() - x0) + 1)
    r0, r1 = max(0, math.ceil(ys.min() - y0)), min(recon.shape[0], math.floor(ys.max() - y0) + 1)
    if c1 - c0 < MIN_CROP or r1 - r0 < MIN_CROP:
        raise ValueError(f"scanned region {r1 - r0}x{c1 - c0} px is smaller than {MIN_CROP} px: "
                         "use more test positions (--n-test)")
    origin = (float(x0 + c0), float(y0 + r0))
    rows, cols = np.meshgrid(origin[1] + np.arange(r1 - r0), origin[0] + np.arange(c1 - c0), indexing="ij")
    coords = np.stack([rows, cols])
    part = [ndimage.map_coordinates(np.asarray(f(truth), np.float64), coords, order=1, mode="constant")
            for f in (np.real, np.imag)]
    truth_crop = (part[0] + 1j * part[1]).astype(np.complex64)
    return recon[r0:r1, c0:c1].astype(np.complex64), truth_crop, origin


def crop_slices(x0: float, y0: float, origin: tuple[float, float],
                shape: tuple[int, int]) -> tuple[slice, slice]:
    """(rows, cols) of a stitch with origin (x0, y0) that hold a crop with ``origin`` and ``shape``."""
    r0, c0 = int(round(origin[1] - y0)), int(round(origin[0] - x0))
    return slice(r0, r0 + shape[0]), slice(c0, c0 + shape[1])


def make_epoch_logger(log: logging.Logger, arm: str, nepochs: int) -> Any:
    """A Keras callback logging each epoch's losses and duration to ``log``."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            parts = []
            for key, value in sorted((logs or {}).items()):
                try:
                    parts.append(f"{key}={float(value):.5g}")
                except (TypeError, ValueError):
                    continue
            elapsed = time.perf_counter() - getattr(self, "_start", time.perf_counter())
            log.info("arm %s: epoch %d/%d  %s  (%.1f s)", arm, epoch + 1, nepochs, " ".join(parts), elapsed)

    return EpochLogger()


def _train(train_fn: Callable, autoencoder: Any, dataset: Any, tconfig: TrainingConfig,
           callbacks: list) -> dict:
    """Call ``train_fn`` with the epoch-logging callbacks if it accepts them, else with Keras's own log."""
    params = inspect.signature(train_fn).parameters
    if "callbacks" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return train_fn(autoencoder, dataset, tconfig, callbacks=callbacks)
    return train_fn(autoencoder, dataset, dataclasses.replace(tconfig, verbose=max(tconfig.verbose, 2)))


def run_arm(config: StudyConfig, arm: str, truth: np.ndarray, directory: Path,
            log: logging.Logger) -> ArmResult:
    """Simulate, train, reconstruct and evaluate one arm; writes ``wts.h5.zip`` and ``history.json``.

    truth: (object_size, object_size) complex64, the shared object. ``directory`` exists.
    """
    import keras

    from ptycho import evaluation, inference, persistence, simulate
    from ptycho import model as model_lib
    from ptycho import train as train_lib

    keras.backend.clear_session()  # fresh Keras state per arm; the scale lives in each model anyway
    nphotons, loss = ARMS[arm]
    train_ds = simulate.simulate_dataset(config.simulation_config(arm, "train"), obj=truth)
    test_ds = simulate.simulate_dataset(config.simulation_config(arm, "test"), obj=truth)
    scale = float(train_ds.intensity_scale)
    log.info("arm %s: simulated %d train groups, %d test groups at %.0e photons (s = %.4g)",
             arm, train_ds.n_groups, test_ds.n_groups, nphotons, scale)

    autoencoder, diffraction_to_obj = model_lib.create_model_with_gridsize(
        config.gridsize, config.N, probe=train_ds.probe, intensity_scale=scale, seed=config.seed)
    tconfig = config.training_config(arm)
    log.info("arm %s: training, loss %s, %d epochs, batch %d", arm, loss, tconfig.nepochs, tconfig.batch_size)
    history = _train(train_lib.train, autoencoder, train_ds, tconfig,
                     [make_epoch_logger(log, arm, tconfig.nepochs)])
    history = {k: ([float(v) for v in vals] if isinstance(vals, (list, tuple)) else vals)
               for k, vals in dict(history).items()}
    write_json(directory / "history.json", history)

    recon = inference.reconstruct(diffraction_to_obj, test_ds, M=config.stitch_M)
    centroids = np.asarray(test_ds.coords_offsets)[:, 0, :, 0]
    rec_crop, truth_crop, origin = crop_to_scan(np.asarray(recon.obj), recon.x0, recon.y0, truth, centroids)
    metrics = dict(evaluation.evaluate(rec_crop, truth_crop))
    coverage = getattr(recon, "coverage", None)
    if coverage is not None:  # fraction of the evaluated crop that some stitched window covers
        rows, cols = crop_slices(recon.x0, recon.y0, origin, rec_crop.shape)
        coverage_crop = np.asarray(coverage, dtype=bool)[rows, cols]
        metrics["crop_coverage"] = float(np.mean(coverage_crop))
    log.info("arm %s: evaluated on a %dx%d crop: %s", arm, *rec_crop.shape, _format_metrics(metrics))

    persistence.save_model(directory / "wts.h5.zip", autoencoder, diffraction_to_obj,
                           metadata={"study": "dose_response", **config.arm_fingerprint(arm)})
    probe_pattern = int(np.asarray(test_ds.group_indices)[0, 0])
    amplitude = np.asarray(test_ds.diffraction[probe_pattern], dtype=np.float32)
    test_scale = float(test_ds.intensity_scale)
    metrics.update(summarise_history(history), intensity_scale=scale, n_train=train_ds.n_groups,
                   n_test=test_ds.n_groups)
    return ArmResult(
        arm=arm, status="ok", metrics=metrics, reconstruction=rec_crop, truth=truth_crop, origin=origin,
        diffraction_counts=(test_scale * amplitude) ** 2,
        extras={"diffraction": amplitude, "diffraction_index": np.int64(probe_pattern),
                "test_intensity_scale": np.float64(test_scale),
                "reconstruction_full": np.asarray(recon.obj, dtype=np.complex64),
                "origin_full": np.asarray([recon.x0, recon.y0], dtype=np.float64),
                **({} if coverage is None else {"coverage": coverage_crop})},
    )


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            parts.append(f"{key}={float(value):.4g}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# The study


def run_study(config: StudyConfig, *, run_arm: ArmRunner = run_arm,
              make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth,
              log: Optional[logging.Logger] = None) -> StudyResult:
    """Run the requested arms (skipping complete ones unless ``force``), then write metrics and figures.

    Arms not requested but complete on disk with the same configuration are reported too.
    ``ok`` is False if any requested arm or any summary output failed.
    """
    log = log or logging.getLogger(LOGGER_NAME)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ArmResult] = {}
    truth: Optional[np.ndarray] = None
    for arm in ARM_NAMES:
        if arm not in config.arms or (not config.force and is_complete(config, arm)):
            results[arm] = _reuse_arm(config, arm, log)
            if results[arm].ok or arm not in config.arms:
                continue
        log.info("arm %s: start (%.0e photons, loss %s)", arm, *ARMS[arm])
        start = time.perf_counter()
        try:
            if truth is None:
                truth = make_truth(config)
            directory = arm_dir(config, arm)
            directory.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # an interrupted retrain must not look complete
                (directory / "metrics.json").unlink()
            result = run_arm(config, arm, truth, directory, log)
            result.metrics.update(_arm_header(arm), wall_time_s=time.perf_counter() - start)
            write_arm_outputs(directory, result, config.arm_fingerprint(arm))
            log.info("arm %s: done in %.1f s", arm, result.metrics["wall_time_s"])
        except Exception as exc:  # one failing arm must not stop the others
            log.error("arm %s: FAILED after %.1f s: %s: %s\n%s", arm, time.perf_counter() - start,
                      type(exc).__name__, exc, traceback.format_exc())
            result = ArmResult(arm=arm, status="failed", error=f"{type(exc).__name__}: {exc}",
                               metrics={**_arm_header(arm), "wall_time_s": time.perf_counter() - start})
        results[arm] = result
    ok = all(results[arm].ok for arm in config.arms)
    ok &= _write_summaries(config, results, log)
    log.info("study %s: %s", "finished" if ok else "finished with failures",
             ", ".join(f"{a}={r.status}" for a, r in results.items()))
    return StudyResult(arms=results, ok=ok, output_dir=config.output_dir)


def _arm_header(arm: str) -> dict[str, Any]:
    nphotons, loss = ARMS[arm]
    return {"nphotons": nphotons, "loss": loss}


def _reuse_arm(config: StudyConfig, arm: str, log: logging.Logger) -> ArmResult:
    """A complete arm read back from disk, or a 'not run' placeholder."""
    if not is_complete(config, arm):
        return ArmResult(arm=arm, status="not run")
    try:
        result = load_arm(config, arm)
    except Exception as exc:  # unreadable outputs: retrain if requested, else leave out
        log.warning("arm %s: stored outputs unreadable (%s); %s", arm, exc,
                    "retraining" if arm in config.arms else "not reported")
        return ArmResult(arm=arm, status="not run")
    if arm in config.arms:
        log.info("arm %s: outputs complete, skipping (use --force to retrain)", arm)
    else:
        log.info("arm %s: not requested; reporting its stored outputs", arm)
    return result


def _write_summaries(config: StudyConfig, results: Mapping[str, ArmResult], log: logging.Logger) -> bool:
    """metrics.json and both figures; a failure is logged and returns False (the rest is still written)."""
    ok = True
    jobs = (
        ("metrics.json", lambda p: write_json(p, metrics_payload(config, results))),
        ("dose_comparison.png", lambda p: save_figure(build_dose_figure(results), p)),
        ("reconstructions.png", lambda p: save_figure(build_reconstruction_figure(results), p)),
    )
    for name, job in jobs:
        try:
            job(config.output_dir / name)
            log.info("wrote %s", config.output_dir / name)
        except Exception as exc:
            log.error("writing %s FAILED: %s: %s\n%s", name, type(exc).__name__, exc, traceback.format_exc())
            ok = False
    return ok


def metrics_payload(config: StudyConfig, results: Mapping[str, ArmResult]) -> dict[str, Any]:
    """The content of ``metrics.json``: every arm that ran, failed or was reused, plus config and versions."""
    arms = {}
    for arm, result in results.items():
        if result.status == "not run":
            continue
        entry = {"status": result.status, **_arm_header(arm), **result.metrics, "skipped": result.skipped}
        if result.error is not None:
            entry["error"] = result.error
        arms[arm] = entry
    return {"arms": arms, "config": config.as_dict(), "versions": versions(),
            "notes": "non-finite floats are written as null"}


# --------------------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects, no pyplot state)


def find_metric(metrics: Mapping[str, Any], name: str) -> Optional[float]:
    """The value of metric ``name`` (exact key, else the first key containing it, amplitude preferred)."""
    candidates = [name] + sorted((k for k in metrics if name in k.lower() and k != name),
                                 key=lambda k: ("amp" not in k.lower(), k))
    for key in candidates:
        value = metrics.get(key)
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            return float(value)
    return None


def _title_with_ssim(arm: str, metrics: Mapping[str, Any]) -> str:
    ssim = find_metric(metrics, "ssim")
    return f"{arm}  SSIM = {ssim:.3f}" if ssim is not None and math.isfinite(ssim) else f"{arm}  SSIM = n/a"


def _placeholder(ax: Any, text: str, title: str) -> None:
    """An empty panel saying ``text`` ('No Data' for a failed arm)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _image(fig: Any, ax: Any, data: np.ndarray, title: str, origin_xy: tuple[float, float] = (0.0, 0.0),
           **kwargs: Any) -> None:
    h, w = data.shape
    x0, y0 = origin_xy
    extent = (x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)  # axes in object pixels
    im = ax.imshow(data, extent=extent, **kwargs)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)


def _masked(result: ArmResult, data: np.ndarray) -> np.ndarray:
    """``data`` (H, W) with pixels no stitched window covered masked out (if the coverage is known)."""
    coverage = result.extras.get("coverage")
    if coverage is None or np.shape(coverage) != np.shape(data):
        return data
    return np.ma.masked_array(data, mask=~np.asarray(coverage, dtype=bool))


def _diffraction_source(results: Mapping[str, ArmResult], dose: str) -> Optional[ArmResult]:
    for loss in ("nll", "mae"):
        result = results.get(f"{dose}_{loss}")
        if result is not None and result.ok and result.diffraction_counts is not None:
            return result
    return None


def _empty_panel(ax: Any, result: Optional[ArmResult], arm: str) -> None:
    if result is not None and result.status == "failed":
        _placeholder(ax, "No Data", f"{arm} (failed)")
    else:
        _placeholder(ax, "Not run", arm)


def build_dose_figure(results: Mapping[str, ArmResult]) -> Any:
    """The six panels of SPEC §6 as a matplotlib Figure (2 x 3 axes, row 0 high dose, row 1 low dose).

    Column 0: log10(1 + counts) of one test pattern at that dose; columns 1 and 2: |reconstruction| of
    the MAE and NLL arms, titled with arm and SSIM. 'No Data' only where an arm failed; 'Not run' where
    it was not run.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    for row, (dose, nphotons) in enumerate(DOSES.items()):
        source = _diffraction_source(results, dose)
        if source is not None:
            _image(fig, axes[row, 0], np.log10(1.0 + np.asarray(source.diffraction_counts, np.float64)),
                   f"{dose} dose ({nphotons:.0e} photons): log10(1 + counts)", cmap="magma")
        else:
            failed = [results.get(f"{dose}_{l}") for l in ("nll", "mae")]
            any_failed = any(r is not None and r.status == "failed" for r in failed)
            _placeholder(axes[row, 0], "No Data" if any_failed else "Not run", f"{dose} dose diffraction")
        for col, loss in ((1, "mae"), (2, "nll")):
            arm = f"{dose}_{loss}"
            result = results.get(arm)
            if result is not None and result.ok and result.reconstruction is not None:
                _image(fig, axes[row, col], _masked(result, np.abs(result.reconstruction)),
                       _title_with_ssim(arm, result.metrics),
                       result.origin, cmap="gray")
            else:
                _empty_panel(axes[row, col], result, arm)
    fig.suptitle("Dose response: amplitude of the test-set reconstruction (axes in object pixels)")
    return fig


def align_for_display(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``recon`` with its mean amplitude scaled to the truth's and its global phase offset removed.

    (H, W) complex each; display only — the metrics come from ``ptycho.evaluation``.
    """
    recon = np.asarray(recon, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    mean_abs = np.mean(np.abs(recon))
    gain = np.mean(np.abs(truth)) / mean_abs if mean_abs > 0 else 1.0
    inner = np.vdot(recon, truth)  # sum(conj(recon) * truth)
    rotation = np.exp(1j * np.angle(inner)) if abs(inner) > 0 else 1.0
    return (recon * gain * rotation).astype(np.complex64)


def build_reconstruction_figure(results: Mapping[str, ArmResult]) -> Any:
    """Truth beside the four reconstructions: row 0 amplitude, row 1 phase (2 x 5 axes).

    Reconstructions are scaled to the truth's mean amplitude with the global phase removed and shown
    on the truth's colour scale, so the panels compare directly.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(20, 8), layout="constrained")
    axes = fig.subplots(2, 1 + len(ARM_NAMES))
    reference = next((r for r in results.values() if r.ok and r.truth is not None), None)
    if reference is None:
        for ax in axes.ravel():
            _placeholder(ax, "No Data", "")
        return fig
    truth = np.asarray(reference.truth)
    amp_lim = (float(np.abs(truth).min()), float(np.abs(truth).max()))
    phases = [np.angle(truth)] + [np.angle(align_for_display(r.reconstruction, r.truth))
                                  for r in results.values() if r.ok and r.reconstruction is not None]
    phase_max = max(float(np.percentile(np.abs(np.concatenate([p.ravel() for p in phases])), 99)), 1e-3)
    panels = [("truth", truth, {})] + [
        (arm, align_for_display(r.reconstruction, r.truth), r.metrics) if r is not None and r.ok else (arm, None, r)
        for arm, r in ((a, results.get(a)) for a in ARM_NAMES)
    ]
    for col, (name, data, extra) in enumerate(panels):
        if data is None:
            _empty_panel(axes[0, col], extra, name)
            _empty_panel(axes[1, col], extra, name)
            continue
        title = name if name == "truth" else _title_with_ssim(name, extra)
        origin = reference.origin if name == "truth" else results[name].origin
        mask = (lambda d: d) if name == "truth" else functools.partial(_masked, results[name])
        _image(fig, axes[0, col], mask(np.abs(data)), f"{title}\namplitude", origin, cmap="gray",
               vmin=amp_lim[0], vmax=amp_lim[1])
        _image(fig, axes[1, col], mask(np.angle(data)), f"{name} phase (rad)", origin, cmap="twilight_shifted",
               vmin=-phase_max, vmax=phase_max)
    fig.suptitle("Test-region reconstructions beside the truth (amplitude scaled to the truth's mean, "
                 "global phase removed)")
    return fig


# --------------------------------------------------------------------------------------------------
# Logging and command line


@contextlib.contextmanager
def study_logging(output_dir: Path, console: bool = True) -> Iterator[logging.Logger]:
    """The study logger, writing to ``output_dir/run.log`` (appended) and, if ``console``, to stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(Path(output_dir) / "run.log", encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    saved = (logger.level, logger.propagate)
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _int_at_least(minimum: int, description: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= ``minimum`` ("must be a <description> integer")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {description} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_nonnegative_int = _int_at_least(0, "non-negative")


def build_parser() -> argparse.ArgumentParser:
    """The CLI of SPEC §6."""
    presets = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                        for name, values in PRESETS.items())
    arms = ", ".join(f"{a} ({p:.0e} photons, {l})" for a, (p, l) in ARMS.items())
    parser = argparse.ArgumentParser(
        prog="dose_response_study.py",
        description=(
            "Dose-response study: train a PINN with Poisson-NLL and with MAE loss at high (1e9) and low "
            "(1e4) photon dose on one simulated lines object (N=64, gridsize 2, 128x128 object, random "
            f"positions 15 px from the edge) and compare the reconstructions. Arms: {arms}."),
        epilog=(
            f"Presets: {presets}. Explicit flags override the preset. Outputs (all under --output-dir): "
            "<arm>/wts.h5.zip, <arm>/history.json, <arm>/reconstruction.npz, <arm>/metrics.json, "
            "metrics.json, dose_comparison.png, reconstructions.png, run.log. Exit status: 0 if every "
            "requested arm succeeded, 1 if any failed (the others still run), 2 for invalid arguments."),
    )
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                        help=f"directory for every output, created if needed; nothing is written "
                             f"elsewhere (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"bundle of n_train, n_test, nepochs, batch_size (default: {DEFAULT_PRESET})")
    parser.add_argument("--nepochs", type=_positive_int, metavar="N",
                        help="maximum training epochs per arm (early stopping may end sooner; default: preset)")
    parser.add_argument("--batch-size", type=_positive_int, metavar="B", help="training batch size (default: preset)")
    parser.add_argument("--n-train", type=_positive_int, metavar="N",
                        help="training scan positions = groups per arm, >= 20 so the 5%% validation split "
                             "is not empty (default: preset)")
    parser.add_argument("--n-test", type=_positive_int, metavar="N",
                        help="test scan positions = groups (unseen positions on the same object), >= 4 "
                             "(default: preset)")
    parser.add_argument("--seed", type=_nonnegative_int, default=0,
                        help="study seed: object, positions and noise streams derive from it (default: 0)")
    parser.add_argument("--arms", nargs="+", default=["all"], metavar="ARM",
                        help=f"arms to run, space- or comma-separated, from {', '.join(ARM_NAMES)}, or "
                             "'all' (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="retrain requested arms even if their outputs are complete (default: skip them)")
    parser.add_argument("--keras-verbose", type=int, choices=(0, 1, 2), default=0,
                        help="Keras progress output during training: 0 none (the study logs each epoch), "
                             "1 progress bar, 2 one line per epoch (default: 0)")
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A StudyConfig from parsed arguments (ValueError naming the option if invalid)."""
    return StudyConfig(output_dir=Path(args.output_dir), preset=args.preset, nepochs=args.nepochs,
                       batch_size=args.batch_size, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                       arms=tuple(args.arms), force=args.force, keras_verbose=args.keras_verbose)


def prepare_output_dir(path: Path) -> None:
    """Create ``path`` (with parents) and check it is a writable directory; ValueError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output-dir {str(path)!r}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"--output-dir {str(path)!r}: not a writable directory ({exc.strerror or exc})") from None


def main(argv: Optional[list[str]] = None, *, run_arm: ArmRunner = run_arm,
         make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth) -> int:
    """Parse and validate ``argv`` (exit 2 on invalid arguments, before any work), run the study.

    Returns 0 if every requested arm succeeded, 1 otherwise.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        prepare_output_dir(config.output_dir)
    except ValueError as exc:
        parser.error(str(exc))
    with study_logging(config.output_dir) as log:
        log.info("dose-response study: %s", json.dumps(config.as_dict()))
        result = run_study(config, run_arm=run_arm, make_truth=make_truth, log=log)
    return 0 if result.ok else 1
