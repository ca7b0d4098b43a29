"""ptycho.legacy: the one reader of the legacy params.cfg (keyword > params.cfg > default)."""
import ast
import pathlib

import numpy as np
import pytest

from ptycho import legacy, params
from ptycho.config import ModelConfig

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ptycho"


def test_untouched_cfg_gives_the_defaults(legacy_cfg):
    settings = legacy.config_from_legacy(2, 64, conv_dtype="float32")
    assert settings.config == ModelConfig(N=64, gridsize=2, conv_dtype="float32")
    assert settings.intensity_scale is None
    assert (settings.nphotons, settings.nll_weight, settings.mae_weight, settings.learning_rate) == (
        params.DEFAULTS["nphotons"], params.DEFAULTS["nll_weight"], params.DEFAULTS["mae_weight"],
        params.DEFAULTS["learning_rate"])


def test_keyword_beats_cfg_beats_default(legacy_cfg):
    legacy_cfg.update({"offset": 6, "probe.trainable": True, "nll_weight": 0.0, "mae_weight": 1.0,
                       "intensity_scale": 3.0, "conv_dtype": "bfloat16"})
    settings = legacy.config_from_legacy(2, 64, offset=8, padded_size=80, mae_weight=2.0)
    config = settings.config
    assert (config.offset, config.probe_trainable, config.padded_size, config.conv_dtype) == (8, True, 80, "bfloat16")
    assert (settings.nll_weight, settings.mae_weight, settings.intensity_scale) == (0.0, 2.0, 3.0)
    assert config.max_position_jitter == ModelConfig().max_position_jitter


def test_conv_dtype_none_is_resolved_for_the_device(legacy_cfg):
    from ptycho.device import default_conv_dtype

    assert legacy.config_from_legacy(1, 64).config.conv_dtype == default_conv_dtype()
    with pytest.raises(ValueError, match="conv_dtype: must be"):
        legacy.config_from_legacy(1, 64, conv_dtype="float16")


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match="no_such_setting"):
        legacy.config_from_legacy(1, 64, no_such_setting=1)


def test_legacy_probe_of_the_wrong_size_is_dropped_with_a_warning(legacy_cfg, caplog):
    assert legacy.legacy_probe(32) is None
    legacy_cfg["probe"] = np.ones((32, 32, 1), np.float32)
    probe = legacy.legacy_probe(32)
    assert probe.shape == (32, 32) and probe.dtype == np.complex64
    with caplog.at_level("WARNING", logger="ptycho.legacy"):
        assert legacy.legacy_probe(64) is None
    assert any("params.cfg['probe'] has shape (32, 32, 1)" in r.getMessage() for r in caplog.records)


def test_value_is_read_at_call_time(legacy_cfg):
    legacy_cfg.pop("use_xla_translate", None)
    assert legacy.value("use_xla_translate", True) is True
    legacy_cfg["use_xla_translate"] = False
    assert legacy.value("use_xla_translate", True) is False
    assert legacy.source("use_xla_translate") == "params.cfg['use_xla_translate']"


def _reads_of_the_global(path: pathlib.Path) -> list[str]:
    """``params.cfg`` / ``params.get`` attribute reads in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("cfg", "get")
            and isinstance(node.value, ast.Name) and node.value.id == "params"]


def test_only_the_legacy_module_reads_the_global():
    """Issue 22: inside the package, params.cfg is read in ptycho/legacy.py alone (and params.py itself)."""
    readers = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if _reads_of_the_global(p)}
    assert readers == {"legacy.py"}
