"""The harness's own configuration (issue 13): mutation scope, replay wiring, no unused test dependency."""
import configparser
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEDGER_MODULES = {"ptycho/projective_warp_xla.py", "ptycho/tf_helper.py", "ptycho/losses.py", "ptycho/physics.py",
                  "ptycho/data.py"}


def _pyproject():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_mutmut_scope_and_isolation():
    config = _pyproject()["tool"]["mutmut"]
    assert set(config["only_mutate"]) == LEDGER_MODULES
    assert config["process_isolation"] == "forkserver"  # ledger MUTATION-FORKSERVER-001
    for path in config["pytest_add_cli_args_test_selection"]:
        assert (ROOT / path).exists(), path
    assert "mutants/" in (ROOT / ".gitignore").read_text().splitlines()


def test_tox_runs_mutation_and_defect_replay():
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    assert "mutmut>=3,<4" in tox["testenv:mutation"]["deps"]
    assert "mutmut run" in tox["testenv:mutation"]["commands"]
    assert "scripts/replay_defects.py" in tox["testenv:defects"]["commands"]
    for script in ("scripts/replay_defects.py", "scripts/mutation_report.py"):
        assert (ROOT / script).is_file()


def test_no_unused_test_dependency():
    """pytest-forked was removed (ledger FORKED-ISOLATION-001): no test may rely on the forked marker."""
    extras = _pyproject()["project"]["optional-dependencies"]["test"]
    assert not any(dep.startswith("pytest-forked") for dep in extras)
    marker = "pytest.mark." + "forked"
    for path in (ROOT / "tests").rglob("*.py"):
        assert marker not in path.read_text(encoding="utf-8"), path
