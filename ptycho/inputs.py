"""Model inputs: what a network is fed from a ``PtychoDataset``, and the check that the two fit.

Training (``ptycho.train.train``) and inference (``ptycho.inference.reconstruct``) both feed a network

=============  ===================  ==========================================================
input          shape / dtype        meaning
=============  ===================  ==========================================================
diffraction    (B, N, N, C) float32  s·X = sqrt(counts): the grouped amplitudes times the scale s
positions      (B, 1, 2, C) float32  ``-(pos - centroid)`` of each group member [x, y], object px
=============  ===================  ==========================================================

with C = gridsize² positions per group. The network's geometry is read from its first input's
(B, N, N, C) shape. NumPy only: importing this module does no work and loads no TensorFlow.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ptycho.data import PtychoDataset
from ptycho.grouping import gridsize_of


def model_geometry(model: Any) -> tuple[int, int]:
    """``(N, gridsize)`` of a network whose first input is (B, N, N, C): pattern side (px) and √C.

    ``model``: a keras.Model (anything with ``inputs[0].shape``). ValueError if C is not gridsize²
    (``grouping.gridsize_of``).
    """
    N, _, C = model.inputs[0].shape[1:]
    return int(N), gridsize_of(C)


def check_dataset(model: Any, dataset: PtychoDataset) -> None:
    """Refuse a data set the network cannot take: TypeError if ``dataset`` is not a PtychoDataset, ValueError
    ``"dataset: grouped diffraction has shape (N, N, C), the model expects (N', N', C')"`` if its grouped
    patterns (``dataset.X``, (B, N, N, C)) do not match the network's first input."""
    if not isinstance(dataset, PtychoDataset):
        raise TypeError(f"dataset: expected PtychoDataset, got {type(dataset).__name__}")
    expected = tuple(model.inputs[0].shape[1:])
    if tuple(dataset.X.shape[1:]) != expected:
        raise ValueError(f"dataset: grouped diffraction has shape {dataset.X.shape[1:]}, the model expects {expected}")


def model_inputs(dataset: PtychoDataset, intensity_scale: float) -> dict[str, np.ndarray]:
    """The network's inputs for ``dataset``: ``diffraction`` (B, N, N, C) float32 = s·X (√counts) with
    s = ``intensity_scale`` (√photons per stored amplitude unit), ``positions`` (B, 1, 2, C) float32
    (``dataset.coords_relative``, object pixels)."""
    return {
        "diffraction": (np.asarray(dataset.X, np.float32) * np.float32(intensity_scale)),
        "positions": np.asarray(dataset.coords_relative, np.float32),
    }
