"""The dose-response CLI: every option documented, invalid arguments rejected before any work or TF import."""
import json
import os
import sys

import pytest

from ptycho.studies import dose

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "scripts", "studies", "dose_response_study.py")
OPTIONS = ["--output-dir", "--preset", "--nepochs", "--batch-size", "--n-train", "--n-test", "--seed",
           "--arms", "--force", "--keras-verbose", "--test-ssim", "--no-test-ssim", "--refine-iterations"]

# Runs the script as __main__ in a fresh interpreter and reports its exit code and whether TF got loaded.
RUN_SCRIPT = """
import json, runpy, sys
sys.argv = {argv!r}
code = 0
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("REPORT" + json.dumps({{"code": code, "tf_loaded": "tensorflow" in sys.modules,
                               "keras_loaded": "keras" in sys.modules}}))
"""


def run_script(fresh_python, *args):
    out = fresh_python(RUN_SCRIPT.format(argv=[SCRIPT, *args], script=SCRIPT), timeout=120)
    return json.loads(next(l for l in out.splitlines() if l.startswith("REPORT"))[6:]), out


def test_help_documents_every_option_without_loading_tensorflow(fresh_python):
    report, out = run_script(fresh_python, "--help")
    assert report == {"code": 0, "tf_loaded": False, "keras_loaded": False}
    for option in OPTIONS:
        assert option in out
    for arm in dose.ALL_ARM_NAMES:
        assert arm in out
    assert "paper: n_train=2000, n_test=512, nepochs=50" in " ".join(out.split())


def test_invalid_arguments_fail_fast_without_tensorflow(fresh_python, tmp_path):
    out_dir = tmp_path / "out"
    report, _ = run_script(fresh_python, "--output-dir", str(out_dir), "--arms", "high_nll", "bogus")
    assert report == {"code": 2, "tf_loaded": False, "keras_loaded": False}
    assert not out_dir.exists()


@pytest.mark.parametrize("argv, message", [
    (["--nepochs", "0"], "argument --nepochs: must be a positive integer"),
    (["--nepochs", "two"], "argument --nepochs: must be a positive integer"),
    (["--batch-size", "-4"], "argument --batch-size: must be a positive integer"),
    (["--n-train", "0"], "argument --n-train: must be a positive integer"),
    (["--n-train", "12"], r"--n-train\): must be >= 20"),
    (["--n-test", "3"], r"--n-test\): must be >= 4"),
    (["--seed", "-1"], "argument --seed: must be a non-negative integer"),
    (["--preset", "medium"], "argument --preset: invalid choice"),
    (["--arms", "high_nll,mid_mae"], r"--arms\): unknown arm\(s\) \['mid_mae'\]"),
    (["--arms"], "argument --arms: expected at least one argument"),
    (["--keras-verbose", "3"], "argument --keras-verbose: invalid choice"),
    (["--refine-iterations", "0"], "argument --refine-iterations: must be a positive integer"),
    (["--arms", "high_refined"], r"--arms\): unknown arm\(s\) \['high_refined'\]"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_invalid_arguments_are_rejected_before_any_work(tmp_path, capsys, argv, message):
    import re

    out_dir = tmp_path / "out"
    calls = []
    with pytest.raises(SystemExit) as info:
        dose.main(["--output-dir", str(out_dir), *argv], run_arm=lambda *a: calls.append(a),
                  make_truth=lambda c: calls.append(c))
    assert info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out_dir.exists() and calls == []


def test_output_dir_that_is_a_file_is_rejected(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for target in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as info:
            dose.main(["--output-dir", str(target)], make_truth=lambda c: pytest.fail("work started"))
        assert info.value.code == 2
        assert f"--output-dir {str(target)!r}" in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"


def test_flags_override_the_preset(tmp_path):
    parser = dose.build_parser()
    args = parser.parse_args(["--output-dir", str(tmp_path), "--preset", "paper", "--nepochs", "3",
                              "--arms", "low_mae", "high_nll", "--force", "--seed", "7"])
    config = dose.config_from_args(args)
    assert (config.n_train, config.n_test, config.nepochs, config.batch_size) == (2000, 512, 3, 16)
    assert (config.arms, config.force, config.seed, config.output_dir) == (
        ("high_nll", "low_mae"), True, 7, tmp_path)
    default = dose.config_from_args(parser.parse_args([]))
    assert default.preset == "quick" and default.arms == dose.ARM_NAMES and default.force is False
    assert default.refine_iterations == dose.DEFAULT_REFINE_ITERATIONS == 30
    assert default.test_ssim is True and dose.config_from_args(parser.parse_args(["--no-test-ssim"])).test_ssim is False
    assert str(default.output_dir) == "runs/dose_response"  # what tox -e study passes


def test_default_arms_stay_the_four_network_arms_and_all_adds_the_refine_arms(tmp_path):
    """What ``tox -e study`` runs (no --arms) must not grow; the iterative and refined arms are opt-in (issue 21)."""
    parser = dose.build_parser()
    default = dose.config_from_args(parser.parse_args(["--output-dir", str(tmp_path)]))
    assert default.arms == ("high_nll", "high_mae", "low_nll", "low_mae") == dose.ARM_NAMES
    every = dose.config_from_args(parser.parse_args(["--output-dir", str(tmp_path), "--arms", "all"]))
    assert every.arms == dose.ALL_ARM_NAMES == dose.ARM_NAMES + (
        "high_iterative", "low_iterative", "high_nll_refined", "low_nll_refined")
    picked = dose.config_from_args(parser.parse_args(
        ["--output-dir", str(tmp_path), "--arms", "low_nll_refined,high_iterative", "--refine-iterations", "7"]))
    assert picked.arms == ("high_iterative", "low_nll_refined") and picked.refine_iterations == 7
