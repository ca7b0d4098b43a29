"""The dose-response study's command line (SPEC §6); ``scripts/studies/dose_response_study.py`` calls ``main``.

Every argument is validated before any work and before TensorFlow is imported (exit status 2, one line
naming the option). Exit status 0 if every requested arm succeeded, 1 if any failed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ptycho import files
from ptycho.argtypes import OneLineParser, nonnegative_int, positive_int
from ptycho.runlog import run_logging
from ptycho.studies.dose.arm import ARM_FILES, make_ground_truth, run_arm
from ptycho.studies.dose.config import (ALL_ARM_NAMES, ARM_NAMES, ARMS, DEFAULT_OUTPUT_DIR, DEFAULT_PRESET,
                                        DEFAULT_REFINE_ITERATIONS, PRESETS, REFINE_ARMS, REFINE_LOSS, StudyConfig)
from ptycho.studies.dose.study import LOGGER_NAME, ArmRunner, run_study

LOG_FILE = "run.log"


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
            f"{LOG_FILE}. Exit status: 0 if every requested arm succeeded, 1 if any failed (the others "
            "still run), 2 for invalid arguments."),
    )
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR",
                        help=f"directory for every output, created if needed; nothing is written "
                             f"elsewhere (default: {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help=f"bundle of n_train, n_test, nepochs, batch_size (default: {DEFAULT_PRESET})")
    parser.add_argument("--nepochs", type=positive_int, metavar="N",
                        help="training epochs per arm (default: preset)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B", help="training batch size (default: preset)")
    parser.add_argument("--n-train", type=positive_int, metavar="N",
                        help="training scan positions = groups per arm, >= 20 so the 5%% validation split "
                             "is not empty (default: preset)")
    parser.add_argument("--n-test", type=positive_int, metavar="N",
                        help="test scan positions = groups (unseen positions on the same object), >= 4 "
                             "(default: preset)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="study seed: object, positions and noise streams derive from it (default: 0)")
    parser.add_argument("--arms", nargs="+", default=list(ARM_NAMES), metavar="ARM",
                        help=f"arms to run, space- or comma-separated, from {', '.join(ALL_ARM_NAMES)}, or "
                             f"'all' for every one (default: the network arms {' '.join(ARM_NAMES)})")
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


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    """A StudyConfig from parsed arguments (ValueError naming the option if invalid)."""
    return StudyConfig(output_dir=Path(args.output_dir), preset=args.preset, nepochs=args.nepochs,
                       batch_size=args.batch_size, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                       arms=tuple(args.arms), force=args.force, keras_verbose=args.keras_verbose,
                       test_ssim=args.test_ssim, refine_iterations=args.refine_iterations)


def prepare_output_dir(path: Path) -> None:
    """Create ``path`` (with parents) and check it is a writable directory; ValueError otherwise."""
    files.ensure_directory(path, "--output-dir")


def main(argv: Optional[list[str]] = None, *, run_arm: ArmRunner = run_arm,
         make_truth: Callable[[StudyConfig], np.ndarray] = make_ground_truth) -> int:
    """Parse and validate ``argv`` (exit 2 on invalid arguments, before any work), run the study.

    Returns 0 if every requested arm succeeded, 1 otherwise.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        prepare_output_dir(config.output_dir)
    except ValueError as exc:
        parser.error(str(exc))
    with run_logging(config.output_dir / LOG_FILE, LOGGER_NAME) as log:
        log.info("dose-response study: %s", json.dumps(config.as_dict()))
        result = run_study(config, run_arm=run_arm, make_truth=make_truth, log=log)
    return 0 if result.ok else 1
