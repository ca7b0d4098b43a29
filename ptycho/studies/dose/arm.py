"""One arm of the dose-response study: run it (on the shared ``ptycho.workflow`` path) and keep its outputs.

Per arm: simulate train/test on the shared object → ``workflow.train_model`` (fresh model with the train
set's intensity scale, loss 'nll' or 'mae', test-set SSIM monitored per epoch unless disabled) →
``workflow.write_training_outputs`` (wts.h5.zip, history.json, training.png) →
``workflow.reconstruct_and_evaluate`` on the test set (crop to the scanned region, SPEC §5 metrics).

Files in ``<output_dir>/<arm>/`` (``ARM_FILES``); ``metrics.json`` is written last and marks the arm
complete::

    wts.h5.zip, history.json, training.png   the shared training outputs
    reconstruction.npz    reconstruction/truth crops (H, W) complex64, their origin [x, y] in object pixels,
                          a test diffraction pattern (N, N) float32 (amplitude √counts / s and counts), the
                          full stitch and its origin, the crop's coverage (H, W) bool
    metrics.json          this arm's metrics and the fingerprint of the settings that produced it

Importing this module does no work: TensorFlow and the model modules are imported inside ``run_arm``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ptycho import files
from ptycho import history as history_lib
from ptycho.studies.dose.config import ARMS, STREAM_OBJECT, StudyConfig, stream_seed

#: Files that make an arm complete; the per-arm metrics file is written last.
ARM_FILES = ("wts.h5.zip", "history.json", "training.png", "reconstruction.npz", "metrics.json")


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


def arm_header(arm: str) -> dict[str, Any]:
    """The arm's dose and loss, as recorded with its metrics."""
    nphotons, loss = ARMS[arm]
    return {"nphotons": nphotons, "loss": loss}


def arm_dir(config: StudyConfig, arm: str) -> Path:
    return config.output_dir / arm


def make_ground_truth(config: StudyConfig) -> np.ndarray:
    """The shared lines object, (object_size, object_size) complex64, from the object stream of ``seed``."""
    from ptycho import objects

    rng = np.random.default_rng(stream_seed(config.seed, STREAM_OBJECT))
    obj = objects.lines_object(config.object_size, config.nlines, rng)
    return np.asarray(obj, dtype=np.complex64)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``key=value`` for every numeric metric (4 significant digits), for the run log."""
    return " ".join(f"{key}={float(value):.4g}" for key, value in metrics.items()
                    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool))


def run_arm(config: StudyConfig, arm: str, truth: np.ndarray, directory: Path,
            log: logging.Logger) -> ArmResult:
    """Simulate, train, reconstruct and evaluate one arm; writes the shared training outputs.

    truth: (object_size, object_size) complex64, the shared object. ``directory`` exists.
    """
    import keras

    from ptycho import simulate, workflow
    from ptycho.monitor import EpochLog

    keras.backend.clear_session()  # fresh Keras state per arm; the scale lives in each model anyway
    nphotons, loss = ARMS[arm]
    train_ds = simulate.simulate_dataset(config.simulation_config(arm, "train"), obj=truth)
    test_ds = simulate.simulate_dataset(config.simulation_config(arm, "test"), obj=truth)
    log.info("arm %s: simulated %d train groups, %d test groups at %.0e photons (s = %.4g)",
             arm, train_ds.n_groups, test_ds.n_groups, nphotons, train_ds.intensity_scale)

    tconfig = config.training_config(arm)
    log.info("arm %s: training, loss %s, %d epochs, batch %d%s", arm, loss, tconfig.nepochs, tconfig.batch_size,
             ", test SSIM monitored" if config.test_ssim else "")
    monitor = workflow.Monitoring(test_ds, truth, config.stitch_M) if config.test_ssim else None
    trained = workflow.train_model(train_ds, tconfig, seed=config.seed, monitor=monitor, log=log,
                                   callbacks=[EpochLog(log, f"arm {arm}", tconfig.nepochs)],
                                   model_options=config.model_options())
    workflow.write_training_outputs(trained, workflow.training_paths(directory), title=f"{arm}: training",
                                    metadata={"study": "dose_response", **config.arm_fingerprint(arm)})

    rec, scored = workflow.reconstruct_and_evaluate(trained.diffraction_to_obj, test_ds, truth, M=config.stitch_M)
    metrics = dict(scored.metrics)
    log.info("arm %s: evaluated on a %dx%d crop: %s", arm, *scored.reconstruction.shape, format_metrics(metrics))
    probe_pattern = int(np.asarray(test_ds.group_indices)[0, 0])
    amplitude = np.asarray(test_ds.diffraction[probe_pattern], dtype=np.float32)
    test_scale = float(test_ds.intensity_scale)
    metrics.update(history_lib.summarise(trained.history), intensity_scale=trained.intensity_scale,
                   n_train=train_ds.n_groups, n_test=test_ds.n_groups)
    return ArmResult(
        arm=arm, status="ok", metrics=metrics, reconstruction=scored.reconstruction, truth=scored.truth,
        origin=scored.origin, diffraction_counts=(test_scale * amplitude) ** 2,
        extras={"diffraction": amplitude, "diffraction_index": np.int64(probe_pattern),
                "test_intensity_scale": np.float64(test_scale),
                "reconstruction_full": np.asarray(rec.obj, dtype=np.complex64),
                "origin_full": np.asarray(rec.origin, dtype=np.float64), "coverage": scored.coverage},
    )


# --------------------------------------------------------------------------------------------------
# The arm's outputs on disk


def write_arm_outputs(directory: Path, result: ArmResult, fingerprint: Mapping[str, Any]) -> None:
    """Write ``reconstruction.npz`` and then (last, marking completion) the per-arm ``metrics.json``."""
    arrays = {
        "reconstruction": np.asarray(result.reconstruction, dtype=np.complex64),
        "truth": np.asarray(result.truth, dtype=np.complex64),
        "origin": np.asarray(result.origin, dtype=np.float64),
        "diffraction_counts": np.asarray(result.diffraction_counts, dtype=np.float32),
    }
    arrays.update({k: np.asarray(v) for k, v in result.extras.items()})
    files.write_npz(directory / "reconstruction.npz", arrays)
    files.write_json(directory / "metrics.json", {"status": "ok", "metrics": result.metrics, "config": fingerprint})


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
    return bool(stored) and stored.get("status") == "ok" and stored.get("config") == files.to_jsonable(
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
