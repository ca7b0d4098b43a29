"""End to end: the dose sweep on a tiny configuration, with real training and the real solver (slow, minutes).

2 doses × 4 methods × 2 seeds = 16 arms (8 networks of 1 epoch at N=32, 8 refinements of 3 iterations), each
run in a fresh interpreter through ``ptycho.studies.dose.run_sweep``; a second run reuses every arm.
"""
import json
import math

import numpy as np
import pytest

from ptycho.studies import dose

TINY = dict(N=32, object_size=80, nlines=30, buffer=8.0, n_train=40, n_test=32, nepochs=1, batch_size=8,
            test_ssim=False, refine_iterations=3)
DOSES, SEEDS = (1e4, 1e9), (0, 1)
TIMEOUT_S = 1200  # 16 arms on 2 shared cores (≈ 2.5 min when measured); a hang fails instead of blocking

RUN = """
import json
from ptycho.runlog import run_logging
from ptycho.studies import dose
config = dose.SweepConfig(output_dir={out!r}, doses={doses!r}, seeds={seeds!r}, study={study!r})
with run_logging(config.output_dir / "run.log", "ptycho.studies.dose", console=False) as log:
    result = dose.run_sweep(config, log=log)
print("REPORT" + json.dumps({{"ok": result.ok}}))
"""


def run_sweep_fresh(fresh_python, out):
    out.mkdir(exist_ok=True)
    stdout = fresh_python(RUN.format(out=str(out), doses=DOSES, seeds=SEEDS, study=TINY), timeout=TIMEOUT_S)
    return json.loads(next(l for l in stdout.splitlines() if l.startswith("REPORT"))[6:])


@pytest.mark.slow
def test_tiny_sweep_end_to_end_and_a_rerun_reuses_every_arm(tmp_path, fresh_python):
    out = tmp_path / "sweep"
    report = run_sweep_fresh(fresh_python, out)
    log = (out / "run.log").read_text()
    assert report["ok"], log[-8000:]
    config = dose.SweepConfig(output_dir=out, doses=DOSES, seeds=SEEDS, study=TINY)
    assert len(config.arms()) == 8
    for seed in SEEDS:
        study = config.seed_config(seed)
        for arm in config.arms():
            assert sorted(p.name for p in (out / f"seed{seed}" / arm).iterdir()) == sorted(dose.arm_files(arm))
            assert dose.is_complete(study, arm), (seed, arm)

    summary = json.loads((out / "sweep.json").read_text())
    assert summary["doses"] == list(DOSES) and summary["seeds"] == list(SEEDS)
    assert set(summary["results"]) == {"1e4", "1e9"}
    for label, row in summary["results"].items():
        assert set(row) == set(dose.SWEEP_METHODS)
        for method, entry in row.items():
            assert entry["status"] == ["ok", "ok"], (label, method)
            for metric in ("amplitude_ssim", "amplitude_psnr"):
                stats = entry[metric]
                assert stats["n"] == 2 and all(v is not None and math.isfinite(v) for v in stats["per_seed"])
                assert stats["mean"] == pytest.approx(np.mean(stats["per_seed"]))
                assert stats["std"] == pytest.approx(np.std(stats["per_seed"], ddof=1))
            assert -1.0 <= entry["amplitude_ssim"]["mean"] <= 1.0
            assert entry["settings"]["N"] == 32
    for metric in ("amplitude_ssim", "amplitude_psnr"):
        photons = summary["crossover"][metric]["photons"]
        assert photons == "none" or DOSES[0] <= photons <= DOSES[-1], summary["crossover"]
    # the refined arms did refine, from their own seed's network reconstruction
    for seed in SEEDS:
        for d in DOSES:
            stored = json.loads((out / f"seed{seed}" / dose.sweep_arm(d, "nll_refined") / "metrics.json").read_text())
            assert stored["source"]["arm"] == dose.sweep_arm(d, "nll") and stored["metrics"]["refine_iterations"] == 3

    import matplotlib.image

    png = matplotlib.image.imread(out / "sweep.png")
    assert png.ndim == 3 and png.shape[1] > png.shape[0] and png[..., :3].std() > 0.05

    before = (out / "sweep.json").read_text()
    again = run_sweep_fresh(fresh_python, out)
    log = (out / "run.log").read_text()
    assert again["ok"], log[-8000:]
    assert log.count("outputs complete, skipping") == 16
    assert log.count("wrote " + str(out / "sweep.json")) == 2
    assert (out / "sweep.json").read_text() == before  # every number the same
