"""``ptycho train``: train a model on a data file and write the model archive, history, curve and run log."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ptycho.argtypes import DefaultsHelpFormatter, nonnegative_float, nonnegative_int, positive_float, positive_int
from ptycho.cli.common import (PROG, CommandError, add_verbose, check_outputs, config_error, existing_file, grouped,
                               load_data, start_tensorflow, with_dose)

#: The run log ``ptycho train`` appends to in --out-dir, and its logger's name.
TRAIN_LOG = "train.log"
LOGGER_NAME = "ptycho.cli"

#: --K's help, shared with ``ptycho reconstruct``.
K_HELP = ("each group is a position and gridsize² − 1 others among its K nearest, itself included (default: "
          "max(7, gridsize² + 3): 7 for gridsize 1 and 2, 12 for 3)")

#: TrainingConfig field -> its flag, for :func:`ptycho.cli.common.config_error`.
TRAIN_FLAGS = {"nepochs": "--nepochs", "batch_size": "--batch-size", "learning_rate": "--lr", "loss": "--loss",
               "seed": "--seed", "early_stopping_patience": "--early-stopping-patience",
               "lr_patience": "--lr-patience", "lr_factor": "--lr-factor", "min_lr": "--min-lr"}


def add_parser(commands) -> None:
    """Add the ``train`` subcommand to ``commands`` (argparse subparsers), handled by :func:`train`."""
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
    add_verbose(p)
    p.add_argument("--force", action="store_true", help="replace existing outputs in DIR")
    p.set_defaults(handler=train)


def _check_forward_model(dataset, path: Path) -> None:
    """Refuse (one line) data the model's forward model cannot explain; print its warnings (ptycho.diagnostics)."""
    from ptycho import diagnostics

    try:
        warnings = diagnostics.check_forward_model(dataset, source=str(path))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for warning in warnings:
        if "nphotons" not in warning:  # with_dose has said it already
            print(f"{PROG}: warning: {warning}", file=sys.stderr)


def _training_config(args: argparse.Namespace):
    from ptycho.config import TrainingConfig

    try:
        return TrainingConfig(nepochs=args.nepochs, batch_size=args.batch_size, learning_rate=args.lr,
                              loss=args.loss, seed=args.seed, verbose=0 if args.quiet else 1,
                              early_stopping_patience=args.early_stopping_patience, lr_patience=args.lr_patience,
                              lr_factor=args.lr_factor, min_lr=args.min_lr)
    except ValueError as exc:
        raise config_error(exc, TRAIN_FLAGS) from None


def train(args: argparse.Namespace) -> int:
    """``ptycho train``: validate everything, then train on the shared path and write the outputs as a set."""
    config = _training_config(args)
    path = existing_file(args.data, "data")
    # Grouped first: a refusal of the grouping must not follow a warning about the dose (one line on error).
    dataset = with_dose(grouped(load_data(path, args.nphotons), path, args.gridsize, args.n_groups,
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
    check_outputs(targets, args.force, dict.fromkeys(targets, "--out-dir"))
    start_tensorflow(args.verbose)
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
        with _sigint_stops_training() as stop:
            trained = workflow.train_model(dataset, config, seed=args.seed, monitor=monitor, log=log,
                                           callbacks=callbacks + [stop], source=str(path),
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


@contextlib.contextmanager
def _sigint_stops_training():
    """Yield a Keras callback that ends training at the next batch after Ctrl-C (SIGINT); KeyboardInterrupt is raised
    when the block ends, before any output is written (CLI-SIGINT-001).

    Python raises KeyboardInterrupt wherever the main thread happens to be; raised inside TensorFlow's data iterator
    it can end the epoch instead of the run, and training went on to write its outputs and exit 0. The handler only
    sets a flag; the previous handler is restored on the way out. Off the main thread (no signals) it does nothing.
    """
    import signal
    import threading

    import keras

    hit = threading.Event()

    class StopOnInterrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if hit.is_set():
                self.model.stop_training = True

    if threading.current_thread() is not threading.main_thread():
        yield StopOnInterrupt()
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hit.set())
    try:
        yield StopOnInterrupt()
    finally:
        signal.signal(signal.SIGINT, previous)
    if hit.is_set():
        raise KeyboardInterrupt


def _probe_change(autoencoder, probe: np.ndarray) -> float:
    """‖P_learnt − P_data‖ / ‖P_data‖: how far training moved the probe (0 for a fixed probe)."""
    from ptycho.model_state import get_probe

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


def _check_architecture(N: int, path: Path) -> None:
    """The network needs N = 8·2^k >= 32 (ledger ARCH-N-POW2-001); imports the model module (TensorFlow)."""
    from ptycho.model import encoder_filters

    try:
        encoder_filters(N)
    except ValueError as exc:
        raise CommandError(f"{path}: key 'diffraction': {exc}") from None


def _log_to(path: Path):
    """The run log appended to at ``path`` (``ptycho.runlog.run_logging``), not echoed on the console."""
    from ptycho.runlog import run_logging

    return run_logging(path, LOGGER_NAME, console=False)
