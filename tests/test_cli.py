"""The ``ptycho`` command as a user runs it: ``python -m ptycho`` in a fresh process, on tiny data.

Round trip (module fixture, ~1 min on 2 busy cores): simulate -> train (1 epoch) -> reconstruct -> evaluate,
plus reconstruct/evaluate of a file in the reference project's format. Every bad input exits 2 with one
line naming the flag or file and writes nothing; Ctrl-C mid-training exits 130 and leaves no output.
"""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ptycho import cli
from ptycho.cli import common
from ptycho.evaluation import METRIC_KEYS, RESULT_KEYS

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # XLA compilation on 2 shared cores; a hang fails instead of blocking the suite
#: Lines TensorFlow's C++ runtime prints on import (before absl logging is initialised; no setting hides them).
TF_NOISE = re.compile(r"^(I0000|W0000|E0000|WARNING: All log messages before absl)")
TINY = ["--N", "32", "--gridsize", "2", "--n-positions", "40", "--object-size", "64", "--buffer", "8",
        "--seed", "3"]
EVERY_METRIC = {*RESULT_KEYS, "crop_coverage"}


def run(cwd, *args, timeout=TIMEOUT_S):
    """``python -m ptycho *args`` in ``cwd``; the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        return subprocess.run([sys.executable, "-m", "ptycho", *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"ptycho {' '.join(map(str, args))} did not finish in {timeout} s\n{exc.stderr}")


def messages(proc):
    """stderr without TensorFlow's start-up lines."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]


def ok(proc):
    assert proc.returncode == 0, \
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc


def tree(directory):
    """Every path under ``directory`` (relative), with its size and modification time."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(directory).rglob("*")}


def png_shape(path):
    import matplotlib.image

    image = matplotlib.image.imread(path)  # raises on anything but a valid image
    assert image[..., :3].std() > 0.02, f"{path} is blank"
    return image.shape[:2]


def write_reference_file(path, data_path):
    """A data file as the reference project writes it: 'diff3d' float64 sqrt(counts), float64 coordinates,
    complex128 probe and object, an int scan_index, an extra key; no nphotons, no group_indices."""
    with np.load(data_path) as npz:
        ours = {k: npz[k] for k in npz.files}
    counts_scale = math.sqrt(ours["nphotons"] / np.mean(np.sum(ours["diffraction"].astype(np.float64) ** 2,
                                                                axis=(1, 2))))
    np.savez(path, diff3d=ours["diffraction"].astype(np.float64) * counts_scale,
             xcoords=ours["xcoords"].astype(np.float64), ycoords=ours["ycoords"].astype(np.float64),
             probeGuess=ours["probeGuess"].astype(np.complex128), objectGuess=ours["objectGuess"].astype(np.complex128),
             scan_index=np.zeros(len(ours["xcoords"]), np.int64), xcoords_start=ours["xcoords"].astype(np.float64))


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """(directory, {step: CompletedProcess, ...: seconds}) of the four commands run one after another."""
    d = tmp_path_factory.mktemp("cli")
    steps = {}

    def step(name, *args):
        start = time.perf_counter()
        steps[name] = run(d, *args)
        steps[name + "_s"] = time.perf_counter() - start

    step("simulate", "simulate", "--out", "data.npz", *TINY)
    step("train", "train", "data.npz", "--out-dir", "run", "--nepochs", "1", "--batch-size", "8", "--test-ssim")
    step("reconstruct", "reconstruct", "run/wts.h5.zip", "data.npz", "--out", "rec.npz", "--png", "rec.png",
         "--metrics", "rec.metrics.json", "--comparison-png", "rec.comparison.png")
    step("evaluate", "evaluate", "rec.npz", "data.npz")
    step("evaluate_json", "evaluate", "rec.npz", "data.npz", "--json")
    if (d / "data.npz").exists():
        write_reference_file(d / "reference.npz", d / "data.npz")
    # the network alone (--refine 0): the reference file must give the network the same inputs as ours
    step("reconstruct_alone", "reconstruct", "run/wts.h5.zip", "data.npz", "--out", "alone.npz", "--refine", "0",
         "--metrics", "alone.metrics.json")
    step("reconstruct_reference", "reconstruct", "run/wts.h5.zip", "reference.npz", "--out", "ref_rec.npz",
         "--refine", "0")
    return d, steps


# -------------------------------------------------------------------------------------------- the command


def test_console_script_entry_point_is_declared():
    """pyproject.toml declares ``ptycho = ptycho.cli:main`` and the installed package exposes it."""
    import importlib.metadata

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    scripts = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^ptycho = "ptycho\.cli:main"$', scripts, re.M), scripts
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "ptycho"]
    assert entry.value == "ptycho.cli:main" and entry.load() is cli.main


# Runs ``python -m ptycho`` in a fresh interpreter and reports its exit code and whether TF got loaded.
RUN_MODULE = """
import json, runpy, sys
sys.argv = ["ptycho", *{argv!r}]
code = 0
try:
    runpy.run_module("ptycho", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("REPORT" + json.dumps({{"code": code, "tf_loaded": "tensorflow" in sys.modules}}))
"""


def run_module(fresh_python, *argv):
    out = fresh_python(RUN_MODULE.format(argv=list(argv)), timeout=120)
    return json.loads(next(l for l in out.splitlines() if l.startswith("REPORT"))[6:]), out


@pytest.mark.parametrize("command, expected", [
    ("simulate", ["--N PX", "(default: 64)", "pixels", "photons per diffraction pattern", "(default: 1e+09)"]),
    ("train", ["--loss {nll,mae}", "(default: nll)", "(default: 0.001)", "--quiet", "--n-groups", "log scale"]),
    ("reconstruct", ["--png PATH", "object pixels", "(default: auto)", "--refine K", "--force"]),
    ("evaluate", ["--json", "cycles per pixel", "dB"]),
])
def test_help_shows_defaults_and_units_without_loading_tensorflow(fresh_python, command, expected):
    report, out = run_module(fresh_python, command, "--help")
    assert report == {"code": 0, "tf_loaded": False}
    text = " ".join(out.split())
    for phrase in expected:
        assert phrase in text, phrase


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_writes_every_file(round_trip):
    d, steps = round_trip
    for name in ("simulate", "train", "reconstruct", "evaluate", "evaluate_json", "reconstruct_alone",
                 "reconstruct_reference"):
        ok(steps[name])
    with np.load(d / "data.npz", allow_pickle=False) as npz:
        assert {"diffraction", "xcoords", "ycoords", "probeGuess", "objectGuess"} <= set(npz.files)
        assert npz["diffraction"].shape == (40, 32, 32) and npz["objectGuess"].shape == (64, 64)
    assert sorted(os.listdir(d / "run")) == ["history.json", "train.log", "training.png", "wts.h5.zip"]
    assert png_shape(d / "run" / "training.png") == (450, 700)
    with np.load(d / "rec.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["centroids", "coverage", "extent", "object", "origin"]
        assert npz["object"].dtype == np.complex64 and npz["object"].ndim == 2 and np.isfinite(npz["object"]).all()
        x0, y0 = npz["origin"]
        h, w = npz["object"].shape
        np.testing.assert_allclose(npz["extent"], [x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5])
    assert png_shape(d / "rec.png") == (480, 1100)
    assert png_shape(d / "rec.comparison.png") == (900, 1100)
    assert "━" in steps["train"].stdout and "val_loss:" in steps["train"].stdout  # Keras progress bar (no --quiet)
    assert not [p for p in d.rglob(".*")]  # no temporary files left
    mask = os.umask(0)
    os.umask(mask)
    modes = {str(p.relative_to(d)): oct(p.stat().st_mode & 0o777) for p in d.rglob("*") if p.is_file()}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes  # ordinary permissions, not mkstemp's 0600
    timings = {k: round(v, 1) for k, v in steps.items() if k.endswith("_s")}
    print(f"round-trip wall times (s): {timings}")


def test_training_history_and_log(round_trip):
    d, steps = round_trip
    ok(steps["train"])
    history = json.loads((d / "run" / "history.json").read_text())
    assert history["epochs_run"] == 1 and len(history["loss"]) == 1 and math.isfinite(history["loss"][0])
    assert len(history["test_ssim"]) == 1 and -1.0 <= history["test_ssim"][0] <= 1.0
    assert -1.0 <= history["test_ssim_initial"] <= 1.0
    log = (d / "run" / "train.log").read_text()
    assert "ptycho train data.npz: 40 groups of 4, N=32" in log and "train: epoch 1/1" in log and "done:" in log
    assert len(re.findall(r"\bepoch \d", log)) == 1, log  # one epoch logger: each epoch logged once


def test_metrics_json_has_every_key_and_evaluate_agrees(round_trip):
    d, steps = round_trip
    ok(steps["reconstruct"])
    metrics = json.loads((d / "rec.metrics.json").read_text())
    assert set(metrics) == EVERY_METRIC
    assert -1.0 <= metrics["amplitude_ssim"] <= 1.0 and 0.0 <= metrics["crop_coverage"] <= 1.0
    printed = json.loads(ok(steps["evaluate_json"]).stdout)
    assert set(printed) == EVERY_METRIC
    for key in METRIC_KEYS:  # the phase metrics are None (n/a) for the flat-phase lines object (EVAL-PHASE-NA-001)
        expected = None if metrics[key] is None else pytest.approx(metrics[key], rel=1e-6, abs=1e-9)
        assert printed[key] == expected, key
    table = ok(steps["evaluate"]).stdout
    assert re.search(r"SSIM\s+" + re.escape(f"{metrics['amplitude_ssim']:.4g}"), table)
    for row in ("MAE", "PSNR (dB)", "FRC 1/7 (cycles/px)", "half-period (px)", "registration"):
        assert row in table


def test_reference_project_file_is_read(round_trip):
    """diff3d (float64 sqrt(counts)), float64 coordinates, complex128 probe and object: reconstructs like ours."""
    d, steps = round_trip
    ok(steps["reconstruct_reference"])
    with np.load(d / "alone.npz") as ours, np.load(d / "ref_rec.npz") as theirs:
        np.testing.assert_allclose(theirs["origin"], ours["origin"])
        assert theirs["object"].shape == ours["object"].shape
        # the same patterns up to the stored scale, fed to the model at the model's own s: the same object
        np.testing.assert_allclose(theirs["object"], ours["object"], rtol=1e-3, atol=1e-3)
    # outputs only where asked: the data has objectGuess, so the metrics are printed, but no file is written
    # beside --out (it used to write ref_rec.metrics.json and ref_rec.comparison.png unasked; CLI-OUTPUTS-ASKED-001)
    assert not list(d.glob("ref_rec.*.json")) and not list(d.glob("ref_rec.*.png"))
    assert "SSIM" in steps["reconstruct_reference"].stdout
    assert "wrote ref_rec.npz" in steps["reconstruct_reference"].stdout.splitlines()


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A directory of small input files, good and bad (made in-process; no TensorFlow)."""
    from ptycho.config import SimulationConfig
    from ptycho.data import save_npz
    from ptycho.simulate import simulate_dataset

    d = tmp_path_factory.mktemp("inputs")
    data = simulate_dataset(SimulationConfig(N=32, gridsize=2, n_positions=12, object_size=48, buffer=6.0, seed=1))
    save_npz(d / "data.npz", data)
    good = {"diffraction": data.diffraction, "xcoords": data.xcoords, "ycoords": data.ycoords,
            "probeGuess": data.probe}
    np.savez(d / "n30.npz", diffraction=np.ones((4, 30, 30), np.float32), xcoords=np.arange(4.0),
             ycoords=np.arange(4.0), probeGuess=np.ones((30, 30), np.complex64))
    np.savez(d / "few.npz", **{k: v[:3] if k != "probeGuess" else v for k, v in good.items()})
    np.savez(d / "no_probe.npz", **{k: v for k, v in good.items() if k != "probeGuess"})
    nan = data.diffraction.copy()
    nan[2, 5, 5] = np.nan
    np.savez(d / "nan.npz", **{**good, "diffraction": nan})
    np.savez(d / "pickled.npz", **{**good, "xcoords": np.array([_Payload(d / "pwned")] * 12, dtype=object)},
             allow_pickle=True)
    np.savez(d / "data64.npz", diffraction=np.ones((8, 64, 64), np.float32), xcoords=np.arange(8.0) + 20,
             ycoords=np.arange(8.0) + 20, probeGuess=np.ones((64, 64), np.complex64), nphotons=1e6)
    (d / "a_file").write_text("not a directory")
    (d / "existing.npz").write_bytes(b"keep me")
    return d


class _Payload:
    """Unpickling this would create ``self.marker``: proof that loading executed pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


TRAIN = ["train", "data.npz", "--out-dir", "out"]


@pytest.mark.parametrize("argv, message", [
    (TRAIN + ["--loss", "l2"], r"^ptycho train: error: argument --loss: invalid choice: 'l2'"),
    (TRAIN + ["--nepochs", "0"], r"^ptycho train: error: argument --nepochs: must be a positive integer, got '0'"),
    (TRAIN + ["--lr", "-1"], r"argument --lr: must be a finite number > 0, got '-1'"),
    (["train", "n30.npz", "--out-dir", "out"],
     r"^ptycho train: error: n30.npz: key 'diffraction': patterns are 30x30, N must be a multiple of 4$"),
    (["train", "few.npz", "--out-dir", "out", "--gridsize", "2"],
     r"^ptycho train: error: --gridsize: gridsize 2 groups 4 positions, but few.npz holds only 3 scan positions$"),
    (["train", "no_probe.npz", "--out-dir", "out"], r"^ptycho train: error: no_probe.npz: key 'probeGuess': missing"),
    (["train", "nan.npz", "--out-dir", "out"], r"^ptycho train: error: nan.npz: key 'diffraction': contains NaN"),
    (["train", "pickled.npz", "--out-dir", "out"],
     r"^ptycho train: error: pickled.npz: key 'xcoords': cannot be loaded without pickle"),
    (["train", "missing.npz", "--out-dir", "out"], r"^ptycho train: error: data 'missing.npz': no such file$"),
    (["train", "data.npz", "--out-dir", "a_file"], r"--out-dir 'a_file': exists and is not a directory$"),
    (["train", "data.npz", "--out-dir", "out", "--n-groups", "100000"],
     r"argument --n-groups: asked for 100000 groups but only \d+ distinct"),
    (["simulate", "--out", "out/x.npz", "--N", "30"],
     r"^ptycho simulate: error: argument --N: must be a multiple of 4"),
    (["simulate", "--out", "out/x.npz", "--object-size", "20"], r"argument --buffer: must be < object_size / 2"),
    (["simulate", "--out", "existing.npz"], r"--out 'existing.npz': exists \(use --force to overwrite\)$"),
    (["reconstruct", "missing.zip", "data.npz", "--out", "out/r.npz"], r"model 'missing.zip': no such file"),
    (["reconstruct", "existing.npz", "data.npz", "--out", "out/r.npz"],
     r"^ptycho reconstruct: error: existing.npz: not a valid zip archive"),
    (["evaluate", "data.npz", "data.npz"], r"^ptycho evaluate: error: data.npz: key 'object': missing"),
    (["frobnicate"], r"^ptycho: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(inputs, argv, message):
    before = tree(inputs)
    proc = run(inputs, *argv, timeout=180)
    lines = messages(proc)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert "Traceback" not in proc.stderr
    assert tree(inputs) == before  # no partial output, no directory created, nothing touched
    assert not (inputs / "pwned").exists()  # the pickled payload never ran


def test_mismatched_archive_exits_2(round_trip, inputs):
    """An archive built for N=32, gridsize 2: data of another N, or another --gridsize, is refused."""
    model = round_trip[0] / "run" / "wts.h5.zip"
    before = tree(inputs)
    cases = [(["reconstruct", model, "data64.npz", "--out", "out/r.npz"],
              r"^ptycho reconstruct: error: data64.npz: patterns are 64x64, "
              rf"but the model archive {re.escape(str(model))} "
              r"was built for N = 32$"),
             (["reconstruct", model, "data.npz", "--out", "out/r.npz", "--gridsize", "1"],
              r"^ptycho reconstruct: error: argument --gridsize: 1, "
              r"but the model archive .* was built for gridsize 2$")]
    for argv, message in cases:
        proc = run(inputs, *argv, timeout=300)
        lines = messages(proc)
        assert proc.returncode == 2 and len(lines) == 1 and re.search(message, lines[0]), proc.stderr[-3000:]
    assert tree(inputs) == before


def test_existing_outputs_need_force(round_trip):
    d, steps = round_trip
    ok(steps["train"])
    before = tree(d / "run")
    proc = run(d, "train", "data.npz", "--out-dir", "run", "--nepochs", "1")
    assert proc.returncode == 2 and re.search(r"--out-dir '.*history.json': exists \(use --force", messages(proc)[0])
    assert tree(d / "run") == before
    proc = run(d, "reconstruct", "run/wts.h5.zip", "data.npz", "--out", "rec.npz")
    assert proc.returncode == 2 and "--out 'rec.npz': exists (use --force to overwrite)" in messages(proc)[0]


# ------------------------------------------------------------------------------------ interrupted runs


def test_ctrl_c_mid_training_leaves_no_output(inputs, tmp_path):
    """SIGINT after the first epoch: exit 130, one line, only the run log (which records it) in DIR."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "ptycho", "train", str(inputs / "data.npz"), "--out-dir", str(out),
                             "--nepochs", "50", "--batch-size", "8", "--gridsize", "1", "--n-groups", "100",
                             "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "train.log").exists() and "epoch 1/50" in (out / "train.log").read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert [l for l in stderr.splitlines() if l.strip() and not TF_NOISE.match(l)] == [
        "ptycho train: interrupted; no outputs were written"]
    assert sorted(os.listdir(out)) == ["train.log"]
    assert "ERROR interrupted; no outputs were written" in (out / "train.log").read_text()


def _fake_train(dataset, config, **kwargs):
    from ptycho import workflow

    return workflow.TrainedModel(None, None, {"loss": [2.0], "val_loss": [2.5], "epochs_run": 1}, 1.0)


def _write_outputs(crash):
    """A stand-in for ``workflow.write_training_outputs`` that writes the history and figure, then the
    model archive or (``crash``) raises before it."""
    from ptycho import history

    def write(trained, paths, metadata=None, title=""):
        history.write_history(trained.history, paths[0], paths[1])
        if crash:
            raise RuntimeError("disk full")
        Path(paths[2]).write_bytes(b"model")

    return write


def test_crash_mid_write_leaves_no_output_rerun_writes_fresh_force_replaces(inputs, tmp_path, monkeypatch, capsys):
    """Outputs appear as a set or not at all; a re-run after a crash needs no --force; --force removes the old
    set before training, so a forced run that crashes leaves nothing that looks current either."""
    from ptycho import workflow

    out = tmp_path / "run"
    argv = ["train", str(inputs / "data.npz"), "--out-dir", str(out), "--nepochs", "1", "--quiet"]
    monkeypatch.setattr(workflow, "train_model", _fake_train)
    monkeypatch.setattr(workflow, "write_training_outputs", _write_outputs(crash=True))
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(argv)
    assert sorted(os.listdir(out)) == ["train.log"]
    assert "failed: RuntimeError: disk full; no outputs were written" in (out / "train.log").read_text()

    monkeypatch.setattr(workflow, "write_training_outputs", _write_outputs(crash=False))
    assert cli.main(argv) == 0
    assert sorted(os.listdir(out)) == ["history.json", "train.log", "training.png", "wts.h5.zip"]
    assert json.loads((out / "history.json").read_text())["loss"] == [2.0]

    assert cli.main(argv) == 2  # outputs exist: not overwritten without --force
    assert "exists (use --force to overwrite)" in capsys.readouterr().err
    monkeypatch.setattr(workflow, "write_training_outputs", _write_outputs(crash=True))
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(argv + ["--force"])
    assert sorted(os.listdir(out)) == ["train.log"]


def test_keyboard_interrupt_is_exit_130_without_outputs(inputs, tmp_path, monkeypatch, capsys):
    from ptycho import workflow

    def interrupted(dataset, config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "train_model", interrupted)
    out = tmp_path / "run"
    assert cli.main(["train", str(inputs / "data.npz"), "--out-dir", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "ptycho train: interrupted; no outputs were written"
    assert sorted(os.listdir(out)) == ["train.log"]


def test_file_without_nphotons_is_taken_as_sqrt_counts(tmp_path):
    """A reference-project file has no 'nphotons': its amplitudes are sqrt(counts), so s = 1 (ledger CLI-DOSE-001)."""
    amplitudes = np.full((5, 32, 32), 2.0)
    dataset = common.load_data(_save(tmp_path / "ref.npz", diff3d=amplitudes, xcoords=np.arange(5.0),
                                     ycoords=np.arange(5.0), probeGuess=np.ones((32, 32), np.complex128)))
    assert dataset.nphotons is None
    with_dose = common.with_dose(dataset, tmp_path / "ref.npz")
    assert with_dose.nphotons == pytest.approx(4.0 * 32 * 32) and with_dose.intensity_scale == pytest.approx(1.0)
    assert common.with_dose(common.load_data(tmp_path / "ref.npz", nphotons=16.0 * 32 * 32),
                            tmp_path / "ref.npz").intensity_scale == pytest.approx(2.0)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------- simulate flags, --refine

def test_simulate_a_second_scan_of_the_same_complex_object_with_a_defocused_probe(tmp_path):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    small = ["--N", "32", "--n-positions", "24", "--object-size", "64", "--buffer", "8"]
    assert cli.main(["simulate", "--out", str(first), "--object", "grf_complex", "--probe-defocus", "3.0",
                     *small]) == 0
    assert cli.main(["simulate", "--out", str(second), "--object-from", str(first), "--seed", "5",
                     "--probe-defocus", "3.0", "--noise-seed", "9", *small]) == 0
    with np.load(first) as a, np.load(second) as b:
        np.testing.assert_array_equal(a["objectGuess"], b["objectGuess"])  # the same object ...
        assert not np.allclose(a["xcoords"], b["xcoords"])  # ... scanned at other positions
        assert np.ptp(np.angle(a["objectGuess"])) > 1.0  # it has phase
        np.testing.assert_array_equal(a["probeGuess"], b["probeGuess"])
        assert np.ptp(np.angle(a["probeGuess"][8:24, 8:24])) > 1.0  # defocused: a curved phase


def test_simulate_object_from_a_file_without_object_is_refused(tmp_path, capsys):
    bare = tmp_path / "bare.npz"
    np.savez(bare, diffraction=np.ones((4, 32, 32), np.float32), xcoords=np.full(4, 20.0),
             ycoords=np.full(4, 20.0), probeGuess=np.ones((32, 32), np.complex64))
    assert cli.main(["simulate", "--out", str(tmp_path / "x.npz"), "--object-from", str(bare), "--N", "32"]) == 2
    assert "has no objectGuess" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_reconstruct_refines_by_default_and_improves_on_the_network_alone(round_trip):
    """RECONSTRUCT-REFINE-DEFAULT-001: the default output is the network's stitch refined (held-out stopping);
    --refine 0 gives the network alone."""
    d, steps = round_trip
    proc = ok(steps["reconstruct"])
    assert re.search(r"refined in \S+ s: (\d+) iterations, .*; kept iteration (\d+) of \1 \(held-out misfit",
                     proc.stdout), proc.stdout
    alone = ok(steps["reconstruct_alone"])
    assert "refined" not in alone.stdout
    network = json.loads((d / "alone.metrics.json").read_text())
    refined = json.loads((d / "rec.metrics.json").read_text())
    # one epoch on 40 positions: the network alone gives its group retrieval's estimate (0.68 measured; the old
    # 'unet' default gave ~0.2), which refinement through the whole scan improves (0.70 measured)
    assert refined["amplitude_ssim"] > network["amplitude_ssim"] > 0.5, (network, refined)


def test_refine_from_ones_reconstructs_and_refuses_metrics_without_truth(tmp_path):
    """`ptycho refine`: the package's iterative baseline, no network."""
    ok(run(tmp_path, "simulate", "--out", "d.npz", "--N", "32", "--gridsize", "1", "--n-positions", "150",
           "--object-size", "64", "--buffer", "10", "--object", "grf_complex"))
    proc = ok(run(tmp_path, "refine", "d.npz", "--out", "r.npz", "--iterations", "30", "--metrics", "m.json",
                  "--holdout", "0"))
    assert "refined in " in proc.stdout and ": 30 iterations, misfit" in proc.stdout and "kept" not in proc.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["amplitude_ssim"] > 0.9 and metrics["phase_ssim"] > 0.9, metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "m.json", "r.npz"]  # nothing unasked
    # warm start from its own result: the misfit starts where the first run ended
    warm = ok(run(tmp_path, "refine", "d.npz", "--out", "r2.npz", "--init", "r.npz", "--iterations", "2"))
    first = float(re.search(r"-> (\S+)", proc.stdout).group(1))
    assert float(re.search(r"misfit (\S+) ->", warm.stdout).group(1)) < 3 * first
    with np.load(tmp_path / "d.npz") as npz:
        bare = {k: npz[k] for k in npz.files if k != "objectGuess"}
    np.savez(tmp_path / "bare.npz", **bare)
    refused = run(tmp_path, "refine", "bare.npz", "--out", "x.npz", "--metrics", "x.json")
    assert refused.returncode == 2 and "has no objectGuess" in messages(refused)[-1]
    assert not (tmp_path / "x.npz").exists()


def test_train_refuses_a_probe_in_unnormalised_fft_units_before_writing_anything(tmp_path):
    """The Siemens-star trap of issue 20: a hand-converted file whose probe is N× too dim for its counts
    trained to a constant object at the amplitude ceiling with no message. Now: one line, exit 2, no output."""
    ok(run(tmp_path, "simulate", "--out", "d.npz", *TINY))
    with np.load(tmp_path / "d.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["probeGuess"] = arrays["probeGuess"] / 32  # tike's unnormalised FFT: 1/N of the ortho probe
    np.savez(tmp_path / "dim.npz", **arrays)
    proc = run(tmp_path, "train", "dim.npz", "--out-dir", "run", "--nepochs", "1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = messages(proc)
    assert "dim.npz" in line and "multiply it by N = 32" in line and "ptycho import" in line
    assert not (tmp_path / "run").exists()


def test_missing_nphotons_is_announced_and_reconstruct_takes_nphotons(tmp_path):
    ok(run(tmp_path, "simulate", "--out", "d.npz", *TINY))
    with np.load(tmp_path / "d.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if k != "nphotons"}
    np.savez(tmp_path / "nodose.npz", **arrays)
    proc = run(tmp_path, "refine", "nodose.npz", "--out", "r.npz", "--iterations", "1")
    assert any("nodose.npz has no 'nphotons'" in m and "--nphotons" in m for m in messages(proc))
    quiet = ok(run(tmp_path, "refine", "nodose.npz", "--out", "r2.npz", "--iterations", "1", "--nphotons", "1e9"))
    assert not any("nphotons" in m for m in messages(quiet))


# --------------------------------------------------------------------- evaluate: a truth that does not match


def _perfect_reconstruction(data_path, out_path):
    """A reconstruction file holding the data's own object, stitched over its scan (no TensorFlow)."""
    from ptycho.data import load_npz
    from ptycho.reconstruction import Reconstruction, save_reconstruction

    data = load_npz(data_path)
    x0, y0 = int(data.xcoords.min()) - 8, int(data.ycoords.min()) - 8
    side = int(max(data.xcoords.max() - x0, data.ycoords.max() - y0)) + 9
    obj = np.ones((side, side), np.complex64)
    rows, cols = slice(max(y0, 0), y0 + side), slice(max(x0, 0), x0 + side)
    part = data.obj[rows, cols]
    obj[rows.start - y0:rows.start - y0 + part.shape[0], cols.start - x0:cols.start - x0 + part.shape[1]] = part
    save_reconstruction(out_path, Reconstruction(obj=obj, x0=float(x0), y0=float(y0),
                                                 coverage=np.ones((side, side), bool),
                                                 centroids=np.stack([data.xcoords, data.ycoords], axis=1)))


def test_evaluate_refuses_a_truth_of_another_size_and_warns_for_another_object(tmp_path, capsys):
    """The issue's trap: evaluated against another object (or another object size) a reconstruction got numbers
    (SSIM 0.117 with a 6 px shift) without a word. Now: a truth that does not cover the scanned region is refused
    (one line, exit 2); another object of the same size scores with one warning line; the right one, none."""
    small = ["--N", "32", "--n-positions", "40", "--buffer", "8"]
    for name, extra in (("data", ["--object-size", "64"]), ("other", ["--object-size", "64", "--seed", "4"]),
                        ("smaller", ["--object-size", "48"])):
        assert cli.main(["simulate", "--out", str(tmp_path / f"{name}.npz"), *small, *extra]) == 0
    _perfect_reconstruction(tmp_path / "data.npz", tmp_path / "rec.npz")
    capsys.readouterr()
    before = tree(tmp_path)

    assert cli.main(["evaluate", str(tmp_path / "rec.npz"), str(tmp_path / "data.npz")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and re.search(r"SSIM\s+1 ", out.out), out

    assert cli.main(["evaluate", str(tmp_path / "rec.npz"), str(tmp_path / "smaller.npz")]) == 2
    out = capsys.readouterr()
    (line,) = out.err.splitlines()
    assert re.match(rf"^ptycho evaluate: error: {re.escape(str(tmp_path / 'smaller.npz'))}: objectGuess: the "
                    r"object is 48x48 px, but the reconstruction's scanned region spans x \d+\.\.\d+, y \d+\.\.\d+ "
                    r"\(object pixels\), outside it", line), line
    assert out.out == ""

    assert cli.main(["evaluate", str(tmp_path / "rec.npz"), str(tmp_path / "other.npz"), "--json"]) == 0
    out = capsys.readouterr()
    (line,) = out.err.splitlines()
    assert line.startswith(f"ptycho: warning: {tmp_path / 'rec.npz'} against {tmp_path / 'other.npz'}: the "
                           "reconstruction does not match the truth: "), line
    metrics = json.loads(out.out)
    assert metrics["correlation"] < 0.3 or max(map(abs, metrics["shift_found"])) > 2
    assert tree(tmp_path) == before  # evaluate writes nothing


# ------------------------------------------------------------------------ simulate: seeds, scan, K, lines


def test_simulate_seeds_scan_type_k_and_lines_from_the_command_line(tmp_path, capsys):
    """--object-seed / --scan-seed split --seed (a second scan of one object without --object-from), --scan grid,
    --K, --nlines; --seed alone writes what it always wrote; a grid too small for M is one line naming the flag."""
    base = ["--N", "32", "--n-positions", "36", "--object-size", "64", "--buffer", "8"]

    def simulate(name, *extra):
        assert cli.main(["simulate", "--out", str(tmp_path / name), *base, *extra]) == 0
        with np.load(tmp_path / name) as npz:
            return {k: npz[k] for k in npz.files}

    seed0, seed1 = simulate("s0.npz"), simulate("s1.npz", "--seed", "1")
    mixed = simulate("mixed.npz", "--object-seed", "0", "--scan-seed", "1")
    np.testing.assert_array_equal(mixed["objectGuess"], seed0["objectGuess"])
    np.testing.assert_array_equal(mixed["xcoords"], seed1["xcoords"])
    same = simulate("same.npz", "--seed", "0", "--object-seed", "0", "--scan-seed", "0")
    for key in seed0:
        np.testing.assert_array_equal(same[key], seed0[key], err_msg=key)
    grid = simulate("grid.npz", "--scan", "grid", "--grid-step", "6", "--gridsize", "3", "--K", "14",
                    "--nlines", "5")
    assert sorted(set(grid["xcoords"])) == [8.0 + 6 * k for k in range(9)]  # a 9x9 lattice, its first 4 rows
    assert sorted(set(grid["ycoords"])) == [8.0, 14.0, 20.0, 26.0]
    assert grid["group_indices"].shape == (36, 9)
    assert np.mean(np.abs(grid["objectGuess"]) > 1.0) < np.mean(np.abs(seed0["objectGuess"]) > 1.0)  # fewer lines
    capsys.readouterr()
    assert cli.main(["simulate", "--out", str(tmp_path / "x.npz"), *base, "--scan", "grid", "--grid-step",
                     "20"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ptycho simulate: error: argument --n-positions: the 3x3 grid (step 20.0, buffer 8.0) holds 9 positions, "
        "fewer than 36; lower --n-positions or --grid-step, or raise --object-size")
    assert cli.main(["simulate", "--out", str(tmp_path / "x.npz"), *base, "--gridsize", "3", "--K", "8"]) == 2
    assert capsys.readouterr().err.strip() == "ptycho simulate: error: argument --K: must be >= gridsize**2 = 9, got 8"
    assert not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------------------------- gridsize 3 end to end


def test_gridsize_3_end_to_end(tmp_path):
    """The issue's command: `simulate --gridsize 3 --N 32 --n-positions 128` -> train (1 epoch) -> reconstruct ->
    evaluate. K was fixed at 7 < 9 and the error blamed the data file (GROUPING-K-DEFAULT-001)."""
    ok(run(tmp_path, "simulate", "--out", "d.npz", "--gridsize", "3", "--N", "32", "--n-positions", "128",
           "--object-size", "64", "--buffer", "8"))
    trained = ok(run(tmp_path, "train", "d.npz", "--out-dir", "run", "--gridsize", "3", "--nepochs", "1", "--quiet"))
    assert "128 groups of 9 patterns 32x32" in trained.stdout
    assert re.search(r"^epoch 1/1  loss=\S+  val_loss=\S+  \(\d+\.\d s\)$", trained.stdout, re.M), trained.stdout
    assert not messages(trained), trained.stderr  # no TensorFlow start-up lines, no warnings
    ok(run(tmp_path, "reconstruct", "run/wts.h5.zip", "d.npz", "--out", "rec.npz"))
    table = ok(run(tmp_path, "evaluate", "rec.npz", "d.npz")).stdout
    assert re.search(r"^SSIM\s+-?\d", table, re.M), table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "rec.npz", "run"]


# ------------------------------------------------------------------- training settings, progress, start-up


def test_train_help_shows_early_stopping_and_the_learning_rate_schedule(fresh_python):
    report, out = run_module(fresh_python, "train", "--help")
    assert report == {"code": 0, "tf_loaded": False}
    text = " ".join(out.split())
    for phrase in ("stops early when the validation loss has not improved", "--early-stopping-patience E",
                   "(default: 3)", "--lr-patience E", "(default: 2)", "--lr-factor F", "(default: 0.5)", "halved",
                   "--min-lr RATE", "(default: 0.0001)", "one line per epoch instead (epoch, loss, val_loss, seconds)",
                   "--verbose", "cuInit", "--K K"):
        assert phrase in text, phrase


def test_training_settings_reach_the_config(inputs, tmp_path, monkeypatch):
    from ptycho import workflow

    seen = {}

    def fake(dataset, config, **kwargs):
        seen["config"] = config
        return _fake_train(dataset, config, **kwargs)

    monkeypatch.setattr(workflow, "train_model", fake)
    monkeypatch.setattr(workflow, "write_training_outputs", _write_outputs(crash=False))
    assert cli.main(["train", str(inputs / "data.npz"), "--out-dir", str(tmp_path / "run"), "--quiet",
                     "--early-stopping-patience", "9", "--lr-patience", "4", "--lr-factor", "0.25",
                     "--min-lr", "1e-5"]) == 0
    config = seen["config"]
    assert (config.early_stopping_patience, config.lr_patience, config.lr_factor, config.min_lr) == (9, 4, 0.25, 1e-5)
    assert cli.main(["train", str(inputs / "data.npz"), "--out-dir", str(tmp_path / "x"), "--lr-factor", "2"]) == 2


def test_verbose_shows_tensorflow_start_up_lines_that_are_hidden_by_default(inputs):
    """CLI-TF-NOISE-001: TensorFlow's banner (twice) and the cuInit error line of a CPU-only machine are hidden
    unless --verbose, so an error found after TensorFlow is loaded is the only line on stderr."""
    argv = ["reconstruct", "existing.npz", "data.npz", "--out", "out/r.npz"]  # not a zip: refused after TF starts
    quiet = run(inputs, *argv, timeout=180)
    assert quiet.returncode == 2 and len(quiet.stderr.splitlines()) == 1, quiet.stderr
    assert quiet.stderr.startswith("ptycho reconstruct: error: existing.npz: not a valid zip archive")
    verbose = run(inputs, *argv, "--verbose", timeout=180)
    assert verbose.returncode == 2 and [line for line in verbose.stderr.splitlines() if TF_NOISE.match(line)]
    assert messages(verbose) == quiet.stderr.splitlines()


# ------------------------------------------------------------------------------- the README, as printed


def readme_commands():
    """The ``ptycho`` command lines of the README's command-line section, in order (one list per bash block)."""
    import shlex

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data: the command line", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [[shlex.split(line)[1:] for line in block.splitlines() if line.startswith("ptycho ")] for block in blocks]


def test_readme_command_line_section_has_examples():
    blocks = readme_commands()
    assert len(blocks) >= 2 and all(blocks) and blocks[0][0][0] == "import", blocks


@pytest.mark.slow
def test_readme_command_line_examples_run_as_printed(tmp_path):
    """Every command of the README's command-line section, as printed, from a directory holding the star subset
    where the README's path says (a fresh clone's root); each block in its own directory."""
    for i, block in enumerate(readme_commands()):
        d = tmp_path / f"block{i}"
        (d / "tests" / "fixtures").mkdir(parents=True)
        (d / "tests" / "fixtures" / "siemens_star_subset.npz.bz2").symlink_to(
            REPO / "tests" / "fixtures" / "siemens_star_subset.npz.bz2")
        for argv in block:
            proc = ok(run(d, *argv))
            assert not [line for line in messages(proc) if "error" in line.lower()], proc.stderr


def test_probe_trainable_learns_a_probe_that_reconstruct_refines_with(round_trip):
    """CLI-PROBE-TRAINABLE-001: --probe-trainable trains the probe weight; the archive keeps it and reconstruct
    refines with it. Without the flag the archive's probe is the data's, bit for bit, and is not announced."""
    from ptycho.model import get_probe
    from ptycho.persistence import load_model

    d, steps = round_trip
    with np.load(d / "data.npz") as npz:
        data_probe = npz["probeGuess"]
    fixed, _, _ = load_model(d / "run" / "wts.h5.zip")
    np.testing.assert_array_equal(get_probe(fixed), data_probe)
    assert "probe" not in ok(steps["reconstruct"]).stdout.split("refined in")[0]
    assert "probe_change" not in json.loads((d / "run" / "history.json").read_text())

    trained = ok(run(d, "train", "data.npz", "--out-dir", "learnt", "--nepochs", "1", "--batch-size", "8",
                     "--quiet", "--probe-trainable"))
    change = float(re.search(r"probe refined in training: changed by (\S+) %", trained.stdout).group(1)) / 100
    learnt, _, _ = load_model(d / "learnt" / "wts.h5.zip")
    measured = np.linalg.norm(get_probe(learnt) - data_probe) / np.linalg.norm(data_probe)
    assert 0 < measured < 0.5 and change == pytest.approx(measured, rel=1e-2), (change, measured)
    assert json.loads((d / "learnt" / "history.json").read_text())["probe_change"] == pytest.approx(measured)
    proc = ok(run(d, "reconstruct", "learnt/wts.h5.zip", "data.npz", "--out", "learnt_rec.npz", "--refine", "2"))
    assert "refining with the probe learnt in training (stored in learnt/wts.h5.zip), not data.npz's" in proc.stdout
