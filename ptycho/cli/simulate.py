"""``ptycho simulate``: write a simulated data set (PtychoPINN NPZ, SPEC §3)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ptycho.argtypes import (DefaultsHelpFormatter, finite_float, nonnegative_float, nonnegative_int, positive_float,
                             positive_int)
from ptycho.cli.common import CommandError, check_outputs, config_error, existing_file, load_data

#: SimulationConfig field -> its flag, for :func:`ptycho.cli.common.config_error`.
SIMULATE_FLAGS = {"N": "--N", "gridsize": "--gridsize", "nphotons": "--nphotons", "n_positions": "--n-positions",
                  "object_kind": "--object", "object_size": "--object-size", "buffer": "--buffer", "seed": "--seed",
                  "probe_defocus": "--probe-defocus", "noise_seed": "--noise-seed", "object_seed": "--object-seed",
                  "scan_seed": "--scan-seed", "scan": "--scan", "grid_step": "--grid-step", "K": "--K",
                  "nlines": "--nlines"}


def add_parser(commands) -> None:
    """Add the ``simulate`` subcommand to ``commands`` (argparse subparsers), handled by :func:`simulate`."""
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
        source = existing_file(args.object_from, "--object-from")
        obj = load_data(source).obj
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
        raise config_error(exc, SIMULATE_FLAGS) from None
    out = Path(args.out)
    check_outputs([out], args.force, {out: "--out"})

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
