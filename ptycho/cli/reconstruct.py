"""``ptycho reconstruct``: a data file's object from a trained model, refined by default, scored when the
truth is known."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ptycho.argtypes import DefaultsHelpFormatter, nonnegative_int, positive_float, positive_int, stitch_window
from ptycho.cli.common import (CommandError, add_verbose, check_outputs, existing_file, grouped, load_data,
                               start_tensorflow, with_dose, write_reconstruction)
from ptycho.cli.evaluate import metrics_table, print_agreement_warnings
from ptycho.cli.refine import add_holdout, refine_summary
from ptycho.cli.train import K_HELP

#: ``reconstruct --refine``: the network's stitch is refined by default (ledger RECONSTRUCT-REFINE-DEFAULT-001).
REFINE_DEFAULT = 30


def add_parser(commands) -> None:
    """Add the ``reconstruct`` subcommand to ``commands`` (argparse subparsers), handled by :func:`reconstruct`."""
    p = commands.add_parser(
        "reconstruct", help="reconstruct the object of a data file with a trained model",
        description="Predict each group's object with MODEL from DATA's patterns in sqrt(counts) (DATA's "
                    "own dose; a file without 'nphotons' holds sqrt(counts)) and stitch the central windows at "
                    "the group centroids (SPEC §5). Writes --out (NPZ: object (S, S) complex64, origin [x0, y0] and "
                    "extent [left, right, bottom, top] in object pixels, coverage, centroids) and, with --png, "
                    "a figure of amplitude and phase. When DATA has objectGuess, prints the metrics of SPEC §5 "
                    "on the scanned region (as 'ptycho evaluate' does) and, when asked, writes them as JSON "
                    "(--metrics) and a truth-beside-reconstruction figure (--comparison-png). Nothing else is "
                    "written.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("model", help="model archive written by 'ptycho train' (wts.h5.zip)")
    p.add_argument("data", help="PtychoPINN NPZ with the diffraction to reconstruct")
    p.add_argument("--out", required=True, metavar="PATH", help="output NPZ (the stitched complex object)")
    p.add_argument("--png", metavar="PATH", default=None, help="figure of amplitude and phase (default: none)")
    p.add_argument("--metrics", metavar="PATH", default=None,
                   help="write the metrics as JSON (DATA must have objectGuess; default: printed only)")
    p.add_argument("--comparison-png", metavar="PATH", default=None,
                   help="write a figure of the truth beside the reconstruction (DATA must have objectGuess; "
                        "default: none)")
    p.add_argument("--gridsize", type=positive_int, default=None, metavar="G",
                   help="positions per group; must equal the model's (default: the model's)")
    p.add_argument("--n-groups", type=positive_int, default=None, metavar="B",
                   help="groups (default: one per scan position)")
    p.add_argument("--K", type=positive_int, default=None, metavar="K", help=K_HELP)
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the grouping")
    p.add_argument("--stitch-window", type=stitch_window, default="auto", metavar="PX|auto",
                   help="central M x M window of each predicted patch that is stitched (pixels); 'auto' stitches "
                        "the whole predicted N/2 window with a sin² taper: no holes or seams at real scan spacings")
    p.add_argument("--nphotons", type=positive_float, default=None, metavar="PHOTONS",
                   help="DATA's dose (expected counts per pattern) when the file has no 'nphotons' (default: the "
                        "file's, else its diffraction is taken as sqrt(counts))")
    p.add_argument("--refine", type=nonnegative_int, default=REFINE_DEFAULT, metavar="K",
                   help="then refine the stitched object for at most K iterations against DATA's patterns "
                        "(ptycho.refine: the network's reconstruction + physics), stopping where the misfit of "
                        "held-out positions stops falling, and keep it unless the same refinement from ones "
                        "fits the held-out positions better; 0: the network alone")
    p.add_argument("--refine-probe", action="store_true",
                   help="with --refine, refine the probe too (experimental data; not for simulated data whose "
                        "probe is exact)")
    p.add_argument("--refine-loss", choices=("nll", "amplitude"), default="nll",
                   help="refinement misfit: Poisson likelihood of the counts, or least squares on sqrt(counts)")
    add_holdout(p, "--refine-holdout")
    add_verbose(p)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=reconstruct)


def _reconstruct_outputs(args: argparse.Namespace, has_truth: bool, data_path: Path) -> dict[str, Path]:
    """Output role -> path: 'npz' always; 'png', 'metrics', 'comparison' only when asked (the last two need a
    truth: CommandError naming the flag otherwise)."""
    outputs = {"npz": Path(args.out)}
    if args.png:
        outputs["png"] = Path(args.png)
    for role, flag, value in (("metrics", "--metrics", args.metrics),
                              ("comparison", "--comparison-png", args.comparison_png)):
        if value is None:
            continue
        if not has_truth:
            raise CommandError(f"argument {flag}: {data_path} has no objectGuess to compare with")
        outputs[role] = Path(value)
    if len(set(outputs.values())) != len(outputs):
        raise CommandError(f"output paths must differ, got {', '.join(map(str, outputs.values()))}")
    return outputs


def _load_archive(path: Path):
    """(diffraction_to_obj, N, gridsize, learnt probe) from a model archive; CommandError naming the file
    otherwise. The learnt probe is (N, N) complex64 when the model was trained with ``--probe-trainable``, else
    None (the data's probe is the model's)."""
    from ptycho.inputs import model_geometry
    from ptycho.model_state import get_probe
    from ptycho.persistence import load_model

    try:
        autoencoder, diffraction_to_obj, _ = load_model(path)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    try:
        N, gridsize = model_geometry(diffraction_to_obj)
    except ValueError as exc:  # its input is not (B, N, N, gridsize²)
        raise CommandError(f"{path}: {exc}") from None
    learnt = get_probe(autoencoder) if autoencoder.get_layer("probe").trainable else None
    return diffraction_to_obj, N, gridsize, learnt


def reconstruct(args: argparse.Namespace) -> int:
    """``ptycho reconstruct``: validate inputs and outputs, infer and stitch, evaluate when the truth is known."""
    model_path = existing_file(args.model, "model")
    data_path = existing_file(args.data, "data")
    dataset = with_dose(load_data(data_path, args.nphotons), data_path)
    outputs = _reconstruct_outputs(args, dataset.obj is not None, data_path)
    flags = {outputs["npz"]: "--out", outputs.get("png"): "--png", outputs.get("metrics"): "--metrics",
             outputs.get("comparison"): "--comparison-png"}
    check_outputs(list(outputs.values()), args.force, flags)
    if args.stitch_window != "auto" and args.stitch_window > dataset.N:
        raise CommandError(f"argument --stitch-window: {args.stitch_window} exceeds the pattern size N = {dataset.N}")
    start_tensorflow(args.verbose)
    diffraction_to_obj, N, gridsize, learnt_probe = _load_archive(model_path)  # TensorFlow from here on
    if dataset.N != N:
        raise CommandError(f"{data_path}: patterns are {dataset.N}x{dataset.N}, but the model archive "
                           f"{model_path} was built for N = {N}")
    if args.gridsize is not None and args.gridsize != gridsize:
        raise CommandError(f"argument --gridsize: {args.gridsize}, but the model archive {model_path} was "
                           f"built for gridsize {gridsize}")
    dataset = grouped(dataset, data_path, gridsize, args.n_groups, args.seed,
                      f"model archive {model_path} (gridsize {gridsize})", args.K)

    from ptycho import workflow

    rec, scored = workflow.reconstruct_and_evaluate(diffraction_to_obj, dataset, dataset.obj, M=args.stitch_window,
                                                    intensity_scale=dataset.intensity_scale)  # sqrt(counts) in
    if args.refine:
        if learnt_probe is not None:
            print(f"refining with the probe learnt in training (stored in {model_path}), not {data_path}'s")
            dataset = dataclasses.replace(dataset, probe=learnt_probe)
        rec, scored = _refined(rec, dataset, args)
    write_reconstruction(outputs, rec, scored, title=f"{data_path.name} reconstructed by {model_path}")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    if scored is not None:
        print_agreement_warnings(scored.metrics, f"{data_path} against its objectGuess")
        print(metrics_table(scored.metrics))
    return 0


def _refined(rec, dataset, args: argparse.Namespace):
    """``rec`` refined for ``args.refine`` iterations (``ptycho.refine``), or the refinement from ones where that
    fits the data better (``refine_from_best_start``), evaluated when the truth is known."""
    from ptycho.refine import RefineConfig, refine_from_best_start
    from ptycho.scan_region import evaluate_on_scan

    config = RefineConfig(iterations=args.refine, loss=args.refine_loss, refine_probe=args.refine_probe,
                          holdout=args.refine_holdout, seed=args.seed)
    result, start = refine_from_best_start(dataset, config, rec, verbose=True)
    print(refine_summary(result))
    print("kept the refinement started from " + ("the network's stitch" if start == "network" else
          "ones (it fit the data better than the one started from the network's stitch)"))
    rec = result.reconstruction
    return rec, (None if dataset.obj is None else evaluate_on_scan(rec, dataset.obj))
