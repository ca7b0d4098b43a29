"""Reader of ptychodus files: a product HDF5 (probe, positions, object geometry) + a diffraction HDF5 (patterns).

Layout (ptychodus ``ptychodus.api.io``: ``load_product`` / ``load_diffraction_data``; checked):

product file
    ``probe``  (N, N), (modes, N, N) or (opr, modes, N, N) complex, attributes ``pixel_width_m`` / ``pixel_height_m``;
    ``probe_position_x_m``, ``probe_position_y_m`` (M,) float, metres (x = column, y = row);
    ``probe_position_indexes`` (M,) int, optional: the pattern index of each position;
    ``object`` dataset with attributes ``pixel_width_m`` / ``pixel_height_m`` (m; ``object_pixel_width_m`` /
    ``object_pixel_height_m`` accepted too, as attributes or root datasets);
    root attributes ``probe_energy_eV``, ``detector_object_distance_m``, ``probe_photon_count`` (logged only).
diffraction file (``diffraction=``; default: ``diffraction.h5`` beside the product, ptychodus' standard layout)
    ``patterns`` (M, N, N) counts, ``bad_pixels`` (N, N) bool (True = bad), ``indexes`` (M,) int, optional.

Assumptions: patterns are stored centred (zero frequency at N//2; checked: corner data are fftshifted with a
warning); positions are where pixel (N/2, N/2) of the probe array lies (any constant offset is removed by the
shift to min = N/2); with both index arrays present, positions and patterns are matched by index. Without an
object pixel size it is λ·z/(N·p) from ``probe_energy_eV``, ``detector_object_distance_m`` and a root attribute
``detector_pixel_width_m`` / ``detector_pixel_height_m`` (not part of ptychodus' product; else ``ValueError``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ptycho.data import PtychoDataset
from ptycho.formats._common import (Conversion, fail, far_field_pixel_m, from_counts, h5_array, open_hdf5, scalar,
                                    wavelength_m)

log = logging.getLogger("ptycho.formats")
STANDARD_DIFFRACTION = "diffraction.h5"


def _object_pixel(h5, path, N: int):
    """(width, height) of an object pixel in metres, from the product or from the far-field geometry."""
    obj = h5.get("object")
    sizes = []
    for axis in ("width", "height"):
        value = None
        for name in (f"pixel_{axis}_m", f"object_pixel_{axis}_m"):
            if value is None and obj is not None:
                value = scalar(obj.attrs.get(name))
            if value is None:
                value = scalar(h5.attrs.get(name))
            if value is None and name in h5:
                value = scalar(h5[name][()])
        sizes.append(value)
    if all(v is not None and v > 0 for v in sizes):
        return tuple(sizes)
    distance = scalar(h5.attrs.get("detector_object_distance_m"))
    detector = [scalar(h5.attrs.get(f"detector_pixel_{axis}_m")) for axis in ("width", "height")]
    if distance is None or distance <= 0 or not all(d is not None and d > 0 for d in detector):
        fail(path, "object", "attribute 'pixel_width_m' / 'pixel_height_m' missing, and no far-field geometry "
                             "(detector_object_distance_m, probe_energy_eV, detector_pixel_width_m) to compute it: "
                             "the positions in metres cannot be converted to pixels; add the object pixel size")
    lam = wavelength_m(path, energy_eV=scalar(h5.attrs.get("probe_energy_eV")), key="probe_energy_eV")
    return tuple(far_field_pixel_m(lam, distance, N, d) for d in detector)


def _patterns(path, diffraction):
    """(patterns (M, N, N), bad pixels (N, N) bool or None, indexes (M,) or None) of the diffraction file."""
    with open_hdf5(diffraction) as h5:
        patterns = h5_array(h5, diffraction, ["patterns"], "the diffraction patterns, (M, N, N) counts")
        bad = h5_array(h5, diffraction, ["bad_pixels"], "", required=False)
        indexes = h5_array(h5, diffraction, ["indexes"], "", required=False)
    patterns = np.asarray(patterns)
    if patterns.ndim != 3 or patterns.shape[1] != patterns.shape[2] or patterns.dtype.kind not in "biuf":
        fail(diffraction, "patterns", f"expected (M, N, N) real counts, got {patterns.shape} {patterns.dtype}")
    if bad is not None:
        bad = np.asarray(bad)
        if bad.shape != patterns.shape[1:] or bad.dtype.kind not in "biu":
            fail(diffraction, "bad_pixels",
                 f"expected a {patterns.shape[1:]} boolean array, got {bad.shape} {bad.dtype}")
        bad = bad != 0
    return patterns, bad, indexes


def convert(path, diffraction=None) -> Conversion:
    """Convert a ptychodus product file + its diffraction file to a :class:`Conversion`."""
    if diffraction is None:
        diffraction = Path(path).parent / STANDARD_DIFFRACTION
        if not diffraction.is_file():
            fail(path, "patterns", f"the patterns live in a separate diffraction file; none given and no "
                                   f"{STANDARD_DIFFRACTION} beside the product: pass diffraction= (--diffraction PATH)")
    patterns, bad, pattern_indexes = _patterns(path, diffraction)
    N = patterns.shape[-1]
    with open_hdf5(path) as h5:
        x_m = h5_array(h5, path, ["probe_position_x_m"], "probe x positions in metres")
        y_m = h5_array(h5, path, ["probe_position_y_m"], "probe y positions in metres")
        indexes = h5_array(h5, path, ["probe_position_indexes"], "", required=False)
        probe = h5_array(h5, path, ["probe"], "the probe, (modes, N, N) complex")
        pixel = _object_pixel(h5, path, N)
        photons = scalar(h5.attrs.get("probe_photon_count"))
    x_m, y_m = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x_m, y_m))
    if indexes is not None and pattern_indexes is not None:
        where = {int(i): k for k, i in enumerate(np.asarray(pattern_indexes).reshape(-1))}
        missing = [int(i) for i in np.asarray(indexes).reshape(-1) if int(i) not in where]
        if missing:
            fail(path, "probe_position_indexes", f"{len(missing)} positions (first index {missing[0]}) have no pattern "
                                                 f"in {os.fspath(diffraction)}; pass the matching diffraction file")
        patterns = patterns[[where[int(i)] for i in np.asarray(indexes).reshape(-1)]]
    elif len(x_m) != patterns.shape[0]:
        fail(path, "probe_position_x_m", f"{len(x_m)} positions but {patterns.shape[0]} patterns in "
                                         f"{os.fspath(diffraction)}; pass the matching diffraction file")
    log.info("%s: object pixel %.6g x %.6g m; probe_photon_count attribute %s", os.fspath(path), *pixel, photons)
    return from_counts(f"{os.fspath(path)} + {os.fspath(diffraction)}", "ptychodus", patterns, probe,
                       x_m / pixel[0], y_m / pixel[1], origin="centre", counts_key="patterns", probe_key="probe",
                       position_keys="probe_position_x_m", mask=None if bad is None else ~bad, pixel_size_m=pixel)


def read(path, diffraction=None) -> PtychoDataset:
    """The ``PtychoDataset`` of a ptychodus product + diffraction file (see :func:`convert`)."""
    return convert(path, diffraction).dataset
