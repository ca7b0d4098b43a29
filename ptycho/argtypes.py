"""Command-line value types and the parser every ``ptycho`` command uses.

Each type is an argparse ``type=`` callable that rejects a bad value with an ``ArgumentTypeError`` saying
what was expected, so argparse reports ``argument --flag: must be ...``. :class:`OneLineParser`
prints such errors as one line (no usage block) and exits with status 2.
Importing this module does no work.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, NoReturn


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Append ``(default: X)`` to an option's help (floats as ``%g``: 1e+09, 0.001), unless the option is
    required, has no default (None / False), or its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.required or default is None or default is False or default is argparse.SUPPRESS \
                or "default" in text:
            return text
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, ``"<prog>: error: <message>"``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def int_at_least(minimum: int, description: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= ``minimum`` ("must be a <description> integer")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {description} integer, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "positive")
nonnegative_int = int_at_least(0, "non-negative")


def positive_float(text: str) -> float:
    """An argparse ``type`` accepting finite numbers > 0 (``1e9`` style allowed)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse ``type`` accepting any finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse ``type`` accepting finite numbers >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def holdout_fraction(text: str) -> float:
    """``--holdout``: the fraction of scan positions left out of a refinement, a number in [0, 0.5)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value < 0.5):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 0.5), got {text!r}")
    return value


def stitch_window(text: str):
    """``--stitch-window``: 'auto' (the whole predicted window, tapered) or a positive integer (pixels)."""
    if text == "auto":
        return "auto"
    return int_at_least(1, "positive")(text)
