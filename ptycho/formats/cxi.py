"""Reader of CXI 1.6 ptychography files (HDF5).

Keys (checked; the first present of each list is used):

==================================================  ===================================================
``/entry_1/instrument_1/detector_1/data``           (M, N, N) photon counts (or ``/entry_1/data_1/data``)
``.../detector_1/distance``                         sample-detector distance z, m
``.../detector_1/x_pixel_size``, ``y_pixel_size``   detector pixel, m
``.../detector_1/mask``                             (N, N) int, optional; nonzero = bad pixel (CXI)
``/entry_1/instrument_1/source_1/energy``           photon energy, J (or ``wavelength``, m)
``/entry_1/sample_1/geometry_1/translation``        (M, 3) [x, y, z], m (or ``/entry_1/data_1/translation``)
probe                                               (modes?, N, N) complex: ``source_1/illumination``,
                                                    ``source_1/probe``, ``detector_1/probe``, an
                                                    ``/entry_1/image_k`` whose ``data_type`` is 'probe', or
                                                    ``/entry_1/image_1/data``
==================================================  ===================================================

Conventions assumed: patterns centred (zero frequency at N//2; checked: corner data are fftshifted with a
warning); translation [x, y] is the probe position on the sample in the object's column / row directions (CXI
writers differ in sign: a file whose translations are sample motions gives a mirrored scan; negate them).
Object pixel: λ·z / (N·x_pixel_size) across, λ·z / (N·y_pixel_size) down; positions = translation / pixel,
shifted so min x = min y = N/2. Missing geometry -> ``ValueError`` naming the file and the key.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ptycho.data import PtychoDataset
from ptycho.formats._common import (Conversion, fail, far_field_pixel_m, from_counts, h5_array, open_hdf5, scalar,
                                    wavelength_m)

log = logging.getLogger("ptycho.formats")
DETECTOR = "/entry_1/instrument_1/detector_1"
SOURCE = "/entry_1/instrument_1/source_1"
TRANSLATION = ["/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation"]


def _probe(h5, path, N: int):
    import h5py

    names = [f"{SOURCE}/illumination", f"{SOURCE}/probe", f"{DETECTOR}/probe"]
    entry = h5.get("/entry_1")
    images = sorted(k for k in (entry.keys() if entry is not None else ()) if k.startswith("image_"))
    for image in images:
        kind = h5.get(f"/entry_1/{image}/data_type")
        kind = kind[()] if isinstance(kind, h5py.Dataset) else h5[f"/entry_1/{image}"].attrs.get("data_type")
        if isinstance(kind, bytes):
            kind = kind.decode(errors="replace")
        if str(kind).strip().lower() == "probe":
            names.append(f"/entry_1/{image}/data")
    names.append("/entry_1/image_1/data")
    for name in names:
        node = h5.get(name)
        if isinstance(node, h5py.Dataset) and node.ndim >= 2 and node.shape[-2:] == (N, N):
            return node[()], name
    fail(path, names[0], f"no probe of {N}x{N} found; looked for {', '.join(names)}")


def convert(path) -> Conversion:
    """Convert a CXI file to a :class:`Conversion` (data set + what was done)."""
    with open_hdf5(path) as h5:
        data = h5_array(h5, path, [f"{DETECTOR}/data", "/entry_1/data_1/data"], "the diffraction patterns, counts")
        data = np.asarray(data)
        if data.ndim != 3 or data.shape[1] != data.shape[2] or data.dtype.kind not in "biuf":
            fail(path, f"{DETECTOR}/data", f"expected (M, N, N) real counts, got {data.shape} {data.dtype}")
        N = data.shape[-1]
        translation = np.asarray(h5_array(h5, path, TRANSLATION, "scan positions (M, 3) in metres"), dtype=np.float64)
        if translation.ndim != 2 or translation.shape[1] < 2:
            fail(path, TRANSLATION[0], f"expected (M, 3) [x, y, z] in metres, got shape {translation.shape}")
        distance = scalar(h5_array(h5, path, [f"{DETECTOR}/distance"], "sample-detector distance in metres"))
        sizes = [scalar(h5_array(h5, path, [f"{DETECTOR}/{axis}_pixel_size"], "detector pixel size in metres"))
                 for axis in ("x", "y")]
        for key, value in ((f"{DETECTOR}/distance", distance), (f"{DETECTOR}/x_pixel_size", sizes[0]),
                           (f"{DETECTOR}/y_pixel_size", sizes[1])):
            if value is None or not np.isfinite(value) or value <= 0:
                fail(path, key, f"must be a length > 0 in metres, got {value}; it is needed for the object pixel size")
        lam = wavelength_m(path, energy_J=scalar(h5_array(h5, path, [f"{SOURCE}/energy"], "", required=False)),
                           wavelength=scalar(h5_array(h5, path, [f"{SOURCE}/wavelength"], "", required=False)),
                           key=f"{SOURCE}/energy")
        cxi_mask = h5_array(h5, path, [f"{DETECTOR}/mask"], "", required=False)
        probe, probe_key = _probe(h5, path, N)
    mask = None
    if cxi_mask is not None:
        cxi_mask = np.asarray(cxi_mask)
        if cxi_mask.shape != (N, N) or cxi_mask.dtype.kind not in "biu":
            fail(path, f"{DETECTOR}/mask",
                 f"expected an ({N}, {N}) integer mask, got {cxi_mask.shape} {cxi_mask.dtype}")
        mask = cxi_mask == 0
    pixel = tuple(far_field_pixel_m(lam, distance, N, p) for p in sizes)
    log.info("%s: λ = %.6g m, z = %.6g m, object pixel %.6g x %.6g m", os.fspath(path), lam, distance, *pixel)
    return from_counts(path, "cxi", data, probe, translation[:, 0] / pixel[0], translation[:, 1] / pixel[1],
                       origin="centre", counts_key=f"{DETECTOR}/data", probe_key=probe_key,
                       position_keys=TRANSLATION[0], mask=mask, pixel_size_m=pixel)


def read(path) -> PtychoDataset:
    """The ``PtychoDataset`` of a CXI file (see :func:`convert`)."""
    return convert(path).dataset
