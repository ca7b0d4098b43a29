"""Properties of translate_xla (SPEC §2.1), driven by hypothesis; the XLA gate (marker ``xla``).

Oracle: ``tf.raw_ops.ImageProjectiveTransformV3`` with transforms [1, 0, -dx, 0, 1, -dy, 0, 0]
(complex: real and imaginary parts separately).
"""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from ptycho.projective_warp_xla import translate_xla

pytestmark = pytest.mark.xla

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
# The oracle works in float32 (its transforms and sampling coordinates are float32), so float64 results
# can differ from it by float32 rounding of the fractional weights (seen: 1.1e-6 at dy = 2.975122).
TOL = {np.float32: 2e-5, np.complex64: 2e-5, np.float64: 2e-5, np.complex128: 2e-5}


def oracle(images, shifts, interpolation="bilinear"):
    """ImageProjectiveTransformV3 translation of (B,H,W,C) by per-image shifts (B,2)."""
    shifts = np.asarray(shifts, np.float32)
    dx, dy = shifts[:, 0], shifts[:, 1]
    one, zero = np.ones_like(dx), np.zeros_like(dx)
    transforms = np.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)

    def warp(real):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=real, transforms=transforms, output_shape=real.shape[1:3], fill_value=0.0,
            interpolation=interpolation.upper(), fill_mode="CONSTANT").numpy()

    if np.iscomplexobj(images):
        return warp(images.real.astype(np.float32)) + 1j * warp(images.imag.astype(np.float32))
    return warp(images.astype(np.float32))


@st.composite
def cases(draw, max_shift=20.0, integer=False):
    """(images (B,H,W,C), shifts (Bt,2), per-image shifts (B,2)) with a random batch layout."""
    groups = draw(st.integers(1, 3))
    per_group = draw(st.integers(1, 3))
    layout = draw(st.sampled_from(["same", "one", "grouped"]))
    B = groups * per_group
    Bt = {"same": B, "one": 1, "grouped": groups}[layout]
    H, W, C = draw(st.integers(3, 17)), draw(st.integers(3, 17)), draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((B, H, W, C))
    if np.issubdtype(dtype, np.complexfloating):
        images = images + 1j * rng.standard_normal((B, H, W, C))
    if integer:
        shifts = rng.integers(-int(max_shift), int(max_shift) + 1, (Bt, 2)).astype(np.float32)
    else:
        # quarter-pixel grid plus generic values: exercises exact halves (nearest ties) too
        grid = rng.integers(-4 * int(max_shift), 4 * int(max_shift) + 1, (Bt, 2)) / 4.0
        generic = rng.uniform(-max_shift, max_shift, (Bt, 2))
        shifts = np.where(rng.random((Bt, 2)) < 0.5, grid, generic).astype(np.float32)
    per_image = np.repeat(shifts, B // Bt, axis=0)
    return images.astype(dtype), shifts, per_image


@settings(max_examples=12)
@given(cases(), st.sampled_from(["bilinear", "nearest"]))
def test_matches_oracle_shape_dtype_and_jit(case, interpolation):
    images, shifts, per_image = case
    out = translate_xla(images, shifts, interpolation, use_jit=True)
    assert out.shape == images.shape and out.dtype.as_numpy_dtype == images.dtype
    expected = oracle(images, per_image, interpolation)
    np.testing.assert_allclose(out.numpy(), expected, atol=TOL[images.dtype.type], rtol=0)
    no_jit = translate_xla(images, shifts, interpolation, use_jit=False).numpy()
    scale = max(1.0, float(np.abs(out.numpy()).max()))
    np.testing.assert_allclose(no_jit, out.numpy(), atol=1e-6 * scale, rtol=0)


@given(cases(max_shift=18, integer=True))
def test_integer_shift_is_zero_filled_roll(case):
    images, _, per_image = case
    out = translate_xla(images, per_image, use_jit=False).numpy()
    H, W = images.shape[1:3]
    pad = 20
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    expected = np.stack([padded[b, pad - dy:pad - dy + H, pad - dx:pad - dx + W]
                         for b, (dx, dy) in enumerate(per_image.astype(int))])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_jit", [True, False])
def test_zero_shift_is_identity(dtype, use_jit):
    rng = np.random.default_rng(3)
    images = (rng.standard_normal((3, 9, 13, 2)) + (1j if np.dtype(dtype).kind == "c" else 0)).astype(dtype)
    out = translate_xla(images, np.zeros((1, 2), np.float32), use_jit=use_jit).numpy()
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("use_jit", [True, False])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_impulse_moves_right_for_dx_and_down_for_dy(use_jit, interpolation):
    """Pins the sign and the x/y order: [dx, dy] = [3, 0] moves right; [0, 2] moves down."""
    image = np.zeros((2, 11, 15, 1), np.float32)
    image[:, 5, 7, 0] = 1.0
    out = translate_xla(image, np.array([[3, 0], [0, 2]], np.float32), interpolation, use_jit).numpy()
    assert np.argwhere(out[0, ..., 0]).tolist() == [[5, 10]]
    assert np.argwhere(out[1, ..., 0]).tolist() == [[7, 7]]
    half = translate_xla(image[:1], np.array([[0.25, 0.0]], np.float32), "bilinear", use_jit).numpy()
    np.testing.assert_allclose(half[0, 5, 7:9, 0], [0.75, 0.25], atol=1e-6)


@given(cases())
def test_composition_and_norm(case):
    """T_dy∘T_dx == T_d; ||T_d a|| <= ||a||. (Adjointness: tests/test_operators.py::test_adjoint.)"""
    a, _, d = case
    zero = np.zeros_like(d)
    only_x, only_y = np.stack([d[:, 0], zero[:, 1]], 1), np.stack([zero[:, 0], d[:, 1]], 1)
    composed = translate_xla(translate_xla(a, only_x, use_jit=False), only_y, use_jit=False).numpy()
    direct = translate_xla(a, d, use_jit=False).numpy()
    np.testing.assert_allclose(composed, direct, atol=TOL[a.dtype.type] * 2, rtol=0)
    norms_in = np.linalg.norm(a.reshape(a.shape[0], -1), axis=1)
    norms_out = np.linalg.norm(direct.reshape(a.shape[0], -1), axis=1)
    assert np.all(norms_out <= norms_in * (1 + 1e-5) + 1e-6)


@settings(max_examples=4)
@given(st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64, np.complex128]))
def test_gradients_wrt_image_and_shift(seed, dtype):
    """Image gradient is the adjoint; the shift gradient matches central finite differences."""
    rng = np.random.default_rng(seed)
    shape = (2, 7, 9, 1)
    images = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        images = images + 1j * rng.standard_normal(shape)
    images = tf.constant(images.astype(dtype))
    weights = tf.constant(rng.standard_normal(shape).astype(np.float64))
    # fractions away from integers: the bilinear kernel is not differentiable at integer shifts
    shifts64 = (rng.integers(-3, 4, (2, 2)) + rng.uniform(0.1, 0.9, (2, 2)))

    def loss(img, s):
        out = translate_xla(img, s, use_jit=True)
        return tf.reduce_sum(tf.cast(tf.abs(out) ** 2, tf.float64) * weights)

    s = tf.constant(shifts64.astype(dtype if np.dtype(dtype).kind == "f" else np.float64))
    with tf.GradientTape() as tape:
        tape.watch([images, s])
        value = loss(images, s)
    g_img, g_shift = tape.gradient(value, [images, s])
    assert g_img is not None and g_shift is not None
    assert np.all(np.isfinite(g_img.numpy()))
    eps = 1e-3 if dtype == np.float32 else 1e-6
    for i in range(2):
        for j in range(2):
            step = np.zeros((2, 2))
            step[i, j] = eps
            fd = (loss(images, tf.cast(shifts64 + step, s.dtype)) - loss(images, tf.cast(shifts64 - step, s.dtype))) / (2 * eps)
            np.testing.assert_allclose(g_shift.numpy()[i, j], fd.numpy(), rtol=2e-2 if dtype == np.float32 else 1e-5,
                                       atol=2e-2 if dtype == np.float32 else 1e-6)


def test_jit_compiles_inside_outer_xla_function_with_grad():
    images = tf.constant(np.random.default_rng(5).standard_normal((4, 8, 8, 1)).astype(np.float32))

    @tf.function(jit_compile=True)
    def step(img, s):
        with tf.GradientTape() as tape:
            tape.watch(s)
            out = tf.reduce_sum(translate_xla(img, s, use_jit=False) ** 2)
        return out, tape.gradient(out, s)

    value, grad = step(images, tf.constant([[0.3, -1.2], [2.5, 0.5]], tf.float32))
    assert np.isfinite(value.numpy()) and grad.shape == (2, 2)


@pytest.mark.parametrize("bad, match", [
    (dict(images=np.zeros((2, 4, 4), np.float32)), "shape \\(B, H, W, C\\)"),
    (dict(images=np.zeros((2, 4, 4, 1), np.int32)), "dtype"),
    (dict(translations=np.zeros((2, 3), np.float32)), "\\(Bt, 2\\)"),
    (dict(interpolation="cubic"), "interpolation"),
    (dict(translations=np.zeros((3, 2), np.float32)), "images batch size 2 .* translations batch size 3"),
])
def test_bad_arguments_raise_value_error(bad, match):
    args = dict(images=np.zeros((2, 4, 4, 1), np.float32), translations=np.zeros((2, 2), np.float32),
                interpolation="bilinear")
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        translate_xla(args["images"], args["translations"], args["interpolation"])


# ---------------------------------------------------------------- batch rule at empty batches, error names,
# shapes known only at run time, the nested-jit rule (added for the mutation score)

from ptycho import projective_warp_xla as pwx  # noqa: E402


@pytest.mark.parametrize("B, Bt", [(0, 0), (0, 1), (0, 3)])
def test_empty_image_batch_is_accepted_with_any_translation_batch(B, Bt):
    out = translate_xla(np.zeros((B, 4, 5, 1), np.float32), np.zeros((Bt, 2), np.float32))
    assert out.shape == (0, 4, 5, 1)


@pytest.mark.parametrize("B", [1, 3])
def test_empty_translation_batch_is_rejected_for_nonempty_images(B):
    with pytest.raises(ValueError, match=rf"^translate_xla: images batch size {B} is incompatible with "
                                         r"translations batch size 0: need Bt == B, Bt == 1, or B == Bt\*C'"):
        translate_xla(np.zeros((B, 4, 4, 1), np.float32), np.zeros((0, 2), np.float32))


def test_batch_message_default_name_is_translate():
    assert pwx.batch_message(5, 2).startswith("translate: images batch size 5 is incompatible with translations "
                                              "batch size 2")


@pytest.mark.parametrize("bad", [
    dict(interpolation="cubic"), dict(images=np.zeros((2, 4, 4), np.float32)),
    dict(translations=np.zeros((3, 2), np.float32)),
])
def test_static_errors_are_prefixed_translate_xla(bad):
    args = dict(images=np.zeros((2, 4, 4, 1), np.float32), translations=np.zeros((2, 2), np.float32),
                interpolation="bilinear")
    args.update(bad)
    with pytest.raises(ValueError, match=r"^translate_xla: "):
        translate_xla(args["images"], args["translations"], args["interpolation"])


def test_runtime_batch_error_is_prefixed_translate_xla():
    run = tf.function(lambda x, s: translate_xla(x, s),
                      input_signature=[tf.TensorSpec([None, 4, 4, 1]), tf.TensorSpec([None, 2])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"translate_xla: images batch size B \(runtime\) is "
                                                             r"incompatible with translations batch size Bt \(runtime\)"):
        run(tf.zeros((5, 4, 4, 1)), tf.zeros((2, 2)))


def test_broadcast_translations_default_name_in_runtime_assertion():
    run = tf.function(lambda x, s: pwx.broadcast_translations(x, s),
                      input_signature=[tf.TensorSpec([None, 4, 4, 1]), tf.TensorSpec([None, 2])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"translate: images batch size B \(runtime\)"):
        run(tf.zeros((5, 4, 4, 1)), tf.zeros((2, 2)))


def _both_batches_unknown(images, shifts):
    """translate_xla traced with B and Bt unknown: the run-time branch of the batch rule."""
    run = tf.function(lambda x, s: translate_xla(x, s), input_signature=[tf.TensorSpec([None, 5, 4, 1]),
                                                                         tf.TensorSpec([None, 2])])
    return run(images, shifts).numpy()


@pytest.mark.parametrize("b, bt", [(4, 1), (3, 1), (6, 3), (4, 4), (0, 3), (0, 0)])
def test_runtime_batch_rule_accepts_what_the_static_rule_accepts_and_repeats_the_same(b, bt):
    rng = np.random.default_rng(b * 10 + bt)
    images = rng.standard_normal((b, 5, 4, 1)).astype(np.float32)
    shifts = rng.uniform(-2, 2, (bt, 2)).astype(np.float32)
    got = _both_batches_unknown(images, shifts)
    assert got.shape == (b, 5, 4, 1)
    np.testing.assert_allclose(got, translate_xla(images, shifts, use_jit=False).numpy(), atol=1e-6)
    if b:
        np.testing.assert_allclose(got, oracle(images, np.repeat(shifts, b // bt, 0)), atol=2e-5)


@pytest.mark.parametrize("b, bt", [(5, 0), (5, 2), (2, 4)])
def test_runtime_batch_rule_rejects_what_the_static_rule_rejects(b, bt):
    with pytest.raises(ValueError, match="incompatible with translations batch size"):
        translate_xla(np.zeros((b, 5, 4, 1), np.float32), np.zeros((bt, 2), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"translate_xla: images batch size B \(runtime\)"):
        _both_batches_unknown(np.zeros((b, 5, 4, 1), np.float32), np.zeros((bt, 2), np.float32))


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_non_real_translations_are_rejected_by_name(dtype):
    with pytest.raises(ValueError, match=rf"^translate_xla: translations must be real numbers, got "
                                         rf"{tf.as_dtype(dtype).name}$"):
        translate_xla(np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 2), dtype))


def test_runtime_image_batch_with_static_translation_batch_repeats_groups():
    """B unknown at trace time, Bt static (2): image i uses shift i // (B // Bt)."""
    shifts = tf.constant([[1.0, 0.0], [0.0, 2.0]])
    run = tf.function(lambda x: pwx.broadcast_translations(x, shifts),
                      input_signature=[tf.TensorSpec([None, 3, 3, 1])])
    np.testing.assert_array_equal(run(tf.zeros((4, 3, 3, 1))).numpy(), [[1, 0], [1, 0], [0, 2], [0, 2]])
    images = np.random.default_rng(8).standard_normal((4, 6, 7, 1)).astype(np.float32)
    traced = tf.function(lambda x: translate_xla(x, shifts), input_signature=[tf.TensorSpec([None, 6, 7, 1])])
    np.testing.assert_allclose(traced(images).numpy(), oracle(images, np.repeat(shifts.numpy(), 2, 0)), atol=2e-5)


@pytest.mark.parametrize("spec_hw", [(None, None), (None, 9), (6, None)])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_height_and_width_known_only_at_run_time(spec_hw, interpolation, dtype):
    """Unknown H and/or W at trace time (non-square, H != W, C = 2) gives the static-shape result."""
    rng = np.random.default_rng(21)
    images = rng.standard_normal((3, 6, 9, 2))
    if np.dtype(dtype).kind == "c":
        images = images + 1j * rng.standard_normal(images.shape)
    images = images.astype(dtype)
    shifts = np.array([[2.25, -1.5], [-3.7, 0.4], [0.5, 4.0]], np.float32)
    spec = tf.TensorSpec([None, spec_hw[0], spec_hw[1], 2], tf.as_dtype(dtype))
    via_xla = tf.function(lambda x, s: translate_xla(x, s, interpolation), input_signature=[spec, tf.TensorSpec([3, 2])])
    via_kernel = tf.function(lambda x, s: pwx.translate_kernel(x, s, interpolation),
                             input_signature=[spec, tf.TensorSpec([3, 2])])
    expected = oracle(images, shifts, interpolation)
    static = translate_xla(images, shifts, interpolation, use_jit=False).numpy()
    np.testing.assert_allclose(static, expected, atol=2e-5)
    np.testing.assert_allclose(via_xla(images, shifts).numpy(), static, atol=1e-6)
    np.testing.assert_allclose(via_kernel(images, shifts).numpy(), static, atol=1e-6)


def test_translate_kernel_default_interpolation_is_bilinear():
    image = np.zeros((1, 5, 6, 1), np.float32)
    image[0, 2, 2, 0] = 1.0
    out = pwx.translate_kernel(tf.constant(image), tf.constant([[0.25, 0.0]])).numpy()
    np.testing.assert_allclose(out[0, 2, 2:4, 0], [0.75, 0.25], atol=1e-6)


def test_traced_call_inlines_the_kernel_instead_of_nesting_a_jit_function():
    """Inside a tf.function, use_jit=True must not call the jit-compiled kernel (ledger XLA-NESTED-JIT-RECOMPILE-001)."""
    fn = tf.function(lambda x, s: translate_xla(x, s, use_jit=True))
    graph = fn.get_concrete_function(tf.TensorSpec([2, 5, 6, 1]), tf.TensorSpec([2, 2])).graph
    op_types = {op.type for op in graph.get_operations()}
    assert not op_types & {"PartitionedCall", "StatefulPartitionedCall"}, op_types


_RUNTIME_BATCHES = tf.function(lambda x, s: translate_xla(x, s),
                               input_signature=[tf.TensorSpec([None, 4, 5, 1]), tf.TensorSpec([None, 2])])


@pytest.mark.parametrize("B, Bt", [(0, 0), (0, 2), (3, 1), (3, 3), (4, 2)])
def test_runtime_batch_rule_accepts_and_repeats_groups(B, Bt):
    rng = np.random.default_rng(B * 10 + Bt)
    images = rng.standard_normal((B, 4, 5, 1)).astype(np.float32)
    shifts = rng.uniform(-2, 2, (Bt, 2)).astype(np.float32)
    out = _RUNTIME_BATCHES(images, shifts).numpy()
    assert out.shape == (B, 4, 5, 1)
    if B:
        np.testing.assert_allclose(out, oracle(images, np.repeat(shifts, B // Bt, 0)), atol=2e-5)


@pytest.mark.parametrize("B, Bt", [(3, 0), (3, 2), (1, 2)])
def test_runtime_batch_rule_rejects_with_its_message(B, Bt):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"translate_xla: images batch size B \(runtime\)"):
        _RUNTIME_BATCHES(np.zeros((B, 4, 5, 1), np.float32), np.zeros((Bt, 2), np.float32))
