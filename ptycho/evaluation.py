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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

#: Smallest accepted image side (pixels) for evaluate / align inputs.
MIN_SIDE = 16
#: Smallest side left after the border crop (the SSIM Gaussian window is 11 px).
MIN_CROPPED_SIDE = 11
#: Default border (pixels) dropped on every side after alignment.
DEFAULT_CROP = 4
#: Largest registration shift (px) accepted; a larger one means registration failed (a poor
#: reconstruction) and no shift is applied. Reconstruction and truth share a grid by construction.
DEFAULT_MAX_SHIFT = 8.0
#: Phase offsets (rad) and relative amplitude rescales below this are round-off and not applied,
#: so that identical images stay bit-identical (MAE 0, PSNR inf).
ROUND_OFF = 1e-12


@dataclass(frozen=True)
class Alignment:
    """Result of :func:`align`.

    recon  : (H − 2·border, W − 2·border) complex128, the registered, phase- and amplitude-matched
             reconstruction.
    truth  : same shape, the truth cropped by the same border.
    shift  : (dy, dx) in pixels, the shift *applied to* ``recon`` to register it on ``truth``
             (the reconstruction was displaced by ``−shift``).
    border : int, pixels dropped on every side.
    phase_offset : radians added to the reconstruction's phase (global offset removal).
    phase_plane  : (gy, gx) radians/pixel of the phase ramp added (0, 0 unless requested).
    registration_rejected : True if the shift found exceeded ``max_shift`` and none was applied.
    shift_found : (dy, dx) px, the shift registration found (``shift`` unless rejected; None when unknown).
    """

    recon: np.ndarray
    truth: np.ndarray
    shift: tuple[float, float]
    border: int
    phase_offset: float
    phase_plane: tuple[float, float]
    registration_rejected: bool = False
    shift_found: Optional[tuple[float, float]] = None


# ----------------------------------------------------------------------------- validation


def _as_image(image, name: str, min_side: int = 1) -> np.ndarray:
    """Validate a 2-D, non-empty, finite numeric array and return it as complex128 (or float64)."""
    arr = np.asarray(image)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be 2-D (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty, shape {arr.shape}")
    if min(arr.shape) < min_side:
        raise ValueError(f"{name}: must be at least {min_side}x{min_side}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains {int(np.sum(~np.isfinite(arr)))} non-finite values")
    return arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)


def _as_pair(a, b, names=("a", "b"), min_side: int = 1):
    a = _as_image(a, names[0], min_side)
    b = _as_image(b, names[1], min_side)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]}: shapes differ, {a.shape} vs {b.shape}")
    return a, b


def _data_range(truth: np.ndarray, data_range) -> float:
    if data_range is None:
        data_range = float(np.max(truth) - np.min(truth))
        if data_range <= 0:
            raise ValueError("data_range: the truth is constant (range 0); pass data_range explicitly")
    elif not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range: must be a finite positive number, got {data_range!r}")
    return float(data_range)


def _real(image: np.ndarray, name: str) -> np.ndarray:
    if np.iscomplexobj(image):
        raise ValueError(f"{name}: must be real (pass the amplitude or the phase), got complex")
    return image


def wrap_phase(phase):
    """Wrap radians onto (−π, π]."""
    wrapped = np.angle(np.exp(1j * np.asarray(phase)))
    return np.where(wrapped <= -np.pi, wrapped + 2 * np.pi, wrapped)


# ----------------------------------------------------------------------------- alignment steps


def register(recon, truth, upsample_factor: int = 20, refine: bool = True) -> tuple[float, float]:
    """Sub-pixel shift ``(dy, dx)`` to apply to ``recon`` so it matches ``truth`` (pixels).

    1. Upsampled-DFT cross-correlation (``skimage.registration.phase_cross_correlation`` with
       ``normalization=None``, precision 1/upsample_factor px) of the mean-subtracted amplitudes
       ``|recon|`` and ``|truth|`` — robust to phase offsets and phase ramps. Spectral whitening
       (``normalization='phase'``) is not used: it amplifies the high frequencies of the amplitude
       (aliased, noisy) and picked wrong integer peaks in tests. When either amplitude is featureless
       (relative std < 1e-6, e.g. a pure-phase object) the complex images are used instead.
    2. ``refine=True``: starting there, least-squares refinement (Nelder–Mead, 1e-3 px) of the same
       images compared on the interior only, ``min_s min_c Σ_interior |c·shift(recon, s) − truth|²``
       (``c`` a scalar fitted in closed form), with the interior excluding ``ceil(max|s₀|) + 2`` px on
       every side. Phase correlation assumes periodic images; a reconstruction and its truth are not
       periodic, and the content entering and leaving the field of view biases it by 0.1–0.5 px at
       64 px (ledger EVAL-REGISTRATION-001). The refinement is dropped if it moves more than 2 px or
       does not lower the residual.
    """
    from skimage.registration import phase_cross_correlation

    recon, truth = _as_pair(recon, truth, ("recon", "truth"))
    if isinstance(upsample_factor, bool) or not isinstance(upsample_factor, (int, np.integer)) \
            or upsample_factor < 1:
        raise ValueError(f"upsample_factor: must be an int >= 1, got {upsample_factor!r}")
    ref, mov = np.abs(truth), np.abs(recon)
    if min(ref.std() / max(ref.mean(), 1e-300), mov.std() / max(mov.mean(), 1e-300)) < 1e-6:
        ref, mov = truth.astype(np.complex128), recon.astype(np.complex128)
    coarse, _, _ = phase_cross_correlation(ref - ref.mean(), mov - mov.mean(), normalization=None,
                                           upsample_factor=int(upsample_factor))
    coarse = np.asarray(coarse, dtype=np.float64)
    if refine:
        coarse = _refine_shift(mov, ref, coarse)
    return float(coarse[0]), float(coarse[1])


def _refine_shift(moving: np.ndarray, reference: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Least-squares sub-pixel shift of ``moving`` onto ``reference`` on the interior (see register)."""
    from scipy import optimize

    margin = int(np.ceil(np.max(np.abs(start)))) + 2
    if min(reference.shape) - 2 * margin < 8:
        return start
    window = (slice(margin, reference.shape[0] - margin), slice(margin, reference.shape[1] - margin))
    target = reference[window]
    parts = [moving.real, moving.imag] if np.iscomplexobj(moving) else [moving]
    coeffs = [ndimage.spline_filter(p, order=3, mode="nearest") for p in parts]

    def residual(shift):
        moved = [ndimage.shift(c, shift, order=3, mode="nearest", prefilter=False)[window]
                 for c in coeffs]
        moved = moved[0] + 1j * moved[1] if len(moved) == 2 else moved[0]
        norm = np.sum(np.abs(moved) ** 2)
        fit = np.abs(np.vdot(moved, target)) ** 2 / norm if norm > 0 else 0.0
        return float(np.sum(np.abs(target) ** 2) - fit)

    simplex = [start, start + [0.3, 0.0], start + [0.0, 0.3]]
    result = optimize.minimize(residual, start, method="Nelder-Mead",
                               options={"xatol": 1e-3, "fatol": np.inf, "initial_simplex": simplex})
    if np.max(np.abs(result.x - start)) > 2.0 or result.fun > residual(start):
        return start
    return np.asarray(result.x, dtype=np.float64)


def apply_shift(image, shift) -> np.ndarray:
    """Shift a (H, W) real or complex image by ``(dy, dx)`` px (positive = towards larger index).

    Cubic-spline interpolation of the real and imaginary parts, edges extended with the nearest value
    (those pixels are invalid and must be cropped: see :func:`align`).
    """
    image = np.asarray(image)
    if shift[0] == 0 and shift[1] == 0:
        return image.copy()
    parts = [image.real, image.imag] if np.iscomplexobj(image) else [image]
    moved = [ndimage.shift(p, shift, order=3, mode="nearest") for p in parts]
    return moved[0] + 1j * moved[1] if len(moved) == 2 else moved[0]


def phase_plane(recon, truth) -> tuple[float, float]:
    """Phase ramp ``(gy, gx)`` (radians/pixel) that best maps ``recon``'s phase onto ``truth``'s.

    Amplitude-weighted mean phase gradient of ``d = truth·conj(recon)`` along each axis,
    ``g = angle(Σ d[k+1]·conj(d[k]))``; wrap-safe for ramps below π per pixel.
    """
    d = np.asarray(truth) * np.conj(recon)
    gy = np.angle(np.sum(d[1:, :] * np.conj(d[:-1, :])))
    gx = np.angle(np.sum(d[:, 1:] * np.conj(d[:, :-1])))
    return float(gy), float(gx)


def phase_offset(recon, truth) -> float:
    """Global phase θ (radians) minimising Σ|truth − recon·e^{iθ}|²: θ = angle(Σ truth·conj(recon))."""
    return float(np.angle(np.sum(np.asarray(truth) * np.conj(recon))))


def _border(shift, crop: int) -> int:
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 0:
        raise ValueError(f"crop: must be an int >= 0, got {crop!r}")
    return max(int(crop), int(np.ceil(max(abs(shift[0]), abs(shift[1])) - 1e-9)))


def align(recon, truth, upsample_factor: int = 20, remove_phase_plane: bool = False,
          crop: int = 0, refine: bool = True, max_shift: float = DEFAULT_MAX_SHIFT) -> Alignment:
    """Register ``recon`` to ``truth`` and remove the global phase offset and amplitude scale.

    recon, truth : (H, W) complex (or real), same shape, finite, at least 16×16.
    upsample_factor : int, phase-correlation precision 1/upsample_factor px.
    refine : refine the shift by interior least squares (:func:`register`).
    remove_phase_plane : also fit and remove a linear phase ramp (:func:`phase_plane`).
    crop : int, minimum border (px) dropped on every side after the shift. The border actually
        dropped is ``max(crop, ceil(max|shift|))`` so that no pixel invalidated by the shift is kept;
        the phase offset, phase plane and amplitude scale are estimated on the cropped images.
    max_shift : px; a registration shift larger than this (in either axis) is rejected: no shift is
        applied and ``registration_rejected`` is set (registration of a poor reconstruction is noise).

    Returns an :class:`Alignment` (registered recon, equally cropped truth, shift (dy, dx) applied to
    recon, border). Amplitude scale: ``recon`` is multiplied by mean|truth| / mean|recon| (left as is if
    the reconstruction is identically zero). Corrections below :data:`ROUND_OFF` are not applied.
    """
    recon, truth = _as_pair(recon, truth, ("recon", "truth"), MIN_SIDE)
    shift = register(recon, truth, upsample_factor, refine)
    found = (float(shift[0]), float(shift[1]))
    rejected = bool(np.max(np.abs(shift)) > max_shift)
    if rejected:
        shift = np.zeros(2)
    border = _border(shift, crop)
    if min(truth.shape) - 2 * border < MIN_CROPPED_SIDE:
        raise ValueError(f"crop: border {border} px leaves less than {MIN_CROPPED_SIDE} px of a "
                         f"{truth.shape} image (shift found {shift})")
    window = (slice(border, truth.shape[0] - border), slice(border, truth.shape[1] - border))
    moved = apply_shift(recon.astype(np.complex128), shift)[window]
    truth = truth.astype(np.complex128)[window]
    plane = (0.0, 0.0)
    if remove_phase_plane:
        plane = phase_plane(moved, truth)
        rows, cols = np.indices(moved.shape)
        moved = moved * np.exp(1j * (plane[0] * rows + plane[1] * cols))
    offset = phase_offset(moved, truth)
    if abs(offset) > ROUND_OFF:
        moved = moved * np.exp(1j * offset)
    mean_amp = np.mean(np.abs(moved))
    if mean_amp > 0 and abs(np.mean(np.abs(truth)) / mean_amp - 1.0) > ROUND_OFF:
        moved = moved * (np.mean(np.abs(truth)) / mean_amp)
    return Alignment(moved, truth, shift, border, offset, plane, rejected, found)


# ----------------------------------------------------------------------------- metrics


def mae(a, b) -> float:
    """Mean absolute error ``mean|a − b|`` of two same-shape (H, W) real or complex images."""
    a, b = _as_pair(a, b)
    return float(np.mean(np.abs(a - b)))


def psnr(a, b, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(data_range² / mean((a − b)²))``.

    a : (H, W) real, the test image; b : (H, W) real, the truth (reference).
    data_range : the peak; ``None`` → the data range of the *truth*, ``max(b) − min(b)`` (ValueError
    if the truth is constant). Identical images give ``float('inf')``.
    """
    a, b = _as_pair(a, b)
    a, b = _real(a, "a"), _real(b, "b")
    peak = _data_range(b, data_range)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


def ssim(a, b, data_range=None) -> float:
    """Structural similarity of two (H, W) real images (scikit-image, Wang et al. 2004 settings:
    Gaussian window σ = 1.5 (11×11), population covariance, K1 = 0.01, K2 = 0.03).

    b is the truth; data_range ``None`` → ``max(b) − min(b)`` (ValueError if the truth is constant).
    Both sides must be ≥ 11 px.
    """
    from skimage.metrics import structural_similarity

    a, b = _as_pair(a, b, min_side=MIN_CROPPED_SIDE)
    a, b = _real(a, "a"), _real(b, "b")
    peak = _data_range(b, data_range)
    return float(structural_similarity(b, a, data_range=peak, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def hann_window(n: int) -> np.ndarray:
    """(n, n) separable periodic Hann window ``sin²(π·i/n)·sin²(π·j/n)`` (0 at the first row and column)."""
    w = np.sin(np.pi * np.arange(n) / n) ** 2
    return np.outer(w, w)


def frc(a, b, apodize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two same-shape (H, W) real or complex images.

    Both are cropped to their central n×n square, n = min(H, W). ``apodize=False`` (the default, and
    :func:`frc50`'s): no window. ``apodize=True``: each image minus its window-weighted mean is multiplied
    by :func:`hann_window` first. Without a window the jump between opposite edges of a non-periodic crop
    puts power on the k_x = 0 and k_y = 0 axes at every frequency, and the reconstruction and the truth share
    those edges, so the correlation stays high up to Nyquist however blurred the reconstruction is (ledger
    EVAL-FRC-RESOLUTION-001); with the window ring 0 holds nothing (0). Ring r (r = 0 … n//2) holds the DFT
    frequencies with round(|k|·n) = r; frequencies beyond n//2 (the corners) are ignored.
    ``FRC(r) = Re Σ F_a·conj(F_b) / sqrt(Σ|F_a|² · Σ|F_b|²)``, and 0 for a ring where either image has no
    power.

    Returns ``freqs`` (n//2 + 1,) float64 in cycles per pixel, r/n (0 … 0.5 for even n), and
    ``curve`` (n//2 + 1,) float64 in [−1, 1].
    """
    a, b = _as_pair(a, b, min_side=2)
    n = min(a.shape)
    top, left = (a.shape[0] - n) // 2, (a.shape[1] - n) // 2
    a, b = a[top:top + n, left:left + n], b[top:top + n, left:left + n]
    if apodize:
        window = hann_window(n)
        a = (a - np.sum(a * window) / np.sum(window)) * window
        b = (b - np.sum(b * window) / np.sum(window)) * window
    fa = np.fft.fft2(a)
    fb = np.fft.fft2(b)
    k = np.fft.fftfreq(n) * n
    rings = np.rint(np.hypot(k[:, None], k[None, :])).astype(int).ravel()
    n_rings = n // 2 + 1
    keep = rings < n_rings
    rings = rings[keep]

    def ring_sum(values):
        return np.bincount(rings, weights=values.ravel()[keep], minlength=n_rings)

    cross = ring_sum(np.real(fa * np.conj(fb)))
    power = ring_sum(np.abs(fa) ** 2) * ring_sum(np.abs(fb) ** 2)
    curve = np.zeros(n_rings)
    positive = power > 0
    curve[positive] = cross[positive] / np.sqrt(power[positive])
    if apodize:
        curve[0] = 0.0  # the mean was removed: ring 0 holds round-off only
    return np.arange(n_rings) / n, curve


def frc50(a, b) -> float:
    """First frequency (cycles per pixel) at which the FRC drops below 0.5.

    Linear interpolation between the last ring ≥ 0.5 and the first ring < 0.5. Returns 0.0 if the
    zero-frequency ring is already below 0.5, and 0.5 (Nyquist) if the curve never drops below 0.5.
    """
    freqs, curve = frc(a, b)
    below = np.nonzero(curve < 0.5)[0]
    if below.size == 0:
        return 0.5
    i = int(below[0])
    if i == 0:
        return 0.0
    t = (curve[i - 1] - 0.5) / (curve[i - 1] - curve[i])
    return float(freqs[i - 1] + t * (freqs[i] - freqs[i - 1]))


#: The fixed FRC threshold of the resolution measure (van Heel & Schatz 2005: 1/7 for a comparison
#: against a reference; "half-bit" is the information-based alternative, :func:`half_bit_threshold`).
FRC_THRESHOLD = 1.0 / 7.0


def half_bit_threshold(n: int) -> np.ndarray:
    """The half-bit FRC threshold (van Heel & Schatz 2005) per ring of an n×n image: (n//2 + 1,) float64.

    ``T(r) = (0.2071 + 1.9102/√n_r) / (1.2071 + 0.9102/√n_r)`` with n_r the number of DFT frequencies in ring r.
    """
    k = np.fft.fftfreq(n) * n
    rings = np.rint(np.hypot(k[:, None], k[None, :])).astype(int).ravel()
    counts = np.maximum(np.bincount(rings[rings <= n // 2], minlength=n // 2 + 1), 1).astype(np.float64)
    root = np.sqrt(counts)
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def frc_cutoff(a, b, threshold=FRC_THRESHOLD):
    """Resolution of ``a`` against ``b``: the first spatial frequency (cycles per pixel) at which their
    apodised Fourier ring correlation (:func:`frc` with ``apodize=True``) falls below ``threshold``.

    ``threshold``: a number (default 1/7) or ``"half-bit"`` (:func:`half_bit_threshold`). Linear interpolation
    between the last ring at or above the threshold and the first below it; ring 0 (the mean, removed by the
    apodisation) is skipped, and if ring 1 is already below, the result is ring 1's frequency 1/n (nothing
    correlates at any scale). Returns ``None`` when the curve never falls below the threshold up to Nyquist
    (0.5 cycles/px): the resolution is not limited within this image (a half-period of at most 1 px) — never a
    value pinned at the cap. The half-period in pixels, the finest resolved feature, is ``1 / (2·cutoff)``
    (:func:`half_period`). Unlike the correlation at 0.5 of :func:`frc50` (unapodised), this falls with blur
    (ledger EVAL-FRC-RESOLUTION-001).
    """
    freqs, curve = frc(a, b, apodize=True)
    if isinstance(threshold, str):
        if threshold != "half-bit":
            raise ValueError(f"threshold: must be a number in (0, 1) or 'half-bit', got {threshold!r}")
        limit = half_bit_threshold(2 * (len(freqs) - 1) if len(freqs) > 1 else 1)
    else:
        if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
            raise ValueError(f"threshold: must be a number in (0, 1) or 'half-bit', got {threshold!r}")
        limit = np.full(len(freqs), float(threshold))
    if len(freqs) < 2:
        return None
    below = np.nonzero(curve[1:] < limit[1:])[0]
    if below.size == 0:
        return None
    i = int(below[0]) + 1
    if i == 1:
        return float(freqs[1])
    over_prev, over_here = curve[i - 1] - limit[i - 1], curve[i] - limit[i]
    t = over_prev / (over_prev - over_here)
    return float(freqs[i - 1] + t * (freqs[i] - freqs[i - 1]))


def half_period(cutoff):
    """Half-period in pixels, ``1 / (2·cutoff)``, of an FRC cutoff in cycles per pixel; None for None."""
    return None if cutoff is None or cutoff <= 0 else float(0.5 / cutoff)


def correlation(recon, truth) -> float:
    """Pearson correlation of two same-shape images' amplitudes (nan if either is constant).

    Where the truth's amplitude is flat (relative std < 1e-6: a pure-phase object) the complex images are
    correlated instead (magnitude of the normalised complex correlation of the mean-subtracted images).
    """
    recon, truth = _as_pair(recon, truth, ("recon", "truth"))
    a, b = np.abs(recon).ravel(), np.abs(truth).ravel()
    if b.std() <= 1e-6 * max(b.mean(), 1e-300):
        a, b = recon.ravel() - recon.mean(), truth.ravel() - truth.mean()
        norm = np.sqrt(np.sum(np.abs(a) ** 2) * np.sum(np.abs(b) ** 2))
        return float(np.abs(np.vdot(a, b)) / norm) if norm > 0 else math.nan
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt(np.sum(a ** 2) * np.sum(b ** 2))
    return float(np.sum(a * b) / norm) if norm > 0 else math.nan


# ----------------------------------------------------------------------------- evaluate

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
    recon = _as_image(recon, "recon", MIN_SIDE)
    truth = _as_image(truth, "truth", MIN_SIDE)
    if recon.shape != truth.shape:
        raise ValueError(f"recon and truth: shapes differ, {recon.shape} vs {truth.shape}")
    aligned = align(recon, truth, upsample_factor, remove_phase_plane, crop, refine, max_shift)
    found = aligned.shift_found if aligned.shift_found is not None else aligned.shift
    amp_r, amp_t = np.abs(aligned.recon), np.abs(aligned.truth)
    ph_t = np.angle(aligned.truth)
    ph_r = ph_t + wrap_phase(np.angle(aligned.recon) - ph_t)
    amp_peak = _data_range(amp_t, None) if np.ptp(amp_t) > 0 else 1.0
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
