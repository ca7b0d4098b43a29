"""Training history: the per-epoch record of a run, its summary, and how it is written.

A history is the dict ``ptycho.train.train`` returns: per-epoch lists (``loss``, ``val_loss``,
``learning_rate``, ...; ``test_ssim`` when a test set with ground truth was monitored) plus scalars
(``epochs_run``, ``wall_time_s``). Every run writes it twice, side by side: ``history.json`` (strict
JSON, non-finite values as null) and ``training.png`` (``ptycho.figures.training_figure``). Importing this
module does no work.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

from ptycho import figures, files

HISTORY_FILE = "history.json"
FIGURE_FILE = "training.png"


def as_plain(history: Mapping[str, Any]) -> dict[str, Any]:
    """``history`` with every per-epoch sequence as a list of Python floats (scalars kept); lists of text
    (``warnings``, ``ptycho.diagnostics``) stay text."""
    return {str(k): ([v if isinstance(v, str) else float(v) for v in values] if isinstance(values, (list, tuple))
                     else values)
            for k, values in dict(history).items()}


def summarise(history: Mapping[str, Any]) -> dict[str, Any]:
    """final_loss, final_val_loss, best_val_loss (None if absent) and epochs_run of a history dict."""
    loss = [float(v) for v in history.get("loss", [])]
    val = [float(v) for v in history.get("val_loss", [])]
    finite_val = [v for v in val if math.isfinite(v)]
    return {
        "final_loss": loss[-1] if loss else None,
        "final_val_loss": val[-1] if val else None,
        "best_val_loss": min(finite_val) if finite_val else None,
        "epochs_run": len(loss),
    }


def write_history(history: Mapping[str, Any], json_path: os.PathLike | str, png_path: os.PathLike | str,
                  title: str = "Training") -> None:
    """Write ``history`` to ``json_path`` (strict JSON) and its figure to ``png_path``, each atomically."""
    files.write_json(json_path, as_plain(history))
    files.save_figure(figures.training_figure(history, title=title), png_path)
