"""Run logs and provenance: where a command or study records what it did.

:func:`run_logging` attaches a log file (appended, so re-runs add to the record) and optionally the
console to a named logger for the duration of a run; :func:`versions` gives the software versions a
run's outputs record (the one version record: study summaries and the model archive's manifest read it).
Importing this module does no work.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

#: Distributions whose versions a run records.
RECORDED_DISTRIBUTIONS = ("numpy", "scipy", "tensorflow", "keras", "matplotlib", "scikit-image")
#: The importable module of a distribution whose name differs from it.
_MODULE_OF = {"scikit-image": "skimage"}

_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


@contextlib.contextmanager
def run_logging(path: os.PathLike | str, name: str, console: bool = True,
                level: int = logging.INFO) -> Iterator[logging.Logger]:
    """The logger ``name`` writing to ``path`` (appended) and, if ``console``, to stderr, for one run.

    The logger's level and propagation are restored and its handlers closed on exit, so runs in one
    process do not leak handlers into each other. ``path``'s directory must exist.
    """
    logger = logging.getLogger(name)
    handlers: list[logging.Handler] = [logging.FileHandler(Path(path), encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    saved = (logger.level, logger.propagate)
    for handler in handlers:
        handler.setFormatter(_FORMAT)
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def versions() -> dict[str, Optional[str]]:
    """Versions of Python, ptycho and the packages it depends on (None if one is not installed)."""
    import ptycho

    out: dict[str, Optional[str]] = {"python": sys.version.split()[0], "ptycho": ptycho.__version__}
    for dist in RECORDED_DISTRIBUTIONS:
        out[dist] = _version(dist)
    return out


def _version(dist: str) -> Optional[str]:
    """The installed version of distribution ``dist``; if its metadata is missing (installed under another
    name, e.g. ``tensorflow-cpu``), the ``__version__`` of its module when already imported, else None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(_MODULE_OF.get(dist, dist))
        return getattr(module, "__version__", None)
