"""The dose study's iterative and refined arms (issue 21) and the study's integrity (issue 21 item 4).

Nothing here trains or iterates: the network arms run through a fake runner or with ``ptycho.workflow``
monkeypatched, and ``ptycho.refine.refine`` is replaced by a recorder; the data sets are real (a tiny
N=16 configuration, simulated in milliseconds). Each integrity test fails on the defect it names:

(a) an arm scored on the scan it was trained on:
    test_network_arm_is_scored_on_the_test_scan_not_the_training_scan,
    test_refine_arms_reconstruct_and_score_the_test_scan
(b) a re-run with other settings silently reusing stored arms:
    test_every_result_setting_is_in_the_fingerprints_of_the_arms_it_changes,
    test_rerun_with_another_setting_reruns_exactly_the_arms_it_changes
(c) the refined arm not starting from its own NLL arm's network output:
    test_refined_arm_starts_from_its_own_network_reconstruction, test_retrained_source_invalidates_its_refined_arm,
    test_refined_arm_refuses_a_source_from_other_settings
(d) the iterative arm seeing the truth: test_refine_arms_never_hand_the_truth_to_the_solver
"""
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ptycho import files, history, simulate
from ptycho.reconstruction import Reconstruction
from ptycho.studies import dose
from ptycho.studies.dose import ALL_ARM_NAMES, ARM_NAMES, REFINE_ARMS, ArmResult, StudyConfig

CROP = (slice(8, 30), slice(5, 33))
ORIGIN = (5.0, 8.0)
LOG = logging.getLogger("test_study_refine_arms")


def tiny_config(tmp_path, **kw):
    """N=16 patterns on a 48 px object: 20 training and 24 test positions (the test crop is > 16 px)."""
    kw.setdefault("output_dir", tmp_path / "out")
    settings = dict(N=16, object_size=48, nlines=20, buffer=8.0, n_train=20, n_test=24, nepochs=1, batch_size=4,
                    test_ssim=False, refine_iterations=3)
    settings.update(kw)
    return StudyConfig(**settings)


@pytest.fixture
def fast_figures(monkeypatch):
    """PNG rendering (the slow part) replaced by a marker file."""
    monkeypatch.setattr(files, "save_figure", lambda fig, path: Path(path).write_bytes(b"png"))


def fake_ssim(arm):
    return 0.5 + 0.05 * ALL_ARM_NAMES.index(arm)


class FakeRunner:
    """Stands in for ``dose.run_arm`` for every kind of arm: writes a network arm's model and history files,
    returns a synthetic reconstruction (distinct per arm), and for a refined arm the provenance of the stored
    source reconstruction (as the real runner does)."""

    def __init__(self, failing=(), shift=0.0):
        self.failing = set(failing)
        self.shift = shift  # another "training run": other reconstructions
        self.calls = []

    def __call__(self, config, arm, truth, directory, log):
        self.calls.append(arm)
        if arm in self.failing:
            raise RuntimeError(f"boom in {arm}")
        if dose.arm_method(arm) == "network":
            (directory / "wts.h5.zip").write_bytes(b"fake model")
            history.write_history({"loss": [2.0, 1.0]}, directory / "history.json", directory / "training.png")
        gain = 1.1 + 0.1 * ALL_ARM_NAMES.index(arm) + 0.01 * config.seed + self.shift
        full = (truth * gain).astype(np.complex64)
        metrics = {"amplitude_ssim": fake_ssim(arm), "amplitude_psnr": 30.0, "amplitude_frc50": 0.25}
        provenance = dose.arm.source_provenance(config, arm) if dose.arm_source(arm) else {}
        return ArmResult(arm=arm, status="ok", metrics=metrics, reconstruction=full[CROP], truth=truth[CROP],
                         origin=ORIGIN, diffraction_counts=np.ones((16, 16), np.float32), provenance=provenance,
                         extras={"reconstruction_full": full, "origin_full": np.array([0.0, 0.0]),
                                 "coverage_full": np.abs(full) > 0.9})


class FakeRefine:
    """Records each call of ``ptycho.refine.refine`` and returns the truth it was built with, resampled on the
    solver's canvas (the fake knows the truth; the code under test must not hand it over)."""

    def __init__(self, truth):
        self.truth = truth
        self.calls = []

    def __call__(self, dataset, config, initial=None, probe=None, verbose=False):
        from ptycho.refine import RefineResult, canvas_geometry

        self.calls.append(SimpleNamespace(dataset=dataset, config=config, initial=initial, probe=probe))
        x0, y0, side = canvas_geometry(dataset.xcoords, dataset.ycoords, dataset.N)
        positions = np.stack([dataset.xcoords, dataset.ycoords], axis=1)
        rec = Reconstruction(obj=np.ones((side, side), np.complex64), x0=float(x0), y0=float(y0),
                             coverage=np.ones((side, side), bool), centroids=positions)
        rec = dataclasses.replace(rec, obj=(0.9 * rec.truth(self.truth)).astype(np.complex64))
        return RefineResult(rec, np.asarray(dataset.probe), [2.0, 1.5, 1.0], 0.01)


@pytest.fixture
def fake_refine(monkeypatch):
    """``ptycho.refine.refine`` replaced by a FakeRefine of the tiny configuration's truth."""
    import ptycho.refine

    recorder = FakeRefine(dose.make_ground_truth(tiny_config(Path("unused"))))
    monkeypatch.setattr(ptycho.refine, "refine", recorder)
    return recorder


def network_fakes_refine_real(network):
    """A study runner: ``network`` (a FakeRunner) for the network arms, the real runner for the refine arms."""
    def runner(config, arm, truth, directory, log):
        if dose.arm_method(arm) == "network":
            return network(config, arm, truth, directory, log)
        return dose.run_arm(config, arm, truth, directory, log)
    return runner


def positions(dataset):
    return np.stack([dataset.xcoords, dataset.ycoords], axis=1)


# ------------------------------------------------------------------ arms, files and metrics of a run


def test_every_arm_writes_its_files_metrics_and_times(tmp_path, fast_figures):
    config = tiny_config(tmp_path, arms=("all",))
    runner = FakeRunner()
    result = dose.run_study(config, run_arm=runner)
    assert result.ok and runner.calls == list(ALL_ARM_NAMES)
    metrics = json.loads((config.output_dir / "metrics.json").read_text())["arms"]
    for arm in ALL_ARM_NAMES:
        directory = config.output_dir / arm
        assert sorted(p.name for p in directory.iterdir()) == sorted(dose.arm_files(arm))
        assert dose.is_complete(config, arm)
        entry = metrics[arm]
        assert entry["status"] == "ok" and entry["amplitude_ssim"] == fake_ssim(arm)
        assert entry["method"] == dose.arm_method(arm) and entry["nphotons"] == dose.arm.arm_nphotons(arm)
        assert entry["wall_time_s"] >= 0 and entry["cpu_time_s"] >= 0
    assert dose.REFINE_ARM_FILES == ("reconstruction.npz", "metrics.json")  # no weights or history of their own
    assert {metrics[a]["loss"] for a in REFINE_ARMS} == {"nll"}
    assert metrics["low_nll_refined"]["source_arm"] == "low_nll" and "source_arm" not in metrics["low_iterative"]
    stored = json.loads((config.output_dir / "high_nll_refined" / "metrics.json").read_text())
    digest = hashlib.sha256((config.output_dir / "high_nll" / "reconstruction.npz").read_bytes()).hexdigest()
    assert stored["source"] == {"arm": "high_nll", "reconstruction_sha256": digest}
    assert (config.output_dir / "methods_comparison.png").is_file()


def test_network_arm_files_do_not_make_a_refine_arm_complete_and_vice_versa(tmp_path, fast_figures):
    """"Complete" is decided per kind of arm: a network arm needs its weights and history, a refine arm never."""
    config = tiny_config(tmp_path, arms=("high_nll", "high_iterative"))
    dose.run_study(config, run_arm=FakeRunner())
    assert dose.is_complete(config, "high_nll") and dose.is_complete(config, "high_iterative")
    (config.output_dir / "high_nll" / "wts.h5.zip").unlink()
    assert not dose.is_complete(config, "high_nll")
    (config.output_dir / "high_iterative" / "history.json").write_text("{}")  # an extra file changes nothing
    assert dose.is_complete(config, "high_iterative")
    (config.output_dir / "high_iterative" / "reconstruction.npz").unlink()
    assert not dose.is_complete(config, "high_iterative")


def test_a_refined_arm_brings_its_source_arm(tmp_path, fast_figures):
    config = tiny_config(tmp_path, arms=("low_nll_refined",))
    runner = FakeRunner()
    result = dose.run_study(config, run_arm=runner)
    assert runner.calls == ["low_nll", "low_nll_refined"] and result.ok
    forced = FakeRunner()  # --force applies to the arms named, not to the source they bring
    dose.run_study(dataclasses.replace(config, force=True), run_arm=forced)
    assert forced.calls == ["low_nll_refined"]


def test_a_refined_arm_fails_cleanly_when_its_source_fails(tmp_path, fast_figures):
    config = tiny_config(tmp_path, arms=("high_nll_refined", "high_iterative"))
    runner = FakeRunner(failing={"high_nll"})
    result = dose.run_study(config, run_arm=runner)
    assert runner.calls == ["high_nll", "high_iterative"] and not result.ok
    assert result.arms["high_nll_refined"].status == "failed"
    assert "source arm high_nll" in result.arms["high_nll_refined"].error
    assert result.arms["high_iterative"].ok
    fig = dose.build_methods_figure(result.arms)
    assert sum(t.get_text() == "No Data" for ax in fig.axes for t in ax.texts) == 2


# ----------------------------------------------------- (b) a re-run never reuses another setting's arms

#: StudyConfig fields that change no arm's result.
NO_EFFECT = {"output_dir", "preset", "arms", "force", "keras_verbose", "test_ssim"}
#: Settings of the simulated data sets (every arm), of training (network and refined arms), of refinement
#: (refine arms), each with another valid value.
DATA = {"seed": 1, "n_test": 256, "N": 32, "gridsize": 1, "object_size": 160, "nlines": 50, "buffer": 20.0,
        "probe_defocus": 0.0}
TRAINING = {"nepochs": 3, "batch_size": 4, "n_train": 512, "stitch_M": 16, "n_filters_scale": 2,
            "architecture": "reference"}
REFINEMENT = {"refine_iterations": 5}


def test_every_result_setting_is_in_the_fingerprints_of_the_arms_it_changes(tmp_path):
    """(b) Each setting that changes an arm's result changes that arm's fingerprint (stored outputs are reused
    only on an equal fingerprint), and no other arm's: refine_iterations must not retrain a network."""
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    assert fields == NO_EFFECT | set(DATA) | set(TRAINING) | set(REFINEMENT), "classify the new setting here"
    base = StudyConfig(output_dir=tmp_path, arms=("all",))
    depends = {"network": set(DATA) | set(TRAINING), "iterative": set(DATA) | set(REFINEMENT),
               "refined": set(DATA) | set(TRAINING) | set(REFINEMENT)}
    for name, value in {**DATA, **TRAINING, **REFINEMENT}.items():
        other = dataclasses.replace(base, **{name: value})
        for arm in ALL_ARM_NAMES:
            changed = base.arm_fingerprint(arm) != other.arm_fingerprint(arm)
            assert changed == (name in depends[dose.arm_method(arm)]), (name, arm)
    for name, value in {"keras_verbose": 2, "test_ssim": False, "force": True, "arms": ("low_mae",)}.items():
        other = dataclasses.replace(base, **{name: value})
        assert all(base.arm_fingerprint(a) == other.arm_fingerprint(a) for a in ALL_ARM_NAMES), name
    assert base.arm_fingerprint("high_iterative")["refine"] == {
        **dataclasses.asdict(base.refine_config("high_iterative")), "iterations": 30, "loss": "nll", "seed": 0}


@pytest.mark.parametrize("change, rerun", [
    ({"seed": 1}, ALL_ARM_NAMES),
    ({"refine_iterations": 5}, tuple(REFINE_ARMS)),
    ({"nepochs": 2}, ARM_NAMES + ("high_nll_refined", "low_nll_refined")),
    ({}, ()),
])
def test_rerun_with_another_setting_reruns_exactly_the_arms_it_changes(tmp_path, fast_figures, change, rerun):
    """(b) A re-run with another --seed or --refine-iterations never silently reuses stored arms."""
    config = tiny_config(tmp_path, arms=("all",))
    dose.run_study(config, run_arm=FakeRunner())
    runner = FakeRunner()
    result = dose.run_study(dataclasses.replace(config, **change), run_arm=runner)
    assert runner.calls == list(rerun) and result.ok
    assert [a for a in ALL_ARM_NAMES if result.arms[a].skipped] == [a for a in ALL_ARM_NAMES if a not in rerun]


def test_retrained_source_invalidates_its_refined_arm(tmp_path, fast_figures):
    """(c) A refined arm is paired with the very reconstruction it started from: retraining its network arm
    (same settings, new weights) makes it run again, from the new reconstruction."""
    config = tiny_config(tmp_path, arms=("high_nll", "high_nll_refined", "low_nll_refined"))
    dose.run_study(config, run_arm=FakeRunner())
    retrain = FakeRunner(shift=0.5)
    dose.run_study(dataclasses.replace(config, arms=("high_nll",), force=True), run_arm=retrain)
    assert retrain.calls == ["high_nll"]
    assert not dose.is_complete(config, "high_nll_refined") and dose.is_complete(config, "low_nll_refined")
    again = FakeRunner()
    dose.run_study(config, run_arm=again)
    assert again.calls == ["high_nll_refined"]


# --------------------------------------------------- (a) every arm is scored on the unseen test scan


def test_network_arm_is_scored_on_the_test_scan_not_the_training_scan(tmp_path, monkeypatch):
    """(a) The network trains on the training scan and is reconstructed and scored on the test scan, whose
    positions differ (otherwise its scores would be training-set scores)."""
    from ptycho import workflow
    from ptycho.scan_region import evaluate_on_scan

    config = tiny_config(tmp_path)
    truth = dose.make_ground_truth(config)
    seen = {}

    def train_model(dataset, tconfig, **kwargs):
        seen["trained_on"] = dataset
        return workflow.TrainedModel(None, "network", {"loss": [1.0], "val_loss": [1.0]}, dataset.intensity_scale)

    def reconstruct_and_evaluate(model, dataset, truth_, M=20, intensity_scale=None):
        seen["scored_on"] = dataset
        rec = Reconstruction(obj=truth_, x0=0.0, y0=0.0, coverage=np.ones(truth_.shape, bool),
                             centroids=dose.arm.group_centroids(dataset))
        return rec, evaluate_on_scan(rec, truth_)

    monkeypatch.setattr(workflow, "train_model", train_model)
    monkeypatch.setattr(workflow, "write_training_outputs", lambda *args, **kwargs: None)
    monkeypatch.setattr(workflow, "reconstruct_and_evaluate", reconstruct_and_evaluate)
    result = dose.run_network_arm(config, "low_nll", truth, tmp_path, LOG)

    train = simulate.simulate_dataset(config.simulation_config("low_nll", "train"), obj=truth)
    test = simulate.simulate_dataset(config.simulation_config("low_nll", "test"), obj=truth)
    np.testing.assert_array_equal(positions(seen["trained_on"]), positions(train))
    np.testing.assert_array_equal(positions(seen["scored_on"]), positions(test))
    np.testing.assert_array_equal(seen["scored_on"].diffraction, test.diffraction)
    assert not np.isin(positions(test)[:, 0], positions(train)[:, 0]).any()  # no test position was trained on
    assert result.metrics["n_test"] == config.n_test == test.n_groups


def test_refine_arms_reconstruct_and_score_the_test_scan(tmp_path, monkeypatch, fake_refine):
    """(a) The solver gets the arm's test scan (the network arms' test set at that dose, pattern for pattern),
    and the result is scored on the network arms' region: the bounding box of the test group centroids."""
    import ptycho.scan_region

    config = tiny_config(tmp_path)
    truth = dose.make_ground_truth(config)
    scored_centroids = []
    evaluate = ptycho.scan_region.evaluate_on_scan
    monkeypatch.setattr(ptycho.scan_region, "evaluate_on_scan",
                        lambda rec, t: scored_centroids.append(rec.centroids) or evaluate(rec, t))
    result = dose.run_refine_arm(config, "low_iterative", truth, tmp_path, LOG)

    test = simulate.simulate_dataset(config.simulation_config("low_nll", "test"), obj=truth)
    train = simulate.simulate_dataset(config.simulation_config("low_nll", "train"), obj=truth)
    (call,) = fake_refine.calls
    np.testing.assert_array_equal(positions(call.dataset), positions(test))
    np.testing.assert_array_equal(call.dataset.diffraction, test.diffraction)
    assert call.dataset.nphotons == 1e4 and not np.isin(positions(test)[:, 0], positions(train)[:, 0]).any()
    (centroids,) = scored_centroids
    np.testing.assert_allclose(centroids, np.asarray(test.coords_offsets).reshape(-1, 2))
    assert result.metrics["amplitude_ssim"] > 0.9  # the fake solver returned the truth: the crops line up
    assert result.metrics["refine_iterations"] == 3 and result.metrics["refine_misfit_final"] == 1.0
    assert call.config == config.refine_config("low_iterative")
    assert (call.config.iterations, call.config.loss, call.config.refine_probe) == (3, "nll", False)


# ------------------------------------------- (c) refined arms start from their own network's output


def test_refined_arm_starts_from_its_own_network_reconstruction(tmp_path, fast_figures, fake_refine):
    """(c) Each refined arm's solver starts from the stitch its own NLL arm stored for the test scan."""
    config = tiny_config(tmp_path, arms=("high_nll_refined", "low_nll_refined"))
    network = FakeRunner()
    result = dose.run_study(config, run_arm=network_fakes_refine_real(network))
    assert result.ok and network.calls == ["high_nll", "low_nll"]
    assert len(fake_refine.calls) == 2
    starts = {}
    for call, arm, source in zip(fake_refine.calls, ("high_nll_refined", "low_nll_refined"), ("high_nll", "low_nll")):
        assert call.dataset.nphotons == dose.arm.arm_nphotons(arm)
        npz_path = config.output_dir / source / "reconstruction.npz"
        with np.load(npz_path) as npz:
            np.testing.assert_array_equal(call.initial.obj, npz["reconstruction_full"])
            np.testing.assert_array_equal(call.initial.origin, npz["origin_full"])
            np.testing.assert_array_equal(call.initial.coverage, npz["coverage_full"])
        starts[arm] = call.initial.obj
        stored = json.loads((config.output_dir / arm / "metrics.json").read_text())
        assert stored["source"]["reconstruction_sha256"] == hashlib.sha256(npz_path.read_bytes()).hexdigest()
        assert result.arms[arm].provenance["arm"] == source
    assert not np.allclose(starts["high_nll_refined"], starts["low_nll_refined"])  # each its own arm's


def test_refined_arm_refuses_a_source_from_other_settings(tmp_path, fast_figures, fake_refine):
    """(c) A stored NLL arm from another seed is not a start: the refined arm's runner refuses it."""
    config = tiny_config(tmp_path, arms=("high_nll",))
    dose.run_study(config, run_arm=FakeRunner())
    other = dataclasses.replace(config, seed=3)
    with pytest.raises(RuntimeError, match="source arm high_nll has no complete outputs"):
        dose.run_refine_arm(other, "high_nll_refined", dose.make_ground_truth(other), tmp_path, LOG)
    assert fake_refine.calls == []


# --------------------------------------------------------------- (d) the solver never sees the truth


def test_refine_arms_never_hand_the_truth_to_the_solver(tmp_path, fast_figures, fake_refine):
    """(d) The iterative arm reconstructs from the measured patterns alone: its data set has no object
    (obj=None, so no ground-truth patches either), it starts from ones, and neither it nor the refined arm
    is handed the truth."""
    config = tiny_config(tmp_path, arms=tuple(REFINE_ARMS))
    truth = dose.make_ground_truth(config)
    result = dose.run_study(config, run_arm=network_fakes_refine_real(FakeRunner()))
    assert result.ok and len(fake_refine.calls) == 4
    test = {d: simulate.simulate_dataset(config.simulation_config(f"{d}_nll", "test"), obj=truth) for d in dose.DOSES}
    for call, arm in zip(fake_refine.calls, REFINE_ARMS):
        assert call.dataset.obj is None and call.dataset.Y is None, arm
        measured = test[arm.split("_")[0]]  # what it may see: the measured patterns, positions, probe, dose
        np.testing.assert_array_equal(call.dataset.diffraction, measured.diffraction)
        np.testing.assert_array_equal(call.dataset.probe, measured.probe)
        assert call.probe is None  # the dataset's (known) probe
        if dose.arm_source(arm) is None:
            assert call.initial is None, arm  # from ones: no network, no truth
        else:
            assert call.initial is not None, arm  # its network's stitch ((c) checks which)


# ----------------------------------------------------------------------------------- the figure


def _arm_result(arm, status="ok", ssim=None):
    if status != "ok":
        return ArmResult(arm=arm, status=status, error="x" if status == "failed" else None)
    truth = dose.make_ground_truth(tiny_config(Path("unused")))[CROP]
    rng = np.random.default_rng(ALL_ARM_NAMES.index(arm))
    recon = (truth * 2.0 + rng.normal(0, 0.05, truth.shape)).astype(np.complex64)
    return ArmResult(arm=arm, status="ok", metrics={"amplitude_ssim": ssim if ssim is not None else fake_ssim(arm)},
                     reconstruction=recon, truth=truth, origin=ORIGIN)


def test_methods_figure_shows_truth_and_each_method_at_each_dose_that_ran():
    results = {a: _arm_result(a, "not run") for a in ALL_ARM_NAMES}
    results.update({a: _arm_result(a) for a in ("high_nll", "high_mae", "high_nll_refined", "high_iterative",
                                                 "low_nll", "low_iterative")})
    results["low_mae"] = _arm_result("low_mae", "failed")
    fig = dose.build_methods_figure(results)
    grid = np.array(fig.axes[:10]).reshape(2, 5)  # colour bars come after the panels
    labels = ["network NLL", "network MAE", "NLL + refinement", "iterative"]
    for row, dose_name in enumerate(("high", "low")):
        assert grid[row, 0].get_title().startswith(f"truth, {dose_name} dose")
        (image,) = grid[row, 0].get_images()
        np.testing.assert_allclose(image.get_array(), np.abs(results[f"{dose_name}_nll"].truth), rtol=1e-6)
        for col, suffix in enumerate(("nll", "mae", "nll_refined", "iterative"), start=1):
            arm, ax = f"{dose_name}_{suffix}", grid[row, col]
            if results[arm].ok:
                assert ax.get_title() == f"{labels[col - 1]}\n{arm}  SSIM = {fake_ssim(arm):.3f}"
                (image,) = ax.get_images()
                assert np.mean(image.get_array()) == pytest.approx(np.mean(np.abs(results[arm].truth)), rel=1e-5)
    assert [t.get_text() for t in grid[1, 2].texts] == ["No Data"]  # low_mae failed
    assert [t.get_text() for t in grid[1, 3].texts] == ["Not run"]  # ran at the other dose only


def test_methods_figure_leaves_out_methods_and_doses_that_did_not_run():
    results = {a: _arm_result(a, "not run") for a in ALL_ARM_NAMES}
    results["low_iterative"] = _arm_result("low_iterative")
    results["low_nll"] = _arm_result("low_nll", "failed")
    fig = dose.build_methods_figure(results)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in panels[:3]] == ["truth, low dose (1e+04 photons)",
                                                                    "low_nll (failed)", "iterative"]
    assert [t.get_text() for t in panels[1].texts] == ["No Data"]
    empty = dose.build_methods_figure({a: _arm_result(a, "not run") for a in ALL_ARM_NAMES})
    assert [t.get_text() for ax in empty.axes for t in ax.texts] == ["No Data"]
