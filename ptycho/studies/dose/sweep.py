"""The dose sweep (issue 21 item 3): every method at every dose for every seed, on the study's own arms.

Each (dose, method, seed) is one arm of the study of that seed (``SweepConfig.seed_config``): the arm
``<dose>_<method>`` in ``<output_dir>/seed<seed>/``, run by the study's runner (``arm.run_arm``) and reused
when complete with the same fingerprint, exactly like a study arm (ledger STUDY-SWEEP-001). All arms of one
seed share its object and positions; the noise depends on (seed, dose, split) only, so the methods at one
dose and seed see the same data (SEED-STREAMS-001, STUDY-PAIRED-NOISE-001).

Outputs, all under ``config.output_dir``::

    seed<s>/<dose>_<method>/...   the arm's files (``arm.arm_files``)
    sweep.json   per dose and method: the per-seed amplitude SSIM and PSNR, their mean and std over seeds, the
                 arm's settings and, per seed, its warnings (results that cannot be right); the crossover of
                 iterative and network NLL; the sweep's settings and versions
    sweep.png    amplitude SSIM and PSNR vs photons (log x), mean ± std over seeds per method, crossover marked
    sweep.md     the same numbers as a markdown table (``sweep_table``), for a README
    run.log      progress (written by the CLI)

Importing this module does no work: TensorFlow and matplotlib are imported inside the functions that need them.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ptycho import files
from ptycho.runlog import versions
from ptycho.studies.dose.arm import ArmResult, arm_header, is_complete, load_arm, make_ground_truth, run_arm
from ptycho.studies.dose.config import StudyConfig, arm_source, dose_label, sweep_arm
from ptycho.studies.dose.sweep_config import SweepConfig
from ptycho.studies.dose.study import LOGGER_NAME, ArmRunner, _failed, _run_one, write_each

#: The metrics the sweep aggregates (amplitude, on each arm's evaluated region).
SWEEP_METRICS = ("amplitude_ssim", "amplitude_psnr")
#: Method labels, for sweep.json and the figure.
METHOD_LABELS = {"nll": "network NLL", "mae": "network MAE", "nll_refined": "NLL + refinement",
                 "iterative": "iterative (from ones)"}
CROSSOVER_RULE = ("the lowest dose where the mean over seeds of iterative >= that of network NLL; between the "
                  "dose below (iterative < NLL) and it, linear in log10(photons) on the difference of the means")
STD_NOTE = "std: sample standard deviation over seeds (ddof=1), null for fewer than 2 values"


@dataclass
class SweepResult:
    """Every arm's result, keyed by (seed, arm name), the content of sweep.json, and whether all succeeded."""

    arms: dict[tuple[int, str], ArmResult]
    summary: dict[str, Any]
    ok: bool
    output_dir: Path


class _SeedLog(logging.LoggerAdapter):
    """Prefixes every message with the seed: the arm names repeat across seeds."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"seed {self.extra['seed']}: {msg}", kwargs


def run_sweep(config: SweepConfig, *, run_arm: ArmRunner = run_arm,
              make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth,
              log: Optional[logging.Logger] = None) -> SweepResult:
    """Run every arm of every seed (skipping complete ones unless ``force``), then write sweep.json and sweep.png.

    Seed by seed (one object each), dose by dose, method by method. A failing arm is logged and recorded as
    failed, and the others still run; a refined arm whose network arm failed fails without running. ``ok`` is
    False if any arm or summary output failed.
    """
    log = log or logging.getLogger(LOGGER_NAME)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str], ArmResult] = {}
    for seed in config.seeds:
        study = config.seed_config(seed)
        seed_log = _SeedLog(log, {"seed": seed})
        truth: Optional[np.ndarray] = None
        for arm in config.arms():
            if not config.force and is_complete(study, arm):
                try:
                    results[seed, arm] = load_arm(study, arm)
                    seed_log.info("arm %s: outputs complete, skipping (use --force to rerun)", arm)
                    continue
                except Exception as exc:  # unreadable outputs: run again
                    seed_log.warning("arm %s: stored outputs unreadable (%s); running it again", arm, exc)
            source = arm_source(arm)
            if source is not None and not results[seed, source].ok:
                error = f"RuntimeError: its source arm {source} has no reconstruction ({results[seed, source].status})"
                seed_log.error("arm %s: FAILED: %s", arm, error)
                results[seed, arm] = ArmResult(arm=arm, status="failed", error=error,
                                               metrics={**arm_header(arm), "wall_time_s": 0.0})
                continue
            if truth is None:
                try:
                    truth = make_truth(study)
                except Exception as exc:
                    results[seed, arm] = _failed(arm, exc, time.perf_counter(), seed_log)
                    continue
            results[seed, arm] = _run_one(study, arm, truth, run_arm, seed_log)
    summary = sweep_payload(config, results)
    ok = all(r.ok for r in results.values())
    ok &= _write_summaries(config, summary, log)
    failed = [f"seed {s} {a}" for (s, a), r in results.items() if not r.ok]
    log.info("sweep %s: %d arms%s", "finished" if ok else "finished with failures", len(results),
             f"; failed: {', '.join(failed)}" if failed else "")
    return SweepResult(arms=results, summary=summary, ok=ok, output_dir=config.output_dir)


def _write_summaries(config: SweepConfig, summary: Mapping[str, Any], log: logging.Logger) -> bool:
    from ptycho.studies.dose.figures import build_sweep_figure

    return write_each(config.output_dir, (("sweep.json", lambda p: files.write_json(p, summary)),
                                          ("sweep.png", lambda p: files.save_figure(build_sweep_figure(summary), p)),
                                          ("sweep.md", lambda p: _write_text(p, sweep_table(summary)))),
                      log)


def _write_text(path: Path, text: str) -> None:
    with files.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        files.ordinary_mode(tmp)


def _cell(stats: Mapping[str, Any], digits: int) -> str:
    """'0.812 ± 0.004' (mean ± sample std over seeds), '0.812' for one seed, '—' for none."""
    if stats["mean"] is None:
        return "—"
    std = "" if stats["std"] is None else f" ± {stats['std']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}{std}"


def sweep_table(summary: Mapping[str, Any]) -> str:
    """Markdown of sweep.json's content: one row per dose, amplitude SSIM (and PSNR in dB) per method as mean ± std
    over the seeds that finished, '(n/N)' where fewer than all seeds finished, '⚠' where a seed's arm warned; then
    the crossover of each metric."""
    methods = summary["methods"]
    lines = ["| photons | " + " | ".join(f"{METHOD_LABELS[m]}: SSIM / PSNR dB" for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for label in summary["dose_labels"]:
        cells = []
        for method in methods:
            entry = summary["results"][label][method]
            ssim, psnr = entry["amplitude_ssim"], entry["amplitude_psnr"]
            cell = f"{_cell(ssim, 3)} / {_cell(psnr, 1)}"
            if ssim["n"] < len(entry["seeds"]):
                cell += f" ({ssim['n']}/{len(entry['seeds'])})"
            cells.append(cell + (" ⚠" if entry.get("warnings") else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines.append("")
    lines.append(f"Mean ± sample std over seeds {seeds}; ⚠: an arm's result cannot be right (sweep.json's warnings).")
    for metric, cross in summary["crossover"].items():
        where = cross.get("photons")
        if where is None:
            text = cross.get("note", "not computed")
        elif where == "none":
            text = "none: the network NLL leads at every dose"
        else:
            text = f"{where:.3g} photons (between {cross['between'][0]:.0e} and {cross['between'][1]:.0e})"
        lines.append(f"Crossover, {metric} (iterative catches up with the network NLL): {text}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Aggregation


def _finite(value: Any) -> Optional[float]:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def aggregate(values: Sequence[Optional[float]]) -> dict[str, Any]:
    """{'per_seed', 'mean', 'std', 'n'} of one metric over seeds; None (a failed arm) is left out of the mean and
    std. ``std`` is the sample standard deviation (ddof=1), None for fewer than two values."""
    per_seed = [_finite(v) for v in values]
    present = np.array([v for v in per_seed if v is not None], dtype=np.float64)
    return {"per_seed": per_seed, "mean": float(present.mean()) if present.size else None,
            "std": float(present.std(ddof=1)) if present.size >= 2 else None, "n": int(present.size)}


def crossover(doses: Sequence[float], network: Sequence[Optional[float]],
              iterative: Sequence[Optional[float]]) -> dict[str, Any]:
    """Where the iterative arm catches up with the network NLL arm (``CROSSOVER_RULE``).

    doses: ascending photons per pattern; network, iterative: the metric's mean at each dose (None where
    unknown: that dose is left out). Returns {'photons': float or 'none', 'log10_photons': float or None,
    'between': [photons below, photons at] or None, 'rule'}; at the first usable dose 'between' is [d, d].
    """
    usable = [(float(d), float(n), float(i)) for d, n, i in zip(doses, network, iterative)
              if n is not None and i is not None]
    out: dict[str, Any] = {"photons": "none", "log10_photons": None, "between": None, "rule": CROSSOVER_RULE}
    previous: Optional[tuple[float, float]] = None
    for dose, net, it in usable:
        diff = it - net
        if diff >= 0:
            if previous is None:
                log10 = math.log10(dose)
                out["between"] = [dose, dose]
            else:
                below, below_diff = previous
                fraction = below_diff / (below_diff - diff)  # below_diff < 0 <= diff
                log10 = math.log10(below) + fraction * (math.log10(dose) - math.log10(below))
                out["between"] = [below, dose]
            out["photons"], out["log10_photons"] = float(10.0 ** log10), float(log10)
            return out
        previous = (dose, diff)
    return out


def _without_seed(value: Any) -> Any:
    """A fingerprint with every 'seed' entry left out: the settings shared by an arm's seeds."""
    if isinstance(value, Mapping):
        return {k: _without_seed(v) for k, v in value.items() if k != "seed"}
    return value


def sweep_payload(config: SweepConfig, results: Mapping[tuple[int, str], ArmResult]) -> dict[str, Any]:
    """The content of sweep.json (see the module docstring); arms missing from ``results`` count as 'not run'."""
    table: dict[str, dict[str, Any]] = {}
    for dose in config.doses:
        row: dict[str, Any] = {}
        for method in config.methods:
            arm = sweep_arm(dose, method)
            per_seed = [results.get((seed, arm)) for seed in config.seeds]
            entry: dict[str, Any] = {
                "arm": arm, "method": method, "label": METHOD_LABELS[method], "nphotons": dose,
                "seeds": list(config.seeds), "status": [r.status if r is not None else "not run" for r in per_seed],
            }
            for metric in SWEEP_METRICS:
                entry[metric] = aggregate([r.metrics.get(metric) if r is not None and r.ok else None
                                           for r in per_seed])
            entry["warnings"] = {str(seed): r.metrics["warnings"] for seed, r in zip(config.seeds, per_seed)
                                 if r is not None and r.ok and r.metrics.get("warnings")}
            entry["settings"] = _without_seed(config.seed_config(config.seeds[0]).arm_fingerprint(arm))
            row[method] = entry
        table[dose_label(dose)] = row
    crossovers: dict[str, Any] = {}
    for metric in SWEEP_METRICS:
        if {"nll", "iterative"} <= set(config.methods):
            means = {m: [table[dose_label(d)][m][metric]["mean"] for d in config.doses] for m in ("nll", "iterative")}
            crossovers[metric] = crossover(config.doses, means["nll"], means["iterative"])
        else:
            crossovers[metric] = {"photons": None, "log10_photons": None, "between": None, "rule": CROSSOVER_RULE,
                                  "note": "not computed: needs the methods nll and iterative"}
    return {"doses": list(config.doses), "dose_labels": [dose_label(d) for d in config.doses],
            "seeds": list(config.seeds), "methods": list(config.methods), "metrics": list(SWEEP_METRICS),
            "results": table, "crossover": crossovers, "config": config.as_dict(), "versions": versions(),
            "notes": f"{STD_NOTE}; non-finite floats are written as null"}
