"""Readers of the files users have, converted to the package's ``PtychoDataset`` with every convention checked.

::

    from ptycho import formats
    dataset = formats.read("star.npz.bz2", "tike")         # or format=None: guessed from the file
    formats.write_npz(dataset, "star.npz")                   # what ``ptycho train star.npz`` reads
    conversion = formats.convert("product.h5", "ptychodus", diffraction="diffraction.h5")
    print(conversion.summary())                              # M, N, mean counts, probe factor, pixel, shift

Formats (``FORMATS``; one module each, each with ``convert`` and ``read``):

* ``tike``        tike NPZ / NPZ.bz2: counts at the array corner, probe in tike's FFT units, scan [row, col] px
* ``ptychodus``   product HDF5 + diffraction HDF5 (``diffraction=``): positions in metres, bad-pixel mask
* ``cxi``         CXI 1.6 HDF5: counts, detector geometry, translations in metres, mask (nonzero = bad)
* ``ptychopinn``  the package's own NPZ and the reference project's key sets: amplitudes kept as stored

The conversion of counts (the first three) is in ``ptycho.formats._common``: diffraction (M, N, N) float32
amplitudes X = sqrt(counts)/s with the zero frequency at N//2; the probe rescaled to Σ|P|² = ``PROBE_POWER[N]``
(the default simulated probe's power); s = sqrt(mean counts / PROBE_POWER[N]), nphotons = mean counts, so
``dataset.intensity_scale == s``; positions in object pixels (x = column, y = row) shifted so that
min x = min y = N/2; bad pixels False in ``dataset.mask``, 0 in the diffraction and out of the counts.
Importing this package does no work and loads nothing but the standard library: the readers, ``ptycho.data``
and h5py (HDF5 readers only) are imported on first use, so the ``ptycho`` command's parser stays fast.
"""
from __future__ import annotations

import bz2
import os
import zipfile
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from ptycho.data import PtychoDataset
    from ptycho.formats._common import Conversion


__all__ = ["FORMATS", "PROBE_POWER", "Conversion", "convert", "guess_format", "probe_power", "read", "write_npz"]

FORMATS = ("tike", "ptychodus", "cxi", "ptychopinn")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LAZY = ("PROBE_POWER", "Conversion", "probe_power")


def __getattr__(name: str):
    """``PROBE_POWER``, ``Conversion`` and ``probe_power`` from ``ptycho.formats._common``, imported on first use."""
    if name in _LAZY:
        from ptycho.formats import _common

        return getattr(_common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _npz_keys(path) -> Optional[list]:
    """The member names (without ``.npy``) of an NPZ or NPZ.bz2, or None if ``path`` is not one."""
    import io

    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
            fh.seek(0)
            raw = bz2.decompress(fh.read()) if head == b"BZh" else None
        archive = zipfile.ZipFile(io.BytesIO(raw)) if raw is not None else zipfile.ZipFile(path)
        with archive:
            return [n[:-4] if n.endswith(".npy") else n for n in archive.namelist()]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def guess_format(path) -> str:
    """One of ``FORMATS`` from the file's content: NPZ(.bz2) with ``data`` -> tike, with ``diffraction``/``diff3d``
    -> ptychopinn; HDF5 with ``/entry_1`` -> cxi, with ``probe_position_x_m`` -> ptychodus. ``ValueError`` otherwise."""
    hint = "pass the format explicitly (--format " + "|".join(FORMATS) + ")"
    try:
        with open(path, "rb") as fh:
            signature = fh.read(len(_HDF5_SIGNATURE))
    except OSError as exc:
        raise ValueError(f"{os.fspath(path)}: cannot be read ({exc})") from None
    if signature == _HDF5_SIGNATURE:
        from ptycho.formats._common import open_hdf5

        with open_hdf5(path) as h5:
            keys = sorted(h5.keys())
        if "entry_1" in keys:
            return "cxi"
        if "probe_position_x_m" in keys:
            return "ptychodus"
        raise ValueError(f"{os.fspath(path)}: an HDF5 file with neither /entry_1 (CXI) nor probe_position_x_m "
                         f"(ptychodus product) (keys {keys}); {hint}")
    keys = _npz_keys(path)
    if keys is None:
        raise ValueError(f"{os.fspath(path)}: neither HDF5 nor an NPZ (or NPZ.bz2) archive; {hint}")
    if "diffraction" in keys or "diff3d" in keys:
        return "ptychopinn"
    if "data" in keys:
        return "tike"
    raise ValueError(f"{os.fspath(path)}: an NPZ with neither 'data' (tike) nor 'diffraction'/'diff3d' (PtychoPINN) "
                     f"(keys {sorted(keys)}); {hint}")


def convert(path, format: Optional[str] = None, *, diffraction=None) -> "Conversion":
    """Read ``path`` in ``format`` (None: :func:`guess_format`) and return the :class:`Conversion`.

    ``diffraction``: the ptychodus diffraction file (default ``diffraction.h5`` beside the product); refused
    for the other formats. One-line ``ValueError`` naming the file and the key for any problem.
    """
    fmt = guess_format(path) if format is None else format
    if fmt not in FORMATS:
        raise ValueError(f"format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if diffraction is not None and fmt != "ptychodus":
        raise ValueError(f"diffraction: only the ptychodus format reads a separate diffraction file, not {fmt}")
    if fmt == "tike":
        from ptycho.formats import tike as reader
    elif fmt == "ptychodus":
        from ptycho.formats import ptychodus

        return ptychodus.convert(path, diffraction)
    elif fmt == "cxi":
        from ptycho.formats import cxi as reader
    else:
        from ptycho.formats import ptychopinn as reader
    return reader.convert(path)


def read(path, format: Optional[str] = None, *, diffraction=None) -> "PtychoDataset":
    """The ``PtychoDataset`` of ``path`` in ``format`` (see :func:`convert`)."""
    return convert(path, format, diffraction=diffraction).dataset


def write_npz(dataset: "PtychoDataset", path) -> None:
    """Write ``dataset`` to ``path`` with ``ptycho.data.save_npz`` (atomic; the file ``ptycho train`` reads)."""
    from ptycho.data import save_npz

    save_npz(path, dataset)
