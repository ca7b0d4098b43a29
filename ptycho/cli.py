"""The ``ptycho`` command: simulate, train, reconstruct and evaluate on PtychoPINN-format NPZ files.

::

    ptycho simulate --out data.npz [--N 64 --gridsize 2 --nphotons 1e9 --n-positions 512 --scan random|grid
                    --seed 0 --object-seed S --scan-seed S --noise-seed S ...]
    ptycho train data.npz --out-dir DIR [--gridsize 2 --nepochs 50 --batch-size 16 --loss nll|mae
                    --early-stopping-patience 3 --lr-patience 2 --quiet --verbose ...]
    ptycho reconstruct DIR/wts.h5.zip data.npz --out rec.npz [--png rec.png --metrics m.json --comparison-png c.png]
    ptycho evaluate rec.npz truth.npz [--json]
    ptycho refine data.npz --out rec.npz [--init rec.npz --iterations 50 --refine-probe]
    ptycho import SRC --out data.npz [--format tike|ptychodus|cxi|ptychopinn] [--diffraction PATH]

Training, saving, reconstruction and evaluation run on the package's shared path (``ptycho.workflow``),
the same one every arm of the dose-response study takes.

Errors a user can fix — a bad flag value, a malformed or mismatched input file, an output that exists
without ``--force`` — are found before any work (and, where the check allows, before TensorFlow is
imported) and reported as one line, ``ptycho <command>: error: <what, naming the flag or file>``, with
exit status 2; nothing is written. Outputs are written atomically as a set: an interrupted run
(Ctrl-C: exit status 130; a crash) leaves none of its outputs, only a line in the run log. A command writes
only the files it is asked for, with ordinary permissions, and hides TensorFlow's start-up lines unless
``--verbose``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ptycho.argtypes import (DefaultsHelpFormatter, OneLineParser, finite_float, holdout_fraction, nonnegative_float,
                             nonnegative_int, positive_float, positive_int, stitch_window)

PROG = "ptycho"
TRAIN_LOG = "train.log"
LOGGER_NAME = "ptycho.cli"
#: ``reconstruct --refine``: the network's stitch is refined by default (ledger RECONSTRUCT-REFINE-DEFAULT-001).
REFINE_DEFAULT = 30


class CommandError(Exception):
    """A problem with the command's arguments or inputs: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------------------
# Shared checks


def _existing_file(path: str, flag: str) -> Path:
    """``path`` as a Path if it is a file; CommandError naming ``flag`` otherwise."""
    if not Path(path).is_file():
        raise CommandError(f"{flag} {path!r}: no such file")
    return Path(path)


def _check_outputs(paths: Sequence[Path], force: bool, flag: Mapping[Path, str]) -> None:
    """No output may already exist unless ``force``; each output's directory must not be a file."""
    for path in paths:
        if path.exists() and path.is_dir():
            raise CommandError(f"{flag[path]} {str(path)!r}: is a directory")
        if path.exists() and not force:
            raise CommandError(f"{flag[path]} {str(path)!r}: exists (use --force to overwrite)")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise CommandError(f"{flag[path]} {str(path)!r}: {str(parent)!r} is not a directory")


def _config_error(exc: ValueError, flags: Mapping[str, str]) -> CommandError:
    """``"<Config>.<field>: message"`` from a config dataclass as ``"argument --flag: message"``."""
    match = re.match(r"^\w+Config\.(\w+): (.*)$", str(exc), re.S)
    if match and match.group(1) in flags:
        return CommandError(f"argument {flags[match.group(1)]}: {match.group(2)}")
    return CommandError(str(exc))


def _load_data(path: Path, nphotons: Optional[float] = None):
    """The validated NPZ at ``path`` (SPEC §3), ungrouped; CommandError with the §3 message otherwise."""
    from ptycho.data import load_npz

    try:
        dataset = load_npz(path, nphotons=nphotons)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if dataset.N % 4:
        raise CommandError(f"{path}: key 'diffraction': patterns are {dataset.N}x{dataset.N}, "
                           "N must be a multiple of 4")
    return dataset


def _group(dataset, path: Path, gridsize: int, n_groups: Optional[int], seed: int, gridsize_flag: str,
           K: Optional[int] = None):
    """``dataset`` with its positions grouped into gridsize² neighbours among each position's K nearest
    (``ptycho.grouping``, seeded; K None: ``grouping.default_neighbours(gridsize)``)."""
    from ptycho.grouping import group_positions

    C, M = gridsize ** 2, dataset.n_positions
    if C > M:
        raise CommandError(f"{gridsize_flag}: gridsize {gridsize} groups {C} positions, but {path} holds "
                           f"only {M} scan positions")
    if K is not None and C > 1 and K < C:
        raise CommandError(f"argument --K: {K} neighbours cannot form groups of gridsize² = {C} positions; "
                           f"give --K {C} or more (or leave it out)")
    try:
        groups = group_positions(dataset.xcoords, dataset.ycoords, gridsize, K=K, n_groups=n_groups,
                                 rng=np.random.default_rng(seed))
    except ValueError as exc:
        message = str(exc)
        if message.startswith("n_groups: "):
            message = message.removeprefix("n_groups: ").replace("lower n_groups or raise K",
                                                                 "lower --n-groups or raise --K")
            raise CommandError(f"argument --n-groups: {message}") from None
        raise CommandError(f"{path}: {message}") from None
    return dataclasses.replace(dataset, group_indices=groups)


def _check_architecture(N: int, path: Path) -> None:
    """The network needs N = 8·2^k >= 32 (ledger ARCH-N-POW2-001); imports the model module (TensorFlow)."""
    from ptycho.model import encoder_filters

    try:
        encoder_filters(N)
    except ValueError as exc:
        raise CommandError(f"{path}: key 'diffraction': {exc}") from None


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up messages (hidden by default: its banner, and on a "
                             "machine without a GPU a 'failed call to cuInit' error line, which is harmless)")


def _start_tensorflow(verbose: bool) -> None:
    """Import TensorFlow and initialise its devices, hiding what its C++ runtime prints meanwhile unless ``verbose``.

    TensorFlow's native libraries write their start-up lines (the oneDNN and CUDA banners, twice, and
    'failed call to cuInit' where no GPU exists) straight to file descriptor 2 before its logging is set up,
    so neither TF_CPP_MIN_LOG_LEVEL nor Python can filter them: descriptor 2 is pointed at a temporary file
    for the import and the device scan, and restored. If either fails, what was captured is printed, so no
    real error is ever lost (ledger CLI-TF-NOISE-001).
    """
    if "tensorflow" in sys.modules:  # started already (an earlier command in this process)
        return
    if verbose:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA platform's initialisation (cuInit) happens here
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _log_to(path: Path):
    from ptycho.runlog import run_logging

    return run_logging(path, LOGGER_NAME, console=False)


# --------------------------------------------------------------------------------------------------
# ptycho simulate

SIMULATE_FLAGS = {"N": "--N", "gridsize": "--gridsize", "nphotons": "--nphotons", "n_positions": "--n-positions",
                  "object_kind": "--object", "object_size": "--object-size", "buffer": "--buffer", "seed": "--seed",
                  "probe_defocus": "--probe-defocus", "noise_seed": "--noise-seed", "object_seed": "--object-seed",
                  "scan_seed": "--scan-seed", "scan": "--scan", "grid_step": "--grid-step", "K": "--K",
                  "nlines": "--nlines"}


def _add_simulate(commands) -> None:
    from ptycho.config import OBJECT_KINDS, SimulationConfig

    d = SimulationConfig()
    p = commands.add_parser(
        "simulate", help="write a simulated data set (PtychoPINN NPZ)",
        description="Simulate far-field diffraction of a synthetic object scanned at random or grid positions "
                    "(SPEC §3) and write it in the PtychoPINN NPZ format: diffraction (M, N, N) float32 amplitudes "
                    "(sqrt(counts)/s), xcoords, ycoords (M,) object pixels, probeGuess (N, N) complex64, "
                    "objectGuess complex64, group_indices (M, gridsize²), nphotons.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", required=True, metavar="PATH", help="output NPZ file")
    p.add_argument("--N", type=positive_int, default=64, metavar="PX",
                   help="diffraction pattern side (pixels; a multiple of 4; "
                   "training needs 8·2^k >= 32)")
    p.add_argument("--gridsize", type=positive_int, default=2, metavar="G",
                   help="groups stored with the data: gridsize² neighbouring positions each")
    p.add_argument("--K", type=positive_int, default=None, metavar="K",
                   help="each stored group is chosen among a position's K nearest positions, itself included "
                        "(default: max(7, gridsize² + 3): 7 for gridsize 1 and 2, 12 for 3)")
    p.add_argument("--nphotons", type=positive_float, default=d.nphotons, metavar="PHOTONS",
                   help="dose: expected photons per diffraction pattern (counts)")
    p.add_argument("--n-positions", type=positive_int, default=d.n_positions, metavar="M",
                   help="number of scan positions M")
    p.add_argument("--scan", choices=("random", "grid"), default=d.scan,
                   help="scan positions: x, y uniform at random in the object minus --buffer, or the first M "
                        "points, row by row, of a square grid of step --grid-step starting at --buffer")
    p.add_argument("--grid-step", type=positive_float, default=d.grid_step, metavar="PX",
                   help="step of the grid scan (pixels; --scan grid only)")
    p.add_argument("--object", choices=OBJECT_KINDS, default=d.object_kind,
                   help="synthetic object: random lines or a Gaussian random field (amplitude only), or "
                        "grf_complex: a Gaussian random field in amplitude and phase (phase ±π/3)")
    p.add_argument("--nlines", type=positive_int, default=d.nlines, metavar="L",
                   help="number of random lines drawn (--object lines only)")
    p.add_argument("--probe-defocus", type=finite_float, default=d.probe_defocus, metavar="RAD",
                   help="quadratic phase of the default probe at its disk edge (radians): 0 is the focused "
                        "disk; the dose study uses 5π (a defocused beam)")
    p.add_argument("--object-size", type=positive_int, default=d.object_size, metavar="PX", help="object side (pixels)")
    p.add_argument("--buffer", type=nonnegative_float, default=d.buffer, metavar="PX",
                   help="smallest distance of a scan position from the object edge (pixels)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="seed of the object, positions, groups and noise (each of --object-seed, --scan-seed and "
                        "--noise-seed, when given, replaces it for its part alone)")
    p.add_argument("--object-seed", type=nonnegative_int, default=None, metavar="S",
                   help="seed of the object alone: the object --seed S would make (default: --seed)")
    p.add_argument("--scan-seed", type=nonnegative_int, default=None, metavar="S",
                   help="seed of the scan positions and groups alone: those --seed S would make (default: --seed); "
                        "a second scan of one object is --object-seed S --scan-seed T")
    p.add_argument("--object-from", metavar="NPZ", default=None,
                   help="scan the objectGuess of this data file instead of a new object (a second scan of the "
                        "same object: use another --seed); --object, --object-size, --nlines and --object-seed are "
                        "then ignored")
    p.add_argument("--noise-seed", type=nonnegative_int, default=None, metavar="S",
                   help="seed of the Poisson noise alone (default: derived from --seed)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=simulate)


def _simulation_error(exc: ValueError, args: argparse.Namespace) -> CommandError:
    """A ValueError of ``simulate_dataset`` (``"<argument>: message"``) as a CommandError naming the flag."""
    message = str(exc)
    if message.startswith("n: the ") and "grid" in message:  # grid_positions: the lattice is too small
        return CommandError(f"argument --n-positions: {message.removeprefix('n: ').replace(' n = ', ' ')}; lower "
                            "--n-positions or --grid-step, or raise --object-size")
    if message.startswith("n_groups: "):
        return CommandError(f"argument --K: {message.removeprefix('n_groups: ')}")
    return CommandError(message)


def simulate(args: argparse.Namespace) -> int:
    """``ptycho simulate``: validate, simulate (``ptycho.simulate.simulate_dataset``), write the NPZ atomically."""
    from ptycho.config import SimulationConfig

    obj = None
    object_size = args.object_size
    if args.object_from is not None:
        source = _existing_file(args.object_from, "--object-from")
        obj = _load_data(source).obj
        if obj is None:
            raise CommandError(f"{source}: has no objectGuess to scan (--object-from)")
        if obj.shape[0] != obj.shape[1]:
            raise CommandError(f"{source}: objectGuess is {obj.shape[0]}x{obj.shape[1]}; --object-from needs a "
                               "square object")
        object_size = obj.shape[0]
    try:
        config = SimulationConfig(N=args.N, gridsize=args.gridsize, nphotons=args.nphotons,
                                  n_positions=args.n_positions, object_kind=args.object,
                                  object_size=object_size, buffer=args.buffer, seed=args.seed,
                                  probe_defocus=args.probe_defocus, noise_seed=args.noise_seed,
                                  object_seed=args.object_seed, scan_seed=args.scan_seed, scan=args.scan,
                                  grid_step=args.grid_step, K=args.K, nlines=args.nlines)
    except ValueError as exc:
        raise _config_error(exc, SIMULATE_FLAGS) from None
    out = Path(args.out)
    _check_outputs([out], args.force, {out: "--out"})

    from ptycho.data import save_npz
    from ptycho.simulate import simulate_dataset

    try:
        dataset = simulate_dataset(config, obj=obj)
    except ValueError as exc:  # e.g. a grid that holds fewer than M positions, names its argument
        raise _simulation_error(exc, args) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, dataset)
    print(f"wrote {out}: {dataset.n_positions} patterns {config.N}x{config.N}, {config.nphotons:.3g} photons each, "
          f"object {config.object_size}x{config.object_size}")
    return 0


# --------------------------------------------------------------------------------------------------
# ptycho train

K_HELP = ("each group is a position and gridsize² − 1 others among its K nearest, itself included (default: "
          "max(7, gridsize² + 3): 7 for gridsize 1 and 2, 12 for 3)")

TRAIN_FLAGS = {"nepochs": "--nepochs", "batch_size": "--batch-size", "learning_rate": "--lr", "loss": "--loss",
               "seed": "--seed", "early_stopping_patience": "--early-stopping-patience",
               "lr_patience": "--lr-patience", "lr_factor": "--lr-factor", "min_lr": "--min-lr"}


def _add_train(commands) -> None:
    from ptycho.config import TrainingConfig

    d = TrainingConfig()
    p = commands.add_parser(
        "train", help="train a model on a data file",
        description="Group the scan positions of DATA, build the network for its N and probe (intensity "
                    "scale from its dose), train it without ground truth and write DIR/wts.h5.zip (the "
                    "model), DIR/history.json (per-epoch losses), DIR/training.png (loss and validation "
                    f"loss per epoch, log scale) and append to DIR/{TRAIN_LOG}. "
                    f"{(d.validation_split * 100):g} % of the groups are held out for validation. Training runs "
                    "at most --nepochs epochs: it stops early when the validation loss has not improved for "
                    "--early-stopping-patience epochs and keeps the best epoch's weights, and the learning rate "
                    "is multiplied by --lr-factor (halved) whenever the validation loss has not improved for "
                    "--lr-patience epochs, down to --min-lr.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("data", help="PtychoPINN NPZ: diffraction (or diff3d), xcoords, ycoords, probeGuess")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="directory for the outputs (created)")
    p.add_argument("--gridsize", type=positive_int, default=2, metavar="G", help="positions per group: gridsize²")
    p.add_argument("--K", type=positive_int, default=None, metavar="K", help=K_HELP)
    p.add_argument("--nepochs", type=positive_int, default=d.nepochs, metavar="E",
                   help="most training epochs (fewer when early stopping ends the run)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="B",
                   help="groups per optimiser step")
    p.add_argument("--loss", choices=("nll", "mae"), default=d.loss,
                   help="Poisson negative log-likelihood on counts, or mean absolute error on amplitudes")
    p.add_argument("--lr", type=positive_float, default=d.learning_rate, metavar="RATE",
                   help="initial Adam learning rate")
    p.add_argument("--early-stopping-patience", type=nonnegative_int, default=d.early_stopping_patience,
                   metavar="E", help="stop after this many epochs without a lower validation loss, keeping the "
                                     "best epoch's weights (set it to --nepochs to train every epoch)")
    p.add_argument("--lr-patience", type=nonnegative_int, default=d.lr_patience, metavar="E",
                   help="multiply the learning rate by --lr-factor after this many epochs without a lower "
                        "validation loss")
    p.add_argument("--lr-factor", type=positive_float, default=d.lr_factor, metavar="F",
                   help="learning-rate reduction factor (< 1)")
    p.add_argument("--min-lr", type=nonnegative_float, default=d.min_lr, metavar="RATE",
                   help="the learning rate is never reduced below this")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="seed of the grouping, the weight initialisation and the batch order")
    p.add_argument("--n-groups", type=positive_int, default=None, metavar="B",
                   help="groups to train on (default: one per scan position; more oversamples neighbours)")
    p.add_argument("--nphotons", type=positive_float, default=None, metavar="PHOTONS",
                   help="photons per pattern, overriding the file's 'nphotons' (default: the file's; a file "
                        "without it is taken to hold sqrt(counts), i.e. nphotons = mean total counts)")
    p.add_argument("--probe-trainable", action="store_true",
                   help="refine the probe with the network (measured data, whose probe is an estimate; a "
                        "simulated probe is exact); the archive keeps the learnt probe and 'ptycho reconstruct' "
                        "refines with it")
    p.add_argument("--test-ssim", action="store_true",
                   help="after every epoch reconstruct DATA and record the amplitude SSIM against its "
                        "objectGuess in the history (monitoring only; needs objectGuess)")
    p.add_argument("--quiet", action="store_true",
                   help="no Keras progress bar: one line per epoch instead (epoch, loss, val_loss, seconds)")
    _add_verbose(p)
    p.add_argument("--force", action="store_true", help="replace existing outputs in DIR")
    p.set_defaults(handler=train)


def _with_dose(dataset, path: Path):
    """``dataset`` with ``nphotons`` set: a file without it holds sqrt(counts), so nphotons = mean Σ X².

    That assumption is announced on stderr (one line): a file of amplitudes on another scale (e.g. the
    reference simulator's, whose dose sits in a pickled ``_metadata``) is otherwise read at a wrong dose.
    """
    if dataset.nphotons is not None:
        return dataset
    counts = float(np.mean(np.sum(np.square(dataset.diffraction, dtype=np.float64), axis=(1, 2))))
    if counts <= 0:
        raise CommandError(f"{path}: key 'diffraction': all zero, no signal to reconstruct from")
    print(f"{PROG}: warning: {path} has no 'nphotons': its diffraction is taken as sqrt(counts), a dose of "
          f"{counts:.3g} photons per pattern; if it holds amplitudes on another scale, pass --nphotons",
          file=sys.stderr)
    return dataclasses.replace(dataset, nphotons=counts)


def _check_forward_model(dataset, path: Path) -> None:
    """Refuse (one line) data the model's forward model cannot explain; print its warnings (ptycho.diagnostics)."""
    from ptycho import diagnostics

    try:
        warnings = diagnostics.check_forward_model(dataset, source=str(path))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for warning in warnings:
        if "nphotons" not in warning:  # _with_dose has said it already
            print(f"{PROG}: warning: {warning}", file=sys.stderr)


def _training_config(args: argparse.Namespace):
    from ptycho.config import TrainingConfig

    try:
        return TrainingConfig(nepochs=args.nepochs, batch_size=args.batch_size, learning_rate=args.lr,
                              loss=args.loss, seed=args.seed, verbose=0 if args.quiet else 1,
                              early_stopping_patience=args.early_stopping_patience, lr_patience=args.lr_patience,
                              lr_factor=args.lr_factor, min_lr=args.min_lr)
    except ValueError as exc:
        raise _config_error(exc, TRAIN_FLAGS) from None


def train(args: argparse.Namespace) -> int:
    """``ptycho train``: validate everything, then train on the shared path and write the outputs as a set."""
    config = _training_config(args)
    path = _existing_file(args.data, "data")
    # Grouped first: a refusal of the grouping must not follow a warning about the dose (one line on error).
    dataset = _with_dose(_group(_load_data(path, args.nphotons), path, args.gridsize, args.n_groups,
                                args.seed, "--gridsize", args.K), path)
    if dataset.n_groups < 2:
        raise CommandError(f"argument --n-groups: {dataset.n_groups} group cannot be split into training and "
                           "validation groups; at least 2 are needed")
    if args.test_ssim and dataset.obj is None:
        raise CommandError(f"argument --test-ssim: {path} has no objectGuess to compare with")
    _check_forward_model(dataset, path)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out-dir {str(out_dir)!r}: exists and is not a directory")
    from ptycho import workflow

    targets = workflow.training_paths(out_dir)
    _check_outputs(targets, args.force, dict.fromkeys(targets, "--out-dir"))
    _start_tensorflow(args.verbose)
    _check_architecture(dataset.N, path)  # imports TensorFlow
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{PROG} train: {dataset.n_groups} groups of {dataset.C} patterns {dataset.N}x{dataset.N} from {path}, "
          f"loss {config.loss}, {_epoch_plan(config)}, batch {config.batch_size} -> {out_dir}", flush=True)
    history = {}
    with _log_to(out_dir / TRAIN_LOG) as log:
        log.info("ptycho train %s: %d groups of %d, N=%d, s=%.4g, %s", path, dataset.n_groups, dataset.C,
                 dataset.N, dataset.intensity_scale, json.dumps(dataclasses.asdict(config)))
        _run_logged(log, lambda: history.update(_train_and_write(workflow, dataset, config, args, targets, path,
                                                                 log)))
    print(_epochs_summary(history, config))
    if "probe_change" in history:
        print(f"probe refined in training: changed by {100 * history['probe_change']:.3g} % (rms, relative to the "
              "data's); the archive keeps it")
    print(f"wrote {', '.join(str(t) for t in targets)} (log: {out_dir / TRAIN_LOG})")
    return 0


def _epoch_plan(config) -> str:
    """``"at most 8 epochs (stopping early after 3 without improvement)"``, or ``"8 epochs"`` if it cannot stop."""
    patience = max(1, config.early_stopping_patience)  # Keras stops after max(1, patience) epochs without a gain
    if patience >= config.nepochs - 1:
        return f"{config.nepochs} epoch{'s' * (config.nepochs != 1)}"
    return (f"at most {config.nepochs} epochs (stopping early after {patience} without a lower validation "
            "loss)")


def _epochs_summary(history: Mapping[str, Any], config) -> str:
    """How many epochs ran, and why fewer than --nepochs: ``"trained 7 of at most 8 epochs: stopped early ..."``."""
    run = int(history.get("epochs_run", 0))
    monitored = history.get("val_loss") or history.get("loss") or []
    finite = [(v, i) for i, v in enumerate(monitored) if v is not None and math.isfinite(v)]
    best = f"; the best epoch, {min(finite)[1] + 1}, is the one kept" if finite and run > 1 else ""
    if run >= config.nepochs:
        return f"trained {run} epoch{'s' * (run != 1)}{best}"
    if len(finite) < run:
        return f"trained {run} of at most {config.nepochs} epochs: stopped on a non-finite loss{best}"
    return (f"trained {run} of at most {config.nepochs} epochs: stopped early, the validation loss had not fallen "
            f"for {max(1, config.early_stopping_patience)} epochs{best}")


def _train_and_write(workflow, dataset, config, args, targets: Sequence[Path], path: Path,
                     log: logging.Logger) -> None:
    from ptycho import files
    from ptycho.monitor import EpochLine, EpochLog

    for target in targets if args.force else ():  # a forced run never leaves the old set looking current
        target.unlink(missing_ok=True)
    monitor = workflow.Monitoring(dataset, dataset.obj) if args.test_ssim else None
    callbacks = [EpochLog(log, "train", config.nepochs)]
    if args.quiet:  # Keras prints nothing: one short line per epoch instead
        callbacks.append(EpochLine(config.nepochs, sys.stdout, initial_lr=config.learning_rate))
    with files.atomic_paths(targets) as temps:
        trained = workflow.train_model(dataset, config, seed=args.seed, monitor=monitor, log=log,
                                       callbacks=callbacks, source=str(path),
                                       model_options={"probe_trainable": True} if args.probe_trainable else None)
        if args.probe_trainable:
            trained.history["probe_change"] = _probe_change(trained.autoencoder, dataset.probe)
        workflow.write_training_outputs(trained, temps, title=f"ptycho train {path.name}", metadata={
            "command": "ptycho train", "data": str(path), "loss": config.loss, "nepochs": config.nepochs,
            "epochs_run": trained.history.get("epochs_run"), "batch_size": config.batch_size,
            "learning_rate": config.learning_rate, "seed": args.seed, "n_groups": dataset.n_groups,
            "nphotons": dataset.nphotons, "K": args.K, "probe_trainable": args.probe_trainable})
    summary = {k: v for k, v in trained.history.items() if not isinstance(v, list)}
    log.info("done: %s", json.dumps({k: v for k, v in summary.items()
                                     if not isinstance(v, (int, float)) or math.isfinite(v)}))
    return trained.history


def _probe_change(autoencoder, probe: np.ndarray) -> float:
    """‖P_learnt − P_data‖ / ‖P_data‖: how far training moved the probe (0 for a fixed probe)."""
    from ptycho.model import get_probe

    probe = np.asarray(probe, np.complex128)
    return float(np.linalg.norm(get_probe(autoencoder) - probe) / np.linalg.norm(probe))


def _run_logged(log: logging.Logger, job: Callable[[], None]) -> None:
    """Run ``job``, recording an interruption or a crash in the run log before it propagates."""
    try:
        job()
    except KeyboardInterrupt:
        log.error("interrupted; no outputs were written")
        raise
    except Exception as exc:
        log.exception("failed: %s: %s; no outputs were written", type(exc).__name__, exc)
        raise


# --------------------------------------------------------------------------------------------------
# ptycho reconstruct


def _add_reconstruct(commands) -> None:
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
                        "held-out positions stops falling; 0: the network alone")
    p.add_argument("--refine-probe", action="store_true",
                   help="with --refine, refine the probe too (experimental data; not for simulated data whose "
                        "probe is exact)")
    p.add_argument("--refine-loss", choices=("nll", "amplitude"), default="nll",
                   help="refinement misfit: Poisson likelihood of the counts, or least squares on sqrt(counts)")
    _add_holdout(p, "--refine-holdout")
    _add_verbose(p)
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
    from ptycho.model import get_probe
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
    model_path = _existing_file(args.model, "model")
    data_path = _existing_file(args.data, "data")
    dataset = _with_dose(_load_data(data_path, args.nphotons), data_path)
    outputs = _reconstruct_outputs(args, dataset.obj is not None, data_path)
    flags = {outputs["npz"]: "--out", outputs.get("png"): "--png", outputs.get("metrics"): "--metrics",
             outputs.get("comparison"): "--comparison-png"}
    _check_outputs(list(outputs.values()), args.force, flags)
    if args.stitch_window != "auto" and args.stitch_window > dataset.N:
        raise CommandError(f"argument --stitch-window: {args.stitch_window} exceeds the pattern size N = {dataset.N}")
    _start_tensorflow(args.verbose)
    diffraction_to_obj, N, gridsize, learnt_probe = _load_archive(model_path)  # TensorFlow from here on
    if dataset.N != N:
        raise CommandError(f"{data_path}: patterns are {dataset.N}x{dataset.N}, but the model archive "
                           f"{model_path} was built for N = {N}")
    if args.gridsize is not None and args.gridsize != gridsize:
        raise CommandError(f"argument --gridsize: {args.gridsize}, but the model archive {model_path} was "
                           f"built for gridsize {gridsize}")
    dataset = _group(dataset, data_path, gridsize, args.n_groups, args.seed,
                     f"model archive {model_path} (gridsize {gridsize})", args.K)

    from ptycho import workflow

    rec, scored = workflow.reconstruct_and_evaluate(diffraction_to_obj, dataset, dataset.obj, M=args.stitch_window,
                                                    intensity_scale=dataset.intensity_scale)  # sqrt(counts) in
    if args.refine:
        if learnt_probe is not None:
            print(f"refining with the probe learnt in training (stored in {model_path}), not {data_path}'s")
            dataset = dataclasses.replace(dataset, probe=learnt_probe)
        rec, scored = _refined(rec, dataset, args)
    _write_reconstruction(outputs, rec, scored, title=f"{data_path.name} reconstructed by {model_path}")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    if scored is not None:
        _print_agreement_warnings(scored.metrics, f"{data_path} against its objectGuess")
        print(metrics_table(scored.metrics))
    return 0


def _refined(rec, dataset, args: argparse.Namespace):
    """``rec`` refined for ``args.refine`` iterations (``ptycho.refine``), evaluated when the truth is known."""
    from ptycho.refine import RefineConfig, refine
    from ptycho.scan_region import evaluate_on_scan

    config = RefineConfig(iterations=args.refine, loss=args.refine_loss, refine_probe=args.refine_probe,
                          holdout=args.refine_holdout, seed=args.seed)
    result = refine(dataset, config, initial=rec, verbose=True)
    print(refine_summary(result))
    rec = result.reconstruction
    return rec, (None if dataset.obj is None else evaluate_on_scan(rec, dataset.obj))


def _write_reconstruction(outputs: Mapping[str, Path], rec, scored, title: str) -> None:
    """All of ``outputs`` as one atomic set (see ``ptycho.files.atomic_paths``)."""
    from ptycho import figures, files
    from ptycho.reconstruction import save_reconstruction

    for path in outputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_paths(list(outputs.values())) as temps:
        temp = dict(zip(outputs, temps))
        save_reconstruction(temp["npz"], rec)
        if "png" in temp:
            files.save_figure(figures.object_figure(rec.obj, rec.origin, rec.coverage, title=title), temp["png"])
        if "metrics" in temp:
            files.write_json(temp["metrics"], scored.metrics)
        if "comparison" in temp:
            files.save_figure(figures.comparison_figure(scored.reconstruction, scored.truth, scored.origin,
                                                        scored.metrics, scored.coverage), temp["comparison"])


# --------------------------------------------------------------------------------------------------
# ptycho evaluate


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate", help="compare a reconstruction with the true object",
        description="Crop the reconstruction written by 'ptycho reconstruct' and the true object (objectGuess "
                    "of TRUTH) to the scanned region, register them (sub-pixel), remove the global phase "
                    "offset, scale the amplitude to the truth's mean, and print MAE, PSNR (dB; peak = the "
                    "truth's data range), SSIM and the resolution of amplitude and phase: the spatial frequency "
                    "(cycles per pixel) where their Hann-apodised Fourier ring correlation with the truth falls "
                    "below 1/7, and its half-period in pixels (the finest feature resolved; 'not reached' when "
                    "the correlation stays above 1/7 up to 0.5 cycles per pixel). Phase metrics are n/a for a "
                    "truth of constant phase. The JSON (--json) also holds FRC50, the unapodised correlation's "
                    "0.5 crossing (0.5 when it never crosses). A truth that does not cover the scanned region is "
                    "refused; one that registers more than 2 px away or whose amplitude correlates below 0.3 "
                    "is reported in a warning (another object, or a failed reconstruction).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("reconstruction", help="NPZ written by 'ptycho reconstruct'")
    p.add_argument("truth", help="NPZ with objectGuess (the data file, or any NPZ holding the true object)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(handler=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    """``ptycho evaluate``: metrics of SPEC §5 on the scanned region, as a table or JSON. No TensorFlow."""
    from ptycho import files
    from ptycho.data import load_object
    from ptycho.reconstruction import load_reconstruction
    from ptycho.scan_region import evaluate_on_scan

    rec_path = _existing_file(args.reconstruction, "reconstruction")
    truth_path = _existing_file(args.truth, "truth")
    try:
        rec = load_reconstruction(rec_path)
        truth = load_object(truth_path)
        scored = evaluate_on_scan(rec, truth)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("truth: "):  # the truth does not cover the scanned region (scan_region)
            message = f"{truth_path}: objectGuess: {message.removeprefix('truth: ')}"
        raise CommandError(message) from None
    _print_agreement_warnings(scored.metrics, f"{rec_path} against {truth_path}")
    if args.json:
        print(json.dumps(files.to_jsonable(scored.metrics), indent=2, allow_nan=False))
    else:
        print(metrics_table(scored.metrics))
    return 0


def _print_agreement_warnings(metrics: Mapping[str, Any], what: str) -> None:
    """One line on stderr when the reconstruction and the truth do not belong together (evaluation)."""
    from ptycho.evaluation import agreement_warnings

    for warning in agreement_warnings(metrics):
        print(f"{PROG}: warning: {what}: {warning}", file=sys.stderr)


#: (row label, metric name stem) of the table; each row shows amplitude_<stem> and phase_<stem>.
TABLE_ROWS = (("MAE", "mae"), ("PSNR (dB)", "psnr"), ("SSIM", "ssim"),
              ("FRC 1/7 (cycles/px)", "frc_cutoff"), ("half-period (px)", "half_period"))


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The metrics of ``ptycho.scan_region.evaluate_on_scan`` as a text table (amplitude and phase columns).

    A phase metric of a flat-phase truth prints "n/a"; a resolution the FRC never limits (the curve stays
    above 1/7 up to Nyquist) prints "not reached". The registration line states the shift found, and whether
    it was applied.
    """
    phase_na = metrics.get("phase_ssim") is None

    def cell(key: str) -> str:
        value = metrics.get(key)
        if value is not None:
            return f"{float(value):.4g}"
        if key.startswith("phase_") and phase_na:
            return "n/a"
        return "not reached" if key.endswith(("_frc_cutoff", "_half_period")) else "n/a"

    lines = [f"{'metric':<20} {'amplitude':>12} {'phase':>12}"]
    lines += [f"{label:<20} {cell('amplitude_' + stem):>12} {cell('phase_' + stem):>12}"
              for label, stem in TABLE_ROWS]
    not_reached = any(cell(f"{part}_frc_cutoff") == "not reached" for part in ("amplitude", "phase"))
    lines.append("(FRC 1/7: where the Fourier ring correlation with the truth falls below 1/7; half-period = "
                 "1/(2·that), the finest feature resolved" + ("; not reached: no limit up to 0.5 cycles/px)"
                                                              if not_reached else ")"))
    found = metrics.get("shift_found") or metrics.get("shift") or [math.nan, math.nan]
    if metrics.get("registration_rejected"):
        lines.append(f"registration found a shift [dy, dx] = [{found[0]:.3g}, {found[1]:.3g}] px: rejected as too "
                     "large, not applied (the images are compared unshifted)")
    else:
        lines.append(f"registration shift [dy, dx] = [{found[0]:.3g}, {found[1]:.3g}] px (applied)")
    if metrics.get("correlation") is not None:
        lines.append(f"amplitude correlation with the truth: {metrics['correlation']:.3f}")
    if metrics.get("crop_coverage") is not None:
        lines.append(f"scanned region covered by the stitch: {100 * metrics['crop_coverage']:.1f} %")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# ptycho refine


def _add_refine(commands) -> None:
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
    _add_holdout(p, "--holdout")
    p.add_argument("--nphotons", type=positive_float, default=None, metavar="PHOTONS",
                   help="DATA's dose when the file has no 'nphotons' (default: its diffraction is sqrt(counts))")
    p.add_argument("--png", metavar="PATH", default=None, help="figure of amplitude and phase (default: none)")
    p.add_argument("--metrics", metavar="PATH", default=None, help="metrics JSON, when DATA has objectGuess")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S", help="seed of the batch order")
    _add_verbose(p)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=refine_command)


def _add_holdout(p: argparse.ArgumentParser, flag: str) -> None:
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

    data_path = _existing_file(args.data, "data")
    dataset = _with_dose(_load_data(data_path, args.nphotons), data_path)
    initial = None
    if args.init is not None:
        init_path = _existing_file(args.init, "--init")
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
    _check_outputs(list(outputs.values()), args.force,
                   {outputs["npz"]: "--out", outputs.get("png"): "--png", outputs.get("metrics"): "--metrics"})

    _start_tensorflow(args.verbose)
    from ptycho.refine import RefineConfig, refine
    from ptycho.scan_region import evaluate_on_scan

    config = RefineConfig(iterations=args.iterations, batch_size=args.batch_size, loss=args.loss,
                          refine_probe=args.refine_probe, holdout=args.holdout, seed=args.seed)
    result = refine(dataset, config, initial=initial, verbose=True)
    print(refine_summary(result))
    scored = None if dataset.obj is None else evaluate_on_scan(result.reconstruction, dataset.obj)
    _write_refined(outputs, result.reconstruction, scored, title=f"{data_path.name}, {args.iterations} iterations")
    print(f"wrote {', '.join(str(p) for p in outputs.values())}")
    if scored is not None:
        print(metrics_table(scored.metrics))
    return 0


def _write_refined(outputs: Mapping[str, Path], rec, scored, title: str) -> None:
    from ptycho import figures, files
    from ptycho.reconstruction import save_reconstruction

    for path in outputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_paths(list(outputs.values())) as temps:
        temp = dict(zip(outputs, temps))
        save_reconstruction(temp["npz"], rec)
        if "png" in temp:
            files.save_figure(figures.object_figure(rec.obj, rec.origin, rec.coverage, title=title), temp["png"])
        if "metrics" in temp:
            files.write_json(temp["metrics"], scored.metrics)


# --------------------------------------------------------------------------------------------------
# ptycho import


def _add_import(commands) -> None:
    from ptycho.formats import FORMATS

    p = commands.add_parser(
        "import", help="convert a beamline file (tike, ptychodus, CXI, PtychoPINN) to a data file",
        description="Read SRC in its program's conventions, check each of them (zero-frequency position, counts "
                    "vs amplitudes, probe FFT normalisation, position units, origin and axis order) and write "
                    "--out in the PtychoPINN NPZ format that 'ptycho train' reads: diffraction (M, N, N) float32 "
                    "amplitudes sqrt(counts)/s with the zero frequency at N//2, the probe rescaled to the default "
                    "probe's power, s = sqrt(mean counts / that power), nphotons = mean counts, positions in object "
                    "pixels with min x = min y = N/2, and the detector mask. See ptycho.formats.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("src", metavar="SRC", help="the file to convert (ptychodus: the product file)")
    p.add_argument("--out", required=True, metavar="PATH", help="output NPZ file")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="SRC's format (default: guessed from its content: NPZ with 'data' -> tike, with "
                        "'diffraction'/'diff3d' -> ptychopinn; HDF5 with /entry_1 -> cxi, with probe_position_x_m "
                        "-> ptychodus)")
    p.add_argument("--diffraction", metavar="PATH", default=None,
                   help="ptychodus only: the diffraction file with the patterns (default: diffraction.h5 beside SRC)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=import_data)


def import_data(args: argparse.Namespace) -> int:
    """``ptycho import``: convert SRC (``ptycho.formats``), write the NPZ atomically; each warning as one line."""
    import warnings

    from ptycho import formats

    src = _existing_file(args.src, "SRC")
    diffraction = None if args.diffraction is None else _existing_file(args.diffraction, "--diffraction")
    out = Path(args.out)
    _check_outputs([out], args.force, {out: "--out"})
    if out.resolve() == src.resolve() or (diffraction is not None and out.resolve() == diffraction.resolve()):
        raise CommandError(f"--out {str(out)!r}: is an input file; choose another output")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fmt = args.format or formats.guess_format(src)
            if diffraction is not None and fmt != "ptychodus":
                raise CommandError(f"argument --diffraction: only the ptychodus format reads a separate "
                                   f"diffraction file, SRC is {fmt}")
            conversion = formats.convert(src, fmt, diffraction=diffraction)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for warning in caught:
                print(f"{PROG} import: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    dataset = conversion.dataset
    if dataset.N % 4:
        raise CommandError(f"{src}: patterns are {dataset.N}x{dataset.N}, N must be a multiple of 4 for training; "
                           "crop them first")
    out.parent.mkdir(parents=True, exist_ok=True)
    formats.write_npz(dataset, out)
    print(f"wrote {out}: {conversion.summary()}")
    return 0


# --------------------------------------------------------------------------------------------------
# Entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``ptycho`` parser with its six subcommands."""
    parser = OneLineParser(prog=PROG, description="Simulate, train, reconstruct and evaluate ptychography data "
                           "in the PtychoPINN NPZ format. 'ptycho COMMAND --help' describes each command.")
    import ptycho

    parser.add_argument("--version", action="version", version=f"%(prog)s {ptycho.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_simulate, _add_train, _add_reconstruct, _add_evaluate, _add_refine, _add_import):
        add(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``ptycho`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0 success; 2 a bad argument or input (one line on stderr, nothing written); 130 interrupted (Ctrl-C);
    a crash in the work itself propagates with its traceback (after the run log records it).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported, if it is
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; no outputs were written", file=sys.stderr)
        return 130
