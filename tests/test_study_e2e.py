"""End to end: the dose-response script on a tiny configuration, in a fresh process (slow, minutes)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from ptycho.scan_region import MIN_CROP
from ptycho.studies import dose

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "studies", "dose_response_study.py")
TINY = ["--n-train", "64", "--n-test", "16", "--nepochs", "1", "--batch-size", "16"]
TIMEOUT_S = 1500  # four XLA-compiled arms on 2 shared cores; a hang fails instead of blocking the suite
METRIC_KEYS = ("final_loss", "epochs_run", "wall_time_s", "nphotons", "intensity_scale")


def run_study_script(out_dir, *extra):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        return subprocess.run([sys.executable, SCRIPT, "--output-dir", str(out_dir), *TINY, *extra],
                              capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=out_dir.parent)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"study did not finish in {TIMEOUT_S} s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")


@pytest.mark.slow
def test_study_script_tiny_config(tmp_path):
    out = tmp_path / "study"
    proc = run_study_script(out)
    log = (out / "run.log").read_text() if (out / "run.log").exists() else "(no run.log)"
    assert proc.returncode == 0, f"exit {proc.returncode}\nrun.log:\n{log}\nstderr:\n{proc.stderr[-5000:]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]  # nothing written beside DIR

    for arm in dose.ARM_NAMES:
        for name in dose.ARM_FILES:
            assert (out / arm / name).stat().st_size > 0, f"{arm}/{name} missing or empty"
        history = json.loads((out / arm / "history.json").read_text())
        assert len(history["loss"]) == 1 and all(math.isfinite(v) for v in history["loss"])
        assert len(history["test_ssim"]) == 1 and -1.0 <= history["test_ssim"][0] <= 1.0  # monitored by default
        with np.load(out / arm / "reconstruction.npz") as npz:
            rec, truth = npz["reconstruction"], npz["truth"]
            assert rec.shape == truth.shape and rec.ndim == 2 and min(rec.shape) >= MIN_CROP
            assert np.isfinite(rec).all() and np.isfinite(npz["diffraction_counts"]).all()
            assert npz["diffraction_counts"].shape == (64, 64)
        assert f"arm {arm}: epoch 1/1" in log

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["arms"]) == set(dose.ARM_NAMES)
    for arm, entry in metrics["arms"].items():
        assert entry["status"] == "ok", entry
        assert dose.find_metric(entry, "ssim") is not None
        numbers = {k: v for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert all(math.isfinite(v) for v in numbers.values()), (arm, entry)
        assert all(entry[k] is not None for k in METRIC_KEYS), (arm, entry)
        assert (entry["nphotons"], entry["loss"]) == dose.ARMS[arm]
    # the two dose levels saw different photon counts in the same test pattern
    with np.load(out / "high_nll" / "reconstruction.npz") as hi, np.load(out / "low_nll" / "reconstruction.npz") as lo:
        assert hi["diffraction_counts"].sum() > 1e3 * lo["diffraction_counts"].sum()

    # all six panels of the saved figure hold image data: rebuild it from the outputs and read the PNG
    import matplotlib.image

    config = dose.StudyConfig(output_dir=out, n_train=64, n_test=16, nepochs=1, batch_size=16)
    results = {arm: dose.load_arm(config, arm) for arm in dose.ARM_NAMES}
    fig = dose.build_dose_figure(results)
    fig.canvas.draw()
    png = matplotlib.image.imread(out / "dose_comparison.png")
    height, width = png.shape[:2]
    for ax in fig.axes[:6]:
        (image,) = ax.get_images()
        data = np.asarray(image.get_array())
        assert np.isfinite(data).all() and np.ptp(data) > 0
        assert "No Data" not in [t.get_text() for t in ax.texts]
        x0, y0, x1, y1 = ax.get_position().extents
        region = png[int((1 - y1) * height) + 2:int((1 - y0) * height) - 2, int(x0 * width) + 2:int(x1 * width) - 2]
        assert region[..., :3].std() > 0.02, ax.get_title()
    assert (out / "reconstructions.png").stat().st_size > 0

    # a re-run skips every complete arm and still succeeds
    again = run_study_script(out)
    assert again.returncode == 0, again.stderr[-5000:]
    assert (out / "run.log").read_text().count("outputs complete, skipping") == 4
