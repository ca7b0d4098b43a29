"""Atomic file output: every file the package writes appears complete or not at all.

A writer gets a temporary path in the destination's own directory (same file system, hidden name,
same suffix) and the temporary file is renamed onto the destination with ``os.replace`` only when
the writer returns; on any exception (a crash, Ctrl-C) the temporary file is removed and an existing
destination is left as it was. :func:`atomic_paths` does this for a *set* of files that belong
together (a model, its history and its figure): none of them is renamed into place until all have
been written.

JSON is written strictly (``allow_nan=False``): a non-finite float becomes ``null``.
Importing this module does no work; matplotlib is never imported here (figures are passed in).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np


def ordinary_mode(fd_or_path) -> None:
    """Give a file the mode ``open()`` would have: 0o666 less the process umask (0644 under umask 022).

    ``tempfile.mkstemp`` creates files with mode 0600 (private), which every output written through a
    temporary file and ``os.replace`` would otherwise keep (ledger FILE-MODE-001). ``fd_or_path``: an open
    file descriptor or a path.
    """
    mask = os.umask(0)  # the umask can only be read by setting it; restored at once
    os.umask(mask)
    mode = 0o666 & ~mask
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, mode)
    else:
        os.chmod(fd_or_path, mode)


@contextlib.contextmanager
def atomic_paths(paths: Sequence[os.PathLike | str]) -> Iterator[list[Path]]:
    """Yield one temporary path per destination in ``paths``; on success rename each onto its destination.

    The renames happen in the order given, after the ``with`` body has written every temporary file
    (a destination whose temporary file was not written raises ``FileNotFoundError`` and nothing is
    renamed). On error every temporary file is removed and the destinations are untouched.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
            os.close(fd)
            os.unlink(tmp)  # the writer creates it; an unwritten output is then detectable
            temps.append(Path(tmp))
        yield list(temps)
        unwritten = [str(t) for t, tmp in zip(targets, temps) if not tmp.is_file()]
        if unwritten:
            raise FileNotFoundError(f"{', '.join(unwritten)}: output was not written")
        for target, tmp in zip(targets, temps):
            ordinary_mode(tmp)  # a writer may itself have gone through mkstemp (0600)
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); on success rename it onto ``path``.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


def to_jsonable(value: Any) -> Any:
    """Convert numpy/TF scalars and arrays, paths and tuples to JSON types; NaN and ±inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, complex):
        return [to_jsonable(value.real), to_jsonable(value.imag)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "numpy"):  # a TF / Keras tensor or variable
        return to_jsonable(np.asarray(value.numpy()))
    return str(value)


def write_json(path: os.PathLike | str, payload: Any) -> None:
    """Write ``payload`` as strict JSON (non-finite floats as null), atomically."""
    text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def save_figure(fig: Any, path: os.PathLike | str, dpi: int = 100) -> None:
    """Save a matplotlib Figure as PNG (``dpi`` dots per inch), atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def write_npz(path: os.PathLike | str, arrays: Mapping[str, Any], compress: bool = True) -> None:
    """Write ``arrays`` (name -> array) as an NPZ archive, atomically; object arrays are refused.

    Object arrays would need pickle to read back, which this package never does.
    """
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in arrays.items():
        if value.dtype.hasobject:
            raise ValueError(f"{os.fspath(path)}: key {name!r}: object arrays are not written (they need pickle)")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)


def ensure_directory(path: os.PathLike | str, option: str) -> Path:
    """Create directory ``path`` (with parents) and check that it is writable; return it as a Path.

    ValueError ``"<option> '<path>': ..."`` if it exists as something else or cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {str(path)!r}: not a writable directory ({exc.strerror or exc})") from None
    return path
