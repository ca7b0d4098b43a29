"""The dose sweep (issue 21 item 3): aggregation, crossover, resumability and the command line.

Nothing here trains or iterates: arms run through a fake runner with known scores; the configurations are
real (a tiny N=16 one where data are simulated). The sweep end to end is tests/test_study_sweep_e2e.py (slow).
"""
import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ptycho import files, history
from ptycho.studies import dose
from ptycho.studies.dose import ArmResult, StudyConfig, SweepConfig, aggregate, crossover, sweep_arm
from ptycho.studies.dose.cli import is_sweep

TINY = dict(N=16, object_size=48, nlines=20, buffer=8.0, n_train=20, n_test=24, nepochs=1, batch_size=4,
            test_ssim=False, refine_iterations=3)
CROP = (slice(8, 30), slice(5, 33))


def tiny_sweep(tmp_path, **kw):
    kw.setdefault("output_dir", tmp_path / "sweep")
    kw.setdefault("doses", (1e5, 1e9))
    kw.setdefault("seeds", (0, 1))
    return SweepConfig(study=dict(TINY), **kw)


def fake_score(arm, seed):
    """SSIM of a fake arm: network NLL 0.7, MAE 0.6, refined 0.8, iterative 0.1·log10(dose) − 0.15 (below network
    NLL up to 1e7 photons, above it at 1e9), each + 0.01·seed; PSNR = 40·SSIM."""
    nphotons, method = dose.config.parse_sweep_arm(arm)
    base = {"nll": 0.7, "mae": 0.6, "nll_refined": 0.8, "iterative": 0.1 * math.log10(nphotons) - 0.15}[method]
    return base + 0.01 * seed


class FakeRunner:
    """Stands in for ``dose.run_arm``: writes a network arm's model and history files and returns a synthetic
    result scored ``fake_score``; a refined arm records the provenance of its stored source, as the real one."""

    def __init__(self, failing=(), warnings=None):
        self.failing = set(failing)
        self.warnings = dict(warnings or {})  # (seed, arm) -> the arm's warnings
        self.calls = []

    def __call__(self, config, arm, truth, directory, log):
        self.calls.append((config.seed, arm))
        if (config.seed, arm) in self.failing:
            raise RuntimeError(f"boom in {arm}")
        if dose.arm_method(arm) == "network":
            (directory / "wts.h5.zip").write_bytes(b"fake model")
            history.write_history({"loss": [2.0, 1.0]}, directory / "history.json", directory / "training.png")
        ssim = fake_score(arm, config.seed)
        full = (truth * (1.0 + ssim)).astype(np.complex64)
        provenance = dose.arm.source_provenance(config, arm) if dose.arm_source(arm) else {}
        metrics = {"amplitude_ssim": ssim, "amplitude_psnr": 40.0 * ssim,
                   "warnings": self.warnings.get((config.seed, arm), [])}
        return ArmResult(arm=arm, status="ok", metrics=metrics,
                         reconstruction=full[CROP], truth=truth[CROP], origin=(5.0, 8.0),
                         diffraction_counts=np.ones((16, 16), np.float32), provenance=provenance,
                         extras={"reconstruction_full": full, "origin_full": np.array([0.0, 0.0]),
                                 "coverage_full": np.ones(full.shape, bool)})


@pytest.fixture
def fast_figures(monkeypatch):
    """PNG rendering (the slow part) replaced by a marker file."""
    monkeypatch.setattr(files, "save_figure", lambda fig, path: Path(path).write_bytes(b"png"))


# ---------------------------------------------------------------------------------------- aggregation


def test_aggregate_gives_mean_and_sample_std_over_seeds():
    out = aggregate([0.5, 0.7, 0.9])
    assert out["per_seed"] == [0.5, 0.7, 0.9] and out["n"] == 3
    assert out["mean"] == pytest.approx(0.7) and out["std"] == pytest.approx(0.2)  # ddof=1: sqrt(0.08 / 2)
    assert aggregate([1.0, 3.0])["std"] == pytest.approx(math.sqrt(2.0))
    missing = aggregate([0.4, None, float("nan"), 0.8])  # a failed arm, a non-finite score: left out
    assert missing["per_seed"] == [0.4, None, None, 0.8] and missing["n"] == 2
    assert missing["mean"] == pytest.approx(0.6) and missing["std"] == pytest.approx(math.sqrt(0.08))
    assert aggregate([0.3]) == {"per_seed": [0.3], "mean": 0.3, "std": None, "n": 1}
    assert aggregate([None, None]) == {"per_seed": [None, None], "mean": None, "std": None, "n": 0}


# ------------------------------------------------------------------------------------------ crossover


def test_crossover_between_two_doses_is_interpolated_in_log10_dose():
    doses = [1e3, 1e4, 1e5, 1e6, 1e7, 1e9]
    network = [0.8] * 6
    iterative = [0.3, 0.5, 0.6, 0.7, 1.0, 1.0]  # differences -0.5 -0.3 -0.2 -0.1 +0.2 +0.2
    out = crossover(doses, network, iterative)
    assert out["between"] == [1e6, 1e7]
    assert out["log10_photons"] == pytest.approx(6 + 0.1 / 0.3)  # a third of the way from 1e6 to 1e7 in log10
    assert out["photons"] == pytest.approx(10 ** (6 + 1 / 3))
    # across a gap in log dose: -0.1 at 1e7 and +0.3 at 1e9 -> a quarter of the way, 10^7.5
    gap = crossover([1e7, 1e9], [0.9, 0.6], [0.8, 0.9])
    assert gap["between"] == [1e7, 1e9] and gap["log10_photons"] == pytest.approx(7.5)
    # a dose where either mean is unknown is left out
    skipped = crossover([1e3, 1e4, 1e5], [0.8, None, 0.8], [0.7, 0.9, 0.9])
    assert skipped["between"] == [1e3, 1e5] and skipped["log10_photons"] == pytest.approx(4.0)
    # a tie counts as iterative >= network, at that dose
    tie = crossover([1e3, 1e4], [0.8, 0.8], [0.7, 0.8])
    assert tie["photons"] == pytest.approx(1e4) and tie["between"] == [1e3, 1e4]


def test_crossover_none_and_at_the_first_dose():
    none = crossover([1e3, 1e4, 1e9], [0.8, 0.8, 0.9], [0.1, 0.5, 0.89])
    assert none["photons"] == "none" and none["log10_photons"] is None and none["between"] is None
    assert crossover([], [], [])["photons"] == "none"
    first = crossover([1e3, 1e4], [0.5, 0.8], [0.6, 0.7])  # the lowest dose already; later dips do not matter
    assert first["photons"] == 1e3 and first["log10_photons"] == pytest.approx(3.0) and first["between"] == [1e3, 1e3]
    assert "lowest dose" in first["rule"]


# ------------------------------------------------------------------- arms, seed streams, resumability


def test_sweep_arms_are_named_by_dose_and_method():
    assert sweep_arm(1e3, "nll") == "1e3_nll" and sweep_arm(2.5e4, "nll_refined") == "2.5e4_nll_refined"
    assert dose.dose_label(1e9) == "1e9" and dose.dose_label(1234.5) == "1.2345e3" and dose.dose_label(0.5) == "5e-1"
    for arm, (photons, method, source) in {"1e3_nll": (1e3, "network", None), "1e7_mae": (1e7, "network", None),
                                           "1e5_iterative": (1e5, "iterative", None),
                                           "1e5_nll_refined": (1e5, "refined", "1e5_nll")}.items():
        assert (dose.arm.arm_nphotons(arm), dose.arm_method(arm), dose.arm_source(arm)) == (photons, method, source)
    assert dose.arm.arm_loss("1e7_mae") == "mae" and dose.arm.arm_loss("1e5_iterative") == dose.REFINE_LOSS
    assert dose.arm_files("1e3_nll") == dose.ARM_FILES and dose.arm_files("1e3_iterative") == dose.REFINE_ARM_FILES
    for bad in ("1e03_nll", "1000_nll", "1e3_bogus", "mid_nll", "0e0_nll"):  # not canonical, not an arm
        with pytest.raises(KeyError):
            dose.arm_method(bad)
    config = SweepConfig(output_dir="x", doses=(1e9, 1e3), methods=("iterative", "nll_refined"))
    assert config.doses == (1e3, 1e9) and config.methods == ("nll_refined", "iterative")
    assert config.arms() == ("1e3_nll", "1e3_nll_refined", "1e3_iterative",  # the refined arm brings its nll arm
                             "1e9_nll", "1e9_nll_refined", "1e9_iterative")


def test_sweep_data_follow_the_study_seed_streams(tmp_path):
    """SEED-STREAMS-001: per seed one object and one set of positions for every dose and method; noise per
    (seed, dose, split), shared by the methods at one dose; the sweep's 1e9 / 1e4 arms have the study's data."""
    config = SweepConfig(output_dir=tmp_path)
    assert config.doses == (1e3, 1e4, 1e5, 1e6, 1e7, 1e9) and config.seeds == (0, 1, 2)
    assert config.methods == ("nll", "mae", "nll_refined", "iterative") and len(config.arms()) == 24
    for seed in config.seeds:
        study = config.seed_config(seed)
        assert (study.seed, study.output_dir) == (seed, tmp_path / f"seed{seed}")
        plain = StudyConfig(output_dir=tmp_path, seed=seed)
        for split in ("train", "test"):
            sims = {arm: study.simulation_config(arm, split) for arm in config.arms()}
            assert len({s.seed for s in sims.values()}) == 1  # the same positions at every dose
            for d in config.doses:
                same_dose = {sims[sweep_arm(d, m)] for m in dose.SWEEP_METHODS}
                assert len(same_dose) == 1 and next(iter(same_dose)).nphotons == d  # paired: same noise
            assert len({s.noise_seed for s in sims.values()}) == len(config.doses)
            assert sims["1e9_nll"] == plain.simulation_config("high_nll", split)
            assert sims["1e4_mae"] == plain.simulation_config("low_mae", split)
            assert sims["1e4_iterative"] == plain.simulation_config("low_iterative", split)
    other = {s: config.seed_config(s).simulation_config("1e3_nll", "test") for s in config.seeds}
    assert len({o.seed for o in other.values()}) == 3 and len({o.noise_seed for o in other.values()}) == 3
    truths = [dose.make_ground_truth(config.seed_config(s)) for s in (0, 1)]
    assert not np.array_equal(*truths)  # one object per seed
    np.testing.assert_array_equal(truths[0], dose.make_ground_truth(StudyConfig(output_dir=tmp_path, seed=0)))
    # the network fingerprint is the study arm's with the arm's name
    high = StudyConfig(output_dir=tmp_path).arm_fingerprint("high_nll")
    assert config.seed_config(0).arm_fingerprint("1e9_nll") == {**high, "arm": "1e9_nll"}


def test_changing_a_dose_or_seed_does_not_reuse(tmp_path, fast_figures):
    """STUDY-RERUN-001 for the sweep: an arm is reused only for its own dose, method and seed."""
    config = tiny_sweep(tmp_path)
    first = FakeRunner()
    result = dose.run_sweep(config, run_arm=first)
    assert result.ok and len(first.calls) == 16 and first.calls[:4] == [
        (0, "1e5_nll"), (0, "1e5_mae"), (0, "1e5_nll_refined"), (0, "1e5_iterative")]
    again = FakeRunner()
    assert dose.run_sweep(config, run_arm=again).ok and again.calls == []
    more = FakeRunner()
    dose.run_sweep(dataclasses.replace(config, doses=(1e5, 1e7), seeds=(0, 2)), run_arm=more)
    assert sorted(more.calls) == sorted([(0, sweep_arm(1e7, m)) for m in dose.SWEEP_METHODS]
                                        + [(2, sweep_arm(d, m)) for d in (1e5, 1e7) for m in dose.SWEEP_METHODS])
    # stored outputs carry their dose and seed: moved to another dose's or seed's place they are not reused
    seed0, seed1 = config.seed_config(0), config.seed_config(1)
    for arm in ("1e5_nll", "1e5_iterative"):
        target = seed0.output_dir / arm.replace("1e5", "1e6")
        shutil.copytree(seed0.output_dir / arm, target)
        assert not dose.is_complete(seed0, target.name)
    impostor = dataclasses.replace(seed1, output_dir=seed0.output_dir)  # seed 1 reading seed 0's arms
    assert not any(dose.is_complete(impostor, arm) for arm in config.arms())
    assert all(dose.is_complete(seed1, arm) for arm in config.arms())
    forced = FakeRunner()
    dose.run_sweep(dataclasses.replace(config, seeds=(1,), doses=(1e9,), force=True), run_arm=forced)
    assert forced.calls == [(1, sweep_arm(1e9, m)) for m in dose.SWEEP_METHODS]


def test_sweep_json_holds_every_dose_and_method_with_stats_and_the_crossover(tmp_path, fast_figures):
    config = tiny_sweep(tmp_path, doses=(1e5, 1e9, 1e7))
    truths = []
    result = dose.run_sweep(config, run_arm=FakeRunner(), make_truth=lambda c: truths.append(c.seed)
                            or dose.make_ground_truth(c))
    assert result.ok and truths == [0, 1]  # one object per seed
    summary = json.loads((config.output_dir / "sweep.json").read_text())
    assert summary == json.loads(json.dumps(files.to_jsonable(result.summary)))
    assert summary["doses"] == [1e5, 1e7, 1e9] and summary["dose_labels"] == ["1e5", "1e7", "1e9"]
    assert summary["seeds"] == [0, 1] and summary["methods"] == list(dose.SWEEP_METHODS)
    for label, photons in zip(summary["dose_labels"], summary["doses"]):
        assert set(summary["results"][label]) == set(dose.SWEEP_METHODS)
        for method, entry in summary["results"][label].items():
            arm = sweep_arm(photons, method)
            assert (entry["arm"], entry["nphotons"], entry["status"]) == (arm, photons, ["ok", "ok"])
            ssim = entry["amplitude_ssim"]
            assert ssim["per_seed"] == pytest.approx([fake_score(arm, 0), fake_score(arm, 1)])
            assert ssim["mean"] == pytest.approx(fake_score(arm, 0) + 0.005)
            assert ssim["std"] == pytest.approx(0.01 / math.sqrt(2)) and ssim["n"] == 2
            assert entry["amplitude_psnr"]["mean"] == pytest.approx(40 * ssim["mean"])
            assert "seed" not in json.dumps(entry["settings"])  # the settings the seeds share
            assert entry["settings"]["nphotons"] == photons and entry["settings"]["N"] == 16
    # iterative - network NLL: -0.35, -0.15, +0.05 at 1e5, 1e7, 1e9 -> three quarters of the way to 1e9: 10^8.5
    for metric in ("amplitude_ssim", "amplitude_psnr"):
        cross = summary["crossover"][metric]
        assert cross["between"] == [1e7, 1e9] and cross["log10_photons"] == pytest.approx(8.5)
    assert summary["config"]["study"]["N"] == 16 and summary["config"]["doses"] == [1e5, 1e7, 1e9]
    # a re-run reuses every arm and rewrites the same file
    before = (config.output_dir / "sweep.json").read_text()
    dose.run_sweep(config, run_arm=FakeRunner())
    assert (config.output_dir / "sweep.json").read_text() == before


def test_sweep_md_tabulates_mean_and_std_per_dose_and_method_and_states_the_crossover(tmp_path, fast_figures):
    config = tiny_sweep(tmp_path, doses=(1e5, 1e9, 1e7))
    runner = FakeRunner(failing={(1, "1e7_mae")}, warnings={(0, "1e9_nll"): ["stuck"]})
    result = dose.run_sweep(config, run_arm=runner)
    text = (config.output_dir / "sweep.md").read_text()
    assert text == dose.sweep.sweep_table(result.summary)
    lines = text.splitlines()
    assert lines[0] == ("| photons | network NLL: SSIM / PSNR dB | network MAE: SSIM / PSNR dB | NLL + refinement: "
                        "SSIM / PSNR dB | iterative (from ones): SSIM / PSNR dB |")
    rows = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:] for line in lines[2:5]}
    assert list(rows) == ["1e5", "1e7", "1e9"]
    for label, photons in (("1e5", 1e5), ("1e7", 1e7), ("1e9", 1e9)):
        for method, cell in zip(dose.SWEEP_METHODS, rows[label]):
            entry = result.summary["results"][label][method]
            ssim, psnr = entry["amplitude_ssim"], entry["amplitude_psnr"]
            if ssim["n"] == 2:
                expected = f"{ssim['mean']:.3f} ± {ssim['std']:.3f} / {psnr['mean']:.1f} ± {psnr['std']:.1f}"
            else:  # one seed left: no std, and the count says so
                expected = f"{ssim['mean']:.3f} / {psnr['mean']:.1f} (1/2)"
            assert cell.startswith(expected), (label, method, cell, expected)
            assert cell.endswith("⚠") == (label == "1e9" and method == "nll"), cell
    assert rows["1e7"][1].endswith("(1/2)")  # 1e7_mae failed for seed 1
    assert "Crossover, amplitude_ssim (iterative catches up with the network NLL): 3.16e+08 photons (between 1e+07 " \
           "and 1e+09)." in text


def test_an_arms_warnings_reach_sweep_json_under_its_seed(tmp_path, fast_figures):
    """A result that cannot be right (e.g. the MAE network stuck at the amplitude ceiling at 1e3 photons) is
    reported in sweep.json under its seed, not only averaged into the statistics."""
    config = tiny_sweep(tmp_path, doses=(1e9,))
    stuck = ["the reconstructed object sits at the amplitude ceiling: ..."]
    result = dose.run_sweep(config, run_arm=FakeRunner(warnings={(1, "1e9_mae"): stuck}))
    entries = json.loads((config.output_dir / "sweep.json").read_text())["results"]["1e9"]
    assert entries["mae"]["warnings"] == {"1": stuck} and result.summary["results"]["1e9"]["mae"]["warnings"]
    assert all(entries[m]["warnings"] == {} for m in dose.SWEEP_METHODS if m != "mae")


def test_a_failed_arm_is_left_out_of_the_stats_and_fails_its_refined_arm(tmp_path, fast_figures):
    config = tiny_sweep(tmp_path, doses=(1e9,))
    runner = FakeRunner(failing={(1, "1e9_nll")})
    result = dose.run_sweep(config, run_arm=runner)
    assert not result.ok and (1, "1e9_nll_refined") not in runner.calls
    assert result.arms[1, "1e9_nll_refined"].status == "failed"
    entry = result.summary["results"]["1e9"]
    assert entry["nll"]["status"] == ["ok", "failed"] and entry["nll_refined"]["status"] == ["ok", "failed"]
    assert entry["nll"]["amplitude_ssim"] == {"per_seed": [0.7, None], "mean": 0.7, "std": None, "n": 1}
    assert entry["iterative"]["amplitude_ssim"]["n"] == 2
    assert (config.output_dir / "sweep.json").is_file() and (config.output_dir / "sweep.png").is_file()
    retry = FakeRunner()
    assert dose.run_sweep(config, run_arm=retry).ok and retry.calls == [(1, "1e9_nll"), (1, "1e9_nll_refined")]


def test_sweep_figure_plots_each_method_with_error_bars_and_marks_the_crossover(tmp_path, fast_figures):
    config = tiny_sweep(tmp_path, doses=(1e5, 1e9))
    summary = dose.run_sweep(config, run_arm=FakeRunner()).summary
    fig = dose.build_sweep_figure(summary)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["amplitude SSIM", "amplitude PSNR (dB)"]
    for ax, metric in zip(axes, ("amplitude_ssim", "amplitude_psnr")):
        assert ax.get_xscale() == "log"
        labels = ax.get_legend_handles_labels()[1]
        crossing = f"crossover ≈ {summary['crossover'][metric]['photons']:.3g} photons"
        assert crossing in labels
        assert [l for l in labels if l != crossing] == [
            "network NLL", "network MAE", "NLL + refinement", "iterative (from ones)"]
        (line,) = ax.get_lines()[-1:]  # the crossover's dashed line
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), summary["crossover"][metric]["photons"])
        assert len(ax.containers) == 4  # one errorbar container per method
        nll = ax.containers[0]
        np.testing.assert_allclose(np.asarray(nll.lines[0].get_xdata(), float), [1e5, 1e9])
        expected = [summary["results"][l]["nll"][metric]["mean"] for l in ("1e5", "1e9")]
        np.testing.assert_allclose(np.asarray(nll.lines[0].get_ydata(), float), expected)
        (bars,) = nll.lines[2]  # the vertical error bars: mean ± std
        segments = bars.get_segments()
        std = summary["results"]["1e5"]["nll"][metric]["std"]
        assert segments[0][1][1] - segments[0][0][1] == pytest.approx(2 * std)
    none = json.loads(json.dumps(summary))
    none["crossover"]["amplitude_ssim"]["photons"] = "none"
    texts = [t.get_text() for t in dose.build_sweep_figure(none).axes[0].texts]
    assert any("no crossover" in t for t in texts)


# ------------------------------------------------------------------------------------ command line


def parse(*argv):
    return dose.build_parser().parse_args(list(argv))


def test_sweep_command_line_builds_the_sweep_and_leaves_the_study_alone(tmp_path):
    study = parse()
    assert not is_sweep(study)
    default = dose.config_from_args(study)  # what tox -e study runs: the quick preset's four network arms
    assert isinstance(default, StudyConfig) and default.preset == "quick" and default.arms == dose.ARM_NAMES
    assert str(default.output_dir) == "runs/dose_response" and default.seed == 0

    preset = parse("--preset", "sweep")
    assert is_sweep(preset)
    sweep = dose.sweep_config_from_args(preset)
    assert (sweep.doses, sweep.seeds, sweep.methods) == (dose.SWEEP_DOSES, dose.SWEEP_SEEDS, dose.SWEEP_METHODS)
    assert sweep.doses == (1e3, 1e4, 1e5, 1e6, 1e7, 1e9) and sweep.seeds == (0, 1, 2)
    assert str(sweep.output_dir) == dose.DEFAULT_SWEEP_OUTPUT_DIR == "runs/dose_sweep"
    seed0 = sweep.seed_config(0)
    assert (seed0.n_train, seed0.n_test, seed0.nepochs, seed0.batch_size) == tuple(
        dose.PRESETS["sweep"][k] for k in ("n_train", "n_test", "nepochs", "batch_size"))

    flags = parse("--doses", "1e9, 1e3,1e4", "--seeds", "2,0", "--output-dir", str(tmp_path), "--nepochs", "1",
                  "--n-train", "64", "--refine-iterations", "4", "--methods", "iterative", "nll", "--force",
                  "--no-test-ssim")
    assert is_sweep(flags)
    sweep = dose.sweep_config_from_args(flags)
    assert (sweep.doses, sweep.seeds, sweep.methods, sweep.output_dir, sweep.force) == (
        (1e3, 1e4, 1e9), (0, 2), ("nll", "iterative"), tmp_path, True)
    seed2 = sweep.seed_config(2)
    assert (seed2.seed, seed2.nepochs, seed2.n_train, seed2.refine_iterations, seed2.test_ssim, seed2.preset) == (
        2, 1, 64, 4, False, "sweep")
    seeds_only = parse("--seeds", "0")
    assert is_sweep(seeds_only) and dose.sweep_config_from_args(seeds_only).doses == dose.SWEEP_DOSES
    assert dose.sweep_config_from_args(parse("--doses", "1e4", "--preset", "paper")).seed_config(0).nepochs == 50


@pytest.mark.parametrize("argv, message", [
    (["--doses", "lots"], r"argument --doses: 'lots' is not a number of photons"),
    (["--doses", "1e3,1e4x"], r"argument --doses: '1e4x' is not a number of photons"),
    (["--doses", "0"], r"argument --doses: a dose must be a finite number of photons > 0, got '0'"),
    (["--doses=-1e3"], r"argument --doses: a dose must be a finite number of photons > 0, got '-1e3'"),
    (["--doses", "1e3,inf"], r"argument --doses: a dose must be a finite number of photons > 0, got 'inf'"),
    (["--doses", ""], r"argument --doses: must name at least one dose"),
    (["--doses", " , "], r"argument --doses: must name at least one dose"),
    (["--doses", "1e3,,1e4"], r"argument --doses: '' is not a number of photons"),
    (["--doses", "1e3,1000"], r"argument --doses: the dose '1000' is given twice"),
    (["--doses"], r"argument --doses: expected one argument"),
    (["--seeds", "a"], r"argument --seeds: a seed must be a non-negative integer, got 'a'"),
    (["--seeds=-1"], r"argument --seeds: a seed must be a non-negative integer, got '-1'"),
    (["--seeds", ""], r"argument --seeds: must name at least one seed"),
    (["--seeds", "0,0"], r"argument --seeds: the seed '0' is given twice"),
    (["--preset", "sweep", "--arms", "high_nll"], r"argument --arms: the dose sweep runs --methods"),
    (["--doses", "1e3", "--seed", "1"], r"argument --seed: the dose sweep takes --seeds"),
    (["--methods", "nll"], r"argument --methods: only for the dose sweep"),
    (["--preset", "sweep", "--methods", "nll,bogus"], r"--methods\): unknown method\(s\) \['bogus'\]"),
    (["--preset", "sweep", "--n-train", "12"], r"--n-train\): must be >= 20"),
])
def test_bad_sweep_arguments_are_one_line_errors_naming_the_flag(tmp_path, capsys, argv, message):
    out_dir = tmp_path / "out"
    calls = []
    with pytest.raises(SystemExit) as info:
        dose.main(["--output-dir", str(out_dir), *argv], run_arm=lambda *a: calls.append(a),
                  make_truth=lambda c: calls.append(c))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("dose_response_study.py: error: ")
    assert re.search(message, err), err
    assert not out_dir.exists() and calls == []


def test_main_runs_the_sweep_and_reports_failures_in_its_exit_status(tmp_path, fast_figures):
    out = tmp_path / "sweep"
    runner = FakeRunner(failing={(0, "1e3_mae")})
    argv = ["--output-dir", str(out), "--doses", "1e3", "--seeds", "0", "--methods", "mae,iterative"]
    assert dose.main(argv, run_arm=runner) == 1
    assert runner.calls == [(0, "1e3_mae"), (0, "1e3_iterative")]
    assert sorted(p.name for p in out.iterdir()) == ["run.log", "seed0", "sweep.json", "sweep.md", "sweep.png"]
    log = (out / "run.log").read_text()
    assert "dose sweep: " in log and "seed 0: arm 1e3_mae: FAILED" in log
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["methods"] == ["mae", "iterative"]
    assert "not computed" in summary["crossover"]["amplitude_ssim"]["note"]
    rerun = FakeRunner()
    assert dose.main(argv, run_arm=rerun) == 0 and rerun.calls == [(0, "1e3_mae")]
    assert "seed 0: arm 1e3_iterative: outputs complete, skipping" in (out / "run.log").read_text()
