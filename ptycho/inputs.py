"""Model inputs: what a network is fed from a ``PtychoDataset``, and the check that the two fit.

Training (``ptycho.train.train``) and inference (``ptycho.inference.reconstruct``) both feed a network

=============  ===================  ==========================================================
input          shape / dtype        meaning
=============  ===================  ==========================================================
diffraction    (B, N, N, C) float32  s·X = sqrt(counts): the grouped amplitudes times the scale s
positions      (B, 1, 2, C) float32  ``-(pos - centroid)`` of each group member [x, y], object px
=============  ===================  ==========================================================

with C = gridsize² positions per group. A gridsize-1 'retrieval' network also takes each pattern's K scan
neighbours (``ModelConfig.retrieval_neighbours``, ledger RETRIEVAL-NEIGHBOURS-001):
``neighbour_diffraction`` (B, N, N, K) float32 s·X of the neighbours and ``neighbour_positions``
(B, 1, 2, K) float32 ``-(pos - centroid)`` of the neighbours, in the frame of ``positions``.
The network's geometry is read from its first input's
(B, N, N, C) shape. NumPy only: importing this module does no work and loads no TensorFlow.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ptycho.config import neighbour_radius
from ptycho.data import PtychoDataset
from ptycho.grouping import gridsize_of, scan_neighbours

NEIGHBOUR_INPUTS = ("neighbour_diffraction", "neighbour_positions")


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


def neighbour_count(model: Any) -> int:
    """K, the scan neighbours a network takes per pattern (its ``neighbour_diffraction`` input), else 0."""
    for tensor in model.inputs:
        if getattr(tensor, "name", None) == NEIGHBOUR_INPUTS[0]:
            return int(tensor.shape[-1])
    return 0


def model_inputs(dataset: PtychoDataset, intensity_scale: float, neighbours: int = 0) -> dict[str, np.ndarray]:
    """The network's inputs for ``dataset``: ``diffraction`` (B, N, N, C) float32 = s·X (√counts) with
    s = ``intensity_scale`` (√photons per stored amplitude unit), ``positions`` (B, 1, 2, C) float32
    (``dataset.coords_relative``, object pixels); with ``neighbours`` = K > 0 (a gridsize-1 data set) also
    each pattern's K nearest scan positions within ``config.neighbour_radius(N)`` px
    (``grouping.scan_neighbours``): ``neighbour_diffraction`` (B, N, N, K) and ``neighbour_positions``
    (B, 1, 2, K) relative to the pattern's own position."""
    scale = np.float32(intensity_scale)
    inputs = {
        "diffraction": np.asarray(dataset.X, np.float32) * scale,
        "positions": np.asarray(dataset.coords_relative, np.float32),
    }
    if neighbours:
        if dataset.C != 1:
            raise ValueError(f"dataset: scan neighbours join gridsize-1 groups only, got C = {dataset.C}")
        own = dataset.group_indices[:, 0]
        near = scan_neighbours(dataset.xcoords, dataset.ycoords, own, neighbours, neighbour_radius(dataset.N))
        xy = np.stack([dataset.xcoords, dataset.ycoords], axis=0)  # (2, M) float64
        relative = -(xy[:, near] - xy[:, own][:, :, None])  # (2, B, K)
        inputs[NEIGHBOUR_INPUTS[0]] = np.ascontiguousarray(
            np.asarray(dataset.diffraction[near], np.float32).transpose(0, 2, 3, 1)) * scale
        inputs[NEIGHBOUR_INPUTS[1]] = relative.transpose(1, 0, 2)[:, None].astype(np.float32)
    return inputs
