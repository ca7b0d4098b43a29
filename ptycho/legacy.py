"""The legacy global ``params.cfg``, read here and nowhere else in the package.

Scripts written for PtychoPINN configure a model by mutating ``params.cfg`` (``params.cfg['N'] = 128``,
``params.set('probe', p)``); new code passes ``ptycho.config`` dataclasses. Every read of the global goes
through this module, at call time (never at import), for:

- ``create_model_with_gridsize`` (``config_from_legacy``, ``legacy_probe``): each setting from its keyword
  argument, else from ``params.cfg`` where a legacy script set it, else the ``ModelConfig`` /
  ``params.DEFAULTS`` default (ledger CFG-PRECEDENCE-001);
- the lazy ``ptycho.model.autoencoder`` / ``diffraction_to_obj`` (gridsize and N: ``value``);
- the XLA switch ``tf_helper.should_use_xla`` (``use_xla_translate``, after the environment variable
  ``USE_XLA_TRANSLATE``; ledger XLA-SWITCH-PRECEDENCE-001);
- the default probe's width (``probe.get_default_probe``: ``default_probe_scale``).

``params.DEFAULTS`` equal the ``ModelConfig`` defaults, so an untouched ``cfg`` changes nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ptycho import params
from ptycho.config import ModelConfig
from ptycho.device import resolve_conv_dtype

logger = logging.getLogger(__name__)

#: The ``ModelConfig`` fields a legacy script may set (N and gridsize are the factory's arguments and
#: ``padded_size`` a keyword only).
MODEL_FIELDS = ("offset", "max_position_jitter", "n_filters_scale", "object_amplitude_max", "probe_scale",
                "default_probe_scale", "probe_trainable", "intensity_scale_trainable", "input_normalization",
                "architecture", "conv_dtype")
#: The other settings of ``create_model_with_gridsize`` a legacy script may set.
RUN_FIELDS = ("intensity_scale", "nphotons", "nll_weight", "mae_weight", "learning_rate")


@dataclass(frozen=True)
class LegacySettings:
    """What ``create_model_with_gridsize`` builds from, each setting keyword > ``params.cfg`` > default.

    ``config.conv_dtype`` is resolved ('float32' / 'bfloat16', never None). ``intensity_scale`` (s, √counts
    per unit amplitude) is None where neither the caller nor a legacy script gave one: the factory derives
    it from ``nphotons``.
    """

    config: ModelConfig
    intensity_scale: Optional[float]
    nphotons: float
    nll_weight: float
    mae_weight: float
    learning_rate: float


def value(key: str, default: Any = None) -> Any:
    """``params.cfg[key]`` as it is now, or ``default`` where the key is absent."""
    return params.cfg.get(key, default)


def source(key: str) -> str:
    """How messages name a legacy setting: ``params.cfg['key']``."""
    return f"params.cfg[{key!r}]"


def _pick(field: str, explicit: Any) -> Any:
    """The keyword argument, else the ``params.cfg`` value (None where neither is set)."""
    return explicit if explicit is not None else params.cfg.get(params.legacy_key(field))


def config_from_legacy(gridsize: int, N: int, *, padded_size: Optional[int] = None, **explicit) -> LegacySettings:
    """The settings of a model of N×N patches and gridsize² channels: each keyword in ``MODEL_FIELDS`` and
    ``RUN_FIELDS`` that is not None wins, else ``params.cfg`` where a legacy script set it, else the default.

    Raises ValueError where the resulting ``ModelConfig`` is invalid (or ``conv_dtype`` is not one of
    'float32', 'bfloat16', None), TypeError for a keyword it does not know.
    """
    unknown = sorted(set(explicit) - set(MODEL_FIELDS) - set(RUN_FIELDS))
    if unknown:
        raise TypeError(f"config_from_legacy: unknown settings {unknown}")
    picked = {field: _pick(field, explicit.get(field)) for field in MODEL_FIELDS}
    picked["conv_dtype"] = resolve_conv_dtype(picked["conv_dtype"])
    defaults = ModelConfig()
    config = ModelConfig(N=N, gridsize=gridsize, padded_size=padded_size,
                         **{k: (getattr(defaults, k) if v is None else v) for k, v in picked.items()})
    run = {field: _pick(field, explicit.get(field)) for field in RUN_FIELDS}
    return LegacySettings(
        config=config, intensity_scale=run["intensity_scale"],
        nphotons=run["nphotons"] or params.DEFAULTS["nphotons"],
        nll_weight=params.DEFAULTS["nll_weight"] if run["nll_weight"] is None else run["nll_weight"],
        mae_weight=params.DEFAULTS["mae_weight"] if run["mae_weight"] is None else run["mae_weight"],
        learning_rate=run["learning_rate"] or params.DEFAULTS["learning_rate"])


def legacy_probe(N: int) -> Optional[np.ndarray]:
    """``params.cfg['probe']`` as (N, N) complex64 where a legacy script set one of that size, else None.

    One of another size is not used: a warning says the model gets the normalised default probe for N.
    """
    legacy = params.cfg.get("probe")
    if legacy is None:
        return None
    arr = np.asarray(legacy)
    if arr.shape in ((N, N), (N, N, 1)):
        return arr.reshape(N, N).astype(np.complex64)
    logger.warning("%s has shape %s but the model has N=%d: using the normalised default probe for N=%d "
                   "instead", source("probe"), arr.shape, N, N)
    return None
