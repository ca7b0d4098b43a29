"""Scan positions and synthetic data sets (SPEC §3); grouping is ``ptycho.grouping`` (re-exported here).

Seeding: ``SeedSequence(config.seed).spawn(4)`` gives independent streams for the object, the positions,
the grouping and (unless ``config.noise_seed`` is set) the Poisson noise. Configs differing only in
``nphotons`` / ``noise_seed`` therefore share object, probe, positions and groups exactly.
``config.object_seed`` / ``config.scan_seed`` take the object / positions-and-grouping streams from
``SeedSequence(object_seed)`` / ``SeedSequence(scan_seed)`` instead (the streams that ``seed`` = that value
draws), so a second scan of one object is ``object_seed=S, scan_seed=T``.
"""
from __future__ import annotations

import math

import numpy as np

from ptycho import objects, physics, probe as probe_mod
from ptycho.config import SimulationConfig
from ptycho.data import PtychoDataset
from ptycho.grouping import group_positions, require_generator

__all__ = ["random_positions", "grid_positions", "group_positions", "default_probe", "simulate_dataset"]


def _check_region(object_size: float, buffer: float) -> None:
    if not (math.isfinite(object_size) and object_size > 0):
        raise ValueError(f"object_size: must be finite and > 0, got {object_size!r}")
    if not (math.isfinite(buffer) and 0 <= buffer and 2 * buffer < object_size):
        raise ValueError(f"buffer: must satisfy 0 <= buffer < object_size / 2, got {buffer!r}")


def random_positions(n: int, object_size: float, buffer: float, rng: np.random.Generator):
    """``n`` positions with x, y ~ U(buffer, object_size - buffer) independently.

    Returns (xcoords (n,) float64, ycoords (n,) float64) in object pixels (x = column, y = row).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: must be a positive int, got {n!r}")
    _check_region(object_size, buffer)
    rng = require_generator(rng)
    xy = rng.uniform(buffer, object_size - buffer, size=(2, int(n)))
    return xy[0].copy(), xy[1].copy()


def grid_positions(n: int, object_size: float, buffer: float, step: float):
    """The first ``n`` points, in raster order (x fastest), of the lattice ``buffer + step·k``.

    Lattice coordinates run from ``buffer`` to at most ``object_size - buffer`` on both axes. Raises
    ``ValueError`` naming ``n`` when the lattice holds fewer than ``n`` points.
    Returns (xcoords (n,) float64, ycoords (n,) float64).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: must be a positive int, got {n!r}")
    _check_region(object_size, buffer)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step: must be finite and > 0, got {step!r}")
    axis = buffer + step * np.arange(int(math.floor((object_size - 2 * buffer) / step + 1e-9)) + 1)
    if axis.size ** 2 < n:
        raise ValueError(f"n: the {axis.size}x{axis.size} grid (step {step}, buffer {buffer}) "
                         f"holds {axis.size ** 2} positions, fewer than n = {n}")
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x.ravel()[:n].astype(np.float64), y.ravel()[:n].astype(np.float64)


def _make_object(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    if config.object_kind == "lines":
        return objects.lines_object(config.object_size, config.nlines, rng)
    if config.object_kind == "grf_complex":
        return objects.complex_grf_object(config.object_size, rng)
    return objects.grf_object(config.object_size, rng)


def _check_given_object(obj, config: SimulationConfig) -> np.ndarray:
    obj = np.asarray(obj)
    if obj.shape != (config.object_size, config.object_size):
        raise ValueError(f"obj: must have shape (object_size, object_size) = "
                         f"{(config.object_size, config.object_size)}, got {obj.shape}")
    if not np.all(np.isfinite(obj)):
        raise ValueError("obj: contains non-finite values")
    return obj.astype(np.complex64)


def _check_given_probe(probe, N: int) -> np.ndarray:
    probe = np.asarray(probe.numpy() if hasattr(probe, "numpy") else probe)
    if probe.ndim == 3 and probe.shape[-1] == 1:
        probe = probe[..., 0]
    if probe.shape != (N, N):
        raise ValueError(f"probe: must have shape (N, N) = {(N, N)}, got {probe.shape}")
    if not np.all(np.isfinite(probe)):
        raise ValueError("probe: contains non-finite values")
    return probe.astype(np.complex64)


def default_probe(config: SimulationConfig) -> np.ndarray:
    """(N, N) complex64 normalised default probe for ``config`` (default_probe_scale, probe_scale, probe_defocus)."""
    raw = probe_mod.get_default_probe(config.N, "np", default_probe_scale=config.default_probe_scale)
    probe = probe_mod.normalize_probe(raw, config.probe_scale).astype(np.complex64)
    if config.probe_defocus:
        probe = probe_mod.defocus_probe(probe, config.probe_defocus, config.default_probe_scale)
    return probe


def simulate_dataset(config: SimulationConfig, *, obj=None, probe=None) -> PtychoDataset:
    """Simulate a ptychographic data set from ``config`` (SPEC §3).

    Object (``config.object_kind``), positions (``config.scan``), groups and Poisson noise each come
    from their own seeded stream; ``obj`` ((object_size, object_size) complex) and ``probe`` ((N, N)
    complex) replace the generated ones when given (used as is).

    Returns
    -------
    PtychoDataset with diffraction X = sqrt(K)/s (M, N, N) float32, the true positions, the probe,
    the (B, C) groups, the object and ``nphotons``.
    """
    if not isinstance(config, SimulationConfig):
        raise ValueError(f"config: must be a SimulationConfig, got {type(config).__name__}")
    obj_ss, pos_ss, group_ss, noise_ss = np.random.SeedSequence(config.seed).spawn(4)
    if config.object_seed is not None:  # the object stream that seed = object_seed would draw
        obj_ss = np.random.SeedSequence(config.object_seed).spawn(4)[0]
    if config.scan_seed is not None:  # the positions and grouping streams of seed = scan_seed
        _, pos_ss, group_ss, _ = np.random.SeedSequence(config.scan_seed).spawn(4)
    noise_rng = np.random.default_rng(noise_ss if config.noise_seed is None else config.noise_seed)
    obj = _make_object(config, np.random.default_rng(obj_ss)) if obj is None else _check_given_object(obj, config)
    probe = default_probe(config) if probe is None else _check_given_probe(probe, config.N)
    if config.scan == "random":
        x, y = random_positions(config.n_positions, config.object_size, config.buffer,
                                np.random.default_rng(pos_ss))
    else:
        x, y = grid_positions(config.n_positions, config.object_size, config.buffer, config.grid_step)
    groups = group_positions(x, y, config.gridsize, config.K, config.n_groups, np.random.default_rng(group_ss))
    amplitudes = physics.far_field_amplitude(physics.illuminate(probe, physics.object_patches(obj, x, y, config.N)))
    scale = physics.intensity_scale(amplitudes, config.nphotons)
    _, diffraction = physics.poisson_sample(amplitudes, scale, noise_rng)
    return PtychoDataset(diffraction=diffraction, xcoords=x, ycoords=y, probe=probe, group_indices=groups,
                         obj=obj, nphotons=float(config.nphotons))
