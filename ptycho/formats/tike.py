"""Reader of tike's NPZ files (``.npz``, or ``.npz.bz2`` decompressed in memory), e.g. tike's siemens-star-small.

Keys (tike's conventions, checked):

=====  =============================  ==============================================================
key    shape / dtype                  meaning
=====  =============================  ==============================================================
data   (..., M, N, N) float           photon counts, zero frequency at the array CORNER [0, 0] (not fftshifted)
probe  (..., N, N) complex64          illumination, in the units of tike's FFT (only the shape is used)
scan   (..., M, 2) float32            [row, col] of the probe's minimum corner in object pixels (tike's
                                      ``Convolution``: patch[r, c] = psi[row + r, col + c]), centred near 0
=====  =============================  ==============================================================

Leading singleton axes are squeezed; a file with several views (leading axis > 1) is refused; several probe
modes -> the first, with a warning. Conversion (``ptycho.formats._common``): the patterns are fftshifted
(a file whose patterns are already centred is warned about and used as is), the probe is rescaled to
``PROBE_POWER[N]`` (a real tike file holds Σ|P|² ≈ 52 against 461k counts per frame: the units of an
unnormalised FFT), and the position of patch pixel (N/2, N/2) is ``scan + N/2``, shifted so min x = min y = N/2
(x = col, y = row).
"""
from __future__ import annotations

import bz2
import io
import os
import zipfile
import zlib

import numpy as np

from ptycho.data import PtychoDataset
from ptycho.formats._common import Conversion, fail, from_counts

KEYS = ("data", "probe", "scan")


def load_arrays(path) -> dict:
    """The NPZ members of ``path`` (``.bz2`` decompressed in memory), read without pickle; ``ValueError`` otherwise."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if os.fspath(path).endswith(".bz2"):
            raw = bz2.decompress(raw)
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{os.fspath(path)}: cannot be read as an NPZ archive (bzip2-compressed if .bz2) "
                         f"without pickle ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{os.fspath(path)}: is a single .npy array, not an NPZ archive with keys")
    with npz:
        out = {}
        for key in npz.files:
            try:
                out[key] = npz[key]
            except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                fail(path, key, f"unreadable or needs pickle ({exc})")
    return out


def _squeeze_leading(path, key: str, arr: np.ndarray, ndim: int) -> np.ndarray:
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != ndim:
        fail(path, key, f"has shape {arr.shape}: {arr.ndim - ndim} leading axes of size > 1 (several views?); "
                        "tike files with one view only can be imported: select one")
    return arr


def convert(path) -> Conversion:
    """Convert a tike NPZ (``.npz`` or ``.npz.bz2``) to a :class:`Conversion` (data set + what was done)."""
    arrays = load_arrays(path)
    for key in KEYS:
        if key not in arrays:
            fail(path, key, f"missing; a tike file holds {', '.join(KEYS)}, this one {sorted(arrays)}")
    data = _squeeze_leading(path, "data", np.asarray(arrays["data"]), 3)
    scan = _squeeze_leading(path, "scan", np.asarray(arrays["scan"]), 2)
    if data.dtype.kind not in "biuf":
        fail(path, "data", f"must hold real photon counts, got dtype {data.dtype}")
    if scan.dtype.kind not in "biuf" or scan.shape[1] != 2:
        fail(path, "scan", f"expected (M, 2) [row, col] positions, got {scan.shape} {scan.dtype}")
    N = data.shape[-1]
    return from_counts(path, "tike", data, arrays["probe"], scan[:, 1], scan[:, 0], origin="corner",
                       counts_key="data", probe_key="probe", position_keys="scan", origin_px=N / 2)


def read(path) -> PtychoDataset:
    """The ``PtychoDataset`` of a tike NPZ (see :func:`convert`)."""
    return convert(path).dataset
