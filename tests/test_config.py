"""Config dataclasses: defaults, derived values, and field-naming validation errors."""
import dataclasses

import pytest

from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig


def test_model_config_padded_size_default():
    assert ModelConfig(N=64, gridsize=2).P == 78  # 64 + 1*4 + 10, SPEC §2.2
    assert ModelConfig(N=64, gridsize=1).P == 74
    assert ModelConfig(N=128, gridsize=2).C == 4


@pytest.mark.parametrize("kwargs, field", [
    ({"N": 62}, "N"),
    ({"N": 0}, "N"),
    ({"N": 64.0}, "N"),
    ({"gridsize": 0}, "gridsize"),
    ({"gridsize": 2, "offset": 3}, "padded_size"),  # P - N = 13, odd
    ({"padded_size": 60}, "padded_size"),  # P < N
    ({"probe_scale": -1.0}, "probe_scale"),
    ({"object_amplitude_max": float("nan")}, "object_amplitude_max"),
    ({"conv_dtype": "float16"}, "conv_dtype"),
    ({"conv_dtype": "mixed_bfloat16"}, "conv_dtype"),
])
def test_model_config_rejects(kwargs, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}"):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"nepochs": 0}, "nepochs"),
    ({"batch_size": -3}, "batch_size"),
    ({"loss": "mse"}, "loss"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"lr_factor": 1.5}, "lr_factor"),
    ({"jit_compile": 1}, "jit_compile"),
    ({"jit_compile": "auto"}, "jit_compile"),
])
def test_training_config_rejects(kwargs, field):
    with pytest.raises(ValueError, match=rf"TrainingConfig\.{field}"):
        TrainingConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"nphotons": -1.0}, "nphotons"),
    ({"nphotons": 0.0}, "nphotons"),
    ({"nphotons": float("inf")}, "nphotons"),
    ({"N": 30}, "N"),
    ({"scan": "spiral"}, "scan"),
    ({"buffer": 64.0}, "buffer"),
    ({"gridsize": 2, "K": 3}, "K"),
    ({"object_kind": "cat"}, "object_kind"),
    ({"seed": -1}, "seed"),
])
def test_simulation_config_rejects(kwargs, field):
    with pytest.raises(ValueError, match=rf"SimulationConfig\.{field}"):
        SimulationConfig(**kwargs)


def test_configs_are_frozen_and_replaceable():
    cfg = SimulationConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nphotons = 1.0
    assert dataclasses.replace(cfg, nphotons=1e4).nphotons == 1e4
