"""pty-chi's LSQML beside ``ptycho.refine`` on the dose study's test scans (optional cross-check; one JSON line).

    python benchmarks/bench_ptychi.py [--iterations K] [--epochs E] [--batch-size B]

What it measures: the dose study's quick-preset test scans, seed 0 (512 random positions, N=64, the lines
object and defocused probe, exactly as ``ptycho.studies.dose`` simulates them, at 1e9 and 1e4 photons) are
reconstructed, with the probe known and the positions fixed, from an object of ones by

- pty-chi's LSQML: Poisson noise model, E epochs (default 30), random batches of B positions (default 32,
  as ``ptycho.refine``; pty-chi's own default of 100 reaches 0.766 instead of 0.744 SSIM at 1e4), on the CPU;
  the probe rescaling of the first epoch and the object/probe ambiguity removal are off;
- ``ptycho.refine.refine`` with ``RefineConfig(iterations=K, loss='nll')`` (K default 30; held-out early
  stopping on, as by default);
- with ``--study-dir DIR`` (a quick-preset, seed-0 study whose ``high_nll`` / ``low_nll`` arms are complete,
  e.g. ``--arms high_nll_refined low_nll_refined``): PINN + refinement — the arm's network (``wts.h5.zip``)
  reconstructs the test scan (inference and stitch, as the study does) and ``ptycho.refine`` starts from that
  stitch for ``--pinn-iterations`` (default 10: a warm start needs a fraction of the passes from ones);
  its CPU and wall seconds count both (not the model's loading, nor its training, done once per
  experiment), and ``pinn_cpu_ratio`` = LSQML / (inference + refinement).

Each gets its amplitude SSIM on the scanned region (``ptycho.scan_region.evaluate_on_scan`` with the scan
positions as centroids; ``*_ssim_study_region`` uses the group centroids, as the study's metrics.json does),
its CPU seconds (``time.process_time``, all threads) and wall seconds, and ``cpu_ratio`` = LSQML / refine.

Threads: torch keeps its default (the cores), but ``OMP_WAIT_POLICY=PASSIVE`` is set (unless given) before
torch loads: on a 2-core machine shared with other jobs, torch's spinning OpenMP threads made some LSQML epochs
20x slower (0.4 s -> 8 s, CPU and wall alike; 20 to 150 CPU-s for the same 30 epochs at 1e4); passive waiting
(or one torch thread) gives 18-23 CPU-s run after run.

Conventions mapped onto pty-chi: its FFT is unnormalised where ours is 'ortho', so its probe is s·P/N (s the
test set's intensity scale: its predicted counts are then the data's (s·X)²); it centres an N-pixel patch at
(N-1)/2 where we use N//2, so object-buffer pixel (r, c) is object position (x0 + c, y0 + r) when the
position origin is (-y0 - 0.5, -x0 - 0.5). It shifts the probe by the subpixel part of each position where
we sample the object bilinearly, a small model mismatch (about 1 % rms in intensity at fractional positions).

pty-chi is never a dependency of the package. To install it beside the CPU TensorFlow without pulling a CUDA
torch: ``pip install torch`` (a CPU wheel), then ``pip install --no-deps ptychi`` and its imported
dependencies ``pip install "pydantic>=2,<3" pandas scikit-learn tqdm`` (plus h5py, matplotlib, scikit-image,
scipy, which the package's own install already has). ``torchvision``, which pty-chi imports only for the
Gaussian blur of a random initial guess (unused here), does not import beside a CPU torch from PyPI; when it
does not, a stub ``torchvision.transforms`` module is put in ``sys.modules`` before pty-chi is imported.
Without pty-chi the benchmark prints ``{"skipped": ...}`` and exits 0.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import types

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime (docstring)
DOSES = {"1e9": "high_iterative", "1e4": "low_iterative"}  # the study's refine arms: its test scans per dose
NETWORK_ARMS = {"1e9": "high_nll", "1e4": "low_nll"}


def import_ptychi():
    """pty-chi's API modules, or the ImportError when it (or a dependency) is missing (torchvision stubbed if
    it cannot import)."""
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # missing, or PyPI's wheel beside a CPU torch ("operator torchvision::nms does not exist")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = types.ModuleType("torchvision.transforms")
        stub.GaussianBlur = None  # only used for a random initial object
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision"].transforms = stub
        sys.modules["torchvision.transforms"] = stub
    try:
        import ptychi.api as api
        from ptychi.api.task import PtychographyTask
    except ImportError as exc:
        return exc
    return api, PtychographyTask


def run_lsqml(ptychi, ds, epochs: int, batch_size: int):
    """LSQML on ``ds`` from ones; returns (object (S, S) complex64, (x0, y0), cpu s, wall s)."""
    from ptycho.refine import canvas_geometry

    api, PtychographyTask = ptychi
    N, s = ds.N, float(ds.intensity_scale)
    x0, y0, side = canvas_geometry(ds.xcoords, ds.ycoords, N)
    counts = (s * np.asarray(ds.diffraction, np.float64)) ** 2
    o = api.LSQMLOptions()
    o.data_options.fft_shift = True  # zero frequency at N//2 -> corner
    o.object_options.pixel_size_m = 1.0
    o.object_options.determine_position_origin_coords_by = api.enums.ObjectPosOriginCoordsMethods.SPECIFIED
    o.object_options.position_origin_coords = np.array([-y0 - 0.5, -x0 - 0.5])
    o.object_options.remove_object_probe_ambiguity.enabled = False
    o.probe_options.optimizable = False
    o.probe_position_options.optimizable = False
    r = o.reconstructor_options
    r.num_epochs, r.batch_size, r.random_seed = epochs, batch_size, 0
    r.default_device = api.enums.Devices.CPU
    r.noise_model = api.enums.NoiseModels.POISSON
    r.rescale_probe_intensity_in_first_epoch = False
    cpu, wall = time.process_time(), time.perf_counter()
    with PtychographyTask(o, diffraction_data=counts.astype(np.float32),
                          object_data=np.ones((1, side, side), np.complex64),
                          probe_data=(s * np.asarray(ds.probe) / N).astype(np.complex64)[None, None],
                          probe_position_x_px=np.asarray(ds.xcoords, np.float32),
                          probe_position_y_px=np.asarray(ds.ycoords, np.float32)) as task:
        task.run()
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return obj.astype(np.complex64), (x0, y0), cpu, wall


def run_pinn_refined(study, arm: str, ds, iterations: int) -> dict:
    """The stored network of ``arm`` reconstructs ``ds`` (its test scan, grouped as the study groups it), then
    ``ptycho.refine`` refines that stitch: {'network', 'refined', CPU and wall seconds of both together}."""
    from ptycho import inference
    from ptycho.persistence import load_model
    from ptycho.refine import RefineConfig, refine
    from ptycho.studies.dose.arm import arm_dir, is_complete

    if not is_complete(study, arm):
        raise SystemExit(f"--study-dir {study.output_dir}: arm {arm} is not complete for the quick preset, seed 0")
    _, diffraction_to_obj, _ = load_model(str(arm_dir(study, arm) / "wts.h5.zip"))
    cpu, wall = time.process_time(), time.perf_counter()
    network = inference.reconstruct(diffraction_to_obj, ds, M=study.stitch_M)
    inference_cpu = time.process_time() - cpu
    refined = refine(ds, RefineConfig(iterations=iterations, loss="nll", seed=study.seed), initial=network)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"network": network, "refined": refined.reconstruction, "pinn_inference_cpu_s": round(inference_cpu, 1),
            "pinn_refined_cpu_s": round(cpu, 1), "pinn_refined_wall_s": round(wall, 1),
            "pinn_iterations": iterations, "pinn_best_iteration": refined.best_iteration}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="ptycho.refine iterations (K)")
    parser.add_argument("--epochs", type=int, default=30, help="LSQML epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="LSQML positions per batch")
    parser.add_argument("--study-dir", default=None,
                        help="quick-preset seed-0 study output with complete high_nll / low_nll arms: also time "
                             "PINN + refinement from each arm's network")
    parser.add_argument("--pinn-iterations", type=int, default=10,
                        help="ptycho.refine iterations from the network's reconstruction (with --study-dir)")
    args = parser.parse_args()
    result = {"benchmark": "ptychi", "iterations": args.iterations, "epochs": args.epochs,
              "lsqml_batch_size": args.batch_size}
    ptychi = import_ptychi()
    if isinstance(ptychi, ImportError):
        return {"skipped": "ptychi not installed", "error": str(ptychi), **result}

    import torch

    from ptycho import simulate
    from ptycho.reconstruction import Reconstruction
    from ptycho.refine import RefineConfig, refine
    from ptycho.scan_region import evaluate_on_scan
    from ptycho.studies.dose.arm import evaluate_on_test_scan, make_ground_truth
    from ptycho.studies.dose.config import StudyConfig

    import ptychi as ptychi_pkg

    study = StudyConfig(output_dir=args.study_dir or "unused", preset="quick", seed=0, arms=tuple(DOSES.values()))
    truth = make_ground_truth(study)
    result.update(ptychi_version=ptychi_pkg.__version__, torch_version=torch.__version__,
                  torch_threads=torch.get_num_threads(),
                  omp_wait_policy=os.environ["OMP_WAIT_POLICY"], n_test=study.n_test)

    def ssims(rec, ds):
        return (round(float(evaluate_on_scan(rec, truth).metrics["amplitude_ssim"]), 4),
                round(float(evaluate_on_test_scan(rec, ds, truth).metrics["amplitude_ssim"]), 4))

    for dose, arm in DOSES.items():
        ds = dataclasses.replace(simulate.simulate_dataset(study.simulation_config(arm, "test"), obj=truth),
                                 obj=None)
        cpu, wall = time.process_time(), time.perf_counter()
        ours = refine(ds, RefineConfig(iterations=args.iterations, loss="nll", seed=study.seed)).reconstruction
        ours_cpu, ours_wall = time.process_time() - cpu, time.perf_counter() - wall
        obj, (x0, y0), lsqml_cpu, lsqml_wall = run_lsqml(ptychi, ds, args.epochs, args.batch_size)
        theirs = Reconstruction(obj=obj, x0=float(x0), y0=float(y0), coverage=ours.coverage,  # same canvas
                                centroids=np.stack([ds.xcoords, ds.ycoords], axis=1).astype(np.float64))
        (l_ssim, l_study), (r_ssim, r_study) = ssims(theirs, ds), ssims(ours, ds)
        result[dose] = {
            "lsqml_ssim": l_ssim, "lsqml_ssim_study_region": l_study, "lsqml_epochs": args.epochs,
            "lsqml_cpu_s": round(lsqml_cpu, 1), "lsqml_wall_s": round(lsqml_wall, 1),
            "refine_ssim": r_ssim, "refine_ssim_study_region": r_study, "refine_iterations": args.iterations,
            "refine_cpu_s": round(ours_cpu, 1), "refine_wall_s": round(ours_wall, 1),
            "cpu_ratio": round(lsqml_cpu / ours_cpu, 2),
        }
        if args.study_dir is not None:
            pinn = run_pinn_refined(study, NETWORK_ARMS[dose], ds, args.pinn_iterations)
            network_ssim, pinn_ssim = ssims(pinn.pop("network"), ds), ssims(pinn.pop("refined"), ds)
            result[dose].update(network_ssim_study_region=network_ssim[1], pinn_refined_ssim=pinn_ssim[0],
                                pinn_refined_ssim_study_region=pinn_ssim[1], **pinn,
                                pinn_cpu_ratio=round(lsqml_cpu / pinn["pinn_refined_cpu_s"], 2))
        print(f"bench_ptychi: {dose}: {result[dose]}", file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
