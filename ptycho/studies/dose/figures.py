"""The dose-response study's figures (matplotlib Figure objects, no pyplot state).

``build_dose_figure``: the six panels of SPEC §6. ``build_reconstruction_figure``: the truth beside the
four network reconstructions. ``build_methods_figure``: the truth beside every method (network NLL, network
MAE, NLL + refinement, iterative) at every dose that ran (issue 21). Panels are drawn with the package's
shared helpers (``ptycho.figures``); each arm's training curve is the shared ``training.png`` its run writes.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Optional

import numpy as np

from ptycho.figures import align_for_display, masked, placeholder, show_image
from ptycho.studies.dose.arm import ArmResult
from ptycho.studies.dose.config import ARM_NAMES, DOSES


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


def _masked(result: ArmResult, data: np.ndarray) -> np.ndarray:
    """``data`` (H, W) with pixels no stitched window covered masked out (if the coverage is known)."""
    return masked(data, result.extras.get("coverage"))


def _diffraction_source(results: Mapping[str, ArmResult], dose: str) -> Optional[ArmResult]:
    for loss in ("nll", "mae"):
        result = results.get(f"{dose}_{loss}")
        if result is not None and result.ok and result.diffraction_counts is not None:
            return result
    return None


def _empty_panel(ax: Any, result: Optional[ArmResult], arm: str) -> None:
    if result is not None and result.status == "failed":
        placeholder(ax, "No Data", f"{arm} (failed)")
    else:
        placeholder(ax, "Not run", arm)


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
            show_image(fig, axes[row, 0], np.log10(1.0 + np.asarray(source.diffraction_counts, np.float64)),
                       f"{dose} dose ({nphotons:.0e} photons): log10(1 + counts)", cmap="magma")
        else:
            failed = [results.get(f"{dose}_{l}") for l in ("nll", "mae")]
            any_failed = any(r is not None and r.status == "failed" for r in failed)
            placeholder(axes[row, 0], "No Data" if any_failed else "Not run", f"{dose} dose diffraction")
        for col, loss in ((1, "mae"), (2, "nll")):
            arm = f"{dose}_{loss}"
            result = results.get(arm)
            if result is not None and result.ok and result.reconstruction is not None:
                show_image(fig, axes[row, col], _masked(result, np.abs(result.reconstruction)),
                           _title_with_ssim(arm, result.metrics), result.origin, cmap="gray")
            else:
                _empty_panel(axes[row, col], result, arm)
    fig.suptitle("Dose response: amplitude of the test-set reconstruction (axes in object pixels)")
    return fig


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
            placeholder(ax, "No Data", "")
        return fig
    truth = np.asarray(reference.truth)
    amp_lim = (float(np.abs(truth).min()), float(np.abs(truth).max()))
    phases = [np.angle(truth)] + [np.angle(align_for_display(r.reconstruction, r.truth))
                                  for a, r in results.items()
                                  if a in ARM_NAMES and r.ok and r.reconstruction is not None]
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
        show_image(fig, axes[0, col], mask(np.abs(data)), f"{title}\namplitude", origin, cmap="gray",
                   vmin=amp_lim[0], vmax=amp_lim[1])
        show_image(fig, axes[1, col], mask(np.angle(data)), f"{name} phase (rad)", origin,
                   cmap="twilight_shifted", vmin=-phase_max, vmax=phase_max)
    fig.suptitle("Test-region reconstructions beside the truth (amplitude scaled to the truth's mean, "
                 "global phase removed)")
    return fig


#: Columns of ``build_methods_figure``: (label, arm name after "<dose>_"), in order.
METHODS: tuple[tuple[str, str], ...] = (
    ("network NLL", "nll"), ("network MAE", "mae"), ("NLL + refinement", "nll_refined"), ("iterative", "iterative"),
)


def _ran(result: Optional[ArmResult]) -> bool:
    """The arm ran (or was reused) in this study: it succeeded or failed, as opposed to 'not run'."""
    return result is not None and result.status in ("ok", "failed")


def _shown(result: Optional[ArmResult]) -> bool:
    return result is not None and result.ok and result.reconstruction is not None


def build_methods_figure(results: Mapping[str, ArmResult]) -> Any:
    """Truth and each method at each dose that ran: amplitude on the scanned region, titled with SSIM.

    One row per dose with an arm that ran, one column per method (``METHODS``) with an arm that ran, after
    a truth column; a row's reconstructions are scaled to the truth's mean amplitude (global phase removed)
    and shown on its truth's amplitude scale, uncovered pixels masked. 'No Data' where an arm failed,
    'Not run' where the method ran at the other dose only. The truth is the crop of the row's first
    method shown.
    """
    from matplotlib.figure import Figure

    rows = [(dose, photons) for dose, photons in DOSES.items()
            if any(_ran(results.get(f"{dose}_{m}")) for _, m in METHODS)]
    cols = [(label, m) for label, m in METHODS if any(_ran(results.get(f"{dose}_{m}")) for dose in DOSES)]
    fig = Figure(figsize=(1.0 + 3.8 * (1 + len(cols)), 0.8 + 3.6 * max(1, len(rows))), layout="constrained")
    if not rows:
        placeholder(fig.subplots(1, 1), "No Data", "no arm ran")
        return fig
    axes = fig.subplots(len(rows), 1 + len(cols), squeeze=False)
    for row, (dose, photons) in enumerate(rows):
        shown = [results[f"{dose}_{m}"] for _, m in cols if _shown(results.get(f"{dose}_{m}"))]
        if not shown:
            placeholder(axes[row, 0], "No Data", f"truth, {dose} dose")
            for col, (_, m) in enumerate(cols, start=1):
                _empty_panel(axes[row, col], results.get(f"{dose}_{m}"), f"{dose}_{m}")
            continue
        reference = shown[0]
        truth_amp = np.abs(np.asarray(reference.truth))
        limits = {"vmin": float(truth_amp.min()), "vmax": float(truth_amp.max())}
        show_image(fig, axes[row, 0], truth_amp, f"truth, {dose} dose ({photons:.0e} photons)", reference.origin,
                   cmap="gray", **limits)
        for col, (label, m) in enumerate(cols, start=1):
            arm = f"{dose}_{m}"
            result = results.get(arm)
            if _shown(result):
                amplitude = np.abs(align_for_display(result.reconstruction, result.truth))
                show_image(fig, axes[row, col], _masked(result, amplitude),
                           f"{label}\n{_title_with_ssim(arm, result.metrics)}", result.origin, cmap="gray", **limits)
            else:
                _empty_panel(axes[row, col], result, arm)
    fig.suptitle("Methods compared on the test scan: amplitude on the scanned region (scaled to the truth's mean; "
                 "axes in object pixels)")
    return fig


#: The sweep figure's style per method: (marker, colour).
SWEEP_STYLE = {"nll": ("o", "tab:blue"), "mae": ("s", "tab:orange"), "nll_refined": ("D", "tab:green"),
               "iterative": ("^", "tab:red")}
SWEEP_PANELS = (("amplitude_ssim", "amplitude SSIM"), ("amplitude_psnr", "amplitude PSNR (dB)"))


def build_sweep_figure(summary: Mapping[str, Any]) -> Any:
    """The dose sweep (issue 21 item 3) from the content of ``sweep.json``: amplitude SSIM (left) and PSNR
    (right) vs photons per pattern (log x), one line per method at the mean over seeds with error bars of the
    std over seeds; the crossover of iterative and network NLL marked with a dashed line and its value, or
    "no crossover" written in the panel."""
    from matplotlib.figure import Figure

    doses = [float(d) for d in summary["doses"]]
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    axes = fig.subplots(1, len(SWEEP_PANELS), squeeze=False)[0]
    for ax, (metric, label) in zip(axes, SWEEP_PANELS):
        for method in summary["methods"]:
            entries = [summary["results"][name][method] for name in summary["dose_labels"]]
            mean = np.array([np.nan if e[metric]["mean"] is None else e[metric]["mean"] for e in entries], float)
            std = np.array([0.0 if e[metric]["std"] is None else e[metric]["std"] for e in entries], float)
            marker, colour = SWEEP_STYLE.get(method, ("x", None))
            ax.errorbar(doses, mean, yerr=std, marker=marker, color=colour, capsize=4, linewidth=1.5,
                        label=entries[0]["label"] if entries else method)
        cross = summary.get("crossover", {}).get(metric, {})
        photons = cross.get("photons")
        if isinstance(photons, (int, float)) and math.isfinite(photons):
            ax.axvline(photons, color="0.3", linestyle="--", linewidth=1.2,
                       label=f"crossover ≈ {photons:.3g} photons")
        elif photons == "none":
            ax.text(0.02, 0.02, "no crossover: iterative < network NLL at every dose", transform=ax.transAxes,
                    fontsize=9, color="0.3")
        ax.set_xlim(min(doses) / 2, max(doses) * 2)
        ax.set_xscale("log")
        ax.set_xlabel("photons per pattern")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs dose")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    seeds = ", ".join(str(s) for s in summary.get("seeds", []))
    fig.suptitle(f"Dose sweep on the test scan: mean ± std over seeds ({seeds})")
    return fig
