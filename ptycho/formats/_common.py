"""Conventions shared by the readers of ``ptycho.formats``: counts -> ``PtychoDataset``, every step checked.

The target is the package's data set (SPEC §2-§3). A reader hands :func:`from_counts` the file's photon
counts, probe and positions, and it makes each convention explicit:

* zero frequency: measured on the mean pattern (:func:`zero_frequency`: energy near the array centre N//2
  against energy near the corners). Data at the corner are fftshifted so that it lies at N//2.
* counts K (M, N, N), photons per pixel: finite and >= 0 (else ``ValueError``), mostly integers (else a
  warning: they may be amplitudes or corrected intensities). Bad pixels (``mask`` False) are set to 0 and left
  out of every count.
* probe P (N, N) complex64: the file's probe (its first mode) keeps its shape and is rescaled to the fixed power
  ``Σ|P|² = PROBE_POWER[N]``, the power of the simulations' default probe
  (``ptycho.simulate.default_probe(SimulationConfig(N=N))``), so file probes and simulated probes live in the
  same units whatever FFT normalisation the file's program used. The factor applied is logged and kept in
  ``Conversion.probe_factor``.
* dose: ``mean_counts = mean_m Σ_measured K_m``; ``s = sqrt(mean_counts / PROBE_POWER[N])``, so that a
  unit-transmission object explains the counts through the forward model ``s·|fftshift(fft2(P·O,
  norm='ortho'))|`` (Σ|A|² = Σ|P|²); amplitudes ``X = sqrt(K) / s`` (float32), ``nphotons = mean_counts``,
  hence ``dataset.intensity_scale == s``.
* positions: object pixels, x = column, y = row, shifted by one constant per axis so that min x = min y = N/2
  (the whole illuminated field then lies at >= 0); the shift is kept in ``Conversion.shift_px``. Positions in
  metres are divided by the object pixel size; without one it is λ·z / (N·detector pixel).

Every error is one ``ValueError`` line naming the file, the key and the fix; soft cases are ``warnings.warn``.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ptycho.data import PtychoDataset

log = logging.getLogger("ptycho.formats")

#: Planck constant (J s) and speed of light (m/s), exact SI values: λ = h·c / E.
PLANCK_J_S = 6.62607015e-34
SPEED_OF_LIGHT_M_S = 299792458.0
ELECTRON_VOLT_J = 1.602176634e-19
#: A mean-pattern energy ratio above this decides where the zero frequency lies (:func:`zero_frequency`).
ZERO_FREQUENCY_RATIO = 4.0


@functools.lru_cache(maxsize=None)
def probe_power(N: int) -> float:
    """Σ|P|² of the simulations' default probe for N x N patterns: ``simulate.default_probe(SimulationConfig(N=N))``."""
    from ptycho.config import SimulationConfig
    from ptycho.probe import get_default_probe, normalize_probe

    raw = get_default_probe(int(N), "np", default_probe_scale=SimulationConfig.default_probe_scale)
    probe = normalize_probe(raw, SimulationConfig.probe_scale).astype(np.complex64)
    return float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))


class _ProbePower:
    """``PROBE_POWER[N]``: the probe power Σ|P|² every reader rescales a file's probe to (:func:`probe_power`)."""

    def __getitem__(self, N: int) -> float:
        return probe_power(N)

    def __repr__(self) -> str:
        return "PROBE_POWER[N] (= Σ|default probe|² for N; ptycho.formats.probe_power)"


PROBE_POWER = _ProbePower()


@dataclass(frozen=True)
class Conversion:
    """A converted file: the data set and what was done to make it one.

    mean_counts : photons per pattern on measured pixels (= ``dataset.nphotons``).
    scale : s = sqrt(mean_counts / PROBE_POWER[N]) (= ``dataset.intensity_scale``).
    probe_factor : the multiplier applied to the file's probe.
    pixel_size_m : object pixel (width, height) in metres, or None when the file's positions were pixels.
    shift_px : (dx, dy) object pixels added to the file's positions (converted to pixels; for tike, its scan).
    fftshifted : whether the patterns were fftshifted to put the zero frequency at N//2.
    """

    dataset: PtychoDataset
    path: str
    format: str
    mean_counts: float
    scale: float
    probe_factor: float
    pixel_size_m: Optional[tuple]
    shift_px: tuple
    fftshifted: bool

    def summary(self) -> str:
        """One line: what was converted."""
        ds = self.dataset
        pixel = "in the file's pixels" if self.pixel_size_m is None else \
            f"{self.pixel_size_m[0]:.4g} x {self.pixel_size_m[1]:.4g} m"
        masked = "" if ds.mask is None else f", {int(np.sum(~ds.mask))} bad pixels masked"
        return (f"{self.path} ({self.format}): M={ds.n_positions} patterns, N={ds.N}, mean counts "
                f"{self.mean_counts:.4g} per pattern, probe x{self.probe_factor:.4g}, object pixel {pixel}, "
                f"positions shifted by [{self.shift_px[0]:+.4g}, {self.shift_px[1]:+.4g}] px, "
                f"patterns {'fftshifted' if self.fftshifted else 'not shifted'}{masked}")


def fail(path, key: str, message: str) -> None:
    """Raise the one-line ``ValueError`` of every reader: ``"<file>: key '<key>': <message>"``."""
    raise ValueError(f"{os.fspath(path)}: key {key!r}: {message}")


def warn(path, key: str, message: str) -> None:
    warnings.warn(f"{os.fspath(path)}: key {key!r}: {message}", UserWarning, stacklevel=3)


def zero_frequency(mean_pattern: np.ndarray, mask: Optional[np.ndarray] = None) -> str:
    """Where the zero frequency of (N, N) ``mean_pattern`` lies: ``'centre'`` (N//2), ``'corner'`` or ``'unclear'``.

    Compares the mean over measured pixels of a (2r+1)² box, r = max(1, N//16), around N//2 with the same box
    around the corner (wrapped); one side must exceed the other ``ZERO_FREQUENCY_RATIO`` times.
    """
    N = mean_pattern.shape[-1]
    weight = np.ones(mean_pattern.shape) if mask is None else mask.astype(np.float64)
    r, c = max(1, N // 16), N // 2
    box = (slice(c - r, c + r + 1),) * 2

    def box_mean(img, wt):
        return float(np.sum(img[box])) / float(np.sum(wt[box])) if np.sum(wt[box]) else math.nan

    centre = box_mean(mean_pattern * weight, weight)
    corner = box_mean(np.fft.fftshift(mean_pattern * weight), np.fft.fftshift(weight))
    if corner > ZERO_FREQUENCY_RATIO * centre:
        return "corner"
    if centre > ZERO_FREQUENCY_RATIO * corner:
        return "centre"
    return "unclear"


def check_counts(path, key: str, counts: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    """(M, N, N) float64 counts, bad pixels zeroed; ``ValueError`` if NaN / negative / all zero; warns if not counts."""
    counts = np.array(counts, dtype=np.float64)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2] or counts.shape[0] < 1:
        fail(path, key, f"expected (M, N, N) patterns, got shape {counts.shape}")
    if mask is not None:
        counts[:, ~mask] = 0.0
    if not np.all(np.isfinite(counts)):
        fail(path, key, "contains NaN or infinite counts; mask those pixels or drop those frames")
    if np.any(counts < 0):
        fail(path, key, f"holds negative counts (min {counts.min():.4g}); photon counts are >= 0: mask those "
                        "pixels or clip the background-subtracted data")
    if not np.any(counts > 0):
        fail(path, key, "all measured counts are zero; there is no signal to convert")
    nonzero = counts[counts > 0]
    integer = float(np.mean(np.abs(nonzero - np.rint(nonzero)) <= 1e-3 * np.maximum(1.0, nonzero)))
    if integer < 0.9:
        if nonzero.max() < 1:
            warn(path, key, "values are all below 1 and not integers: the file may hold amplitudes or normalised "
                            "intensities, not photon counts; convert them to counts first, or the dose is wrong")
        else:
            warn(path, key, f"{100 * (1 - integer):.0f} % of the nonzero values are not integers, so these are not "
                            "raw photon counts (corrected data?); they are used as counts, so nphotons is approximate")
    return counts


def first_mode(path, key: str, probe, N: int) -> np.ndarray:
    """(N, N) complex128 probe from (..., N, N): leading singleton axes squeezed; several modes -> the first, warned."""
    arr = np.asarray(probe)
    if arr.dtype.kind not in "biufc":
        fail(path, key, f"probe must be numeric, got dtype {arr.dtype}")
    shape = arr.shape
    if arr.ndim < 2 or shape[-2:] != (N, N):
        fail(path, key, f"probe has shape {shape}, but the patterns are {N}x{N}; the probe must be sampled like them")
    arr = arr.reshape(-1, N, N)
    if arr.shape[0] > 1:
        warn(path, key, f"{arr.shape[0]} probe modes (shape {shape}); using the first mode only (the model has one "
                        "coherent probe)")
    arr = arr[0].astype(np.complex128)
    if not np.all(np.isfinite(arr)):
        fail(path, key, "probe contains NaN or infinite values")
    if not np.any(arr != 0):
        fail(path, key, "probe is all zero")
    return arr


def shift_positions(path, keys: str, x_px, y_px, M: int, N: int):
    """(x, y, (dx, dy)): float64 positions shifted so that min x = min y = N/2; ``ValueError`` naming ``keys``."""
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x_px, y_px))
    if x.shape != (M,) or y.shape != (M,):
        fail(path, keys, f"{x.size} x and {y.size} y positions for {M} patterns; there must be one per pattern")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        fail(path, keys, "positions contain NaN or infinite values")
    dx, dy = N / 2 - float(x.min()), N / 2 - float(y.min())
    return x + dx, y + dy, (dx, dy)


def wavelength_m(path, energy_J: Optional[float] = None, energy_eV: Optional[float] = None,
                 wavelength: Optional[float] = None, key: str = "energy") -> float:
    """λ in metres from a wavelength (m) or a photon energy (J or eV); ``ValueError`` naming ``key`` if none is."""
    if wavelength is not None and math.isfinite(wavelength) and wavelength > 0:
        return float(wavelength)
    for energy in (energy_J, None if energy_eV is None else energy_eV * ELECTRON_VOLT_J):
        if energy is not None and math.isfinite(energy) and energy > 0:
            return PLANCK_J_S * SPEED_OF_LIGHT_M_S / float(energy)
    fail(path, key, "missing or not > 0: the photon energy (or wavelength) is needed to compute the object pixel "
                    "size λ·z/(N·detector pixel) and convert positions from metres")


def far_field_pixel_m(wavelength: float, distance: float, N: int, detector_pixel: float) -> float:
    """Object pixel size λ·z / (N·p) in metres (distance z, detector pixel p, N x N patterns; far field)."""
    return wavelength * distance / (N * detector_pixel)


def from_counts(path, fmt: str, counts, probe, x_px, y_px, *, origin: str, counts_key: str, probe_key: str,
                position_keys: str, mask: Optional[np.ndarray] = None, pixel_size_m=None,
                origin_px: float = 0.0) -> Conversion:
    """Convert a file's counts, probe and positions (already in object pixels) to a :class:`Conversion`.

    counts : (M, N, N) photon counts; probe : (..., N, N) complex (first mode used); x_px, y_px : (M,) object pixels.
    origin : where the format stores the zero frequency, ``'corner'`` (tike) or ``'centre'``. Data found at the
        other place are fixed and warned about: corner data of a centred format are fftshifted; centred data of a
        corner format are left as they are.
    mask : (N, N) bool, True = measured, or None.
    origin_px : added to both coordinates first: the file's position of patch pixel (0, 0) -> of (N/2, N/2).
    """
    counts = check_counts(path, counts_key, counts, mask)
    M, N = counts.shape[0], counts.shape[1]
    found = zero_frequency(counts.mean(axis=0), mask)
    shifted = False
    if origin == "corner":
        if found == "centre":
            warn(path, counts_key, "the patterns are already fftshifted (zero frequency at the centre N//2, not at "
                                   "the corner as this format stores it); they are used unshifted")
        else:
            shifted = True
    elif found == "corner":
        warn(path, counts_key, "the zero frequency is at the array corner, not at the centre N//2 as this format "
                               "stores it; the patterns (and the mask) are fftshifted")
        shifted = True
    if shifted:
        counts = np.fft.fftshift(counts, axes=(-2, -1))
        mask = None if mask is None else np.fft.fftshift(mask)
    log.info("%s: zero frequency found at the %s of the mean pattern%s", os.fspath(path), found,
             "; fftshifted" if shifted else "")
    P = first_mode(path, probe_key, probe, N)
    factor = math.sqrt(probe_power(N) / float(np.sum(np.abs(P) ** 2)))
    log.info("%s: probe rescaled by %.6g to Σ|P|² = PROBE_POWER[%d] = %.6g", os.fspath(path), factor, N,
             probe_power(N))
    x, y, shift = shift_positions(path, position_keys, np.asarray(x_px, dtype=np.float64) + origin_px,
                                  np.asarray(y_px, dtype=np.float64) + origin_px, M, N)
    shift = (shift[0] + origin_px, shift[1] + origin_px)
    mean_counts = float(np.mean(np.sum(counts, axis=(1, 2))))
    scale = math.sqrt(mean_counts / probe_power(N))
    try:
        dataset = PtychoDataset(diffraction=(np.sqrt(counts) / scale).astype(np.float32), xcoords=x, ycoords=y,
                                probe=(P * factor).astype(np.complex64), nphotons=mean_counts, mask=mask)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None
    return Conversion(dataset=dataset, path=os.fspath(path), format=fmt, mean_counts=mean_counts, scale=scale,
                      probe_factor=factor,
                      pixel_size_m=None if pixel_size_m is None else tuple(map(float, pixel_size_m)),
                      shift_px=shift, fftshifted=shifted)


# ----- HDF5 ----------------------------------------------------------------------------------------
def open_hdf5(path):
    """``h5py.File(path, 'r')``; ``ValueError`` naming the file if h5py is missing or it is not HDF5."""
    try:
        import h5py
    except ImportError:
        raise ValueError(f"{os.fspath(path)}: reading HDF5 needs h5py (pip install h5py)") from None
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{os.fspath(path)}: cannot be read as HDF5 ({exc})") from None


def h5_array(h5, path, names, what: str, required: bool = True):
    """The first of dataset ``names`` present in ``h5`` as an array; ``ValueError`` naming ``names[0]`` if required."""
    import h5py

    for name in names:
        node = h5.get(name)
        if isinstance(node, h5py.Dataset):
            return node[()]
    if required:
        fail(path, names[0], f"missing ({what}); looked for {', '.join(names)}")
    return None


def scalar(value) -> Optional[float]:
    """A stored scalar (attribute or 0-d / 1-element dataset) as float, or None."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.size != 1:
        return None
    return float(arr.reshape(-1)[0])
