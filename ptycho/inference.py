"""Inference: predict object patches per group, then stitch them into one object (SPEC §5)."""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ptycho.data import PtychoDataset
from ptycho.model import get_intensity_scale
from ptycho.physics import object_patches
from ptycho.tf_helper import reassemble_position


@dataclass(frozen=True)
class Reconstruction:
    """A stitched object and where it sits on the object grid.

    ``obj`` (S, S) complex64; pixel (row i, col j) is object position (x0 + j, y0 + i).
    ``coverage`` (S, S) bool: pixels covered by at least one stitched patch window.
    """

    obj: np.ndarray
    x0: float
    y0: float
    coverage: np.ndarray

    def scanned_box(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the bounding box of covered pixels."""
        rows = np.flatnonzero(self.coverage.any(axis=1))
        cols = np.flatnonzero(self.coverage.any(axis=0))
        if rows.size == 0:
            raise ValueError("reconstruction: no pixel is covered")
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def truth(self, obj: np.ndarray) -> np.ndarray:
        """The ground-truth object resampled (bilinear) on this reconstruction's grid: (S, S) complex64."""
        side = self.obj.shape[0]
        centre_x, centre_y = self.x0 + side // 2, self.y0 + side // 2
        return object_patches(np.asarray(obj), np.array([centre_x]), np.array([centre_y]), side)[0]


def reconstruct(diffraction_to_obj: keras.Model, dataset: PtychoDataset, M: int = 20,
                batch_size: int = 64) -> Reconstruction:
    """Predict each group's object (B, N, N, 1) and stitch the central M×M windows at the group centroids.

    The model's inputs are s·X with s its own intensity scale. Returns a ``Reconstruction``.
    """
    if not isinstance(dataset, PtychoDataset):
        raise TypeError(f"dataset: expected PtychoDataset, got {type(dataset).__name__}")
    expected = tuple(diffraction_to_obj.inputs[0].shape[1:])
    if tuple(dataset.X.shape[1:]) != expected:
        raise ValueError(f"dataset: grouped diffraction has shape {dataset.X.shape[1:]}, the model expects {expected}")
    N = expected[0]
    if not (isinstance(M, int) and 0 < M <= N):
        raise ValueError(f"M: must be an int in 1..N={N}, got {M!r}")
    scale = get_intensity_scale(diffraction_to_obj)
    inputs = {"diffraction": np.asarray(dataset.X, np.float32) * np.float32(scale),
              "positions": np.asarray(dataset.coords_relative, np.float32)}
    patches = diffraction_to_obj.predict(inputs, batch_size=batch_size, verbose=0)
    offsets = np.asarray(dataset.coords_offsets, np.float32)
    stitched = np.asarray(reassemble_position(patches, offsets, M=M))[..., 0]
    ones = np.ones(patches.shape, np.complex64)
    coverage = np.abs(np.asarray(reassemble_position(ones, offsets, M=M))[..., 0]) > 0.5
    side = stitched.shape[0]
    centre = offsets.reshape(-1, 2).mean(axis=0)
    return Reconstruction(obj=stitched.astype(np.complex64), x0=float(centre[0]) - side // 2,
                          y0=float(centre[1]) - side // 2, coverage=coverage)
