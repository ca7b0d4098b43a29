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


def test_scan_neighbours_join_the_retrieval_at_gridsize_1_only():
    """RETRIEVAL-NEIGHBOURS-001: default 3 for the 'retrieval' architecture at gridsize 1, else 0; the retrieval
    canvas then widens to N + 2·(N // 4)."""
    assert ModelConfig().neighbours == 3 and ModelConfig().retrieval_padded_size == 96
    assert ModelConfig(gridsize=2).neighbours == 0 and ModelConfig(gridsize=2).retrieval_padded_size == 78
    assert ModelConfig(architecture="unet").neighbours == 0
    assert ModelConfig(retrieval_neighbours=0).retrieval_padded_size == ModelConfig().P == 74
    assert ModelConfig(N=32, retrieval_neighbours=5).retrieval_padded_size == 48
    with pytest.raises(ValueError, match=r"^ModelConfig\.retrieval_neighbours: only the 'retrieval' architecture "
                                         r"at gridsize 1 takes scan neighbours, got 3 with architecture='retrieval', "
                                         r"gridsize=2$"):
        ModelConfig(gridsize=2, retrieval_neighbours=3)
    with pytest.raises(ValueError, match=r"^ModelConfig\.retrieval_neighbours: must be >= 0, got -1$"):
        ModelConfig(retrieval_neighbours=-1)
