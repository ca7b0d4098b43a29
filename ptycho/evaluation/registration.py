"""Registration of a reconstruction onto its truth (step 1 of :func:`ptycho.evaluation.evaluate`, SPEC §5):
sub-pixel shift, border crop, phase plane and global phase offset removal, amplitude rescale.
NumPy / SciPy / scikit-image only.

Conventions: images are (H, W) real or complex arrays on one pixel grid; shifts are ``(dy, dx)`` = (row,
column) in pixels, the scikit-image convention (the rest of the package writes positions as [x, y]);
phases and phase ramps are in radians and radians per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ptycho.evaluation.metrics import MIN_CROPPED_SIDE, as_pair

#: Smallest accepted image side (pixels) for evaluate / align inputs.
MIN_SIDE = 16
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

    recon, truth = as_pair(recon, truth, ("recon", "truth"))
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
    """Border (px) :func:`align` drops on every side: ``max(crop, ceil(max|shift|))``; ValueError for a bad crop."""
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
    recon, truth = as_pair(recon, truth, ("recon", "truth"), MIN_SIDE)
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
