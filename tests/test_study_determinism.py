"""Issue 23: two runs of the quick study's ``high_mae`` arm with the same seed agree (slow, ~10 min here).

DETERMINISM-CPU-001 states what repeats: the same seed, machine type and thread count give the same
weights. This pins it on the study's own quick preset, in two fresh processes, as the README quotes it.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "studies", "dose_response_study.py")
TIMEOUT_S = 1800


def high_mae_ssim(out_dir) -> float:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, SCRIPT, "--output-dir", str(out_dir), "--arms", "high_mae"],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=out_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads((out_dir / "metrics.json").read_text())["arms"]["high_mae"]
    assert entry["status"] == "ok", entry
    return float(entry["amplitude_ssim"])


@pytest.mark.slow
def test_quick_study_high_mae_repeats_within_1e_3(tmp_path):
    first, second = high_mae_ssim(tmp_path / "a"), high_mae_ssim(tmp_path / "b")
    assert abs(first - second) <= 1e-3, (first, second)
    assert first > 0.7, first  # it learnt (README: 0.808)
