"""Synthetic test objects (SPEC §3). Every generator takes an explicit ``numpy.random.Generator``.

All objects are (size, size) complex64 with amplitude normalised to [0.5, 1.5] (min -> 0.5, max -> 1.5)
and phase 0 unless ``phase=True``, which adds a smooth phase with values in [-PHASE_MAX, PHASE_MAX] rad
drawn *after* the amplitude, so the amplitude does not depend on the ``phase`` flag.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: Peak |phase| (rad) of the optional smooth phase.
PHASE_MAX = np.pi / 4
#: Peak |phase| (rad) of ``complex_grf_object``'s phase field (a moderately strong phase object).
COMPLEX_GRF_PHASE_MAX = np.pi / 3
#: Blur widths (px) and weights of the lines object: img = sum_k w_k * gaussian_filter(lines, sigma_k).
LINE_BLURS = ((1.0, 1.0), (5.0, 2.0), (10.0, 5.0))


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be a positive int, got {value!r}")
    return int(value)


def _to_unit_range(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Affinely map ``img`` so min -> lo and max -> hi (a constant image maps to (lo + hi) / 2)."""
    span = float(img.max() - img.min())
    if span == 0.0:
        return np.full(img.shape, (lo + hi) / 2.0)
    return lo + (hi - lo) * (img - img.min()) / span


def _smooth_field(size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float64 Gaussian random field: white noise filtered periodically with ``sigma`` px."""
    return gaussian_filter(rng.standard_normal((size, size)), sigma=sigma, mode="wrap")


def _complex_object(amplitude: np.ndarray, phase: bool, rng: np.random.Generator) -> np.ndarray:
    amp = _to_unit_range(amplitude, 0.5, 1.5)
    if not phase:
        return amp.astype(np.complex64)
    size = amplitude.shape[0]
    phi = _to_unit_range(_smooth_field(size, max(size / 8.0, 1.0), rng), -PHASE_MAX, PHASE_MAX)
    return (amp * np.exp(1j * phi)).astype(np.complex64)


def draw_lines(shape: tuple[int, int], endpoints: np.ndarray) -> np.ndarray:
    """Rasterise straight lines onto a zero float64 canvas of ``shape`` (value 1 on the lines).

    ``endpoints`` : (L, 4) int [row0, col0, row1, col1]; each line gets max(|drow|, |dcol|) + 1 samples
    rounded to the nearest pixel (a DDA rasteriser, 8-connected, endpoints included).
    """
    canvas = np.zeros(shape, dtype=np.float64)
    for r0, c0, r1, c1 in np.asarray(endpoints, dtype=np.int64):
        n = max(abs(r1 - r0), abs(c1 - c0)) + 1
        rows = np.rint(np.linspace(r0, r1, n)).astype(np.int64)
        cols = np.rint(np.linspace(c0, c1, n)).astype(np.int64)
        canvas[rows, cols] = 1.0
    return canvas


def lines_object(size: int, nlines: int = 100, rng: np.random.Generator | None = None,
                 phase: bool = False) -> np.ndarray:
    """Random-lines test object.

    ``nlines`` straight lines with uniformly random integer endpoints are drawn on a (2·size)² canvas,
    blurred as ``g(1 px) + 2·g(5 px) + 5·g(10 px)`` (``LINE_BLURS``), centre-cropped to size², and the
    amplitude is normalised to [0.5, 1.5].

    Returns
    -------
    (size, size) complex64. Phase 0, or a smooth phase in [-PHASE_MAX, PHASE_MAX] with ``phase=True``.
    """
    size = _check_positive_int("size", size)
    nlines = _check_positive_int("nlines", nlines)
    rng = _check_rng(rng)
    big = 2 * size
    lines = draw_lines((big, big), rng.integers(0, big, size=(nlines, 4)))
    img = sum(w * gaussian_filter(lines, sigma=s) for s, w in LINE_BLURS)
    start = size // 2
    return _complex_object(img[start:start + size, start:start + size], phase, rng)


def grf_object(size: int, rng: np.random.Generator | None = None, correlation_length: float | None = None,
               phase: bool = False) -> np.ndarray:
    """Gaussian-random-field test object.

    White noise filtered (periodically) by a Gaussian of ``correlation_length`` px (default size/32,
    at least 1), amplitude normalised to [0.5, 1.5].

    Returns
    -------
    (size, size) complex64. Phase 0, or an independent smooth phase in [-PHASE_MAX, PHASE_MAX].
    """
    size = _check_positive_int("size", size)
    rng = _check_rng(rng)
    if correlation_length is None:
        correlation_length = max(size / 32.0, 1.0)
    if not np.isfinite(correlation_length) or correlation_length <= 0:
        raise ValueError(f"correlation_length: must be finite and > 0, got {correlation_length!r}")
    return _complex_object(_smooth_field(size, float(correlation_length), rng), phase, rng)


def complex_grf_object(size: int, rng: np.random.Generator | None = None,
                       correlation_length: float | None = None,
                       phase_max: float = COMPLEX_GRF_PHASE_MAX) -> np.ndarray:
    """Gaussian random field in amplitude *and* phase, at the same correlation length.

    Amplitude: a GRF normalised to [0.5, 1.5]; phase: an independent GRF of the same correlation length
    (default size/32 px, at least 1) normalised to [-phase_max, phase_max] rad. Unlike ``grf_object(phase=
    True)``, whose phase is a slow ramp (size/8), the phase carries as much fine structure as the amplitude.

    Returns
    -------
    (size, size) complex64.
    """
    size = _check_positive_int("size", size)
    rng = _check_rng(rng)
    if correlation_length is None:
        correlation_length = max(size / 32.0, 1.0)
    if not np.isfinite(correlation_length) or correlation_length <= 0:
        raise ValueError(f"correlation_length: must be finite and > 0, got {correlation_length!r}")
    if not np.isfinite(phase_max) or not 0 < phase_max <= np.pi:
        raise ValueError(f"phase_max: must be in (0, pi] rad, got {phase_max!r}")
    amp = _to_unit_range(_smooth_field(size, float(correlation_length), rng), 0.5, 1.5)
    phi = _to_unit_range(_smooth_field(size, float(correlation_length), rng), -phase_max, phase_max)
    return (amp * np.exp(1j * phi)).astype(np.complex64)
