"""A stitched reconstruction, where it sits on the object grid, and its NPZ file.

``ptycho.inference.reconstruct`` produces a :class:`Reconstruction`; ``ptycho reconstruct`` writes it with
:func:`save_reconstruction` and ``ptycho evaluate`` reads it back with :func:`load_reconstruction`.
NumPy only: reading and evaluating a reconstruction never loads TensorFlow.

NPZ keys:

==========  ===============  ==================================================================
key         shape / dtype    meaning
==========  ===============  ==================================================================
object      (S, S) complex64  the stitched object; pixel (row i, col j) at object (x0 + j, y0 + i)
origin      (2,) float64     [x0, y0], object pixels
extent      (4,) float64     [left, right, bottom, top] = [x0 - ½, x0 + S - ½, y0 + S - ½, y0 - ½],
                             the ``imshow`` extent in object pixels
coverage    (S, S) bool      pixels some stitched window covers (the others are 0, not data)
centroids   (B, 2) float64   [x, y] of the B group centroids the patches were stitched at
==========  ===============  ==================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ptycho import files
from ptycho.data import open_npz

KEYS = ("object", "origin", "extent", "coverage", "centroids")


@dataclass(frozen=True)
class Reconstruction:
    """A stitched object and where it sits on the object grid.

    ``obj`` (S, S) complex64; pixel (row i, col j) is object position (x0 + j, y0 + i).
    ``coverage`` (S, S) bool: pixels covered by at least one stitched patch window.
    ``centroids`` (B, 2) float64 [x, y] of the group centroids (the stitched patch centres), if known.
    """

    obj: np.ndarray
    x0: float
    y0: float
    coverage: np.ndarray
    centroids: Optional[np.ndarray] = None

    @property
    def origin(self) -> tuple[float, float]:
        """(x0, y0): the object position of pixel (0, 0)."""
        return (float(self.x0), float(self.y0))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the pixel edges in object pixels (matplotlib ``imshow`` order)."""
        h, w = np.shape(self.obj)
        return (self.x0 - 0.5, self.x0 + w - 0.5, self.y0 + h - 0.5, self.y0 - 0.5)

    def scanned_box(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the bounding box of covered pixels."""
        rows = np.flatnonzero(self.coverage.any(axis=1))
        cols = np.flatnonzero(self.coverage.any(axis=0))
        if rows.size == 0:
            raise ValueError("reconstruction: no pixel is covered")
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def truth(self, obj: np.ndarray) -> np.ndarray:
        """The ground-truth object resampled (bilinear) on this reconstruction's grid: (S, S) complex64."""
        from ptycho.physics import object_patches

        side = self.obj.shape[0]
        centre_x, centre_y = self.x0 + side // 2, self.y0 + side // 2
        return object_patches(np.asarray(obj), np.array([centre_x]), np.array([centre_y]), side)[0]


def save_reconstruction(path: os.PathLike | str, rec: Reconstruction) -> None:
    """Write ``rec`` to ``path`` in the NPZ format above, atomically (``centroids`` required)."""
    if rec.centroids is None:
        raise ValueError("rec.centroids: needed to evaluate the file later, got None")
    files.write_npz(path, {
        "object": np.asarray(rec.obj, np.complex64), "origin": np.asarray(rec.origin, np.float64),
        "extent": np.asarray(rec.extent, np.float64), "coverage": np.asarray(rec.coverage, bool),
        "centroids": np.asarray(rec.centroids, np.float64),
    })


def _key(npz, path, key: str, kinds: str, shape_ok, expected: str) -> np.ndarray:
    if key not in npz.files:
        raise ValueError(f"{os.fspath(path)}: key {key!r}: missing; keys: {sorted(npz.files)}")
    try:
        arr = npz[key]
    except ValueError as exc:  # an object array: refused, never unpickled
        raise ValueError(f"{os.fspath(path)}: key {key!r}: cannot be loaded without pickle ({exc})") from None
    if arr.dtype.kind not in kinds or not shape_ok(arr.shape):
        raise ValueError(f"{os.fspath(path)}: key {key!r}: expected {expected}, got {arr.shape} {arr.dtype}")
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{os.fspath(path)}: key {key!r}: contains NaN or infinite values")
    return arr


def load_reconstruction(path: os.PathLike | str) -> Reconstruction:
    """Read and validate a file written by :func:`save_reconstruction`; never unpickles.

    Raises ``ValueError`` naming the file and the key for anything missing or malformed.
    """
    npz = open_npz(path, "a reconstruction NPZ")
    with npz:
        obj = _key(npz, path, "object", "fc", lambda s: len(s) == 2 and min(s) >= 1, "(S, S) complex")
        origin = _key(npz, path, "origin", "iuf", lambda s: s == (2,), "(2,) [x0, y0]")
        coverage = _key(npz, path, "coverage", "b", lambda s: s == obj.shape, f"{obj.shape} bool")
        centroids = _key(npz, path, "centroids", "iuf", lambda s: len(s) == 2 and s[1] == 2 and s[0] >= 1,
                         "(B, 2) [x, y]")
    return Reconstruction(obj=obj.astype(np.complex64), x0=float(origin[0]), y0=float(origin[1]),
                          coverage=coverage, centroids=centroids.astype(np.float64))
