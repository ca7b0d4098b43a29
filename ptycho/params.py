"""Legacy configuration mirror: one plain dict, ``cfg``, as scripts written for PtychoPINN expect.

New code passes ``ptycho.config`` dataclasses explicitly. ``cfg`` exists so that legacy scripts
(``params.cfg['N'] = 128``; ``params.set('probe', p)``) keep working; inside the package only
``ptycho.legacy`` reads it (for ``create_model_with_gridsize``, the lazy ``ptycho.model.autoencoder``, the XLA
switch and the default probe's width), at call time. Tests restore it by mutation.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ptycho.config import ModelConfig, SimulationConfig, TrainingConfig

# Dataclass field name -> legacy key, where the two differ.
_LEGACY_NAMES = {
    "probe_trainable": "probe.trainable",
    "intensity_scale_trainable": "intensity_scale.trainable",
}
#: ``ModelConfig`` fields without a legacy key (N and gridsize are the factory's arguments, kept as keys;
#: ``padded_size`` is a keyword only).
_MODEL_ONLY = ("padded_size",)
#: ``TrainingConfig`` fields that legacy scripts set.
_TRAINING_KEYS = ("batch_size", "nepochs", "learning_rate")


def legacy_key(field: str) -> str:
    """The ``cfg`` key of a ``ptycho.config`` dataclass field (the field's own name unless renamed)."""
    return _LEGACY_NAMES.get(field, field)


def _derived_defaults() -> dict[str, Any]:
    """The legacy defaults, each taken from the dataclass field that owns it (one place per default)."""
    model = ModelConfig()
    training = TrainingConfig()
    defaults: dict[str, Any] = {legacy_key(f.name): getattr(model, f.name)
                                for f in dataclasses.fields(ModelConfig) if f.name not in _MODEL_ONLY}
    defaults.update({"probe": None, "intensity_scale": None, "nphotons": SimulationConfig().nphotons,
                     "nll_weight": float(training.loss == "nll"), "mae_weight": float(training.loss == "mae"),
                     "use_xla_translate": True})
    defaults.update({key: getattr(training, key) for key in _TRAINING_KEYS})
    return defaults


#: Values a fresh process starts with, derived from the ``ptycho.config`` dataclass defaults. ``None`` means
#: "derive it when a model is built" (the probe from ``default_probe_scale``, s from ``nphotons``).
DEFAULTS: dict[str, Any] = _derived_defaults()

cfg: dict[str, Any] = dict(DEFAULTS)


def get(key: str) -> Any:
    """Return ``cfg[key]``; an unknown key raises ``KeyError`` naming it."""
    try:
        return cfg[key]
    except KeyError:
        raise KeyError(f"params.cfg has no key {key!r}; known keys: {sorted(cfg)}") from None


def set(key: str, value: Any) -> None:  # noqa: A001 - legacy public name
    """Set ``cfg[key] = value`` (legacy API)."""
    if not isinstance(key, str):
        raise TypeError(f"params.set: key must be a str, got {type(key).__name__}")
    cfg[key] = value


def update_legacy_dict(cfg: dict[str, Any], config: Any) -> dict[str, Any]:
    """Copy every field of a ``ptycho.config`` dataclass into the legacy dict ``cfg`` (in place).

    Nested dataclasses are flattened. Returns ``cfg`` for convenience.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"update_legacy_dict: config must be a dataclass instance, got {type(config).__name__}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            update_legacy_dict(cfg, value)
        else:
            cfg[legacy_key(field.name)] = value
    return cfg
