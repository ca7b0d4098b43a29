"""The registry of every custom Keras layer of ``ptycho`` and the one ``run_layer_test`` that checks each case.

A ``LayerCase`` is a layer factory, example NumPy inputs (complex64 where the layer takes complex) and an optional
setup run once the layer is built (``set_probe``, ``adapt``). ``run_layer_test(case, tmp_path)`` checks:

1. config: ``get_config`` -> ``from_config`` gives the same config, and (weights copied) the same output; the
   layer serialises under its registered name ``ptycho>ClassName``;
2. symbolic == eager: a ``keras.Input``-built Model, called and ``predict``-ed, equals the eager call;
3. one-step fit: a tiny model (a trainable scalar gain on each data input -> the layer -> mean |y|²) trains one
   step with a finite loss; every trainable weight changes (the gains, so gradients flow through the layer, and
   the layer's own); its non-trainable weights do not;
4. ``.keras`` save/load (``keras.saving.save_model`` / ``load_model(safe_mode=True)``) gives the same config and
   the same predictions.

Outputs are compared with rtol 1e-6 and an absolute floor of 1e-6 · max|expected| (FFT outputs have entries near 0).
``tests/test_layers.py`` runs every case and fails if a layer class defined in ``ptycho`` is missing here.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import ptycho
from ptycho import layers as L
from ptycho.group_retrieval import GroupRetrieval
from ptycho import tf_helper as th

N = 8  # pattern side of the example inputs
B = 3  # batch


@dataclasses.dataclass(frozen=True)
class LayerCase:
    id: str
    factory: Callable[[], keras.layers.Layer]
    inputs: Callable[[], list]  # fresh NumPy arrays (B, ...) each call
    setup: Callable[[keras.layers.Layer, list], None] | None = None  # after build: set_probe, adapt, ...
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    as_list: bool = False  # the layer takes one list argument, ``layer([a, b])``, not ``layer(a, b)``
    fixed: tuple = ()  # indices of inputs that carry no gradient in the fit (positions, shifts)

    def call(self, layer, inputs, **kwargs):
        inputs = list(inputs)
        return layer(inputs, **self.call_kwargs, **kwargs) if self.as_list else \
            layer(*inputs, **self.call_kwargs, **kwargs)

    def make(self):
        """A built layer, set up, and its inputs."""
        layer, inputs = self.factory(), self.inputs()
        self.call(layer, inputs)  # build
        if self.setup is not None:
            self.setup(layer, inputs)
        return layer, inputs


# ------------------------------------------------------------------------------------------------ inputs

def _rng(seed):
    return np.random.default_rng(seed)


def _real(shape, seed, low=0.0, high=4.0):
    return _rng(seed).uniform(low, high, shape).astype(np.float32)


def _complex(shape, seed):
    rng = _rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _windowed(shape, seed):
    """Complex patches (B, N, N, C), zero outside the central N/2 window (as the model produces them)."""
    x = _complex(shape, seed)
    q = shape[1] // 4
    mask = np.zeros(shape[1:3], np.float32)
    mask[q: shape[1] - q, q: shape[2] - q] = 1
    return x * mask[None, :, :, None]


def _positions(C, seed, spread=2.0):
    p = _rng(seed).uniform(-spread, spread, (B, 1, 2, C)).astype(np.float32)
    return p - p.mean(axis=-1, keepdims=True)  # coords_relative: centred per group


def _probe(n=N):
    """A defocused Gaussian probe: complex, so the holographic estimate has an imaginary part."""
    y, x = np.mgrid[:n, :n] - n / 2
    r2 = x ** 2 + y ** 2
    return (np.exp(-r2 / (2 * (n / 4) ** 2)) * np.exp(1j * 0.3 * r2)).astype(np.complex64)


def _set_probe(layer, _inputs):
    layer.set_probe(_probe())


def _adapt(seed):
    def setup(layer, inputs):
        layer.adapt(_real((4 * B,) + inputs[0].shape[1:], seed, -2, 2))
    return setup


# ------------------------------------------------------------------------------------------------ registry

C = 4  # channels per group (gridsize 2)
P = 14  # per-group canvas side for N = 8

CASES: list[LayerCase] = [
    LayerCase("IntensityScale", lambda: L.IntensityScale(4.0), lambda: [_real((B, N, N, 1), 1)]),
    LayerCase("IntensityScale-inverse", lambda: L.IntensityScale(4.0), lambda: [_real((B, N, N, C), 2)],
              call_kwargs={"inverse": True}),
    LayerCase("DiffractionStandardizer-identity", lambda: L.DiffractionStandardizer(N),
              lambda: [_real((B, N, N, C), 3)]),
    LayerCase("DiffractionStandardizer-adapted-3kinds", lambda: L.DiffractionStandardizer(N, kinds=3),
              lambda: [_real((B, N, N, 3 * C), 4, -2, 2)], setup=_adapt(5)),
    LayerCase("HolographicEstimate", lambda: L.HolographicEstimate(N), lambda: [_real((B, N, N, C), 6)],
              setup=_set_probe),
    LayerCase("GroupRetrieval", lambda: GroupRetrieval(N, C, P, iterations=2),
              lambda: [_real((B, N, N, C), 23), _positions(C, 24)], setup=_set_probe, fixed=(1,)),
    LayerCase("GroupRetrieval-gridsize1", lambda: GroupRetrieval(N, 1, N + 2, iterations=1, use_xla=False),
              lambda: [_real((B, N, N, 1), 25), _positions(1, 26, spread=0.0)], setup=_set_probe, fixed=(1,)),
    LayerCase("EstimateFeatures", lambda: L.EstimateFeatures(),
              lambda: [_real((B, N, N, C), 27), _complex((B, N, N, C), 28)]),
    LayerCase("FirstChannels", lambda: L.FirstChannels(3), lambda: [_real((B, 4, 4, 5), 7)]),
    LayerCase("ComplexPatches", lambda: L.ComplexPatches(N, amplitude_max=2.0),
              lambda: [_real((B, N // 2, N // 2, C), 8, -2, 2), _real((B, N // 2, N // 2, C), 9, -2, 2)]),
    LayerCase("ResidualComplexPatches", lambda: L.ResidualComplexPatches(N, amplitude_max=2.0),
              lambda: [_real((B, N // 2, N // 2, C), 29, -2, 2), _real((B, N // 2, N // 2, C), 30, -2, 2),
                       _complex((B, N, N, C), 31)]),
    LayerCase("MergeGroup-xla", lambda: L.MergeGroup(N, C, P, use_xla=True),
              lambda: [_windowed((B, N, N, C), 10), _positions(C, 11)], fixed=(1,)),
    LayerCase("MergeGroup-noxla", lambda: L.MergeGroup(N, C, P, use_xla=False),
              lambda: [_windowed((B, N, N, C), 10), _positions(C, 11)], fixed=(1,)),
    LayerCase("CentreCrop", lambda: L.CentreCrop(N), lambda: [_complex((B, P, P, 1), 12)]),
    LayerCase("ExtractGroup-xla", lambda: L.ExtractGroup(N, C, use_xla=True),
              lambda: [_complex((B, P, P, 1), 13), _positions(C, 14)], fixed=(1,)),
    LayerCase("ExtractGroup-noxla", lambda: L.ExtractGroup(N, C, use_xla=False),
              lambda: [_complex((B, P, P, 1), 13), _positions(C, 14)], fixed=(1,)),
    LayerCase("ProbeIllumination", lambda: L.ProbeIllumination(N), lambda: [_complex((B, N, N, C), 15)],
              setup=_set_probe),
    LayerCase("ProbeIllumination-trainable", lambda: L.ProbeIllumination(N, trainable=True),
              lambda: [_complex((B, N, N, C), 16)], setup=_set_probe),
    LayerCase("FarFieldAmplitude", lambda: L.FarFieldAmplitude(), lambda: [_complex((B, N, N, C), 17)]),
    LayerCase("Square", lambda: L.Square(), lambda: [_real((B, 3, 3, 1), 18, -3, 3)]),
    # jitter > 0: the fit (training=True) draws seeded jitter; inference calls do not.
    LayerCase("Translation-xla", lambda: th.Translation(jitter_stddev=0.5, use_xla=True, seed=7),
              lambda: [_complex((B, 9, 9, 1), 19), _real((B, 2), 20, -3, 3)], as_list=True, fixed=(1,)),
    LayerCase("Translation-noxla", lambda: th.Translation(jitter_stddev=0.5, use_xla=False, seed=7),
              lambda: [_complex((B, 9, 9, 1), 19), _real((B, 2), 20, -3, 3)], as_list=True, fixed=(1,)),
    LayerCase("Translation-nearest-float32", lambda: th.Translation(use_xla=False, interpolation="nearest"),
              lambda: [_real((B, 9, 7, 2), 21), _real((B, 2), 22, -3, 3)], as_list=True, fixed=(1,)),
]
CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "duplicate case ids"


def package_layer_classes() -> set[type]:
    """Every class deriving ``keras.layers.Layer`` that a module of ``ptycho`` defines (all modules imported).

    Only modules found on disk count: a test may define a layer class that merely claims a ``ptycho`` module name
    (tests/test_persistence.py plants ``ptycho._absent_for_test``), and under pytest-xdist it can share the worker.
    """
    modules = {info.name for info in pkgutil.walk_packages(ptycho.__path__, prefix="ptycho.")
               if not info.name.endswith("__main__")} | {"ptycho"}
    for name in sorted(modules - {"ptycho"}):
        importlib.import_module(name)
    found, todo = set(), [keras.layers.Layer]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__ in modules:
                found.add(sub)
    return found


# ------------------------------------------------------------------------------------------------ the test

def _assert_close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, \
        f"{what}: {actual.shape} {actual.dtype} != {expected.shape} {expected.dtype}"
    floor = 1e-6 * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=floor, err_msg=what)


def _symbolic(inputs):
    return [keras.Input(shape=a.shape[1:], dtype=str(a.dtype)) for a in inputs]


def _weights(variables):
    return {v.path: np.array(v.numpy()) for v in variables}


class Gain(keras.layers.Layer):
    """x · g with one trainable scalar g (1 at start), for float and complex x: the fit's gradient probe."""

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.g = self.add_weight(shape=(), name="g", initializer="ones")

    def call(self, x):
        return x * tf.cast(self.g, x.dtype)


class MeanPower(keras.layers.Layer):
    """Per sample mean |y|² (float32), a real-valued loss for float and complex outputs."""

    def call(self, y):
        power = tf.math.real(y * tf.math.conj(y)) if y.dtype.is_complex else tf.square(y)
        return tf.reduce_mean(tf.reshape(tf.cast(power, tf.float32), [tf.shape(y)[0], -1]), axis=1)


def check_config(case, layer, inputs, eager):
    cls = type(layer)
    assert keras.saving.get_registered_name(cls) == f"ptycho>{cls.__name__}"
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is cls and revived.get_config() == config
    case.call(clone, inputs)  # build, then carry the set-up weights (probe, statistics) over
    clone.set_weights(layer.get_weights())
    _assert_close(case.call(clone, inputs), eager, f"{case.id}: from_config clone vs original")


def check_symbolic(case, layer, inputs, eager):
    sym = _symbolic(inputs)
    out = case.call(layer, sym)
    assert tuple(out.shape) == (None,) + eager.shape[1:], f"{case.id}: symbolic shape {out.shape}"
    assert keras.backend.standardize_dtype(out.dtype) == eager.dtype.name, f"{case.id}: symbolic dtype"
    model = keras.Model(sym, out)
    _assert_close(model(inputs), eager, f"{case.id}: functional model vs eager")
    _assert_close(model.predict(inputs, batch_size=B, verbose=0), eager, f"{case.id}: predict vs eager")
    return model


def check_fit(case):
    layer, inputs = case.make()
    sym = _symbolic(inputs)
    fed = [s if i in case.fixed else Gain(name=f"gain_{i}")(s) for i, s in enumerate(sym)]
    model = keras.Model(sym, MeanPower()(case.call(layer, fed)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=lambda _, power: tf.reduce_mean(power),
                  jit_compile=False)
    trainable, frozen = _weights(model.trainable_weights), _weights(layer.non_trainable_weights)
    assert any(path.startswith("gain_") for path in trainable)
    history = model.fit(inputs, np.zeros(B, np.float32), batch_size=B, epochs=1, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0]), history.history
    after = _weights(model.trainable_weights)
    unchanged = [path for path in trainable if np.array_equal(after[path], trainable[path])]
    assert not unchanged, f"{case.id}: trainable weights unchanged by a fit step: {unchanged}"
    for path, value in _weights(layer.non_trainable_weights).items():
        if "seed_generator" not in path:
            np.testing.assert_array_equal(value, frozen[path], err_msg=f"{case.id}: {path} changed in fit")


def check_save_load(case, model, inputs, tmp_path):
    path = tmp_path / f"{case.id}.keras"
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    [original] = [lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)]
    [revived] = [lay for lay in loaded.layers if not isinstance(lay, keras.layers.InputLayer)]
    assert type(revived) is type(original) and revived.get_config() == original.get_config()
    _assert_close(loaded.predict(inputs, batch_size=B, verbose=0), model.predict(inputs, batch_size=B, verbose=0),
                  f"{case.id}: loaded .keras vs original")


def run_layer_test(case: LayerCase, tmp_path) -> np.ndarray:
    """All four checks for one case; returns the eager output (inference mode) for further assertions."""
    layer, inputs = case.make()
    eager = np.asarray(case.call(layer, inputs))
    check_config(case, layer, inputs, eager)
    model = check_symbolic(case, layer, inputs, eager)
    check_fit(case)
    check_save_load(case, model, inputs, tmp_path)
    return eager
