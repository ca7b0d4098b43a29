"""What every ``ptycho`` subcommand shares: the one-line error, input and output checks, the data file
(loaded, grouped, its dose), the atomic writer of a reconstruction's outputs and TensorFlow's quiet start-up.

Nothing here imports TensorFlow at import time; :func:`start_tensorflow` is the one place that starts it.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

PROG = "ptycho"


class CommandError(Exception):
    """A problem with the command's arguments or inputs: reported as one line, exit status 2."""


def existing_file(path: str, flag: str) -> Path:
    """``path`` as a Path if it is a file; CommandError naming ``flag`` otherwise."""
    if not Path(path).is_file():
        raise CommandError(f"{flag} {path!r}: no such file")
    return Path(path)


def check_outputs(paths: Sequence[Path], force: bool, flag: Mapping[Path, str]) -> None:
    """No output may already exist unless ``force``; each output's directory must not be a file."""
    for path in paths:
        if path.exists() and path.is_dir():
            raise CommandError(f"{flag[path]} {str(path)!r}: is a directory")
        if path.exists() and not force:
            raise CommandError(f"{flag[path]} {str(path)!r}: exists (use --force to overwrite)")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise CommandError(f"{flag[path]} {str(path)!r}: {str(parent)!r} is not a directory")


def config_error(exc: ValueError, flags: Mapping[str, str]) -> CommandError:
    """``"<Config>.<field>: message"`` from a config dataclass as ``"argument --flag: message"``."""
    match = re.match(r"^\w+Config\.(\w+): (.*)$", str(exc), re.S)
    if match and match.group(1) in flags:
        return CommandError(f"argument {flags[match.group(1)]}: {match.group(2)}")
    return CommandError(str(exc))


def load_data(path: Path, nphotons: Optional[float] = None):
    """The validated NPZ at ``path`` (SPEC §3), ungrouped; CommandError with the §3 message otherwise.

    ``nphotons`` (expected counts per pattern) overrides the file's. Returns a ``ptycho.data.PtychoDataset``
    whose diffraction is (M, N, N) float32 amplitudes with N a multiple of 4.
    """
    from ptycho.data import load_npz

    try:
        dataset = load_npz(path, nphotons=nphotons)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if dataset.N % 4:
        raise CommandError(f"{path}: key 'diffraction': patterns are {dataset.N}x{dataset.N}, "
                           "N must be a multiple of 4")
    return dataset


def grouped(dataset, path: Path, gridsize: int, n_groups: Optional[int], seed: int, gridsize_flag: str,
            K: Optional[int] = None):
    """``dataset`` with its positions grouped into gridsize² neighbours among each position's K nearest
    (``ptycho.grouping``, seeded; K None: ``grouping.default_neighbours(gridsize)``).

    ``group_indices`` becomes (n_groups, gridsize²) int indices into the scan positions (n_groups None: one
    group per position). A grouping the data cannot hold is a CommandError naming ``gridsize_flag``, --K or
    --n-groups.
    """
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


def with_dose(dataset, path: Path):
    """``dataset`` with ``nphotons`` set: a file without it holds sqrt(counts), so nphotons = mean Σ X²
    (photons per pattern, the sum over each (N, N) pattern, in float64).

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


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose`` (show TensorFlow's start-up lines, see :func:`start_tensorflow`) to ``parser``."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up messages (hidden by default: its banner, and on a "
                             "machine without a GPU a 'failed call to cuInit' error line, which is harmless)")


def start_tensorflow(verbose: bool) -> None:
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


def write_reconstruction(outputs: Mapping[str, Path], rec, scored, title: str) -> None:
    """All of ``outputs`` as one atomic set (see ``ptycho.files.atomic_paths``); used by reconstruct and refine.

    outputs : role -> path; 'npz' (``ptycho.reconstruction.save_reconstruction`` of ``rec``) always, 'png' (the
        object's amplitude and phase, titled ``title``), 'metrics' (``scored.metrics`` as JSON) and 'comparison'
        (truth beside reconstruction) when present. ``scored`` is a ``ptycho.scan_region.ScanEvaluation``, or
        None when neither 'metrics' nor 'comparison' is asked for.
    """
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
