"""The legacy params.cfg mirror."""
import pytest

from ptycho import params
from ptycho.config import ModelConfig, TrainingConfig


def test_defaults_are_plain_values():
    assert params.cfg["N"] == 64
    assert params.cfg["probe"] is None
    assert params.cfg["use_xla_translate"] is True
    assert params.get("offset") == 4


def test_get_unknown_key_names_it(legacy_cfg):
    with pytest.raises(KeyError, match="no_such_key"):
        params.get("no_such_key")


def test_set_mutates_the_same_dict(legacy_cfg):
    before = id(params.cfg)
    params.set("N", 128)
    assert params.cfg["N"] == 128 and id(params.cfg) == before


def test_update_legacy_dict_copies_fields_and_renames(legacy_cfg):
    params.update_legacy_dict(params.cfg, ModelConfig(N=128, gridsize=2, probe_trainable=True))
    assert params.cfg["N"] == 128 and params.cfg["gridsize"] == 2
    assert params.cfg["probe.trainable"] is True
    params.update_legacy_dict(params.cfg, TrainingConfig(batch_size=32))
    assert params.cfg["batch_size"] == 32


def test_update_legacy_dict_rejects_non_dataclass():
    with pytest.raises(TypeError, match="dataclass"):
        params.update_legacy_dict({}, {"N": 64})


def test_legacy_cfg_fixture_restores_by_mutation(legacy_cfg):
    assert legacy_cfg is params.cfg
    legacy_cfg["N"] = 999
    legacy_cfg["new_key"] = 1


def test_previous_test_left_no_trace():
    # Order-independent on its own; under the default order it also checks the fixture restored cfg.
    assert params.cfg.get("N") != 999 and "new_key" not in params.cfg


def test_defaults_are_derived_from_the_dataclasses(monkeypatch):
    """Each legacy default is the dataclass default that owns it, read when DEFAULTS is made (not a copy)."""
    import dataclasses

    from ptycho.config import SimulationConfig

    model, training = ModelConfig(), TrainingConfig()
    for field in dataclasses.fields(ModelConfig):
        if field.name != "padded_size":
            assert params.DEFAULTS[params.legacy_key(field.name)] == getattr(model, field.name), field.name
    for key in ("batch_size", "nepochs", "learning_rate"):
        assert params.DEFAULTS[key] == getattr(training, key), key
    assert params.DEFAULTS["nphotons"] == SimulationConfig().nphotons
    assert (params.DEFAULTS["nll_weight"], params.DEFAULTS["mae_weight"]) == (1.0, 0.0)

    @dataclasses.dataclass(frozen=True)
    class WiderModel(ModelConfig):
        n_filters_scale: int = 3

    @dataclasses.dataclass(frozen=True)
    class MaeTraining(TrainingConfig):
        loss: str = "mae"

    monkeypatch.setattr(params, "ModelConfig", WiderModel)  # a changed dataclass default flows through
    monkeypatch.setattr(params, "TrainingConfig", MaeTraining)
    derived = params._derived_defaults()
    assert derived["n_filters_scale"] == 3 and (derived["nll_weight"], derived["mae_weight"]) == (0.0, 1.0)
