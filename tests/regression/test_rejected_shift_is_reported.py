"""EVAL-REJECTED-SHIFT-001: "registration shift [0, 0] px (rejected: too large, not applied)" contradicted itself.

A rejected registration sets the applied shift to [0, 0], and the table printed that applied shift as the one
rejected. The metrics now also hold ``shift_found`` (what registration found) and the table states it.
"""
import numpy as np

from ptycho import cli
from ptycho import evaluation as ev


def test_a_rejected_registration_reports_the_shift_it_found():
    rng = np.random.default_rng(11)
    truth = (1.0 + rng.random((84, 88))).astype(np.complex64)
    recon = np.zeros_like(truth)
    recon[5:20, 60:80] = 1.0  # one bright block far from anything in the truth
    result = ev.evaluate(recon, truth, max_shift=2.0)
    assert result["registration_rejected"] is True and result["shift"] == [0.0, 0.0]
    found = result["shift_found"]
    assert max(abs(found[0]), abs(found[1])) > 2.0
    table = cli.metrics_table(result)
    line = next(l for l in table.splitlines() if "registration" in l)
    assert line == (f"registration found a shift [dy, dx] = [{found[0]:.3g}, {found[1]:.3g}] px: rejected as too "
                    "large, not applied (the images are compared unshifted)")
    assert "[0, 0]" not in table
    accepted = ev.evaluate(truth, truth)
    assert accepted["shift_found"] == accepted["shift"] == [0.0, 0.0]
    assert "registration shift [dy, dx] = [0, 0] px (applied)" in cli.metrics_table(accepted)
