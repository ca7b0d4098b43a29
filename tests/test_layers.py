"""Every custom Keras layer of ptycho passes one contract (tests/layer_registry.py, issue 22).

Config round trip, symbolic == eager, a one-step fit, and a ``.keras`` save/load with equal predictions; a class
deriving ``keras.layers.Layer`` anywhere in ``ptycho`` but missing from the registry fails the suite.
"""
import pytest

from layer_registry import CASES, Gain, package_layer_classes, run_layer_test


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_layer_contract(case, tmp_path):
    run_layer_test(case, tmp_path)


def test_registry_covers_every_layer_class_of_the_package():
    defined = package_layer_classes()
    registered = {type(case.factory()) for case in CASES}
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in defined - registered)
    assert not missing, f"layer classes without a case in tests/layer_registry.py: {missing}"
    assert Gain not in defined  # the registry's own test layer is not counted as the package's
    assert {cls.__name__ for cls in defined} >= {"Translation", "DiffractionStandardizer", "HolographicEstimate"}
