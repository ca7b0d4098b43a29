"""``ptycho refine``: iterative reconstruction without a network (``ptycho.refine``), from ones or from a
reconstruction; also the refinement flags and summary line that ``reconstruct --refine`` shares."""
from __future__ import annotations

import argparse
from pathlib import Path

from ptycho.argtypes import DefaultsHelpFormatter, holdout_fraction, nonnegative_int, positive_float, positive_int
from ptycho.cli.common import (CommandError, add_verbose, check_outputs, existing_file, load_data, start_tensorflow,
                               with_dose, write_reconstruction)
from ptycho.cli.evaluate import metrics_table


def add_parser(commands) -> None:
    """Add the ``refine`` subcommand to ``commands`` (argparse subparsers), handled by :func:`refine_command`."""
    from ptycho.refine import RefineConfig

    d = RefineConfig()
    p = commands.add_parser(
        "refine", help="iterative reconstruction without a network (from ones or from a reconstruction)",
        description="Fit one object (and with --refine-probe the probe) to all of DATA's patterns through the "
                    "forward model (ptycho.refine: a preconditioned PIE-family solver with a Poisson or amplitude "
                    "misfit), started from ones or from --init (a reconstruction written by 'ptycho reconstruct'). "
                    "Writes --out in the format of 'ptycho reconstruct'; with --png a figure; when DATA has "
                    "objectGuess, prints the metrics of SPEC §5 (and writes them with --metrics).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("data", help="PtychoPINN NPZ (e.g. written by 'ptycho import')")
    p.add_argument("--out", required=True, metavar="PATH", help="output NPZ (the refined complex object)")
    p.add_argument("--init", metavar="NPZ", default=None, help="start from this reconstruction (default: ones)")
    p.add_argument("--iterations", type=positive_int, default=d.iterations, metavar="K",
                   help="passes over all scan positions")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="B", help="positions per update")
    p.add_argument("--loss", choices=("nll", "amplitude"), default="nll",
                   help="Poisson likelihood of the counts, or least squares on sqrt(counts)")
    p.add_argument("--refine-probe", action="store_true", help="refine the probe too (experimental data)")
    add_holdout(p, "--holdout")
    p.add_argument("--nphotons", type=positive_float, default=None, metavar="PHOTONS",
                   help="DATA's dose when the file has no 'nphotons' (default: its diffraction is sqrt(counts))")
    p.add_argument("--png", metavar="PATH", default=None, help="figure of amplitude and phase (default: none)")
    p.add_argument("--metrics", metavar="PATH", default=None, help="metrics JSON, when DATA has objectGuess")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the batch order")
    add_verbose(p)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=refine_command)


def add_holdout(p: argparse.ArgumentParser, flag: str) -> None:
    """Add the held-out fraction ``flag`` (a float in [0, 0.5), RefineConfig.holdout by default) to ``p``:
    ``--holdout`` here, ``--refine-holdout`` in ``ptycho reconstruct``."""
    from ptycho.refine import RefineConfig

    p.add_argument(flag, type=holdout_fraction, default=RefineConfig.holdout, metavar="F",
                   help="fraction of the scan positions left out of the fit; the iteration with their lowest "
                        "misfit is kept (stops fitting noise at low dose; ledger REFINE-HOLDOUT-001); 0: fit every "
                        "position for every iteration")


def refine_summary(result) -> str:
    """One line: iterations run and kept, the misfit, the seconds (``ptycho.refine.RefineResult``)."""
    run, kept = len(result.loss), result.best_iteration
    line = f"refined in {result.seconds:.1f} s: {run} iteration{'s' * (run != 1)}, misfit {result.loss[0]:.4g} -> "
    line += f"{result.loss[-1]:.4g}"
    if result.holdout_loss:
        line += (f"; kept iteration {kept} of {run} (held-out misfit {result.holdout_loss[0]:.4g} at the start, "
                 f"{min(result.holdout_loss):.4g} at best)")
        if kept == 0:
            line += ": no iteration improved on the start"
    return line


def refine_command(args: argparse.Namespace) -> int:
    """``ptycho refine``: iterative reconstruction of DATA from ones or from --init."""
    from ptycho.reconstruction import load_reconstruction

    data_path = existing_file(args.data, "data")
    dataset = with_dose(load_data(data_path, args.nphotons), data_path)
    initial = None
    if args.init is not None:
        init_path = existing_file(args.init, "--init")
        try:
            initial = load_reconstruction(init_path)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    outputs = {"npz": Path(args.out)}
    if args.png:
        outputs["png"] = Path(args.png)
    if args.metrics:
        if dataset.obj is None:
            raise CommandError(f"argument --metrics: {data_path} has no objectGuess to compare with")
        outputs["metrics"] = Path(args.metrics)
    if len(set(outputs.values())) != len(outputs):
        raise CommandError(f"output paths must differ, got {', '.join(map(str, outputs.values()))}")
    check_outputs(list(outputs.values()), args.force,
                  {outputs["npz"]: "--out", outputs.get("png"): "--png", outputs.get("metrics"): "--metrics"})

    start_tensorflow(args.verbose)
    from ptycho.refine import RefineConfig, refine
    from ptycho.scan_region import evaluate_on_scan

    config = RefineConfig(iterations=args.iterations, batch_size=args.batch_size, loss=args.loss,
                          refine_probe=args.refine_probe, holdout=args.holdout, seed=args.seed)
    result = refine(dataset, config, initial=initial, verbose=True)
    print(refine_summary(result))
    scored = None if dataset.obj is None else evaluate_on_scan(result.reconstruction, dataset.obj)
    write_reconstruction(outputs, result.reconstruction, scored,
                         title=f"{data_path.name}, {args.iterations} iterations")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    if scored is not None:
        print(metrics_table(scored.metrics))
    return 0
