"""Reconstruction quality against a ground-truth object (SPEC §5). NumPy / SciPy / scikit-image only.

Pipeline of :func:`evaluate` (both inputs complex (H, W), same shape, same object region):

1. :func:`align` registers ``recon`` to ``truth``: sub-pixel phase correlation (scikit-image,
   ``upsample_factor`` → precision 1/upsample_factor px) on the amplitudes refined by least squares on
   the image interior (phase correlation alone is biased on non-periodic images), a cubic-spline shift of the
   real and imaginary parts, a border crop that drops every pixel the shift invalidated, an optional
   phase-plane removal, the global phase offset removal and an amplitude rescale to the truth's mean
   amplitude.
2. Amplitude ``|.|`` and phase images are compared. The phase of the reconstruction is expressed as
   ``φ_truth + wrap(φ_recon − φ_truth)`` with ``wrap`` onto (−π, π], so a phase error never counts
   more than π and phase wrapping of either image cannot create artificial errors.
3. Metrics: MAE, PSNR (peak = data range max−min of the *truth*), SSIM (Wang et al. 2004 settings:
   11×11 Gaussian window σ = 1.5, population covariance), FRC curve and FRC50 (cycles per pixel). The
   phase metrics are ``None`` (not applicable) where the truth's phase is flat (:func:`phase_spread`).

Conventions: shifts are ``(dy, dx)`` = (row, column) in pixels, the scikit-image convention (note that
the rest of the package writes positions as [x, y]). A perfect reconstruction gives MAE 0, SSIM 1,
FRC ≡ 1, FRC50 0.5 and PSNR ``float('inf')`` (kept as IEEE infinity, not capped: Python's ``json``
writes it as ``Infinity``; a caller that needs strict JSON must map it, e.g. to ``None``).

The package, one module per step (every public name is importable from ``ptycho.evaluation``)::

    evaluation/__init__.py      evaluate, agreement_warnings, phase_spread; the result keys
    evaluation/registration.py  align (Alignment), register, apply_shift, phase_plane, phase_offset
    evaluation/metrics.py       mae, psnr, ssim, correlation, wrap_phase; the input checks
    evaluation/resolution.py    frc, frc50, frc_cutoff, half_bit_threshold, half_period, hann_window
"""
from __future__ import annotations

import numpy as np

from ptycho.evaluation.metrics import (MIN_CROPPED_SIDE, as_image, correlation, data_range_of, mae, psnr, ssim,
                                       wrap_phase)
from ptycho.evaluation.registration import (DEFAULT_MAX_SHIFT, MIN_SIDE, ROUND_OFF, Alignment, align, apply_shift,
                                            phase_offset, phase_plane, register)
from ptycho.evaluation.resolution import (FRC_THRESHOLD, frc, frc50, frc_cutoff, half_bit_threshold, half_period,
                                          hann_window)

__all__ = [
    # the pipeline (this module)
    "evaluate", "agreement_warnings", "phase_spread", "DEFAULT_CROP", "METRIC_KEYS", "RESOLUTION_KEYS",
    "PHASE_METRIC_KEYS", "PHASE_RESULT_KEYS", "RESULT_KEYS", "SUSPICIOUS_SHIFT", "MIN_CORRELATION", "FLAT_PHASE_RAD",
    # registration
    "Alignment", "align", "register", "apply_shift", "phase_plane", "phase_offset", "MIN_SIDE", "DEFAULT_MAX_SHIFT",
    "ROUND_OFF",
    # pixel-wise metrics
    "mae", "psnr", "ssim", "correlation", "wrap_phase", "MIN_CROPPED_SIDE",
    # resolution
    "frc", "frc50", "frc_cutoff", "half_bit_threshold", "half_period", "hann_window", "FRC_THRESHOLD",
]

#: Default border (pixels) dropped on every side after alignment.
DEFAULT_CROP = 4

#: The metrics of :func:`evaluate`'s result (floats; the phase ones None where the truth's phase is flat).
METRIC_KEYS = ("amplitude_mae", "phase_mae", "amplitude_psnr", "phase_psnr", "amplitude_ssim",
               "phase_ssim", "amplitude_frc50", "phase_frc50")
#: Resolution (:func:`frc_cutoff` at 1/7, cycles/px; None = not reached up to Nyquist) and its half-period (px).
RESOLUTION_KEYS = ("amplitude_frc_cutoff", "amplitude_half_period", "phase_frc_cutoff", "phase_half_period")
#: The phase metrics, reported as None (not applicable) where the truth's phase is flat.
PHASE_METRIC_KEYS = tuple(k for k in METRIC_KEYS if k.startswith("phase_"))
#: Every phase key of the result (None where the truth's phase is flat).
PHASE_RESULT_KEYS = PHASE_METRIC_KEYS + tuple(k for k in RESOLUTION_KEYS if k.startswith("phase_"))
#: Every key of :func:`evaluate`'s result.
RESULT_KEYS = METRIC_KEYS + RESOLUTION_KEYS + ("correlation", "shift", "shift_found", "registration_rejected")
#: A reconstruction and its truth share a grid (positions in object pixels), so a right reconstruction of
#: the right object registers within a pixel or so: a larger shift found, or an amplitude correlation below
#: MIN_CORRELATION, means the truth is not the scan's object or the reconstruction failed
#: (:func:`agreement_warnings`, ledger EVAL-TRUTH-MISMATCH-001).
SUSPICIOUS_SHIFT = 2.0
MIN_CORRELATION = 0.3
#: Truth phase spread (rad, :func:`phase_spread`) below which the phase metrics are not applicable.
FLAT_PHASE_RAD = 1e-3


def phase_spread(truth) -> float:
    """Amplitude-weighted circular spread (rad) of the phase of ``truth`` (H, W) complex.

    ``sqrt(Σ|t|²·wrap(φ − φ̄)² / Σ|t|²)`` with φ̄ the phase of Σ|t|·t (the energy-weighted mean phasor), so
    a constant phase at ±π has spread 0 and pixels without amplitude (where the phase means nothing) do
    not count. 0 for an all-zero truth.
    """
    truth = np.asarray(truth)
    weight = np.abs(truth) ** 2
    total = float(np.sum(weight))
    if total == 0:
        return 0.0
    mean_phase = np.angle(np.sum(np.abs(truth) * truth))
    deviation = wrap_phase(np.angle(truth) - mean_phase)
    return float(np.sqrt(np.sum(weight * deviation ** 2) / total))


def _phase_range(phase_truth: np.ndarray) -> float:
    """Truth phase range, or 2π (the full phase interval) when the truth phase is constant (a flat truth
    phase makes the phase metrics not applicable in :func:`evaluate`; this keeps the helpers total)."""
    spread = float(np.max(phase_truth) - np.min(phase_truth))
    return spread if spread > 1e-12 else 2 * np.pi


def evaluate(recon, truth, crop: int = DEFAULT_CROP, upsample_factor: int = 20,
             remove_phase_plane: bool = False, refine: bool = True,
             max_shift: float = DEFAULT_MAX_SHIFT) -> dict:
    """Align ``recon`` to ``truth`` (:func:`align`) and compare amplitude and phase.

    recon, truth : (H, W) complex, same shape and object region, finite, at least 16×16.
    crop : minimum border (px) dropped on every side after alignment (default 4; at least
        ceil(max|shift|) is always dropped).

    Returns a dict with exactly the keys of :data:`RESULT_KEYS`: those of :data:`METRIC_KEYS` (floats);
    the resolution of :data:`RESOLUTION_KEYS` (``<part>_frc_cutoff``: :func:`frc_cutoff` at 1/7 in cycles per
    pixel, ``<part>_half_period`` = 1/(2·cutoff) in pixels; both None when the FRC never falls below 1/7);
    ``correlation`` (:func:`correlation` of the registered images); ``shift`` = [dy, dx] (px, applied to
    recon; [0, 0] when rejected), ``shift_found`` = [dy, dx] the registration found (equal to ``shift`` unless
    rejected) and ``registration_rejected`` (bool, see :func:`align`). PSNR and SSIM peaks: the
    truth's amplitude range (1.0 if the truth amplitude is constant); for phase the truth's phase range.
    Phase images are compared as ``φ_truth`` vs ``φ_truth + wrap(φ_recon − φ_truth)`` after offset removal.
    A perfect reconstruction gives PSNR ``inf``.

    Where the truth's phase is flat on the compared region (:func:`phase_spread` < :data:`FLAT_PHASE_RAD`,
    1 mrad: e.g. the default lines object, phase 0) the phase metrics (MAE, PSNR, SSIM, FRC50, FRC cutoff,
    half-period) are not applicable and are ``None`` (JSON null; "n/a" in tables): after the global phase
    offset is removed, a
    reconstruction with any nearly flat phase would otherwise score SSIM ≈ 1 and PSNR > 100 dB against it
    (ledger EVAL-PHASE-NA-001).
    """
    recon = as_image(recon, "recon", MIN_SIDE)
    truth = as_image(truth, "truth", MIN_SIDE)
    if recon.shape != truth.shape:
        raise ValueError(f"recon and truth: shapes differ, {recon.shape} vs {truth.shape}")
    aligned = align(recon, truth, upsample_factor, remove_phase_plane, crop, refine, max_shift)
    found = aligned.shift_found if aligned.shift_found is not None else aligned.shift
    amp_r, amp_t = np.abs(aligned.recon), np.abs(aligned.truth)
    ph_t = np.angle(aligned.truth)
    ph_r = ph_t + wrap_phase(np.angle(aligned.recon) - ph_t)
    amp_peak = data_range_of(amp_t, None) if np.ptp(amp_t) > 0 else 1.0
    ph_peak = _phase_range(ph_t)
    result = {
        "amplitude_mae": mae(amp_r, amp_t),
        "phase_mae": mae(ph_r, ph_t),
        "amplitude_psnr": psnr(amp_r, amp_t, amp_peak),
        "phase_psnr": psnr(ph_r, ph_t, ph_peak),
        "amplitude_ssim": ssim(amp_r, amp_t, amp_peak),
        "phase_ssim": ssim(ph_r, ph_t, ph_peak),
        "amplitude_frc50": frc50(amp_r, amp_t),
        "phase_frc50": frc50(ph_r, ph_t),
    }
    for part, (r_img, t_img) in (("amplitude", (amp_r, amp_t)), ("phase", (ph_r, ph_t))):
        cutoff = frc_cutoff(r_img, t_img)
        result[f"{part}_frc_cutoff"] = cutoff
        result[f"{part}_half_period"] = half_period(cutoff)
    result.update({
        "correlation": correlation(aligned.recon, aligned.truth),
        "shift": [float(aligned.shift[0]), float(aligned.shift[1])],
        "shift_found": [float(found[0]), float(found[1])],
        "registration_rejected": aligned.registration_rejected,
    })
    if phase_spread(aligned.truth) < FLAT_PHASE_RAD:  # a flat truth phase: nothing to compare (EVAL-PHASE-NA-001)
        result.update(dict.fromkeys(PHASE_RESULT_KEYS))
    return result


def agreement_warnings(result, max_shift: float = DEFAULT_MAX_SHIFT) -> list[str]:
    """One warning (a list of at most one line) when :func:`evaluate`'s ``result`` says the reconstruction and
    the truth do not belong together; [] otherwise.

    Evidence: a shift found larger than :data:`SUSPICIOUS_SHIFT` px (rejected when above ``max_shift``), or
    ``correlation`` below :data:`MIN_CORRELATION`. Both images share the object's pixel grid by construction,
    so either means the truth is another object (or another object size), or the reconstruction failed; the
    metrics then compare unrelated images (ledger EVAL-TRUTH-MISMATCH-001).
    """
    evidence = []
    found = result.get("shift_found") or result.get("shift")
    if found is not None and max(abs(found[0]), abs(found[1])) > SUSPICIOUS_SHIFT:
        applied = ("rejected as more than %g px, so the images are compared unshifted" % max_shift
                   if result.get("registration_rejected") else "applied")
        evidence.append(f"registration found a shift of [{found[0]:.3g}, {found[1]:.3g}] px ({applied}), where a "
                        f"reconstruction of this scan registers within {SUSPICIOUS_SHIFT:g} px")
    r = result.get("correlation")
    if r is not None and not (r >= MIN_CORRELATION):  # nan counts as no correlation
        evidence.append(f"its amplitude correlates with the truth's at only r = {r:.2f} (< {MIN_CORRELATION:g})")
    if not evidence:
        return []
    return [f"the reconstruction does not match the truth: {'; '.join(evidence)}. Either the truth is not the object "
            "this scan measured (another object or object size?) or the reconstruction failed; the metrics compare "
            "unrelated images"]
