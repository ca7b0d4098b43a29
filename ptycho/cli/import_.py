"""``ptycho import``: convert a beamline file (tike, ptychodus, CXI, PtychoPINN) to a PtychoPINN NPZ.

The module is ``import_`` because ``import`` is a Python keyword.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptycho.argtypes import DefaultsHelpFormatter
from ptycho.cli.common import PROG, CommandError, check_outputs, existing_file


def add_parser(commands) -> None:
    """Add the ``import`` subcommand to ``commands`` (argparse subparsers), handled by :func:`import_data`."""
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

    src = existing_file(args.src, "SRC")
    diffraction = None if args.diffraction is None else existing_file(args.diffraction, "--diffraction")
    out = Path(args.out)
    check_outputs([out], args.force, {out: "--out"})
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
