"""Legacy configuration mirror: one plain dict, ``cfg``, as scripts written for PtychoPINN expect.

New code passes ``ptycho.config`` dataclasses explicitly. ``cfg`` exists so that legacy scripts
(``params.cfg['N'] = 128``; ``params.set('probe', p)``) keep working; inside the package only
``ptycho.legacy`` reads it (for ``create_model_with_gridsize``, the lazy ``ptycho.model.autoencoder``, the XLA
switch and the default probe's width), at call time. Tests restore it by mutation.
"""
from __future__ import annotations

import dataclasses
from typing import Any

#: Values a fresh process starts with. ``None`` means "derive it when a model is built".
DEFAULTS: dict[str, Any] = {
    "N": 64,
    "gridsize": 1,
    "offset": 4,
    "max_position_jitter": 10,
    "n_filters_scale": 2,
    "object_amplitude_max": 2.0,
    "probe_scale": 4.0,
    "default_probe_scale": 0.7,
    "probe": None,
    "probe.trainable": False,
    "intensity_scale": None,
    "intensity_scale.trainable": False,
    "input_normalization": "standardize",
    "architecture": "unet",
    "conv_dtype": None,
    "nphotons": 1e9,
    "nll_weight": 1.0,
    "mae_weight": 0.0,
    "use_xla_translate": True,
    "batch_size": 16,
    "nepochs": 50,
    "learning_rate": 1e-3,
}

cfg: dict[str, Any] = dict(DEFAULTS)

# Dataclass field name -> legacy key, where the two differ.
_LEGACY_NAMES = {
    "probe_trainable": "probe.trainable",
    "intensity_scale_trainable": "intensity_scale.trainable",
}


def legacy_key(field: str) -> str:
    """The ``cfg`` key of a ``ptycho.config`` dataclass field (the field's own name unless renamed)."""
    return _LEGACY_NAMES.get(field, field)


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
