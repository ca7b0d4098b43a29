"""One arm of the dose-response study: run it (on the shared ``ptycho.workflow`` path) and keep its outputs.

A network arm (``run_network_arm``): simulate train/test on the shared object → ``workflow.train_model``
(fresh model with the train set's intensity scale, loss 'nll' or 'mae', test-set SSIM monitored per epoch
unless disabled) → ``workflow.write_training_outputs`` (wts.h5.zip, history.json, training.png) →
``workflow.reconstruct_and_evaluate`` on the test set (crop to the scanned region, SPEC §5 metrics).

A refine arm (``run_refine_arm``, issue 21): simulate the arm's test set (the network arms' test set at that
dose, pattern for pattern) → ``ptycho.refine.refine`` on it with the truth removed, from ones ('iterative')
or from the source network arm's stored stitch of that scan ('refined') → the same evaluation on the same
region (the bounding box of the test group centroids, ``evaluate_on_test_scan``).

Files in ``<output_dir>/<arm>/`` (``arm_files``: ``ARM_FILES`` for a network arm, ``REFINE_ARM_FILES`` for
a refine arm, which has no weights or history); ``metrics.json`` is written last and marks the arm
complete::

    wts.h5.zip, history.json, training.png   the shared training outputs (network arms only)
    reconstruction.npz    reconstruction/truth crops (H, W) complex64, their origin [x, y] in object pixels,
                          a test diffraction pattern (N, N) float32 (amplitude √counts / s and counts), the
                          full stitch (or refined canvas) and its origin, the crop's and the full object's
                          coverage (bool); a refine arm adds its misfit per iteration
    metrics.json          this arm's metrics and the fingerprint of the settings that produced it; a refined
                          arm also records which stored reconstruction it started from (``source``)

Importing this module does no work: TensorFlow and the model modules are imported inside the runners.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ptycho import files
from ptycho import history as history_lib
from ptycho.studies.dose.config import (STREAM_OBJECT, StudyConfig, arm_loss, arm_method, arm_nphotons,
                                        arm_source, stream_seed)

#: Files that make a network arm complete; the per-arm metrics file is written last.
ARM_FILES = ("wts.h5.zip", "history.json", "training.png", "reconstruction.npz", "metrics.json")
#: Files that make a refine arm complete: no network of its own, so no weights, history or training curve.
REFINE_ARM_FILES = ("reconstruction.npz", "metrics.json")


def arm_files(arm: str) -> tuple[str, ...]:
    """The files that make ``arm`` complete (ledger STUDY-REFINE-FILES-001)."""
    return ARM_FILES if arm_method(arm) == "network" else REFINE_ARM_FILES


@dataclass
class ArmResult:
    """What one arm produced.

    status: 'ok', 'failed' or 'not run'.  metrics: JSON-ready scalars (evaluation metrics, losses, ...).
    reconstruction, truth: (H, W) complex64 crops on the same object-pixel grid, pixel (0, 0) at
    object position ``origin`` = (x, y).  diffraction_counts: (N, N) float32, photons, one test pattern.
    extras: further arrays saved in reconstruction.npz.  skipped: outputs were read back from disk.
    provenance: for a refined arm, the stored reconstruction it started from ({'arm', 'reconstruction_sha256'}).
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
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def arm_header(arm: str) -> dict[str, Any]:
    """The arm's dose, loss (training loss or refinement misfit) and method, as recorded with its metrics."""
    header = {"nphotons": arm_nphotons(arm), "loss": arm_loss(arm), "method": arm_method(arm)}
    if arm_source(arm) is not None:
        header["source_arm"] = arm_source(arm)
    return header


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
    """Run one arm of any kind: ``run_network_arm`` or ``run_refine_arm``.

    truth: (object_size, object_size) complex64, the shared object (used to simulate and to evaluate; a
    refine arm's solver never sees it). ``directory`` exists. A refined arm needs its source arm complete
    on disk (``run_study`` runs it first).
    """
    runner = run_network_arm if arm_method(arm) == "network" else run_refine_arm
    return runner(config, arm, truth, directory, log)


def run_network_arm(config: StudyConfig, arm: str, truth: np.ndarray, directory: Path,
                    log: logging.Logger) -> ArmResult:
    """Simulate, train, reconstruct and evaluate one network arm; writes the shared training outputs.

    truth: (object_size, object_size) complex64, the shared object. ``directory`` exists.
    """
    import keras

    from ptycho import simulate, workflow
    from ptycho.monitor import EpochLog

    keras.backend.clear_session()  # fresh Keras state per arm; the scale lives in each model anyway
    nphotons, loss = arm_nphotons(arm), arm_loss(arm)
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
    metrics["warnings"] = result_warnings(trained.history, rec, trained.autoencoder)
    for warning in metrics["warnings"]:
        log.warning("arm %s: %s", arm, warning)
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
                "origin_full": np.asarray(rec.origin, dtype=np.float64), "coverage": scored.coverage,
                "coverage_full": np.asarray(rec.coverage, dtype=bool)},
    )


def result_warnings(history: Mapping[str, Any], rec: Any, model: Any = None) -> list[str]:
    """A network arm's results that cannot be right (one line each): the training run's own warnings (a loss that
    never moved) and the stitched object's (at the amplitude ceiling, constant; covered pixels only).

    history: the training history (its 'warnings' list). rec: the ``Reconstruction`` of the test scan.
    model: the trained autoencoder, whose amplitude ceiling is used (None: the default ceiling).
    """
    from ptycho import diagnostics

    ceiling = diagnostics.model_amplitude_max(model)
    return list(history.get("warnings", [])) + diagnostics.object_warnings(np.asarray(rec.obj)[rec.coverage], ceiling)


def group_centroids(dataset: Any) -> np.ndarray:
    """(B, 2) float64 [x, y] group centroids of ``dataset``: the stitch centres ``ptycho.inference`` records."""
    return np.asarray(dataset.coords_offsets, np.float32).reshape(-1, 2).astype(np.float64)


def evaluate_on_test_scan(rec: Any, test_ds: Any, truth: np.ndarray) -> Any:
    """``rec`` evaluated as a network arm's stitch of ``test_ds`` is: on the bounding box of the test set's
    group centroids (ledger STUDY-REFINE-EVAL-001), so every arm at a dose is scored on the same region."""
    from ptycho.scan_region import evaluate_on_scan

    return evaluate_on_scan(dataclasses.replace(rec, centroids=group_centroids(test_ds)), truth)


def source_provenance(config: StudyConfig, arm: str) -> Optional[dict[str, str]]:
    """{'arm', 'reconstruction_sha256'} of the stored reconstruction a refined arm starts from, as it is on
    disk now (None if absent)."""
    source = arm_source(arm)
    try:
        raw = (arm_dir(config, source) / "reconstruction.npz").read_bytes()
    except OSError:
        return None
    return {"arm": source, "reconstruction_sha256": hashlib.sha256(raw).hexdigest()}


def load_source_reconstruction(config: StudyConfig, arm: str) -> tuple[Any, dict[str, str]]:
    """The stitched test-scan reconstruction stored by refined arm ``arm``'s source network arm, and its
    provenance. RuntimeError if the source arm is not complete for these settings (never a stale one)."""
    from ptycho.reconstruction import Reconstruction

    source = arm_source(arm)
    if not is_complete(config, source):
        raise RuntimeError(f"arm {arm}: its source arm {source} has no complete outputs for these settings; "
                           f"run {source} first")
    raw = (arm_dir(config, source) / "reconstruction.npz").read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        obj = np.asarray(npz["reconstruction_full"], np.complex64)
        origin = np.asarray(npz["origin_full"], np.float64)
        # outputs written before issue 21 lack the full coverage; a stitch is zero exactly where uncovered
        coverage = npz["coverage_full"] if "coverage_full" in npz.files else np.abs(obj) > 0
    rec = Reconstruction(obj=obj, x0=float(origin[0]), y0=float(origin[1]), coverage=np.asarray(coverage, bool))
    return rec, {"arm": source, "reconstruction_sha256": hashlib.sha256(raw).hexdigest()}


def run_refine_arm(config: StudyConfig, arm: str, truth: np.ndarray, directory: Path,
                   log: logging.Logger) -> ArmResult:
    """Reconstruct the arm's test scan with ``ptycho.refine`` (no training) and evaluate it like a network arm.

    'iterative' arms start from ones; 'refined' arms from their source network arm's stored stitch of the
    same test scan (``load_source_reconstruction``). The solver gets the test set with ``obj=None``: it
    never sees the truth, which only simulates the data and scores the result.
    """
    from ptycho import simulate
    from ptycho.refine import refine

    test_ds = simulate.simulate_dataset(config.simulation_config(arm, "test"), obj=truth)
    blind = dataclasses.replace(test_ds, obj=None)
    initial, provenance = (None, {}) if arm_source(arm) is None else load_source_reconstruction(config, arm)
    rconfig = config.refine_config(arm)
    log.info("arm %s: refining the %d test positions at %.0e photons from %s: %d iterations, misfit %s", arm,
             blind.n_positions, arm_nphotons(arm), "ones" if initial is None else f"the {provenance['arm']} stitch",
             rconfig.iterations, rconfig.loss)
    refined = refine(blind, rconfig, initial=initial)
    misfit = np.asarray(refined.loss, dtype=np.float64)
    rec = refined.reconstruction
    scored = evaluate_on_test_scan(rec, test_ds, truth)
    metrics = dict(scored.metrics)
    log.info("arm %s: refined in %.1f s (misfit %.4g -> %.4g); evaluated on a %dx%d crop: %s", arm, refined.seconds,
             misfit[0], misfit[-1], *scored.reconstruction.shape, format_metrics(metrics))
    probe_pattern = int(np.asarray(test_ds.group_indices)[0, 0])
    amplitude = np.asarray(test_ds.diffraction[probe_pattern], dtype=np.float32)
    test_scale = float(test_ds.intensity_scale)
    metrics.update(refine_iterations=rconfig.iterations, refine_misfit_initial=float(misfit[0]),
                   refine_misfit_final=float(misfit[-1]), refine_seconds=float(refined.seconds),
                   intensity_scale=test_scale, n_test=test_ds.n_groups, n_positions=test_ds.n_positions)
    return ArmResult(
        arm=arm, status="ok", metrics=metrics, reconstruction=scored.reconstruction, truth=scored.truth,
        origin=scored.origin, diffraction_counts=(test_scale * amplitude) ** 2, provenance=provenance,
        extras={"diffraction": amplitude, "diffraction_index": np.int64(probe_pattern),
                "test_intensity_scale": np.float64(test_scale),
                "reconstruction_full": np.asarray(rec.obj, dtype=np.complex64),
                "origin_full": np.asarray(rec.origin, dtype=np.float64), "coverage": scored.coverage,
                "coverage_full": np.asarray(rec.coverage, dtype=bool), "refine_misfit": misfit},
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
    payload = {"status": "ok", "metrics": result.metrics, "config": fingerprint}
    if result.provenance:
        payload["source"] = result.provenance
    files.write_json(directory / "metrics.json", payload)


def _read_arm_metrics(directory: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(config: StudyConfig, arm: str) -> bool:
    """True if all of ``arm``'s files (``arm_files``) exist and were produced by the same configuration.

    A refined arm is complete only while its source arm is complete and still holds the very reconstruction
    the refined arm started from (its SHA-256), so a retrained source arm is never paired with a stale
    refinement.
    """
    directory = arm_dir(config, arm)
    if not all((directory / name).is_file() for name in arm_files(arm)):
        return False
    stored = _read_arm_metrics(directory)
    if not (bool(stored) and stored.get("status") == "ok"
            and stored.get("config") == files.to_jsonable(config.arm_fingerprint(arm))):
        return False
    if arm_source(arm) is None:
        return True
    return is_complete(config, arm_source(arm)) and stored.get("source") == source_provenance(config, arm)


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
        provenance=dict(stored.get("source") or {}),
    )
