"""Resolution of a reconstruction against its truth (SPEC §5): Fourier ring correlation (FRC), FRC50, the
1/7 or half-bit FRC cutoff and its half-period. NumPy only.

Images are (H, W) real or complex arrays; frequencies are in cycles per pixel (0 … 0.5), half-periods in
pixels.
"""
from __future__ import annotations

import numpy as np

from ptycho.evaluation.metrics import as_pair


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
    a, b = as_pair(a, b, min_side=2)
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
