"""Figures of a run: the training curve, a reconstructed object, a reconstruction beside its truth.

Every builder returns a ``matplotlib.figure.Figure`` (no pyplot state, no display); save it with
``ptycho.files.save_figure``. Images are drawn with their axes in object pixels: pixel (row i, col j)
of an image whose pixel (0, 0) sits at object position ``origin = (x0, y0)`` is drawn at
(x0 + j, y0 + i). matplotlib is imported inside the functions, so importing this module does no work.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

#: The history keys drawn by :func:`training_figure`.
LOSS_KEYS = ("loss", "val_loss")
SSIM_KEY = "test_ssim"


# --------------------------------------------------------------------------------------------------
# Training curve


def _finite_series(history: Mapping[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs (n,) int, values (n,) float) of the finite entries of ``history[key]`` (epochs from 1)."""
    values = history.get(key)
    if not isinstance(values, (list, tuple, np.ndarray)):
        return np.zeros(0, int), np.zeros(0)
    pairs = [(i + 1, float(v)) for i, v in enumerate(values)
             if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)]
    if not pairs:
        return np.zeros(0, int), np.zeros(0)
    epochs, vals = zip(*pairs)
    return np.asarray(epochs), np.asarray(vals)


def loss_axis_scale(values: Sequence[float]) -> str:
    """The y scale of the loss axis: 'log' when every finite value is > 0, else 'linear'.

    The Poisson NLL is computed without its data-only constant (SPEC §5), so at high counts it is
    negative, and its offset is arbitrary: no logarithmic axis can show it honestly (a symmetric-log axis
    squeezes it into one unlabelled decade). Such a history is drawn on a linear axis, and the axis label
    says so.
    """
    finite = [v for v in values if math.isfinite(v)]
    return "log" if all(v > 0 for v in finite) else "linear"


def training_figure(history: Mapping[str, Any], title: str = "Training") -> Any:
    """Loss and validation loss per epoch (log scale; linear if a loss is <= 0, see
    :func:`loss_axis_scale`) and, when
    ``history['test_ssim']`` holds per-epoch values, the test-set amplitude SSIM on a second axis.

    history : a Keras history dict as ``ptycho.train.train`` returns it (per-epoch lists; other keys are
        ignored). Non-finite entries (``null`` in JSON) are left out.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.subplots()
    all_losses: list[float] = []
    for key, style in zip(LOSS_KEYS, ("o-", "s--")):
        epochs, values = _finite_series(history, key)
        if values.size:
            ax.plot(epochs, values, style, label=key.replace("_", " "))
            all_losses.extend(values.tolist())
    if not all_losses:
        placeholder(ax, "No epochs recorded", title)
        return fig
    scale = loss_axis_scale(all_losses)
    ax.set_yscale(scale)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (training objective)" + ("" if scale == "log" else ", linear axis: values <= 0"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    epochs, ssim = _finite_series(history, SSIM_KEY)
    if ssim.size:
        twin = ax.twinx()
        twin.plot(epochs, ssim, "^-", color="C2", label="test amplitude SSIM")
        twin.set_ylabel("test amplitude SSIM (monitoring only)")
        twin.set_ylim(min(0.0, float(ssim.min()) - 0.05), 1.0)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best")
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------------------------------
# Panels (shared with the study's figures)


def placeholder(ax: Any, text: str, title: str) -> None:
    """An empty panel saying ``text`` (e.g. 'No Data' for a failed study arm)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def show_image(fig: Any, ax: Any, data: np.ndarray, title: str, origin: tuple[float, float] = (0.0, 0.0),
               label: Optional[str] = None, **kwargs: Any) -> None:
    """``imshow`` of ``data`` (H, W) with axes in object pixels and a colour bar labelled ``label``."""
    h, w = np.shape(data)
    x0, y0 = origin
    extent = (x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)
    image = ax.imshow(data, extent=extent, **kwargs)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    if label:
        bar.set_label(label)
    ax.set_title(title)


def masked(data: np.ndarray, coverage: Optional[np.ndarray]) -> np.ndarray:
    """``data`` (H, W) with the pixels that ``coverage`` (H, W) bool marks False masked out.

    Uncovered pixels of a stitch are zero, not data; unknown coverage (None or another shape) masks nothing.
    """
    if coverage is None or np.shape(coverage) != np.shape(data):
        return data
    return np.ma.masked_array(data, mask=~np.asarray(coverage, dtype=bool))


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


# --------------------------------------------------------------------------------------------------
# A reconstruction, alone and beside its truth


def display_phase(obj: np.ndarray, coverage: Optional[np.ndarray] = None) -> np.ndarray:
    """Phase (rad, (H, W) float64) of ``obj`` with its global offset removed: angle(obj · e^{-iθ}),
    θ = angle(Σ obj) over ``coverage`` (all pixels when None)."""
    obj = np.asarray(obj)
    region = obj if coverage is None else obj[np.asarray(coverage, bool)]
    total = np.sum(region) if region.size else 0
    offset = np.angle(total) if abs(total) > 0 else 0.0
    return np.angle(obj * np.exp(-1j * offset))


def object_figure(obj: np.ndarray, origin: tuple[float, float] = (0.0, 0.0),
                  coverage: Optional[np.ndarray] = None, title: str = "Reconstruction") -> Any:
    """Amplitude and phase (rad) of a complex object (H, W), side by side, each with a colour bar.

    Pixels outside ``coverage`` (H, W) bool (no stitched window covered them) are masked. The global
    phase offset (the phase of the amplitude-weighted mean over covered pixels; ptychography cannot
    measure it) is removed, so the phase does not sit on the ±π wrap, and the phase colour scale is
    symmetric about 0 at the 99.5th percentile of |phase|, at least ±0.25 rad (noise stays flat).
    """
    from matplotlib.figure import Figure

    obj = np.asarray(obj)
    phase = display_phase(obj, coverage)
    inside = phase if coverage is None else phase[np.asarray(coverage, bool)]
    limit = float(np.clip(np.percentile(np.abs(inside), 99.5), 0.25, math.pi)) if inside.size else math.pi
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    amp_ax, phase_ax = fig.subplots(1, 2)
    show_image(fig, amp_ax, masked(np.abs(obj), coverage), "amplitude", origin, label="|O|", cmap="gray")
    show_image(fig, phase_ax, masked(phase, coverage), "phase (global offset removed)", origin,
               label="phase (rad)", cmap="twilight_shifted" if limit > 3 else "RdBu_r", vmin=-limit, vmax=limit)
    for ax in (amp_ax, phase_ax):
        ax.set_xlabel("x (object pixels)")
        ax.set_ylabel("y (object pixels)")
    fig.suptitle(title)
    return fig


def comparison_figure(recon: np.ndarray, truth: np.ndarray, origin: tuple[float, float] = (0.0, 0.0),
                      metrics: Optional[Mapping[str, Any]] = None, coverage: Optional[np.ndarray] = None) -> Any:
    """Truth (left) beside the reconstruction (right): amplitude (top) and phase (bottom), 2 x 2 panels.

    recon, truth : (H, W) complex on the same object grid (pixel (0, 0) at ``origin``). The
    reconstruction is scaled to the truth's mean amplitude with its global phase removed
    (:func:`align_for_display`) and drawn on the truth's colour scale; its amplitude panel is titled with
    ``metrics['amplitude_ssim']`` when given.
    """
    from matplotlib.figure import Figure

    truth = np.asarray(truth)
    shown = align_for_display(recon, truth)
    fig = Figure(figsize=(11.0, 9.0), layout="constrained")
    axes = fig.subplots(2, 2)
    amp = np.abs(truth)
    amp_lim = {"vmin": float(amp.min()), "vmax": float(amp.max())} if np.ptp(amp) > 0 else {}
    phase_max = max(float(np.percentile(np.abs(np.angle(np.stack([truth, shown]))), 99)), 1e-3)
    phase_lim = {"vmin": -phase_max, "vmax": phase_max}
    ssim = (metrics or {}).get("amplitude_ssim")
    recon_title = "reconstruction" + (f"  (amplitude SSIM {ssim:.3f})" if isinstance(ssim, (int, float)) else "")
    for col, (name, data, cover) in enumerate((("truth", truth, None), (recon_title, shown, coverage))):
        show_image(fig, axes[0, col], masked(np.abs(data), cover), f"{name}: amplitude", origin,
                   label="|O|", cmap="gray", **amp_lim)
        show_image(fig, axes[1, col], masked(np.angle(data), cover), f"{name.split('  ')[0]}: phase", origin,
                   label="phase (rad)", cmap="twilight_shifted", **phase_lim)
    fig.suptitle("Scanned region: truth beside the reconstruction (amplitude scaled to the truth's mean, "
                 "global phase removed)")
    return fig
