"""Benchmark ``simulate_dataset``: 2,000 patterns at N=64; prints one JSON line.

Config: N=64, gridsize 2, 128x128 lines object (100 lines), 2,000 random positions (buffer 15),
2,000 groups, 1e9 photons. Reports the median and minimum wall-clock seconds over REPEATS full
simulations (object, positions, grouping, patches, far field, Poisson noise), plus the per-stage split
of one extra run and the photon check: mean total counts per pattern vs nphotons.
"""
import json
import time

import numpy as np

from ptycho import physics
from ptycho.config import SimulationConfig
from ptycho.simulate import default_probe, group_positions, random_positions, simulate_dataset

REPEATS = 3
CONFIG = SimulationConfig(N=64, gridsize=2, object_size=128, nlines=100, n_positions=2000, buffer=15.0,
                          nphotons=1e9, seed=0)


def stage_times(cfg):
    """Seconds spent in each stage of one simulation done by hand (same calls as simulate_dataset)."""
    t = {}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    x, y = random_positions(cfg.n_positions, cfg.object_size, cfg.buffer, rng)
    groups = group_positions(x, y, cfg.gridsize, cfg.K, None, rng)
    t["positions_and_grouping"] = time.perf_counter() - t0
    obj = simulate_dataset(cfg).obj
    probe = default_probe(cfg)
    t0 = time.perf_counter()
    patches = physics.object_patches(obj, x, y, cfg.N)
    t["object_patches"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    amp = physics.far_field_amplitude(physics.illuminate(probe, patches))
    t["far_field"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts, _ = physics.poisson_sample(amp, physics.intensity_scale(amp, cfg.nphotons), rng)
    t["poisson"] = time.perf_counter() - t0
    assert groups.shape == (cfg.n_positions, cfg.C)
    return {k: round(v, 4) for k, v in t.items()}, float(counts.sum(axis=(1, 2)).mean())


def main():
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        ds = simulate_dataset(CONFIG)
        times.append(time.perf_counter() - t0)
    stages, mean_counts = stage_times(CONFIG)
    print(json.dumps({
        "benchmark": "simulate_dataset",
        "n_patterns": ds.n_positions, "N": CONFIG.N, "gridsize": CONFIG.gridsize, "n_groups": ds.n_groups,
        "repeats": REPEATS, "median_s": round(float(np.median(times)), 4), "min_s": round(min(times), 4),
        "stages_s": stages, "nphotons": CONFIG.nphotons, "mean_counts_per_pattern": mean_counts,
        "poisson_sd_of_mean": float(np.sqrt(CONFIG.nphotons / CONFIG.n_positions)),
    }))


if __name__ == "__main__":
    main()
