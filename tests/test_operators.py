"""One property suite over every operator of ``ptycho.operators`` (issue 22), driven by a registry.

Each registry entry draws (with hypothesis) an operator, an input x, an output-space y and the per-call
parameters, at small odd and non-square sizes where the operator allows them:

    translate-*     any H, W (3..13, odd and non-square), batch layouts Bt = B, 1, B/C'
    merge, extract  square patches only: N % 4 == 0 and P - N even are the merge's contract (SPEC §2.2);
                    C is any 1..4 (not only gridsize²), P - N any even 0..8
    illuminate      any H, W (odd, non-square)
    far-field       any H, W (odd, non-square)
    forward-model   as merge (its extraction)

and every test is parametrised over the registry:

    test_adjoint               <A x, y> == <x, Aᴴ y>, real and imaginary parts, complex128 and complex64
    test_norm                  ||A x|| <= bound·||x|| (the entry's operator-norm bound); for unitary
                               operators (FarField) ||A x|| == ||x|| and Aᴴ A x == x
    test_gradient_is_adjoint   the autodiff transpose (tape.gradient with output_gradients=y) == Aᴴ y
    test_xla_equals_eager      fwd and adj compiled with tf.function(jit_compile=True) == eager
                               (not the non-XLA translate path: ImageProjectiveTransformV3 has no XLA kernel)

The NumPy twins in ``ptycho.physics`` and the Keras layers are checked against the operators below.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import find, given, settings, strategies as st

from ptycho import layers, operators as ops, physics, tf_helper

REAL = {np.complex64: np.float32, np.complex128: np.float64}
# Relative tolerance of <Ax, y> - <x, Aᴴy> against bound·||x||·||y||.
ADJOINT_TOL = {np.complex64: 2e-6, np.complex128: 1e-12}


def _complex(rng, shape, dtype):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


@dataclasses.dataclass
class Draw:
    op: ops.Operator
    x: np.ndarray
    y: np.ndarray
    params: dict
    bound: float  # an upper bound on the operator norm ||A||


@dataclasses.dataclass
class Case:
    name: str
    make: Callable  # (draw, rng, dtype) -> Draw
    unitary: bool = False
    jit: bool = True
    tol64: float = ADJOINT_TOL[np.complex128]

    def __str__(self):
        return self.name


def _translate(interpolation, use_xla):
    def make(draw, rng, dtype):
        groups, per_group = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        H, W, C = draw(st.integers(3, 13)), draw(st.integers(3, 13)), draw(st.integers(1, 2))
        B = groups * per_group
        Bt = draw(st.sampled_from([B, 1, groups]))
        shifts = rng.uniform(-6, 6, (Bt, 2))
        if draw(st.booleans()):
            shifts = np.round(shifts)  # integer shifts: exact zero-filled rolls
        elif interpolation == "nearest":  # away from half-pixel ties (see the test after the registry)
            shifts = np.round(shifts) + rng.choice([-1, 1], (Bt, 2)) * rng.uniform(0.05, 0.45, (Bt, 2))
        op = ops.Translate(interpolation, use_xla=use_xla)
        x, y = _complex(rng, (B, H, W, C), dtype), _complex(rng, (B, H, W, C), dtype)
        return Draw(op, x, y, {"shifts": shifts.astype(REAL[dtype])}, 1.0)
    return make


def _group_sizes(draw):
    B, N, C = draw(st.integers(1, 3)), draw(st.sampled_from([4, 8, 12])), draw(st.integers(1, 4))
    return B, N, C, N + 2 * draw(st.integers(0, 4))


def _offsets(rng, B, C, N, P):
    reach = (P - N) / 2 + 2  # reaching past the canvas edge exercises the zero fill
    return rng.uniform(-reach, reach, (B, 1, 2, C)).astype(np.float32)


def _merge(draw, rng, dtype):
    B, N, C, P = _group_sizes(draw)
    x, y = _complex(rng, (B, N, N, C), dtype), _complex(rng, (B, P, P, 1), dtype)
    return Draw(ops.MergeGroup(N, C, P, use_xla=True), x, y, {"offsets": _offsets(rng, B, C, N, P)}, np.sqrt(C))


def _extract(draw, rng, dtype):
    B, N, C, P = _group_sizes(draw)
    x, y = _complex(rng, (B, P, P, 1), dtype), _complex(rng, (B, N, N, C), dtype)
    return Draw(ops.ExtractGroup(N, C, P, use_xla=True), x, y, {"offsets": _offsets(rng, B, C, N, P)}, np.sqrt(C))


def _image_shape(draw):
    return draw(st.integers(1, 3)), draw(st.integers(2, 13)), draw(st.integers(2, 13)), draw(st.integers(1, 3))


def _illuminate(draw, rng, dtype):
    B, H, W, C = _image_shape(draw)
    probe = _complex(rng, (H, W), dtype)
    x, y = _complex(rng, (B, H, W, C), dtype), _complex(rng, (B, H, W, C), dtype)
    return Draw(ops.Illuminate(), x, y, {"probe": probe}, float(np.abs(probe).max()))


def _far_field(draw, rng, dtype):
    B, H, W, C = _image_shape(draw)
    return Draw(ops.FarField(), _complex(rng, (B, H, W, C), dtype), _complex(rng, (B, H, W, C), dtype), {}, 1.0)


def _forward_model(draw, rng, dtype):
    B, N, C, P = _group_sizes(draw)
    probe = _complex(rng, (N, N), dtype)
    x, y = _complex(rng, (B, P, P, 1), dtype), _complex(rng, (B, N, N, C), dtype)
    params = {"offsets": _offsets(rng, B, C, N, P), "probe": probe}
    return Draw(ops.forward_model(N, C, P, use_xla=True), x, y, params, np.sqrt(C) * float(np.abs(probe).max()))


REGISTRY = [
    Case("translate-bilinear", _translate("bilinear", True)),
    # The non-XLA path samples in float32 (ImageProjectiveTransformV3), so weights round at ~1e-7.
    Case("translate-bilinear-nonxla", _translate("bilinear", False), jit=False, tol64=1e-6),
    Case("translate-nearest", _translate("nearest", True)),
    Case("merge", _merge),
    Case("extract", _extract),
    Case("illuminate", _illuminate),
    Case("far-field", _far_field, unitary=True),
    Case("forward-model", _forward_model),
]
JIT_CASES = [case for case in REGISTRY if case.jit]


def _draw(data, case, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    return case.make(data.draw, rng, dtype)


def _vdot(a, b):
    return np.vdot(np.asarray(a, np.complex128), np.asarray(b, np.complex128))


def test_registry_covers_every_operator():
    """Every operator class of ptycho.operators (and the composite forward model) has a registry entry."""
    classes = {cls for _, cls in inspect.getmembers(ops, inspect.isclass)
               if issubclass(cls, ops.Operator) and cls.__module__ == ops.__name__ and cls is not ops.Operator}
    seen = set()
    for case in REGISTRY:
        draw = _draw_fixed(case)
        seen.add(type(draw.op))
        if isinstance(draw.op, ops.Compose):
            seen.update(type(op) for op in draw.op.operators)
    assert classes <= seen, classes - seen


def _draw_fixed(case):
    """One draw with each hypothesis strategy replaced by its simplest value."""
    return case.make(lambda strategy: find(strategy, lambda _: True), np.random.default_rng(0), np.complex64)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64], ids=["complex128", "complex64"])
@pytest.mark.parametrize("case", REGISTRY, ids=str)
@settings(max_examples=10)
@given(data=st.data())
def test_adjoint(case, dtype, data):
    d = _draw(data, case, dtype)
    ax = d.op.fwd(d.x, **d.params).numpy()
    ahy = d.op.adj(d.y, **d.params).numpy()
    assert ax.shape == d.y.shape and ax.dtype == d.y.dtype
    assert ahy.shape == d.x.shape and ahy.dtype == d.x.dtype
    lhs, rhs = _vdot(ax, d.y), _vdot(d.x, ahy)
    tol = (case.tol64 if dtype is np.complex128 else ADJOINT_TOL[dtype]) * d.bound
    scale = np.linalg.norm(d.x) * np.linalg.norm(d.y)
    assert abs(lhs.real - rhs.real) <= tol * scale, (lhs, rhs)
    assert abs(lhs.imag - rhs.imag) <= tol * scale, (lhs, rhs)


@pytest.mark.parametrize("case", REGISTRY, ids=str)
@settings(max_examples=8)
@given(data=st.data())
def test_norm(case, data):
    d = _draw(data, case, np.complex128)
    ax = d.op.fwd(d.x, **d.params).numpy()
    norm_x, norm_ax = np.linalg.norm(d.x), np.linalg.norm(ax)
    assert norm_ax <= d.bound * norm_x * (1 + 1e-9)
    if case.unitary:
        np.testing.assert_allclose(norm_ax, norm_x, rtol=1e-12)
        np.testing.assert_allclose(d.op.adj(ax, **d.params).numpy(), d.x, atol=1e-12 * norm_x)


@pytest.mark.parametrize("case", REGISTRY, ids=str)
@settings(max_examples=4)
@given(data=st.data())
def test_gradient_is_adjoint(case, data):
    """The gradient TF computes through ``fwd`` is the same linear map as the hand-written ``adj``."""
    d = _draw(data, case, np.complex128)
    x = tf.constant(d.x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = d.op.fwd(x, **d.params)
    grad = tape.gradient(out, x, output_gradients=tf.constant(d.y)).numpy()
    tol = case.tol64 * d.bound * np.linalg.norm(d.y) * 10
    np.testing.assert_allclose(grad, d.op.adj(d.y, **d.params).numpy(), atol=tol, rtol=0)


@pytest.mark.xla
@pytest.mark.parametrize("case", JIT_CASES, ids=str)
@settings(max_examples=4)
@given(data=st.data())
def test_xla_equals_eager(case, data):
    d = _draw(data, case, np.complex64)
    params = {k: tf.constant(v) for k, v in d.params.items()}

    @tf.function(jit_compile=True)
    def both(x, y, params):
        return d.op.fwd(x, **params), d.op.adj(y, **params)

    fwd, adj = both(tf.constant(d.x), tf.constant(d.y), params)
    for compiled, eager, ref in [(fwd, d.op.fwd(d.x, **d.params), d.x), (adj, d.op.adj(d.y, **d.params), d.y)]:
        np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=0,
                                   atol=1e-5 * d.bound * max(1.0, np.abs(ref).max()) * np.sqrt(ref[0].size))


# ---------------------------------------------------------------- what the registry cannot say


def test_nearest_translation_at_half_pixel_shifts_is_not_adjoint_to_the_opposite_shift():
    """Ties round away from zero: at d = 0.5 pixel 0 reads -1 and pixel j >= 1 reads j, so T_{-d} != T_dᵀ."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1, 7, 9, 1)), rng.standard_normal((1, 7, 9, 1))
    op = ops.Translate("nearest", use_xla=True)
    gap = {}
    for d in (0.5, 0.3):
        shifts = np.array([[d, 0.0]])
        gap[d] = abs(_vdot(op.fwd(x, shifts), y) - _vdot(x, op.adj(y, shifts)))
    assert gap[0.3] < 1e-12 and gap[0.5] > 1e-3


def test_forward_model_is_far_field_of_illuminated_extraction_and_adjoint_in_reverse_order():
    rng = np.random.default_rng(1)
    B, N, C, P = 2, 8, 4, 14
    canvas, waves = _complex(rng, (B, P, P, 1), np.complex64), _complex(rng, (B, N, N, C), np.complex64)
    offsets, probe = _offsets(rng, B, C, N, P), _complex(rng, (N, N), np.complex64)
    model = ops.forward_model(N, C, P, use_xla=True)
    assert model.parameters == ("probe", "offsets")
    extract, far, light = ops.ExtractGroup(N, C, P, use_xla=True), ops.FarField(), ops.Illuminate()
    chained = far.fwd(light.fwd(extract.fwd(canvas, offsets), probe))
    np.testing.assert_array_equal(model.fwd(canvas, offsets=offsets, probe=probe).numpy(), chained.numpy())
    back = extract.adj(light.adj(far.adj(waves), probe), offsets)
    np.testing.assert_array_equal(model.adj(waves, offsets=offsets, probe=probe).numpy(), back.numpy())
    with pytest.raises(ValueError, match=r"Compose: Illuminate needs \['probe'\]"):
        model.fwd(canvas, offsets=offsets)
    with pytest.raises(ValueError, match="at least one operator"):
        ops.Compose()


def test_merge_operator_is_the_tf_helper_merge_and_checks_patch_shape():
    rng = np.random.default_rng(2)
    x, offsets = _complex(rng, (2, 8, 8, 4), np.complex64), _offsets(rng, 2, 4, 8, 78)
    merged = ops.MergeGroup(8, 4, use_xla=True).fwd(x, offsets)  # padded_size=None: the SPEC default
    np.testing.assert_array_equal(
        merged.numpy(), tf_helper.reassemble_patches_position_real(x, offsets, use_xla=True).numpy())
    assert merged.shape == (2, tf_helper.default_padded_size(8, 4), tf_helper.default_padded_size(8, 4), 1)
    assert tf_helper._reassemble_patches_position_real is tf_helper.reassemble_patches_position_real  # SPEC §1
    with pytest.raises(ValueError, match=r"MergeGroup.fwd: patches must have shape \(B, 8, 8, 2\)"):
        ops.MergeGroup(8, 2, 12).fwd(x, offsets)


@settings(max_examples=8)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 13), st.integers(0, 2**32 - 1))
def test_numpy_physics_twins_agree_with_the_operators(B, C, N, seed):
    """physics.illuminate / far_field_amplitude (axes last, square only) == Illuminate / |FarField|."""
    rng = np.random.default_rng(seed)
    patches, probe = _complex(rng, (B, N, N, C), np.complex64), _complex(rng, (N, N), np.complex64)
    axes_last = patches.transpose(0, 3, 1, 2)
    lit = ops.Illuminate().fwd(patches, probe).numpy()
    # complex multiply: TF and NumPy may round the last bit differently (fused multiply-add)
    np.testing.assert_allclose(physics.illuminate(probe, axes_last), lit.transpose(0, 3, 1, 2), rtol=1e-6, atol=1e-6)
    amplitude = physics.far_field_amplitude(physics.illuminate(probe, axes_last)).transpose(0, 2, 3, 1)
    far = ops.FarField()
    np.testing.assert_allclose(far.amplitude(lit).numpy(), amplitude, rtol=0, atol=1e-5 * np.abs(amplitude).max())
    np.testing.assert_allclose(np.abs(far.fwd(lit).numpy()), amplitude, rtol=0, atol=1e-5 * np.abs(amplitude).max())


def test_keras_physics_layers_compute_through_the_operators():
    rng = np.random.default_rng(3)
    N, C = 8, 4
    field, probe = _complex(rng, (2, N, N, C), np.complex64), _complex(rng, (N, N), np.complex64)
    np.testing.assert_array_equal(layers.FarFieldAmplitude()(field).numpy(),
                                  ops.FarField().amplitude(field).numpy())
    light = layers.ProbeIllumination(N)
    light.build((None, N, N, C))
    light.set_probe(probe)
    np.testing.assert_array_equal(light(field).numpy(), ops.Illuminate().fwd(field, probe).numpy())
    offsets = _offsets(rng, 2, C, N, 14)
    canvas = _complex(rng, (2, 14, 14, 1), np.complex64)
    np.testing.assert_array_equal(layers.ExtractGroup(N, C)(canvas, offsets).numpy(),
                                  ops.MergeGroup(N, C, use_xla=True).adj(canvas, offsets).numpy())
    assert isinstance(layers.MergeGroup(N, C, 14)._merge, ops.MergeGroup)
    assert keras.saving.get_registered_object("ptycho>FarFieldAmplitude") is layers.FarFieldAmplitude
