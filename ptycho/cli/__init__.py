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

The package holds one module per subcommand, each with ``add_parser(commands)`` (its arguments) and its
handler, and ``common`` for what they share::

    cli/__init__.py     build_parser, main (the console script ``ptycho = ptycho.cli:main``)
    cli/common.py       CommandError, input/output checks, load_data, grouped, with_dose, start_tensorflow
    cli/simulate.py     ptycho simulate     (handler ``simulate``)
    cli/train.py        ptycho train        (handler ``train``)
    cli/reconstruct.py  ptycho reconstruct  (handler ``reconstruct``)
    cli/evaluate.py     ptycho evaluate     (handler ``evaluate``; ``metrics_table``)
    cli/refine.py       ptycho refine       (handler ``refine_command``; ``refine_summary``)
    cli/import_.py      ptycho import       (handler ``import_data``)

``ptycho.cli.simulate``, ``.train``, ``.reconstruct`` and ``.evaluate`` name the modules; their handlers are
``ptycho.cli.train.train`` and so on. Importing the package imports its modules, none of which imports
TensorFlow: ``ptycho COMMAND --help`` never starts it.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ptycho.argtypes import OneLineParser
from ptycho.cli import evaluate, import_, reconstruct, refine, simulate, train
from ptycho.cli.common import PROG, CommandError
from ptycho.cli.evaluate import TABLE_ROWS, metrics_table
from ptycho.cli.import_ import import_data
from ptycho.cli.reconstruct import REFINE_DEFAULT
from ptycho.cli.refine import refine_command, refine_summary
from ptycho.cli.simulate import SIMULATE_FLAGS
from ptycho.cli.train import K_HELP, LOGGER_NAME, TRAIN_FLAGS, TRAIN_LOG

__all__ = ["PROG", "CommandError", "build_parser", "main", "metrics_table", "TABLE_ROWS", "refine_summary",
           "refine_command", "import_data", "REFINE_DEFAULT", "SIMULATE_FLAGS", "TRAIN_FLAGS", "TRAIN_LOG",
           "LOGGER_NAME", "K_HELP"]


def build_parser() -> argparse.ArgumentParser:
    """The ``ptycho`` parser with its six subcommands."""
    parser = OneLineParser(prog=PROG, description="Simulate, train, reconstruct and evaluate ptychography data "
                           "in the PtychoPINN NPZ format. 'ptycho COMMAND --help' describes each command.")
    import ptycho

    parser.add_argument("--version", action="version", version=f"%(prog)s {ptycho.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (simulate, train, reconstruct, evaluate, refine, import_):
        command.add_parser(commands)
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
