"""End to end: the dose study's iterative and refined arms with the real solver, on a tiny configuration (slow).

One network arm trains (1 epoch, 64 groups); the iterative and refined arms run ``ptycho.refine`` for real.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ptycho.studies import dose

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "studies", "dose_response_study.py")
TINY = ["--n-train", "64", "--n-test", "16", "--nepochs", "1", "--batch-size", "16", "--no-test-ssim",
        "--refine-iterations", "4"]
ARMS = ("high_nll", "high_iterative", "high_nll_refined")
TIMEOUT_S = 900


@pytest.mark.slow
def test_iterative_and_refined_arms_end_to_end(tmp_path):
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, SCRIPT, "--output-dir", str(out), *TINY, "--arms", "high_iterative", "high_nll_refined"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path)
    log = (out / "run.log").read_text() if (out / "run.log").exists() else "(no run.log)"
    assert proc.returncode == 0, f"exit {proc.returncode}\nrun.log:\n{log}\nstderr:\n{proc.stderr[-5000:]}"

    metrics = json.loads((out / "metrics.json").read_text())["arms"]
    assert set(metrics) == set(ARMS)  # the refined arm brought its network arm
    for arm in ARMS:
        assert sorted(p.name for p in (out / arm).iterdir()) == sorted(dose.arm_files(arm))
        entry = metrics[arm]
        assert entry["status"] == "ok" and entry["method"] == dose.arm_method(arm)
        for key in ("amplitude_ssim", "amplitude_psnr", "wall_time_s", "cpu_time_s"):
            assert entry[key] is not None and math.isfinite(entry[key]), (arm, key)
    for arm in ("high_iterative", "high_nll_refined"):
        assert metrics[arm]["refine_iterations"] == 4
        assert metrics[arm]["refine_misfit_final"] < metrics[arm]["refine_misfit_initial"], arm
        with np.load(out / arm / "reconstruction.npz") as npz:
            assert npz["refine_misfit"].shape == (4,) and np.isfinite(npz["reconstruction"]).all()
    # all three arms are scored on one region: the bounding box of the test group centroids
    crops = {}
    for arm in ARMS:
        with np.load(out / arm / "reconstruction.npz") as npz:
            crops[arm] = np.array([*npz["reconstruction"].shape, *npz["origin"]], dtype=np.float64)
    for arm in ("high_iterative", "high_nll_refined"):  # (rows, cols, x0, y0) within a pixel of the network's
        assert np.all(np.abs(crops[arm] - crops["high_nll"]) <= 1.0), (arm, crops)
    assert (out / "methods_comparison.png").stat().st_size > 0
    assert "outputs complete" not in log

    again = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-5000:]
    log = (out / "run.log").read_text()
    assert log.count("outputs complete, skipping") == 2 and "reused as the start of a refined arm" in log
