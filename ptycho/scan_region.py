"""Evaluate a stitched reconstruction on the scanned region (SPEC §5 "crop both images to the scanned region").

The scanned region is the bounding box of the group centroids (the stitched patch centres): outside it
the stitch thins out and the reconstruction says nothing. :func:`crop_to_scan` crops the reconstruction to
it and samples the truth bilinearly on the same grid; :func:`evaluate_on_scan` then runs
``ptycho.evaluation.evaluate`` and records how much of the crop some stitched window covers.
NumPy / SciPy only; importing this module does no work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptycho.reconstruction import Reconstruction

#: Smallest side (px) of the evaluated crop (ptycho.evaluation needs 16).
MIN_CROP = 16


@dataclass(frozen=True)
class ScanEvaluation:
    """Metrics of a reconstruction on its scanned region, and the crops they were computed on.

    reconstruction, truth : (h, w) complex64 on one grid, pixel (0, 0) at object position ``origin`` (x, y).
    coverage : (h, w) bool, pixels some stitched window covers.
    metrics : ``ptycho.evaluation.evaluate``'s dict plus ``crop_coverage`` (covered fraction of the crop).
    warnings : one-line messages about a result that cannot be right: a truth that does not match
        (``ptycho.evaluation.agreement_warnings``) and, added by ``ptycho.workflow.reconstruct_and_evaluate``,
        an object at the amplitude ceiling or constant (``ptycho.diagnostics.object_warnings``); empty when none.
    """

    metrics: dict[str, Any]
    reconstruction: np.ndarray
    truth: np.ndarray
    origin: tuple[float, float]
    coverage: np.ndarray
    warnings: tuple[str, ...] = ()


def crop_to_scan(recon: np.ndarray, x0: float, y0: float, truth: np.ndarray,
                 centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Crop a stitched reconstruction and the truth to the bounding box of the scan.

    recon: (H', W') complex, pixel (r, c) at object position (x0 + c, y0 + r).  truth: (H, W) complex
    object.  centroids: (B, 2) float, [x, y] of the group centroids (the stitch's patch centres).
    Returns (recon_crop (h, w) complex64, truth_crop (h, w) complex64, origin (x, y) of pixel (0, 0));
    the truth is sampled bilinearly (zero outside) on the reconstruction's grid, exactly when x0, y0
    are integers. ValueError if the region is smaller than ``MIN_CROP`` px on a side, or (``"truth: ..."``) not
    inside the truth within 1 px.
    """
    from scipy import ndimage

    recon = np.asarray(recon)
    centroids = np.asarray(centroids, dtype=np.float64)
    xs, ys = centroids[:, 0], centroids[:, 1]
    c0, c1 = max(0, math.ceil(xs.min() - x0)), min(recon.shape[1], math.floor(xs.max() - x0) + 1)
    r0, r1 = max(0, math.ceil(ys.min() - y0)), min(recon.shape[0], math.floor(ys.max() - y0) + 1)
    if c1 - c0 < MIN_CROP or r1 - r0 < MIN_CROP:
        raise ValueError(f"scanned region {r1 - r0}x{c1 - c0} px is smaller than {MIN_CROP} px: the scan "
                         "positions span too small a region to evaluate (use more positions; --n-test in the study)")
    origin = (float(x0 + c0), float(y0 + r0))
    _check_truth_covers(np.shape(truth), origin, (r1 - r0, c1 - c0))
    rows, cols = np.meshgrid(origin[1] + np.arange(r1 - r0), origin[0] + np.arange(c1 - c0), indexing="ij")
    coords = np.stack([rows, cols])
    part = [ndimage.map_coordinates(np.asarray(f(truth), np.float64), coords, order=1, mode="constant")
            for f in (np.real, np.imag)]
    truth_crop = (part[0] + 1j * part[1]).astype(np.complex64)
    return recon[r0:r1, c0:c1].astype(np.complex64), truth_crop, origin


#: How far (px) the scanned region may reach past the truth's edge: bilinear sampling of positions up to
#: ``object_size`` itself (a grid scan without buffer) touches one pixel past the last.
TRUTH_EDGE_TOLERANCE = 1.0


def _check_truth_covers(shape, origin: tuple[float, float], size: tuple[int, int]) -> None:
    """ValueError ``"truth: ..."`` when the scanned region (object pixels) is not inside the truth (H, W).

    Outside the truth the crop would be zero-filled and scored as if the reconstruction were wrong there:
    a truth of another size (or another object) must be refused, not scored (ledger EVAL-TRUTH-MISMATCH-001).
    """
    if len(shape) != 2:
        return  # ptycho.evaluation names a malformed truth
    H, W = shape
    x_lo, y_lo = origin
    x_hi, y_hi = x_lo + size[1] - 1, y_lo + size[0] - 1
    tol = TRUTH_EDGE_TOLERANCE
    if x_lo < -tol or y_lo < -tol or x_hi > W - 1 + tol or y_hi > H - 1 + tol:
        raise ValueError(f"truth: the object is {H}x{W} px, but the reconstruction's scanned region spans x "
                         f"{x_lo:.0f}..{x_hi:.0f}, y {y_lo:.0f}..{y_hi:.0f} (object pixels), outside it: this is "
                         "not the object the scan measured (another object size?); give the data file the scan "
                         "was simulated or measured with")


def crop_slices(x0: float, y0: float, origin: tuple[float, float],
                shape: tuple[int, int]) -> tuple[slice, slice]:
    """(rows, cols) of a stitch with origin (x0, y0) that hold a crop with ``origin`` and ``shape``."""
    r0, c0 = int(round(origin[1] - y0)), int(round(origin[0] - x0))
    return slice(r0, r0 + shape[0]), slice(c0, c0 + shape[1])


def evaluate_on_scan(rec: Reconstruction, truth: np.ndarray) -> ScanEvaluation:
    """Crop ``rec`` and ``truth`` (H, W) complex to ``rec``'s scanned region and evaluate (SPEC §5).

    ``rec.centroids`` must be set (``ptycho.inference.reconstruct`` sets it). ValueError if the region
    is too small or not inside the truth (:func:`crop_to_scan`) or the images are invalid
    (``ptycho.evaluation``); a truth that registers badly or hardly correlates is reported in ``warnings``.
    """
    from ptycho import evaluation

    if rec.centroids is None:
        raise ValueError("rec.centroids: the group centroids are needed to find the scanned region, got None")
    rec_crop, truth_crop, origin = crop_to_scan(np.asarray(rec.obj), rec.x0, rec.y0, truth, rec.centroids)
    rows, cols = crop_slices(rec.x0, rec.y0, origin, rec_crop.shape)
    coverage = np.asarray(rec.coverage, dtype=bool)[rows, cols]
    metrics = dict(evaluation.evaluate(rec_crop, truth_crop))
    metrics["crop_coverage"] = float(np.mean(coverage))
    return ScanEvaluation(metrics=metrics, reconstruction=rec_crop, truth=truth_crop, origin=origin,
                          coverage=coverage, warnings=tuple(evaluation.agreement_warnings(metrics)))
