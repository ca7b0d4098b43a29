"""``ptycho evaluate``: a reconstruction against the true object (SPEC §5), and the metrics table that
``reconstruct`` and ``refine`` print too. No TensorFlow."""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Mapping

from ptycho.argtypes import DefaultsHelpFormatter
from ptycho.cli.common import PROG, CommandError, existing_file


def add_parser(commands) -> None:
    """Add the ``evaluate`` subcommand to ``commands`` (argparse subparsers), handled by :func:`evaluate`."""
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

    rec_path = existing_file(args.reconstruction, "reconstruction")
    truth_path = existing_file(args.truth, "truth")
    try:
        rec = load_reconstruction(rec_path)
        truth = load_object(truth_path)
        scored = evaluate_on_scan(rec, truth)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("truth: "):  # the truth does not cover the scanned region (scan_region)
            message = f"{truth_path}: objectGuess: {message.removeprefix('truth: ')}"
        raise CommandError(message) from None
    print_agreement_warnings(scored.metrics, f"{rec_path} against {truth_path}")
    if args.json:
        print(json.dumps(files.to_jsonable(scored.metrics), indent=2, allow_nan=False))
    else:
        print(metrics_table(scored.metrics))
    return 0


def print_agreement_warnings(metrics: Mapping[str, Any], what: str) -> None:
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
