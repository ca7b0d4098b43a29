"""Forward model of far-field ptychography in NumPy (SPEC §3).

For scan position m with object patch O_m and probe P (both (N, N) complex)::

    A_m = |fftshift(fft2(P · O_m, norm='ortho'))|       (zero frequency at index N//2; Σ A² = Σ |P·O|²)
    s   = sqrt(nphotons / mean_m Σ A_m²)                (photon scale, 1/√photon units of A)
    K_m ~ Poisson(s² · A_m²)                            (counts, int64)
    X_m = sqrt(K_m) / s                                 (measured amplitude, float32)

``object_patches`` cuts O_m from the object at the (fractional) scan position with exact bilinear
interpolation and zero fill per tap, matching ``tf.raw_ops.ImageProjectiveTransformV3`` (SPEC §2.1).
"""
from __future__ import annotations

import math

import numpy as np

#: Patches per vectorised block in ``object_patches`` (bounded temporaries, cache-friendly).
_PATCH_CHUNK = 256


def _check_last_two_square(name: str, arr: np.ndarray) -> int:
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name}: last two axes must be (N, N), got shape {arr.shape}")
    return arr.shape[-1]


def illuminate(probe, patches) -> np.ndarray:
    """Exit waves ``probe * patches``.

    probe : (N, N) complex or real;  patches : (..., N, N) complex.  Returns (..., N, N) complex.
    """
    probe = np.asarray(probe)
    patches = np.asarray(patches)
    n = _check_last_two_square("probe", probe)
    if probe.ndim != 2:
        raise ValueError(f"probe: must be (N, N), got shape {probe.shape}")
    if _check_last_two_square("patches", patches) != n:
        raise ValueError(f"patches: last two axes {patches.shape[-2:]} do not match probe {probe.shape}")
    return probe * patches


def far_field_amplitude(field) -> np.ndarray:
    """Far-field amplitude ``|fftshift(fft2(field, norm='ortho'))|`` over the last two axes.

    field : (..., N, N) complex exit wave.  Returns (..., N, N) real (float32 for complex64 input),
    zero frequency at index (N//2, N//2); unitary, so Σ|A|² = Σ|field|² per pattern.
    """
    field = np.asarray(field)
    _check_last_two_square("field", field)
    spectrum = np.fft.fft2(field, axes=(-2, -1), norm="ortho")
    return np.abs(np.fft.fftshift(spectrum, axes=(-2, -1)))


def intensity_scale(amplitudes, nphotons: float) -> float:
    """Photon scale ``s = sqrt(nphotons / mean_m Σ_pixels A_m²)``.

    amplitudes : (M, N, N) real noise-free amplitudes;  nphotons : expected counts per pattern (> 0).
    Returns s (float, 1/√photon in units of the amplitude).
    """
    amplitudes = np.asarray(amplitudes)
    if amplitudes.ndim != 3:
        raise ValueError(f"amplitudes: must be (M, N, N), got shape {amplitudes.shape}")
    if isinstance(nphotons, bool) or not math.isfinite(nphotons) or nphotons <= 0:
        raise ValueError(f"nphotons: must be a finite number > 0, got {nphotons!r}")
    power = float(np.mean(np.sum(np.square(amplitudes, dtype=np.float64), axis=(-2, -1))))
    if not math.isfinite(power) or power <= 0:
        raise ValueError(f"amplitudes: mean total power must be finite and > 0, got {power}")
    return math.sqrt(nphotons / power)


def poisson_sample(amplitudes, scale: float, rng: np.random.Generator):
    """Poisson counting: ``K ~ Poisson(scale² · A²)``, ``X = sqrt(K) / scale``.

    amplitudes : (..., N, N) real ≥ 0;  scale : s > 0;  rng : explicit numpy Generator.
    Returns (counts (..., N, N) int64, X (..., N, N) float32 amplitudes in the units of ``amplitudes``).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: must be a finite number > 0, got {scale!r}")
    amplitudes = np.asarray(amplitudes)
    if np.iscomplexobj(amplitudes) or not np.all(np.isfinite(amplitudes)) or np.any(amplitudes < 0):
        raise ValueError("amplitudes: must be real, finite and >= 0")
    lam = np.square(amplitudes, dtype=np.float64) * (scale * scale)
    counts = rng.poisson(lam).astype(np.int64)
    x = (np.sqrt(counts) / scale).astype(np.float32)
    return counts, x


def object_patches(obj, xcoords, ycoords, N: int) -> np.ndarray:
    """Cut (N, N) patches of ``obj`` centred at the scan positions.

    ``patch[m, r, c] = O(y = ycoords[m] + r - N//2, x = xcoords[m] + c - N//2)`` with exact bilinear
    interpolation; each of the four taps outside the object contributes 0 (``map_coordinates(order=1,
    mode='grid-constant', cval=0)`` semantics).

    obj : (H, W) complex (or real);  xcoords, ycoords : (M,) float object pixels (x = column, y = row).
    Returns (M, N, N) complex64.
    """
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise ValueError(f"obj: must be (H, W), got shape {obj.shape}")
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"xcoords, ycoords: must both be (M,), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("xcoords, ycoords: must be finite")
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N: must be a positive int, got {N!r}")
    obj = obj.astype(np.complex64)
    out = np.empty((x.size, N, N), dtype=np.complex64)
    for lo in range(0, x.size, _PATCH_CHUNK):  # chunks keep the temporaries in cache
        hi = lo + _PATCH_CHUNK
        out[lo:hi] = _bilinear_patches(obj, x[lo:hi], y[lo:hi], N)
    return out


def _bilinear_patches(obj: np.ndarray, x: np.ndarray, y: np.ndarray, N: int) -> np.ndarray:
    """(M, N, N) complex64 bilinear patches of complex64 ``obj`` at (x, y); zero fill per tap."""
    H, W = obj.shape
    x0, y0 = np.floor(x), np.floor(y)
    fx = (x - x0).astype(np.float32)[:, None, None]
    fy = (y - y0).astype(np.float32)[:, None, None]
    taps = np.arange(N + 1) - N // 2
    rows = y0.astype(np.int64)[:, None] + taps          # (M, N+1)
    cols = x0.astype(np.int64)[:, None] + taps
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    window = obj[np.clip(rows, 0, H - 1)[:, :, None], np.clip(cols, 0, W - 1)[:, None, :]]
    window *= inside
    top = (1 - fx) * window[:, :-1, :-1] + fx * window[:, :-1, 1:]
    bottom = (1 - fx) * window[:, 1:, :-1] + fx * window[:, 1:, 1:]
    return (1 - fy) * top + fy * bottom
