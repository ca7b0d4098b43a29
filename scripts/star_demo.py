"""A real experimental scan end to end: tike's Siemens star, imported, trained on, reconstructed, compared.

    python scripts/star_demo.py SRC [--epochs 3] [--refine 30] [--probe-trainable] [--figure FIGURE]

SRC is tike's ``tests/data/siemens-star-small.npz.bz2`` (516 positions, N = 128; BSD-3, UChicago Argonne) or
the 80-position subset in tests/fixtures. Steps, each on the package's own path:

1. ``ptycho.formats.read(SRC, 'tike')`` (the conventions of ``ptycho import``);
2. train the default network on the file for ``--epochs`` (gridsize 2, batch 16; no ground truth exists); with
   ``--probe-trainable`` the probe trains with it (as ``ptycho train --probe-trainable``) and steps 3-4 use the
   learnt probe;
3. reconstruct with the tapered stitch (``M='auto'``);
4. refine that reconstruction, object and probe, for ``--refine`` iterations (PINN + refinement);
5. refine from ones with the same settings (the package's iterative baseline);
6. compare 3 and 4 with 5 on the region both cover: FRC (half-bit threshold and 0.5) and SSIM of amplitude
   and phase, after registration and removal of the global phase (``ptycho.evaluation.evaluate``), and again
   with a linear phase ramp removed too (``remove_phase_plane=True``: with a fixed probe a ramp in the object
   shifts the far field, and probe and object can trade ramps when both are refined, so a ramp is the
   data's known ambiguity, not a feature of the star).

Prints one JSON line; writes a 3 × 2 figure (network, PINN + refinement, iterative; amplitude and phase, each
phase shown with its own linear ramp removed, ``flatten_phase``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def on_grid(rec, like):
    """``rec``'s object and coverage resampled (bilinear; nearest for the coverage) on ``like``'s pixel grid:
    ``like``'s pixel (i, j) is object position (like.x0 + j, like.y0 + i) (``Reconstruction``)."""
    from scipy import ndimage

    rows, cols = np.indices(like.obj.shape, dtype=np.float64)
    at = np.stack([rows + like.y0 - rec.y0, cols + like.x0 - rec.x0])
    obj = (ndimage.map_coordinates(rec.obj.real, at, order=1, cval=0.0)
           + 1j * ndimage.map_coordinates(rec.obj.imag, at, order=1, cval=0.0))
    cover = ndimage.map_coordinates(rec.coverage.astype(np.float64), at, order=0, cval=0.0) > 0.5
    return obj, cover


def common_crop(a, b):
    """The two reconstructions on ``b``'s grid, cropped to the box both cover (8 px in from its edges)."""
    a_obj, a_cover = on_grid(a, b)
    both = a_cover & b.coverage
    rows = np.flatnonzero(both.any(axis=1))
    cols = np.flatnonzero(both.any(axis=0))
    box = slice(rows[0] + 8, rows[-1] - 7), slice(cols[0] + 8, cols[-1] - 7)
    return a_obj[box], b.obj[box]


def flatten_phase(obj: np.ndarray) -> np.ndarray:
    """``obj`` (H, W) complex with its own linear phase ramp removed (``evaluation.registration.phase_plane``
    against its amplitude: the amplitude-weighted mean phase gradient along each axis)."""
    from ptycho.evaluation.registration import phase_plane

    gy, gx = phase_plane(obj, np.abs(obj))
    rows, cols = np.indices(obj.shape)
    return obj * np.exp(1j * (gy * rows + gx * cols))


def figure(panels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ptycho.figures import display_phase

    fig = Figure(figsize=(12, 7.6), layout="constrained")
    axes = fig.subplots(2, len(panels))
    for column, (title, rec) in enumerate(panels):
        cover = rec.coverage
        amp = np.ma.masked_where(~cover, np.abs(rec.obj))
        phase = np.ma.masked_where(~cover, display_phase(flatten_phase(rec.obj), cover))
        lo, hi = np.percentile(np.abs(rec.obj)[cover], [1, 99])
        image = axes[0, column].imshow(amp, cmap="gray", vmin=lo, vmax=hi)
        fig.colorbar(image, ax=axes[0, column], shrink=0.8, label="|O|")
        image = axes[1, column].imshow(phase, cmap="twilight_shifted", vmin=-np.pi, vmax=np.pi)
        fig.colorbar(image, ax=axes[1, column], shrink=0.8, label="phase (rad), linear ramp removed")
        axes[0, column].set_title(f"{title}: amplitude")
        axes[1, column].set_title(f"{title}: phase")
        for ax in axes[:, column]:
            ax.set_axis_off()
    fig.suptitle("tike's Siemens star (real data, 516 positions, N = 128)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="tike's siemens-star-small.npz.bz2 (or the fixture subset)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--refine", type=int, default=30)
    parser.add_argument("--probe-trainable", action="store_true", help="train the probe with the network")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "images" / "siemens_star.png"))
    args = parser.parse_args(argv)

    from ptycho import workflow
    from ptycho.config import TrainingConfig
    from ptycho.evaluation import evaluate
    from ptycho.formats import convert
    from ptycho.grouping import group_positions
    from ptycho.inference import reconstruct
    from ptycho.model_state import get_probe
    from ptycho.refine import RefineConfig, refine

    conversion = convert(args.src, "tike")
    data = conversion.dataset
    groups = group_positions(data.xcoords, data.ycoords, 2, rng=np.random.default_rng(0))
    grouped = replace(data, group_indices=groups)
    start = time.perf_counter()
    trained = workflow.train_model(grouped, TrainingConfig(nepochs=args.epochs, verbose=0), source=str(args.src),
                                   model_options={"probe_trainable": args.probe_trainable})
    train_s = time.perf_counter() - start
    learnt = get_probe(trained.autoencoder)
    probe_change = float(np.linalg.norm(learnt - data.probe) / np.linalg.norm(data.probe))
    network = reconstruct(trained.diffraction_to_obj, grouped, M="auto", intensity_scale=data.intensity_scale)
    config = RefineConfig(iterations=args.refine, refine_probe=True, probe_start=3, loss="nll")
    pinn = refine(replace(data, probe=learnt), config, initial=network)
    iterative = refine(data, config)
    agreement = {}
    for label, rec in (("pinn", pinn.reconstruction), ("network", network)):
        a, b = common_crop(rec, iterative.reconstruction)
        agreement[label] = evaluate(a, b)
        agreement[label + "_ramp_removed"] = evaluate(a, b, remove_phase_plane=True)
    figure([("network", network), (f"network + {args.refine} refinement iterations", pinn.reconstruction),
            (f"iterative from ones, {args.refine} iterations", iterative.reconstruction)], Path(args.figure))
    keys = ("amplitude_ssim", "phase_ssim", "amplitude_frc50", "phase_frc50")
    print(json.dumps({
        "src": str(args.src), "positions": data.n_positions, "N": data.N, "epochs": trained.history["epochs_run"],
        "train_seconds": round(train_s, 1), "history_warnings": trained.history.get("warnings", []),
        "loss_first_last": [trained.history["loss"][0], trained.history["loss"][-1]],
        "probe_trainable": args.probe_trainable, "probe_change": round(probe_change, 4),
        "refine_iterations": args.refine, "pinn_refine_seconds": round(pinn.seconds, 1),
        "iterative_seconds": round(iterative.seconds, 1),
        "misfit_pinn_first_last": [pinn.loss[0], pinn.loss[-1]],
        "misfit_iterative_first_last": [iterative.loss[0], iterative.loss[-1]],
        **{f"{label}_vs_iterative": {k: metrics.get(k) for k in keys} for label, metrics in agreement.items()},
        "figure": args.figure}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
