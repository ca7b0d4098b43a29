"""Running the dose-response study: every requested arm, then the study-wide metrics and figures.

Outputs, all under ``config.output_dir`` (nothing is written elsewhere; every file is written atomically)::

    <arm>/...             the arm's files (``ptycho.studies.dose.arm.arm_files``)
    metrics.json          {"arms": {arm: {...}}, "config": {...}, "versions": {...}}
    dose_comparison.png   the six panels of SPEC §6
    reconstructions.png   truth beside the four network reconstructions, amplitude and phase
    methods_comparison.png  truth and every method at every dose that ran (network NLL / MAE, NLL +
                          refinement, iterative), amplitude on the scanned region, titled with SSIM
    run.log               progress per arm and per epoch, errors with tracebacks (written by the CLI)

JSON files never hold NaN or infinity: a non-finite float is written as ``null``.
A re-run skips an arm whose files exist and whose stored configuration matches (``force`` retrains).
A refined arm needs its source network arm: when it is requested and the source is not complete, the source
runs first (``force`` retrains only the arms named in ``config.arms``).
A failing arm is logged with its traceback and recorded as ``"status": "failed"``; the other arms still run.
"""
from __future__ import annotations

import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ptycho import files
from ptycho.runlog import versions
from ptycho.studies.dose.arm import (ArmResult, arm_dir, arm_header, is_complete, load_arm, make_ground_truth,
                                     run_arm, write_arm_outputs)
from ptycho.studies.dose.config import ALL_ARM_NAMES, StudyConfig, arm_source, with_dependencies
from ptycho.studies.dose.figures import build_dose_figure, build_methods_figure, build_reconstruction_figure

LOGGER_NAME = "ptycho.studies.dose"

ArmRunner = Callable[[StudyConfig, str, np.ndarray, Path, logging.Logger], ArmResult]


@dataclass
class StudyResult:
    """All arms' results (every arm name, in run order) and whether everything requested succeeded."""

    arms: dict[str, ArmResult]
    ok: bool
    output_dir: Path


def run_study(config: StudyConfig, *, run_arm: ArmRunner = run_arm,
              make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth,
              log: Optional[logging.Logger] = None) -> StudyResult:
    """Run the requested arms (skipping complete ones unless ``force``), then write metrics and figures.

    A requested refined arm brings its source network arm (run if not complete; ``force`` applies only to
    arms named in ``config.arms``). Arms not needed but complete on disk with the same configuration are
    reported too. ``ok`` is False if any needed arm or any summary output failed.
    """
    log = log or logging.getLogger(LOGGER_NAME)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ArmResult] = {}
    truth: Optional[np.ndarray] = None
    needed = with_dependencies(config.arms)
    for arm in ALL_ARM_NAMES:
        forced = config.force and arm in config.arms
        if arm not in needed or (not forced and is_complete(config, arm)):
            results[arm] = _reuse_arm(config, arm, log)
            if results[arm].ok or arm not in needed:
                continue
        source = arm_source(arm)
        if source is not None and not results[source].ok:
            error = f"RuntimeError: its source arm {source} has no reconstruction ({results[source].status})"
            log.error("arm %s: FAILED: %s", arm, error)
            results[arm] = ArmResult(arm=arm, status="failed", error=error,
                                     metrics={**arm_header(arm), "wall_time_s": 0.0})
            continue
        if truth is None:
            try:
                truth = make_truth(config)
            except Exception as exc:
                results[arm] = _failed(arm, exc, time.perf_counter(), log)
                continue
        results[arm] = _run_one(config, arm, truth, run_arm, log)
    ok = all(results[arm].ok for arm in needed)
    ok &= _write_summaries(config, results, log)
    log.info("study %s: %s", "finished" if ok else "finished with failures",
             ", ".join(f"{a}={r.status}" for a, r in results.items()))
    return StudyResult(arms=results, ok=ok, output_dir=config.output_dir)


def _run_one(config: StudyConfig, arm: str, truth: np.ndarray, run_arm: ArmRunner,
             log: logging.Logger) -> ArmResult:
    """Run ``arm`` and write its outputs; a failure is logged and returned as a 'failed' result.

    Records ``wall_time_s`` and ``cpu_time_s`` (this process's CPU time, all threads) of the whole arm.
    """
    header = arm_header(arm)
    log.info("arm %s: start (%.0e photons, %s, loss %s)", arm, header["nphotons"], header["method"], header["loss"])
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        directory = arm_dir(config, arm)
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # an interrupted retrain must not look complete
            (directory / "metrics.json").unlink()
        result = run_arm(config, arm, truth, directory, log)
        if arm_source(arm) is not None and result.provenance.get("arm") != arm_source(arm):
            raise RuntimeError(f"arm {arm}: the runner did not record that it started from {arm_source(arm)}'s "
                               f"reconstruction (provenance {result.provenance!r})")
        result.metrics.update(header, wall_time_s=time.perf_counter() - start,
                              cpu_time_s=time.process_time() - cpu_start)
        write_arm_outputs(directory, result, config.arm_fingerprint(arm))
        log.info("arm %s: done in %.1f s", arm, result.metrics["wall_time_s"])
        return result
    except Exception as exc:  # one failing arm must not stop the others
        return _failed(arm, exc, start, log)


def _failed(arm: str, exc: Exception, start: float, log: logging.Logger) -> ArmResult:
    elapsed = time.perf_counter() - start
    log.error("arm %s: FAILED after %.1f s: %s: %s\n%s", arm, elapsed, type(exc).__name__, exc,
              traceback.format_exc())
    return ArmResult(arm=arm, status="failed", error=f"{type(exc).__name__}: {exc}",
                     metrics={**arm_header(arm), "wall_time_s": elapsed})


def _reuse_arm(config: StudyConfig, arm: str, log: logging.Logger) -> ArmResult:
    """A complete arm read back from disk, or a 'not run' placeholder."""
    if not is_complete(config, arm):
        return ArmResult(arm=arm, status="not run")
    needed = with_dependencies(config.arms)
    try:
        result = load_arm(config, arm)
    except Exception as exc:  # unreadable outputs: retrain if requested, else leave out
        log.warning("arm %s: stored outputs unreadable (%s); %s", arm, exc,
                    "retraining" if arm in needed else "not reported")
        return ArmResult(arm=arm, status="not run")
    if arm in config.arms:
        log.info("arm %s: outputs complete, skipping (use --force to retrain)", arm)
    elif arm in needed:
        log.info("arm %s: outputs complete, reused as the start of a refined arm", arm)
    else:
        log.info("arm %s: not requested; reporting its stored outputs", arm)
    return result


def _write_summaries(config: StudyConfig, results: Mapping[str, ArmResult], log: logging.Logger) -> bool:
    """metrics.json and both figures; a failure is logged and returns False (the rest is still written)."""
    return write_each(config.output_dir, (
        ("metrics.json", lambda p: files.write_json(p, metrics_payload(config, results))),
        ("dose_comparison.png", lambda p: files.save_figure(build_dose_figure(results), p)),
        ("reconstructions.png", lambda p: files.save_figure(build_reconstruction_figure(results), p)),
        ("methods_comparison.png", lambda p: files.save_figure(build_methods_figure(results), p)),
    ), log)


def write_each(directory: Path, jobs: Sequence[tuple[str, Callable[[Path], Any]]], log: logging.Logger) -> bool:
    """Run each (file name, writer) job on ``directory / name``; a failure is logged with its traceback and
    the other files are still written. True when every file was written."""
    ok = True
    for name, job in jobs:
        try:
            job(directory / name)
            log.info("wrote %s", directory / name)
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
        entry = {"status": result.status, **arm_header(arm), **result.metrics, "skipped": result.skipped}
        if result.error is not None:
            entry["error"] = result.error
        arms[arm] = entry
    return {"arms": arms, "config": config.as_dict(), "versions": versions(),
            "notes": "non-finite floats are written as null"}
