"""Importing ptycho modules does no work (SPEC §1), checked in fresh interpreters."""
import json

import pytest

# Modules whose import must not even load TensorFlow.
LIGHT_MODULES = ["ptycho", "ptycho.params", "ptycho.config", "ptycho.legacy", "ptycho.device", "ptycho.grouping",
                 "ptycho.data", "ptycho.files", "ptycho.runlog", "ptycho.figures", "ptycho.history",
                 "ptycho.reconstruction", "ptycho.scan_region", "ptycho.argtypes", "ptycho.cli", "ptycho.studies.dose",
                 "ptycho.inputs"]

PROBE_SNIPPET = """
import json, random, sys
import numpy as np
{preimport}
np_state = np.random.get_state()[1].tolist()
py_state = random.getstate()
import importlib
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # a module the package needs is missing: that is a failure
            raise
report = {{
    "tf_loaded": "tensorflow" in sys.modules,
    "numpy_rng_untouched": np.random.get_state()[1].tolist() == np_state,
    "python_rng_untouched": random.getstate() == py_state,
}}
if report["tf_loaded"]:
    from tensorflow.python.eager import context
    report["tf_context_initialized"] = bool(context.context()._initialized)
print("REPORT" + json.dumps(report))
"""


# Third-party imports that are allowed to touch global state (rich, a Keras dependency, draws from Python's
# `random` at import): they are imported before the state is recorded, so only ptycho's own imports count.
THIRD_PARTY = "import tensorflow, keras"


def _report(fresh_python, modules, preimport=""):
    out = fresh_python(PROBE_SNIPPET.format(modules=modules, preimport=preimport), timeout=180)
    line = next(l for l in out.splitlines() if l.startswith("REPORT"))
    return json.loads(line[len("REPORT"):])


# The subpackages' modules (issue 22: ptycho.cli and ptycho.evaluation split by subcommand and by step).
LIGHT_MODULES += ["ptycho.cli.common", "ptycho.cli.simulate", "ptycho.cli.train", "ptycho.cli.reconstruct",
                  "ptycho.cli.evaluate", "ptycho.cli.refine", "ptycho.cli.import_"]
LIGHT_MODULES += ["ptycho.evaluation", "ptycho.evaluation.metrics", "ptycho.evaluation.registration",
                  "ptycho.evaluation.resolution"]


def test_light_modules_do_not_load_tensorflow(fresh_python):
    report = _report(fresh_python, LIGHT_MODULES)
    assert report == {"tf_loaded": False, "numpy_rng_untouched": True, "python_rng_untouched": True}


ALL_MODULES = [
    "ptycho", "ptycho.params", "ptycho.config", "ptycho.probe", "ptycho.objects", "ptycho.physics",
    "ptycho.simulate", "ptycho.data", "ptycho.projective_warp_xla", "ptycho.tf_helper", "ptycho.legacy",
    "ptycho.device", "ptycho.layers", "ptycho.operators", "ptycho.model",
    "ptycho.losses", "ptycho.train", "ptycho.inference", "ptycho.evaluation", "ptycho.persistence",
    "ptycho.studies.dose", "ptycho.studies.dose.config", "ptycho.studies.dose.arm", "ptycho.studies.dose.figures",
    "ptycho.studies.dose.study", "ptycho.studies.dose.cli", "ptycho.grouping", "ptycho.files", "ptycho.runlog",
    "ptycho.figures", "ptycho.history", "ptycho.reconstruction", "ptycho.scan_region", "ptycho.monitor",
    "ptycho.workflow", "ptycho.argtypes", "ptycho.cli", "ptycho.__main__",
    "ptycho.inputs",
]
ALL_MODULES += ["ptycho.cli.common", "ptycho.cli.simulate", "ptycho.cli.train", "ptycho.cli.reconstruct",
                "ptycho.cli.evaluate", "ptycho.cli.refine", "ptycho.cli.import_"]
ALL_MODULES += ["ptycho.evaluation.metrics", "ptycho.evaluation.registration", "ptycho.evaluation.resolution"]
ALL_MODULES += ["ptycho.studies.dose.sweep", "ptycho.studies.dose.sweep_config", "ptycho.refine", "ptycho.diagnostics",
                "ptycho.formats"]


def test_import_runs_no_tf_op(fresh_python):
    """Importing every module runs no TF op: the eager context is never initialised, no RNG is touched."""
    report = _report(fresh_python, ALL_MODULES, preimport=THIRD_PARTY)
    assert report["numpy_rng_untouched"] and report["python_rng_untouched"], report
    assert report.get("tf_context_initialized", False) is False, report


def test_probe_detects_a_tf_op(fresh_python):
    """The probe above can fail: a module that runs a TF op at import is caught."""
    code = PROBE_SNIPPET.format(modules=["ptycho"], preimport="").replace(
        'print("REPORT"', 'import tensorflow as tf; tf.constant(1.0)\n'
        'from tensorflow.python.eager import context\n'
        'report["tf_context_initialized"] = bool(context.context()._initialized)\nprint("REPORT"')
    out = fresh_python(code, timeout=180)
    report = json.loads(next(l for l in out.splitlines() if l.startswith("REPORT"))[6:])
    assert report["tf_context_initialized"] is True


@pytest.mark.parametrize("module", ALL_MODULES)
def test_modules_exist(module):
    """Every module of the SPEC §1 layout is importable."""
    import importlib
    importlib.import_module(module)
