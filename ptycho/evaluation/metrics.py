"""Pixel-wise comparison of two images: MAE, PSNR, SSIM, amplitude correlation, and the input checks every
evaluation module shares (SPEC §5). NumPy / scikit-image only.

Images are (H, W) NumPy arrays, real or complex, finite; :func:`as_image` returns them as float64 or
complex128. Phases are in radians; :func:`wrap_phase` maps them onto (−π, π].
"""
from __future__ import annotations

import math

import numpy as np

#: Smallest side left after the border crop (the SSIM Gaussian window is 11 px).
MIN_CROPPED_SIDE = 11


def as_image(image, name: str, min_side: int = 1) -> np.ndarray:
    """Validate a 2-D, non-empty, finite numeric array and return it as complex128 (or float64).

    ``image`` must be (H, W) with min(H, W) >= ``min_side`` px; a ValueError names it as ``name`` otherwise.
    """
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


def as_pair(a, b, names=("a", "b"), min_side: int = 1):
    """:func:`as_image` of both, which must have the same (H, W) shape; ValueError naming them otherwise."""
    a = as_image(a, names[0], min_side)
    b = as_image(b, names[1], min_side)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]}: shapes differ, {a.shape} vs {b.shape}")
    return a, b


def data_range_of(truth: np.ndarray, data_range) -> float:
    """The peak of PSNR and SSIM: ``data_range`` (a finite positive float) or, when None, the truth's
    ``max − min`` (ValueError if the truth is constant)."""
    if data_range is None:
        data_range = float(np.max(truth) - np.min(truth))
        if data_range <= 0:
            raise ValueError("data_range: the truth is constant (range 0); pass data_range explicitly")
    elif not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range: must be a finite positive number, got {data_range!r}")
    return float(data_range)


def _real(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` if it is real; ValueError naming it as ``name`` if complex."""
    if np.iscomplexobj(image):
        raise ValueError(f"{name}: must be real (pass the amplitude or the phase), got complex")
    return image


def wrap_phase(phase):
    """Wrap radians onto (−π, π]."""
    wrapped = np.angle(np.exp(1j * np.asarray(phase)))
    return np.where(wrapped <= -np.pi, wrapped + 2 * np.pi, wrapped)


def mae(a, b) -> float:
    """Mean absolute error ``mean|a − b|`` of two same-shape (H, W) real or complex images."""
    a, b = as_pair(a, b)
    return float(np.mean(np.abs(a - b)))


def psnr(a, b, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(data_range² / mean((a − b)²))``.

    a : (H, W) real, the test image; b : (H, W) real, the truth (reference).
    data_range : the peak; ``None`` → the data range of the *truth*, ``max(b) − min(b)`` (ValueError
    if the truth is constant). Identical images give ``float('inf')``.
    """
    a, b = as_pair(a, b)
    a, b = _real(a, "a"), _real(b, "b")
    peak = data_range_of(b, data_range)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


def ssim(a, b, data_range=None) -> float:
    """Structural similarity of two (H, W) real images (scikit-image, Wang et al. 2004 settings:
    Gaussian window σ = 1.5 (11×11), population covariance, K1 = 0.01, K2 = 0.03).

    b is the truth; data_range ``None`` → ``max(b) − min(b)`` (ValueError if the truth is constant).
    Both sides must be ≥ 11 px.
    """
    from skimage.metrics import structural_similarity

    a, b = as_pair(a, b, min_side=MIN_CROPPED_SIDE)
    a, b = _real(a, "a"), _real(b, "b")
    peak = data_range_of(b, data_range)
    return float(structural_similarity(b, a, data_range=peak, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def correlation(recon, truth) -> float:
    """Pearson correlation of two same-shape images' amplitudes (nan if either is constant).

    Where the truth's amplitude is flat (relative std < 1e-6: a pure-phase object) the complex images are
    correlated instead (magnitude of the normalised complex correlation of the mean-subtracted images).
    """
    recon, truth = as_pair(recon, truth, ("recon", "truth"))
    a, b = np.abs(recon).ravel(), np.abs(truth).ravel()
    if b.std() <= 1e-6 * max(b.mean(), 1e-300):
        a, b = recon.ravel() - recon.mean(), truth.ravel() - truth.mean()
        norm = np.sqrt(np.sum(np.abs(a) ** 2) * np.sum(np.abs(b) ** 2))
        return float(np.abs(np.vdot(a, b)) / norm) if norm > 0 else math.nan
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt(np.sum(a ** 2) * np.sum(b ** 2))
    return float(np.sum(a * b) / norm) if norm > 0 else math.nan
