"""The dose-response study's bookkeeping on a fake arm runner: metrics, figures, skipping, failures, files.

No TensorFlow here: the arm runner and the ground truth are injected (``run_study(..., run_arm=fake)``).
"""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ptycho import files, history
from ptycho.studies import dose
from ptycho.studies.dose import ARM_NAMES, ArmResult, StudyConfig

OBJECT_SIZE = 40
CROP = (slice(8, 30), slice(5, 33))  # (22, 28) rows x cols, non-square to expose transposes
ORIGIN = (5.0, 8.0)  # [x, y] of crop pixel (0, 0)
HISTORY = {"loss": [3.0, 2.0], "val_loss": [3.5, float("nan")], "test_ssim": [0.2, 0.3]}


def fake_truth(config):
    """A (40, 40) complex64 object with structure in amplitude and phase."""
    y, x = np.mgrid[:OBJECT_SIZE, :OBJECT_SIZE]
    amp = 1.0 + 0.5 * np.sin(x / 3.0) * np.cos(y / 5.0)
    return (amp * np.exp(0.3j * np.sin(y / 4.0))).astype(np.complex64)


def fake_ssim(arm):
    return {"high_nll": 0.91, "high_mae": 0.87, "low_nll": 0.62, "low_mae": 0.44}[arm]


class FakeRunner:
    """Stands in for ``dose.run_arm``: writes the model, history and training-figure files, returns synthetic
    results."""

    def __init__(self, failing=()):
        self.failing = set(failing)
        self.calls = []

    def __call__(self, config, arm, truth, directory, log):
        self.calls.append(arm)
        log.info("fake arm %s", arm)
        if arm in self.failing:
            raise RuntimeError(f"boom in {arm}")
        (directory / "wts.h5.zip").write_bytes(b"fake model")
        history.write_history(HISTORY, directory / "history.json", directory / "training.png")
        nphotons, _ = dose.ARMS[arm]
        rng = np.random.default_rng(ARM_NAMES.index(arm))
        crop = truth[CROP]
        recon = (crop * 2.0 * np.exp(1j * 0.7) + rng.normal(0, 1 / math.log10(nphotons), crop.shape))
        metrics = {"amplitude_mae": 0.1, "phase_mae": 0.2, "psnr": 25.0, "ssim": fake_ssim(arm),
                   "frc50": 0.25, **history.summarise(HISTORY)}
        counts = rng.poisson(nphotons / 64**2 * np.ones((64, 64))).astype(np.float32)
        return ArmResult(arm=arm, status="ok", metrics=metrics, reconstruction=recon.astype(np.complex64),
                         truth=crop, origin=ORIGIN, diffraction_counts=counts)


def make_config(tmp_path, **kw):
    kw.setdefault("output_dir", tmp_path / "out")
    kw.setdefault("nepochs", 2)
    return StudyConfig(**kw)


def run(config, runner):
    return dose.run_study(config, run_arm=runner, make_truth=fake_truth)


def read_metrics(config):
    text = (config.output_dir / "metrics.json").read_text()
    return json.loads(text)


@pytest.fixture(scope="module")
def failed_study(tmp_path_factory):
    """All four arms through the fake runner, low_mae failing (shared: read it, never write to it)."""
    config = make_config(tmp_path_factory.mktemp("study"))
    runner = FakeRunner(failing={"low_mae"})
    return config, runner, run(config, runner)


@pytest.fixture
def fast_figures(monkeypatch):
    """Replace PNG rendering (the slow part) by a marker file, for tests about bookkeeping only."""
    monkeypatch.setattr(files, "save_figure", lambda fig, path: Path(path).write_bytes(b"png"))


@pytest.fixture
def study_copy(failed_study, tmp_path, fast_figures):
    """A private copy of ``failed_study``'s outputs to re-run on: (config, first StudyResult)."""
    import shutil

    config, _, result = failed_study
    shutil.copytree(config.output_dir, tmp_path / "out")
    return dataclasses.replace(config, output_dir=tmp_path / "out"), result


# -------------------------------------------------------------------------------------- metrics.json


def test_metrics_json_records_each_arm(failed_study):
    config, runner, result = failed_study
    assert runner.calls == list(ARM_NAMES)
    assert result.ok is False
    metrics = read_metrics(config)
    assert set(metrics["arms"]) == set(ARM_NAMES)
    for arm in ("high_nll", "high_mae", "low_nll"):
        entry = metrics["arms"][arm]
        assert entry["status"] == "ok"
        assert entry["ssim"] == fake_ssim(arm)
        assert (entry["nphotons"], entry["loss"]) == dose.ARMS[arm]
        assert entry["final_loss"] == 2.0 and entry["best_val_loss"] == 3.5 and entry["epochs_run"] == 2
        assert entry["final_val_loss"] is None  # NaN written as null, JSON stays strict
        assert entry["wall_time_s"] >= 0 and entry["skipped"] is False
        for key in ("amplitude_mae", "phase_mae", "psnr", "frc50"):
            assert math.isfinite(entry[key])
    failed = metrics["arms"]["low_mae"]
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom in low_mae"
    assert (failed["nphotons"], failed["loss"]) == (1e4, "mae")
    assert metrics["config"]["nepochs"] == 2 and metrics["config"]["n_train"] == dose.PRESETS["quick"]["n_train"]
    assert metrics["versions"]["numpy"] == np.__version__


def test_arm_outputs_on_disk(failed_study):
    config, _, result = failed_study
    for arm in ("high_nll", "high_mae", "low_nll"):
        directory = config.output_dir / arm
        assert sorted(p.name for p in directory.iterdir()) == sorted(dose.ARM_FILES)
        with np.load(directory / "reconstruction.npz") as npz:
            np.testing.assert_array_equal(npz["reconstruction"], result.arms[arm].reconstruction)
            np.testing.assert_array_equal(npz["truth"], fake_truth(None)[CROP])
            np.testing.assert_array_equal(npz["origin"], ORIGIN)
        assert dose.is_complete(config, arm)
    assert not dose.is_complete(config, "low_mae")
    assert not (config.output_dir / "low_mae" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------- figures


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_dose_figure_panels_and_no_data(failed_study):
    _, _, result = failed_study
    fig = dose.build_dose_figure(result.arms)
    axes = fig.axes[:6]  # colorbars are appended after the six panels
    grid = {(row, col): axes[row * 3 + col] for row in range(2) for col in range(3)}
    expected = {(0, 1): "high_mae", (0, 2): "high_nll", (1, 2): "low_nll"}
    for (row, col), arm in expected.items():
        ax = grid[row, col]
        (image,) = ax.get_images()
        np.testing.assert_allclose(image.get_array(), np.abs(result.arms[arm].reconstruction), rtol=1e-6)
        assert ax.get_title() == f"{arm}  SSIM = {fake_ssim(arm):.3f}"
        assert "No Data" not in _texts(ax)
    for row, dose_name in enumerate(("high", "low")):
        (image,) = grid[row, 0].get_images()
        source = result.arms[f"{dose_name}_nll"]
        np.testing.assert_allclose(image.get_array(), np.log10(1 + source.diffraction_counts), rtol=1e-6)
    failed = grid[1, 1]
    assert failed.get_images() == [] and _texts(failed) == ["No Data"]
    assert "low_mae" in failed.get_title()


def test_dose_figure_no_data_only_where_an_arm_failed(tmp_path, fast_figures):
    config = make_config(tmp_path, arms=("high_nll", "high_mae", "low_nll"))
    result = run(config, FakeRunner())
    fig = dose.build_dose_figure(result.arms)
    texts = [t for ax in fig.axes for t in _texts(ax)]
    assert "No Data" not in texts
    assert texts == ["Not run"]  # low_mae was not requested: marked, but not as missing data
    assert sum(len(ax.get_images()) for ax in fig.axes[:6]) == 5


def test_dose_png_holds_six_panels(failed_study):
    """The saved PNG: right size, and each image panel's region is non-uniform."""
    import matplotlib.image

    config, _, result = failed_study
    png = matplotlib.image.imread(config.output_dir / "dose_comparison.png")
    assert png.shape[:2] == (850, 1400)
    fig = dose.build_dose_figure(result.arms)
    fig.canvas.draw()  # the layout of the saved file
    for index, ax in enumerate(fig.axes[:6]):
        x0, y0, x1, y1 = ax.get_position().extents
        rows = slice(int((1 - y1) * 850) + 2, int((1 - y0) * 850) - 2)
        cols = slice(int(x0 * 1400) + 2, int(x1 * 1400) - 2)
        spread = png[rows, cols, :3].std()
        if index == 4:  # low_mae failed: text only
            assert ax.get_images() == []
        else:
            assert spread > 0.05, f"panel {index} looks empty"


def test_reconstruction_figure(failed_study):
    _, _, result = failed_study
    fig = dose.build_reconstruction_figure(result.arms)
    panels = fig.axes[:10]
    top, bottom = panels[:5], panels[5:]
    np.testing.assert_allclose(top[0].get_images()[0].get_array(), np.abs(fake_truth(None)[CROP]), rtol=1e-6)
    for col, arm in enumerate(ARM_NAMES, start=1):
        if arm == "low_mae":
            assert _texts(top[col]) == ["No Data"] and _texts(bottom[col]) == ["No Data"]
            continue
        shown = top[col].get_images()[0].get_array()
        # aligned for display: mean amplitude equal to the truth's
        assert np.mean(shown) == pytest.approx(np.mean(np.abs(fake_truth(None)[CROP])), rel=1e-5)
        assert fake_ssim(arm) == pytest.approx(float(top[col].get_title().split("=")[1].split()[0]), abs=1e-3)


def test_reconstruction_figure_all_failed():
    arms = {a: ArmResult(arm=a, status="failed", error="x") for a in ARM_NAMES}
    fig = dose.build_reconstruction_figure(arms)
    assert all(_texts(ax) == ["No Data"] for ax in fig.axes)
    fig = dose.build_dose_figure(arms)
    assert all(_texts(ax) == ["No Data"] for ax in fig.axes)


# ---------------------------------------------------------------------------- re-runs and --force


def test_rerun_skips_complete_arms_and_retries_failed(study_copy):
    config, first = study_copy
    before = {a: (config.output_dir / a / "reconstruction.npz").stat().st_mtime_ns for a in ARM_NAMES[:3]}
    runner = FakeRunner()
    second = run(config, runner)
    assert runner.calls == ["low_mae"]
    assert second.ok
    for arm in ARM_NAMES[:3]:
        assert second.arms[arm].skipped
        assert (config.output_dir / arm / "reconstruction.npz").stat().st_mtime_ns == before[arm]
        np.testing.assert_array_equal(second.arms[arm].reconstruction, first.arms[arm].reconstruction)
    metrics = read_metrics(config)
    assert metrics["arms"]["high_nll"]["skipped"] is True
    assert metrics["arms"]["high_nll"]["ssim"] == fake_ssim("high_nll")
    assert metrics["arms"]["low_mae"]["status"] == "ok"


def test_force_retrains_every_requested_arm(study_copy):
    config, _ = study_copy
    runner = FakeRunner()
    run(dataclasses.replace(config, force=True), runner)
    assert runner.calls == list(ARM_NAMES)


def test_changed_configuration_is_not_reused(study_copy):
    config, _ = study_copy
    runner = FakeRunner()
    run(dataclasses.replace(config, nepochs=3), runner)
    assert runner.calls == list(ARM_NAMES)


def test_failed_forced_retrain_invalidates_the_arm(study_copy):
    config, _ = study_copy
    forced = dataclasses.replace(config, force=True, arms=("high_nll",))
    result = run(forced, FakeRunner(failing={"high_nll"}))
    assert not result.ok
    assert not dose.is_complete(config, "high_nll")  # stale outputs never pass for the new run's
    assert dose.is_complete(config, "high_mae")


def test_unrequested_complete_arms_are_reported(study_copy):
    config, _ = study_copy
    runner = FakeRunner()
    result = run(dataclasses.replace(config, arms=("low_mae",)), runner)
    assert runner.calls == ["low_mae"] and result.ok
    assert {a: r.status for a, r in result.arms.items()} == {**dict.fromkeys(ARM_NAMES, "ok"),
                                                            **dict.fromkeys(dose.REFINE_ARMS, "not run")}
    assert set(read_metrics(config)["arms"]) == set(ARM_NAMES)


# -------------------------------------------------------------------------------- main, files, log


def test_main_exit_status_log_and_no_stray_files(tmp_path, monkeypatch, fast_figures):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "nested" / "out"
    argv = ["--output-dir", str(out), "--nepochs", "2", "--n-train", "20", "--n-test", "8"]
    assert dose.main(argv, run_arm=FakeRunner(failing={"high_mae"}), make_truth=fake_truth) == 1
    log = (out / "run.log").read_text()
    assert "arm high_mae: FAILED" in log and "Traceback" in log and "boom in high_mae" in log
    assert "arm low_nll: done" in log
    assert dose.main(argv, run_arm=FakeRunner(), make_truth=fake_truth) == 0
    assert "outputs complete, skipping" in (out / "run.log").read_text()
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "nested"]
    expected = {"metrics.json", "dose_comparison.png", "reconstructions.png", "methods_comparison.png", "run.log",
                *ARM_NAMES}
    assert {p.name for p in out.iterdir()} == expected  # no temporaries left
    assert not any(p.name.startswith(".") for p in out.rglob("*"))


def test_find_metric_prefers_exact_then_amplitude():
    assert dose.find_metric({"ssim_phase": 0.1, "ssim_amplitude": 0.8}, "ssim") == 0.8
    assert dose.find_metric({"ssim": 0.5, "amp_ssim": 0.8}, "ssim") == 0.5
    assert dose.find_metric({"psnr": 1.0}, "ssim") is None


# ------------------------------------------------------------------------------------------- config


def test_presets_and_overrides(tmp_path):
    quick = StudyConfig(output_dir=tmp_path)
    assert (quick.preset, quick.n_train, quick.n_test, quick.nepochs, quick.batch_size) == (
        "quick", *[dose.PRESETS["quick"][k] for k in ("n_train", "n_test", "nepochs", "batch_size")])
    paper = StudyConfig(output_dir=tmp_path, preset="paper", nepochs=3)
    assert (paper.n_train, paper.n_test, paper.nepochs, paper.batch_size) == (2000, 512, 3, 16)
    assert StudyConfig(output_dir=tmp_path, arms=["low_mae,high_nll"]).arms == ("high_nll", "low_mae")


@pytest.mark.parametrize("kwargs, option", [
    ({"preset": "slow"}, "preset"), ({"nepochs": 0}, "nepochs"), ({"batch_size": 2.5}, "batch_size"),
    ({"n_train": 19}, "n_train"), ({"n_test": 3}, "n_test"), ({"seed": -1}, "seed"),
    ({"arms": ("high_nll", "mid_nll")}, "arms"), ({"arms": ()}, "arms"), ({"force": "yes"}, "force"),
    ({"output_dir": ""}, "output_dir"), ({"keras_verbose": 3}, "keras_verbose"),
])
def test_config_rejects_with_option_name(tmp_path, kwargs, option):
    kwargs = {"output_dir": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=rf"StudyConfig\.{option} \(--{option.replace('_', '-')}\)"):
        StudyConfig(**kwargs)


def test_config_rejects_invalid_simulation_settings(tmp_path):
    with pytest.raises(ValueError, match=r"SimulationConfig\.buffer"):
        StudyConfig(output_dir=tmp_path, buffer=70.0)


def test_arms_share_object_positions_and_same_dose_noise(tmp_path):
    """Same positions for every arm; same noise for the two losses at one dose (paired design)."""
    config = StudyConfig(output_dir=tmp_path)
    sims = {(a, s): config.simulation_config(a, s) for a in ARM_NAMES for s in ("train", "test")}
    for split in ("train", "test"):
        assert len({sims[a, split].seed for a in ARM_NAMES}) == 1
        assert sims["high_nll", split] == sims["high_mae", split]
        assert sims["low_nll", split] == sims["low_mae", split]
        assert sims["high_nll", split].noise_seed != sims["low_nll", split].noise_seed
        assert (sims["high_nll", split].nphotons, sims["low_nll", split].nphotons) == (1e9, 1e4)
    assert sims["high_nll", "train"].seed != sims["high_nll", "test"].seed  # test positions are unseen
    assert sims["high_nll", "train"].noise_seed != sims["high_nll", "test"].noise_seed
    sim = sims["high_nll", "train"]
    assert (sim.N, sim.gridsize, sim.object_size, sim.buffer, sim.scan, sim.n_positions, sim.n_groups) == (
        64, 2, 128, 15.0, "random", dose.PRESETS["quick"]["n_train"], dose.PRESETS["quick"]["n_train"])
    assert config.training_config("low_mae").loss == "mae" and config.training_config("low_nll").loss == "nll"
    other = StudyConfig(output_dir=tmp_path, seed=1).simulation_config("high_nll", "train")
    assert other.seed != sim.seed and other.noise_seed != sim.noise_seed


def test_uncovered_pixels_are_masked_in_figures(failed_study):
    _, _, result = failed_study
    arm = result.arms["high_nll"]
    coverage = np.ones(arm.reconstruction.shape, bool)
    coverage[:3, :5] = False
    covered = dataclasses.replace(arm, extras={"coverage": coverage})
    fig = dose.build_dose_figure({**result.arms, "high_nll": covered})
    shown = fig.axes[2].get_images()[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), ~coverage)
    np.testing.assert_allclose(shown.data, np.abs(arm.reconstruction), rtol=1e-6)


def test_every_arm_trains_the_same_epoch_budget(tmp_path):
    """Early stopping must not give arms unequal budgets (it cut three arms at the flat-object plateau)."""
    config = StudyConfig(output_dir=tmp_path, nepochs=7)
    for arm in ARM_NAMES:
        training = config.training_config(arm)
        assert training.nepochs == 7 and training.early_stopping_patience >= training.nepochs


def test_study_uses_a_defocused_probe_and_the_unet(tmp_path):
    """Ledger STUDY-MODEL-001: the study's probe and network, part of every arm's fingerprint."""
    from ptycho.simulate import default_probe
    from ptycho.studies.dose.config import STUDY_PROBE_DEFOCUS, StudyConfig

    cfg = StudyConfig(output_dir=tmp_path)
    assert (cfg.n_train, cfg.n_test, cfg.nepochs, cfg.batch_size) == (1024, 512, 8, 8)  # STUDY-QUICK-PRESET-001, STUDY-TEST-DENSITY-001
    sim = cfg.simulation_config("low_mae", "test")
    assert sim.probe_defocus == STUDY_PROBE_DEFOCUS == pytest.approx(5 * np.pi)
    probe = default_probe(sim)
    real = default_probe(dataclasses.replace(sim, probe_defocus=0.0))
    np.testing.assert_allclose(np.abs(probe), np.abs(real), rtol=1e-6)
    radius = 0.12 * 64 / 0.7  # the default disk's edge; centre pixel (31, 31) has r² = 0.5
    assert np.angle(probe[31, 31]) == pytest.approx(5 * np.pi * 0.5 / radius**2, rel=1e-4)
    assert np.angle(probe[31, 41] * np.conj(real[31, 41])) == pytest.approx(
        np.angle(np.exp(1j * 5 * np.pi * (9.5**2 + 0.25) / radius**2)), abs=1e-4)
    assert cfg.model_options() == {"architecture": "unet", "input_normalization": "standardize",
                                   "n_filters_scale": 1}
    reference = StudyConfig(output_dir=tmp_path, architecture="reference", n_filters_scale=2)
    assert reference.model_options() == {"architecture": "reference", "input_normalization": "none",
                                         "n_filters_scale": 2}
    assert cfg.arm_fingerprint("high_nll") != reference.arm_fingerprint("high_nll")
    with pytest.raises(ValueError, match="architecture"):
        StudyConfig(output_dir=tmp_path, architecture="resnet")
    with pytest.raises(ValueError, match="probe_defocus"):
        StudyConfig(output_dir=tmp_path, probe_defocus=float("nan"))


def test_a_network_arms_result_that_cannot_be_right_is_warned_about():
    """STUDY-ARM-WARNINGS-001: the training run's warnings and the object's (at the ceiling, constant) are the arm's
    ``metrics['warnings']``; a healthy result has none."""
    from ptycho.reconstruction import Reconstruction
    from ptycho.studies.dose.arm import result_warnings

    coverage = np.zeros((12, 12), bool)
    coverage[2:10, 2:10] = True
    stuck = np.where(coverage, 1.99, 0.0).astype(np.complex64)  # uncovered zeros must not count
    flat = {"loss": [0.2184, 0.2167], "val_loss": [0.2269339, 0.2269339]}
    from ptycho import diagnostics

    flat["warnings"] = diagnostics.training_warnings(flat)
    warnings = result_warnings(flat, Reconstruction(obj=stuck, x0=0, y0=0, coverage=coverage))
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("the validation loss never moved: 0.226934 in all 2 epochs")
    assert "sits at the amplitude ceiling: 100 % of its 64 pixels" in warnings[1]
    assert warnings[2].startswith("the reconstructed object is constant")
    rng = np.random.default_rng(0)
    healthy = (1.0 + 0.3 * rng.random((12, 12))).astype(np.complex64)
    assert result_warnings({"loss": [1.0, 0.5], "warnings": []},
                           Reconstruction(obj=healthy, x0=0, y0=0, coverage=coverage)) == []
