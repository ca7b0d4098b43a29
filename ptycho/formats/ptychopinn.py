"""Reader of PtychoPINN NPZ files: the package's own format (``ptycho.data.save_npz``) and the reference project's.

Keys (SPEC §3, validated by ``ptycho.data``): ``diffraction`` or legacy ``diff3d`` (M, N, N) float AMPLITUDES
sqrt(counts)/s; ``xcoords``, ``ycoords`` (M,) object pixels (legacy ``xcoords_start`` / ``ycoords_start`` when
those are absent); ``probeGuess`` (N, N) complex; optional ``objectGuess``, ``scan_index``, ``group_indices``,
``nphotons``, ``mask``.

Everything is kept as stored: amplitudes, probe (factor 1: already in the package's units) and positions (shift 0:
they already are object pixels, aligned with ``objectGuess``). Checked: the zero frequency (corner data are
fftshifted, with the mask, and warned about); values that look like integer counts rather than amplitudes are
warned about. A file without ``nphotons`` holds sqrt(counts) (s = 1, as ``ptycho train`` assumes): nphotons is then
set explicitly to mean_m Σ X_m².
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from ptycho.data import PtychoDataset, dataset_from_npz, open_npz
from ptycho.formats._common import Conversion, fail, warn, zero_frequency

log = logging.getLogger("ptycho.formats")


class _Legacy:
    """An NPZ seen with ``xcoords``/``ycoords`` standing for ``xcoords_start``/``ycoords_start`` where needed."""

    def __init__(self, npz):
        self._npz = npz
        self._alias = {k: f"{k}_start" for k in ("xcoords", "ycoords")
                       if k not in npz.files and f"{k}_start" in npz.files}
        self.files = list(npz.files) + list(self._alias)

    def __getitem__(self, key):
        return self._npz[self._alias.get(key, key)]


def convert(path) -> Conversion:
    """Validate a PtychoPINN NPZ and return its :class:`Conversion` (nothing rescaled; see the module docstring)."""
    with open_npz(path) as npz:
        dataset = dataset_from_npz(_Legacy(npz), path)
    key = "diffraction"
    amplitudes = dataset.diffraction
    nonzero = amplitudes[amplitudes > 0]
    if nonzero.size == 0:
        fail(path, key, "all amplitudes are zero; there is no signal to convert")
    if nonzero.max() >= 2 and np.mean(nonzero == np.rint(nonzero)) > 0.99:
        warn(path, key, "values are integers, as photon counts would be, not amplitudes sqrt(counts)/s; if they are "
                        "counts, import the file with a counts format or take the square root first")
    found = zero_frequency(np.mean(np.square(amplitudes, dtype=np.float64), axis=0), dataset.mask)
    shifted = found == "corner"
    if shifted:
        warn(path, key, "the zero frequency is at the array corner, not at the centre N//2 (SPEC §3); the patterns "
                        "(and the mask) are fftshifted")
        dataset = dataclasses.replace(
            dataset, diffraction=np.fft.fftshift(amplitudes, axes=(-2, -1)),
            mask=None if dataset.mask is None else np.fft.fftshift(dataset.mask))
    if dataset.nphotons is None:
        counts = float(np.mean(np.sum(np.square(dataset.diffraction, dtype=np.float64), axis=(1, 2))))
        log.info("%s: no 'nphotons': amplitudes taken as sqrt(counts), nphotons = mean Σ X² = %.6g",
                 os.fspath(path), counts)
        dataset = dataclasses.replace(dataset, nphotons=counts)
    return Conversion(dataset=dataset, path=os.fspath(path), format="ptychopinn", mean_counts=dataset.nphotons,
                      scale=dataset.intensity_scale, probe_factor=1.0, pixel_size_m=None, shift_px=(0.0, 0.0),
                      fftshifted=shifted)


def read(path) -> PtychoDataset:
    """The ``PtychoDataset`` of a PtychoPINN NPZ (see :func:`convert`)."""
    return convert(path).dataset
