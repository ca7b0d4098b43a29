"""Inference: predict object patches per group, then stitch them into one object (SPEC §5)."""
from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from ptycho.data import PtychoDataset
from ptycho.inputs import check_dataset, model_inputs, neighbour_count
from ptycho.model_state import get_intensity_scale
from ptycho.phase_alignment import align_group_phases
from ptycho.reconstruction import Reconstruction
from ptycho.tf_helper import reassemble_position, stitch_weight_map, taper_window

__all__ = ["Reconstruction", "reconstruct"]


def reconstruct(diffraction_to_obj: keras.Model, dataset: PtychoDataset, M: int | str = 20,
                batch_size: int = 64, intensity_scale: Optional[float] = None,
                align_phase: Optional[bool] = None) -> Reconstruction:
    """Predict each group's object (B, N, N, 1) and stitch the central M×M windows at the group centroids.

    ``M='auto'`` stitches the whole predicted window (N/2 × N/2) with a sin² taper (weighted overlap-add,
    ``tf_helper.taper_window``): it covers every scanned pixel at real scan spacings and shows no seams
    (ledger STITCH-TAPER-001); ``coverage`` then marks pixels whose summed weight is >= 5 % of one window's
    peak. An int M keeps the plain stitch of SPEC §5 (M=20 by default).

    ``align_phase`` (None: on with ``M='auto'``, off with an int M, so SPEC §5's stitch is unchanged) first
    multiplies each group's patch by the constant phase that makes overlapping patches agree
    (``ptycho.phase_alignment.align_group_phases``, weighted by the square of the stitch window): the absolute
    phase of each group is not measurable, and unaligned groups smear the stitched phase (PHASE-SYNC-001).

    The model's inputs (``ptycho.inputs.model_inputs``, checked against the model by
    ``ptycho.inputs.check_dataset``) are s·X = sqrt(counts): s is ``intensity_scale`` when given (the scale
    of the data set being reconstructed, for data measured apart from the training set), else the model's
    own (right for data on the training set's scale). Returns a ``Reconstruction`` (defined in
    ``ptycho.reconstruction``, re-exported here) that records the (B, 2) group centroids [x, y].
    """
    check_dataset(diffraction_to_obj, dataset)
    N = dataset.N
    window = None
    if M == "auto":
        M = N // 2
        window = taper_window(M)
    if isinstance(M, bool) or not (isinstance(M, int) and 0 < M <= N):
        raise ValueError(f"M: must be 'auto' or an int in 1..N={N}, got {M!r}")
    scale = get_intensity_scale(diffraction_to_obj) if intensity_scale is None else float(intensity_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"intensity_scale: must be a finite number > 0, got {intensity_scale!r}")
    inputs = model_inputs(dataset, scale, neighbour_count(diffraction_to_obj))
    patches = diffraction_to_obj.predict(inputs, batch_size=batch_size, verbose=0)
    offsets = np.asarray(dataset.coords_offsets, np.float32)
    if align_phase is None:
        align_phase = window is not None
    if align_phase:
        weights = np.ones((M, M), np.float32) if window is None else window
        patches, _ = align_group_phases(patches, offsets, M, weights ** 2)
    stitched = np.asarray(reassemble_position(patches, offsets, M=M, window=window))[..., 0]
    coverage = _coverage(offsets, M, window)
    side = stitched.shape[0]
    centre = offsets.reshape(-1, 2).mean(axis=0)
    return Reconstruction(obj=stitched.astype(np.complex64), x0=float(centre[0]) - side // 2,
                          y0=float(centre[1]) - side // 2, coverage=coverage,
                          centroids=offsets.reshape(-1, 2).astype(np.float64))


def _coverage(offsets: np.ndarray, M: int, window) -> np.ndarray:
    """(S, S) bool: canvas pixels that some stitched window covers (summed weight >= 5 % of a window's peak)."""
    weights = np.ones((M, M), np.float32) if window is None else window
    summed = np.asarray(stitch_weight_map(offsets, M, window=weights))[..., 0]
    return summed >= (0.5 if window is None else 0.05 * float(weights.max()))
