"""The dose-response study's command line (SPEC §6); ``scripts/studies/dose_response_study.py`` calls ``main``.

``--preset sweep``, ``--doses`` or ``--seeds`` run the dose sweep instead (issue 21 item 3, ``sweep.run_sweep``):
every ``--methods`` at every dose for every seed, on the study's arms. Every argument is validated before any
work and before TensorFlow is imported (exit status 2, one line naming the option). Exit status 0 if every
requested arm succeeded, 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ptycho import files
from ptycho.argtypes import OneLineParser, nonnegative_int, positive_int
from ptycho.runlog import run_logging
from ptycho.studies.dose.arm import ARM_FILES, make_ground_truth, run_arm
from ptycho.studies.dose.config import (ALL_ARM_NAMES, ARM_NAMES, ARMS, DEFAULT_OUTPUT_DIR, DEFAULT_PRESET,
                                        DEFAULT_REFINE_ITERATIONS, PRESETS, REFINE_ARMS, REFINE_LOSS, SWEEP_METHODS,
                                        StudyConfig, dose_label)
from ptycho.studies.dose.sweep_config import (DEFAULT_SWEEP_OUTPUT_DIR, SWEEP_DOSES, SWEEP_PRESET, SWEEP_SEEDS,
                                              SweepConfig)
from ptycho.studies.dose.study import LOGGER_NAME, ArmRunner, run_study

LOG_FILE = "run.log"


def dose_list(text: str) -> tuple[float, ...]:
    """An argparse ``type``: comma-separated photons per pattern (``1e3,1e4,1e9``), each finite and > 0, none
    twice; returned in ascending order."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"must name at least one dose, e.g. 1e3,1e4,1e9; got {text!r}")
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a number of photons (comma-separated, e.g. 1e3,1e4,1e9)") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"a dose must be a finite number of photons > 0, got {item!r}")
        if value in values:
            raise argparse.ArgumentTypeError(f"the dose {item!r} is given twice")
        values.append(value)
    return tuple(sorted(values))


def seed_list(text: str) -> tuple[int, ...]:
    """An argparse ``type``: comma-separated non-negative integer seeds (``0,1,2``), none twice."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"must name at least one seed, e.g. 0,1,2; got {text!r}")
    values = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"a seed must be a non-negative integer, got {item!r}")
        if value in values:
            raise argparse.ArgumentTypeError(f"the seed {item!r} is given twice")
        values.append(value)
    return tuple(sorted(values))


def build_parser() -> argparse.ArgumentParser:
    """The CLI of SPEC §6."""
    presets = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                        for name, values in PRESETS.items())
    arms = ", ".join(f"{a} ({p:.0e} photons, {l})" for a, (p, l) in ARMS.items())
    refine_arms = ", ".join(f"{a} ({p:.0e} photons, " + ("from ones" if s is None else f"from {s}'s reconstruction")
                            + ")" for a, (p, s) in REFINE_ARMS.items())
    parser = OneLineParser(
        prog="dose_response_study.py",
        description=(
            "Dose-response study: train a PINN with Poisson-NLL and with MAE loss at high (1e9) and low "
            "(1e4) photon dose on one simulated lines object (N=64, gridsize 2, 128x128 object, random "
            f"positions 15 px from the edge) and compare the reconstructions. Network arms (the default): "
            f"{arms}. Opt-in arms without training of their own, which reconstruct the arm's test scan with "
            f"ptycho.refine (loss {REFINE_LOSS}, --refine-iterations passes; the solver never sees the truth): "
            f"{refine_arms}; a refined arm runs its network arm first if that is not complete."),
        epilog=(
            f"Presets: {presets}. Explicit flags override the preset. Outputs (all under --output-dir): "
            f"<arm>/{{{','.join(ARM_FILES)}}} (refine arms: reconstruction.npz, metrics.json), metrics.json, "
            "dose_comparison.png, reconstructions.png, methods_comparison.png, "
            f"{LOG_FILE}. The dose sweep (--preset {SWEEP_PRESET}, --doses or --seeds): every --methods at every "
            f"dose for every seed, each (dose, method, seed) an arm <seed dir>/<dose>_<method> reused when complete "
            f"(defaults: doses {','.join(dose_label(d) for d in SWEEP_DOSES)}, seeds "
            f"{','.join(map(str, SWEEP_SEEDS))}, methods {','.join(SWEEP_METHODS)}, the {SWEEP_PRESET} preset's "
            f"budget, --output-dir {DEFAULT_SWEEP_OUTPUT_DIR}); outputs seed<S>/<dose>_<method>/..., sweep.json, "
            f"sweep.png, {LOG_FILE}. Exit status: 0 if every requested arm succeeded, 1 if any failed (the "
            "others still run), 2 for invalid arguments."),
    )
    parser.add_argument("--output-dir", metavar="DIR",
                        help=f"directory for every output, created if needed; nothing is written "
                             f"elsewhere (default: {DEFAULT_OUTPUT_DIR}; the sweep: {DEFAULT_SWEEP_OUTPUT_DIR})")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help=f"bundle of n_train, n_test, nepochs, batch_size; '{SWEEP_PRESET}' runs the dose sweep "
                             f"(default: {DEFAULT_PRESET}; the sweep: {SWEEP_PRESET})")
    parser.add_argument("--nepochs", type=positive_int, metavar="N",
                        help="training epochs per arm (default: preset)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B", help="training batch size (default: preset)")
    parser.add_argument("--n-train", type=positive_int, metavar="N",
                        help="training scan positions = groups per arm, >= 20 so the 5%% validation split "
                             "is not empty (default: preset)")
    parser.add_argument("--n-test", type=positive_int, metavar="N",
                        help="test scan positions = groups (unseen positions on the same object), >= 4 "
                             "(default: preset)")
    parser.add_argument("--seed", type=nonnegative_int,
                        help="study seed: object, positions and noise streams derive from it (default: 0; "
                             "the sweep takes --seeds)")
    parser.add_argument("--arms", nargs="+", metavar="ARM",
                        help=f"arms to run, space- or comma-separated, from {', '.join(ALL_ARM_NAMES)}, or "
                             f"'all' for every one (default: the network arms {' '.join(ARM_NAMES)}; the sweep "
                             f"takes --methods)")
    parser.add_argument("--doses", type=dose_list, metavar="D1,D2,...",
                        help="run the dose sweep at these photons per pattern, comma-separated (default for the "
                             f"sweep: {','.join(dose_label(d) for d in SWEEP_DOSES)})")
    parser.add_argument("--seeds", type=seed_list, metavar="S1,S2,...",
                        help="run the dose sweep for these study seeds, comma-separated (default for the sweep: "
                             f"{','.join(map(str, SWEEP_SEEDS))})")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help=f"the sweep's methods at each dose, space- or comma-separated, from "
                             f"{', '.join(SWEEP_METHODS)}, or 'all' (default: all; nll_refined brings nll)")
    parser.add_argument("--force", action="store_true",
                        help="retrain requested arms even if their outputs are complete (default: skip them)")
    parser.add_argument("--refine-iterations", type=positive_int, default=DEFAULT_REFINE_ITERATIONS, metavar="K",
                        help="passes of ptycho.refine over the test scan in the iterative and refined arms "
                             f"(default: {DEFAULT_REFINE_ITERATIONS})")
    parser.add_argument("--keras-verbose", type=int, choices=(0, 1, 2), default=0,
                        help="Keras progress output during training: 0 none (the study logs each epoch), "
                             "1 progress bar, 2 one line per epoch (default: 0)")
    parser.add_argument("--test-ssim", action=argparse.BooleanOptionalAction, default=True,
                        help="reconstruct the test set after every epoch and record its amplitude SSIM in "
                             "<arm>/history.json and training.png (monitoring only, a few seconds per "
                             "epoch; default: on)")
    return parser


def is_sweep(args: argparse.Namespace) -> bool:
    """The arguments ask for the dose sweep: ``--preset sweep``, ``--doses`` or ``--seeds``."""
    return args.preset == SWEEP_PRESET or args.doses is not None or args.seeds is not None


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A StudyConfig from parsed arguments (ValueError naming the option if invalid)."""
    if args.methods is not None:
        raise ValueError(f"argument --methods: only for the dose sweep (--preset {SWEEP_PRESET}, --doses or "
                         f"--seeds); the study takes --arms")
    return StudyConfig(output_dir=Path(args.output_dir or DEFAULT_OUTPUT_DIR), preset=args.preset or DEFAULT_PRESET,
                       nepochs=args.nepochs, batch_size=args.batch_size, n_train=args.n_train, n_test=args.n_test,
                       seed=0 if args.seed is None else args.seed,
                       arms=tuple(args.arms) if args.arms is not None else ARM_NAMES, force=args.force,
                       keras_verbose=args.keras_verbose, test_ssim=args.test_ssim,
                       refine_iterations=args.refine_iterations)


def sweep_config_from_args(args: argparse.Namespace) -> SweepConfig:
    """A SweepConfig from parsed arguments (ValueError naming the option if invalid)."""
    if args.arms is not None:
        raise ValueError("argument --arms: the dose sweep runs --methods at every dose; drop --arms")
    if args.seed is not None:
        raise ValueError("argument --seed: the dose sweep takes --seeds (comma-separated)")
    study = {"preset": args.preset or SWEEP_PRESET, "keras_verbose": args.keras_verbose, "test_ssim": args.test_ssim,
             "refine_iterations": args.refine_iterations}
    study.update({name: getattr(args, name) for name in ("nepochs", "batch_size", "n_train", "n_test")
                  if getattr(args, name) is not None})
    return SweepConfig(output_dir=Path(args.output_dir or DEFAULT_SWEEP_OUTPUT_DIR),
                       doses=args.doses if args.doses is not None else SWEEP_DOSES,
                       seeds=args.seeds if args.seeds is not None else SWEEP_SEEDS,
                       methods=tuple(args.methods) if args.methods is not None else SWEEP_METHODS,
                       force=args.force, study=study)


def prepare_output_dir(path: Path) -> None:
    """Create ``path`` (with parents) and check it is a writable directory; ValueError otherwise."""
    files.ensure_directory(path, "--output-dir")


def main(argv: Optional[list[str]] = None, *, run_arm: ArmRunner = run_arm,
         make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth) -> int:
    """Parse and validate ``argv`` (exit 2 on invalid arguments, before any work), run the study or the sweep.

    Returns 0 if every requested arm succeeded, 1 otherwise.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    sweep = is_sweep(args)
    try:
        config = sweep_config_from_args(args) if sweep else config_from_args(args)
        prepare_output_dir(config.output_dir)
    except ValueError as exc:
        parser.error(str(exc))
    with run_logging(config.output_dir / LOG_FILE, LOGGER_NAME) as log:
        if sweep:
            from ptycho.studies.dose.sweep import run_sweep

            log.info("dose sweep: %s", json.dumps(config.as_dict()))
            result = run_sweep(config, run_arm=run_arm, make_truth=make_truth, log=log)
        else:
            log.info("dose-response study: %s", json.dumps(config.as_dict()))
            result = run_study(config, run_arm=run_arm, make_truth=make_truth, log=log)
    return 0 if result.ok else 1
