"""Root test configuration: quiet TF logs, hypothesis profiles, params.cfg isolation, fresh interpreters."""
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, settings

# Quiet TensorFlow's C++ logging in the test process and in every child it starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Mutation testing (tox -e mutation) runs the property tests once per mutant: fewer, derandomised examples.
settings.register_profile(
    "mutation",
    derandomize=True,
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def legacy_cfg():
    """Yield ``ptycho.params.cfg`` and restore it afterwards by mutation (never rebinding)."""
    from ptycho import params

    snapshot = dict(params.cfg)
    try:
        yield params.cfg
    finally:
        params.cfg.clear()
        params.cfg.update(snapshot)


class FreshInterpreterError(AssertionError):
    """A snippet run in a fresh interpreter failed or timed out."""


def run_in_fresh_interpreter(code: str, timeout: float = 300.0, env: dict | None = None) -> str:
    """Run ``code`` in a new Python interpreter (``sys.executable``) and return its stdout.

    A fresh interpreter is the only isolation that is always safe once the parent has run TF ops
    (forking a process whose TF runtime is initialised can hang the child). A non-zero exit or a
    timeout raises ``FreshInterpreterError`` with the child's output, so a broken isolation fails
    loudly instead of hanging the suite.
    """
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + child_env.get("PYTHONPATH", "")
    if env:
        child_env.update(env)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True, text=True, timeout=timeout, env=child_env, cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise FreshInterpreterError(
            f"fresh interpreter timed out after {timeout} s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        ) from None
    if proc.returncode != 0:
        raise FreshInterpreterError(
            f"fresh interpreter exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc.stdout


@pytest.fixture
def fresh_python():
    """The ``run_in_fresh_interpreter(code, timeout=..., env=...) -> stdout`` helper, as a fixture."""
    return run_in_fresh_interpreter
