"""tf_helper: path selection, non-XLA == XLA, the Translation layer, merge/extract/stitch (SPEC §2.1-2.2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

from ptycho import tf_helper as th
from ptycho.projective_warp_xla import translate_xla

from layer_registry import CASES_BY_ID, run_layer_test


# ---------------------------------------------------------------- translate_core == translate_xla

@settings(max_examples=15)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(3, 17), st.integers(3, 17),
       st.sampled_from([np.float32, np.float64, np.complex64, np.complex128]),
       st.sampled_from(["bilinear", "nearest"]), st.integers(0, 2**31 - 1))
def test_translate_core_equals_translate_xla(groups, per_group, H, W, dtype, interpolation, seed):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((groups * per_group, H, W, 2))
    if np.dtype(dtype).kind == "c":
        images = images + 1j * rng.standard_normal(images.shape)
    shifts = rng.uniform(-15, 15, (groups, 2)).astype(np.float32)
    core = th.translate_core(images.astype(dtype), shifts, interpolation).numpy()
    xla = translate_xla(images.astype(dtype), shifts, interpolation, use_jit=False).numpy()
    assert core.dtype == xla.dtype == np.dtype(dtype)
    np.testing.assert_allclose(core, xla, atol=1e-5, rtol=0)


def test_translate_core_gradients_match_xla_path():
    rng = np.random.default_rng(1)
    images = tf.constant(rng.standard_normal((2, 8, 9, 1)).astype(np.float32))
    shifts = tf.constant([[0.3, -1.7], [2.2, 0.6]], tf.float32)
    grads = []
    for fn in (th.translate_core, lambda x, s: translate_xla(x, s, use_jit=False)):
        with tf.GradientTape() as tape:
            tape.watch([images, shifts])
            loss = tf.reduce_sum(fn(images, shifts) ** 2)
        grads.append([g.numpy() for g in tape.gradient(loss, [images, shifts])])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-4)


# ---------------------------------------------------------------- should_use_xla

@pytest.mark.parametrize("env, cfg_value, expected", [
    (None, True, True), (None, False, False), ("", False, False),
    ("0", True, False), ("false", True, False), ("TRUE", False, True), ("1", False, True), (" yes ", False, True),
])
def test_should_use_xla_precedence(monkeypatch, legacy_cfg, env, cfg_value, expected):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    if env is not None:
        monkeypatch.setenv(th.ENV_VAR, env)
    legacy_cfg["use_xla_translate"] = cfg_value
    assert th.should_use_xla() is expected


def test_should_use_xla_is_read_at_call_time_and_rejects_garbage(monkeypatch, legacy_cfg):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg["use_xla_translate"] = False
    assert th.should_use_xla() is False
    legacy_cfg["use_xla_translate"] = True
    assert th.should_use_xla() is True
    monkeypatch.setenv(th.ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="USE_XLA_TRANSLATE.*'maybe'"):
        th.should_use_xla()
    monkeypatch.delenv(th.ENV_VAR)
    legacy_cfg["use_xla_translate"] = "sometimes"
    with pytest.raises(ValueError, match="use_xla_translate"):
        th.should_use_xla()


# ---------------------------------------------------------------- Translation layer

@pytest.mark.parametrize("use_xla", [True, False])
def test_translation_layer(tmp_path, use_xla):
    """The layer contract of tests/layer_registry.py (config, symbolic == eager, fit, .keras), then its values."""
    case = CASES_BY_ID["Translation-xla" if use_xla else "Translation-noxla"]
    eager = run_layer_test(case, tmp_path)
    images, shifts = case.inputs()
    assert eager.dtype == np.complex64
    np.testing.assert_allclose(eager, translate_xla(images, shifts).numpy(), atol=1e-5)


def test_translation_layer_jitter_only_in_training_and_seeded(legacy_cfg, monkeypatch):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg["use_xla_translate"] = False
    layer = th.Translation(jitter_stddev=1.0, seed=3)
    assert layer.use_xla is False and layer.get_config()["use_xla"] is False
    legacy_cfg["use_xla_translate"] = True  # construction-time decision sticks
    images = tf.constant(np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32))
    shifts = tf.zeros((2, 2))
    np.testing.assert_array_equal(layer([images, shifts], training=False).numpy(), images.numpy())
    a = layer([images, shifts], training=True).numpy()
    b = layer([images, shifts], training=True).numpy()
    assert np.abs(a - images.numpy()).max() > 1e-3 and np.abs(a - b).max() > 1e-3
    again = th.Translation(jitter_stddev=1.0, seed=3, use_xla=False)
    np.testing.assert_allclose(again([images, shifts], training=True).numpy(), a, atol=1e-6)


# ---------------------------------------------------------------- channel / flat helpers

def test_channel_flat_round_trip_and_order():
    x = np.arange(2 * 3 * 3 * 4, dtype=np.float32).reshape(2, 3, 3, 4)
    flat = th.channel_to_flat(x).numpy()
    assert flat.shape == (8, 3, 3, 1)
    for b in range(2):
        for c in range(4):
            np.testing.assert_array_equal(flat[b * 4 + c, ..., 0], x[b, ..., c])
    np.testing.assert_array_equal(th.flat_to_channel(flat, 4).numpy(), x)
    offsets = np.arange(2 * 2 * 4, dtype=np.float32).reshape(2, 1, 2, 4)
    rows = th.flatten_offsets(offsets).numpy()
    for b in range(2):
        for c in range(4):
            np.testing.assert_array_equal(rows[b * 4 + c], offsets[b, 0, :, c])


# ---------------------------------------------------------------- merge / extract

def _patches(rng, B, N, C, complex_=True):
    x = rng.standard_normal((B, N, N, C))
    if complex_:
        x = x + 1j * rng.standard_normal((B, N, N, C))
    return x.astype(np.complex64 if complex_ else np.float32)


def test_extract_of_merge_recovers_central_windows():
    """Non-overlapping central N/2 windows at integer offsets are recovered exactly."""
    rng = np.random.default_rng(4)
    B, N, C, P = 2, 16, 4, 32
    x = np.zeros((B, N, N, C), np.complex64)
    x[:, 4:12, 4:12, :] = _patches(rng, B, 8, C)
    offsets = np.tile(np.array([[-4, 4, -4, 4], [-4, -4, 4, 4]], np.float32)[None, None], (B, 1, 1, 1))
    canvas = th.reassemble_patches_position_real(x, offsets, padded_size=P)
    back = th.flat_to_channel(th.extract_patches_position(canvas, offsets, N), C).numpy()
    np.testing.assert_allclose(back[:, 4:12, 4:12], x[:, 4:12, 4:12], atol=1e-6)


def test_merge_places_patch_at_known_pixels_and_agg_false():
    N, P = 8, 14
    x = np.zeros((1, N, N, 2), np.float32)
    x[0, N // 2, N // 2, :] = [1.0, 2.0]
    offsets = np.array([[[[2.0, -1.0], [-3.0, 0.0]]]], np.float32)  # channel 0 at (2,-3), 1 at (-1,0)
    canvas = th.reassemble_patches_position_real(x, offsets, padded_size=P).numpy()[0, ..., 0]
    centre = P // 2
    assert canvas[centre + 3, centre - 2] == 1.0 and canvas[centre, centre + 1] == 2.0
    assert canvas.sum() == 3.0
    flat = th.reassemble_patches_position_real(x, offsets, agg=False, padded_size=P).numpy()
    assert flat.shape == (2, P, P, 1)
    np.testing.assert_array_equal(flat.sum(axis=0)[..., 0], canvas)


def test_merge_default_padded_size_and_validation():
    x = np.zeros((1, 64, 64, 4), np.float32)
    assert th.reassemble_patches_position_real(x, np.zeros((1, 1, 2, 4), np.float32)).shape == (1, 78, 78, 1)
    with pytest.raises(ValueError, match="multiple of 4"):
        th.reassemble_patches_position_real(np.zeros((1, 6, 6, 1)), np.zeros((1, 1, 2, 1)), padded_size=8)
    with pytest.raises(ValueError, match="P - N even"):
        th.reassemble_patches_position_real(np.zeros((1, 8, 8, 1)), np.zeros((1, 1, 2, 1)), padded_size=11)
    with pytest.raises(ValueError, match="P - N even"):
        th.reassemble_patches_position_real(np.zeros((1, 8, 8, 1)), np.zeros((1, 1, 2, 1)), padded_size=6)
    with pytest.raises(ValueError, match="offsets_xy"):
        th.reassemble_patches_position_real(np.zeros((1, 8, 8, 2)), np.zeros((1, 1, 2, 1)), padded_size=8)
    with pytest.raises(ValueError, match="multiple of 4"):
        th.extract_patches_position(np.zeros((1, 12, 12, 1)), np.zeros((1, 1, 2, 1)), 6)


# ---------------------------------------------------------------- global stitch

def test_stitch_is_independent_of_chunk_size_and_places_patches():
    rng = np.random.default_rng(5)
    B, N, M = 7, 16, 8
    patches = _patches(rng, B, N, 1)
    offsets = rng.uniform(10, 30, (B, 1, 2, 1))
    full = th.reassemble_position(patches, offsets, M=M, chunk_size=256).numpy()
    for chunk in (1, 3):
        np.testing.assert_allclose(th.reassemble_position(patches, offsets, M=M, chunk_size=chunk).numpy(),
                                   full, atol=1e-5)
    rel = offsets[:, 0, :, 0] - offsets[:, 0, :, 0].mean(0)
    S = M + 2 * int(np.ceil(np.abs(rel).max()))
    S += S % 2
    assert full.shape == (S, S, 1) and full.dtype == np.complex64


def test_stitch_known_placement_and_normalisation():
    """Two constant patches at integer offsets: each lands at its pixels; the overlap averages."""
    N, M = 8, 4
    patches = np.stack([np.full((N, N, 1), 1 + 0j), np.full((N, N, 1), 3 + 0j)]).astype(np.complex64)
    offsets = np.array([[[[10.0], [20.0]]], [[[12.0], [20.0]]]])  # mean (11, 20)
    canvas = th.reassemble_position(patches, offsets, M=M).numpy()[..., 0]
    S = canvas.shape[0]
    assert S == 6
    c = S // 2  # object position (11, 20)
    # patch 0 covers x in [10-2, 10+2) -> canvas cols c-3..c; patch 1 cols c-1..c+2
    row = canvas[c]
    np.testing.assert_allclose(row[c - 3:c - 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(row[c - 1:c + 1], 2.0, atol=1e-6)
    np.testing.assert_allclose(row[c + 1:c + 3], 3.0, atol=1e-6)
    with pytest.raises(ValueError, match="global_offsets"):
        th.reassemble_position(patches, offsets[:, :, :, :1][:1], M=M)


# ---------------------------------------------------------------- exact semantics of the layer and the non-XLA
# front end (added for the mutation score, issue 13)

def test_translate_core_xla_workaround_is_translate_xla():
    rng = np.random.default_rng(4)
    images = (rng.standard_normal((6, 7, 5, 1)) + 1j * rng.standard_normal((6, 7, 5, 1))).astype(np.complex64)
    shifts = rng.uniform(-2, 2, (3, 2)).astype(np.float32)
    for interpolation in ("bilinear", "nearest"):
        out = th.translate_core(images, shifts, interpolation, use_xla_workaround=True).numpy()
        np.testing.assert_array_equal(out, translate_xla(images, shifts, interpolation, use_jit=True).numpy())
        np.testing.assert_allclose(out, th.translate_core(images, shifts, interpolation).numpy(), atol=1e-5)


def test_translate_core_errors_name_translate_core():
    with pytest.raises(ValueError, match=r"^translate_core: images batch size 5 is incompatible with translations "
                                         r"batch size 2"):
        th.translate_core(np.zeros((5, 4, 4, 1), np.float32), np.zeros((2, 2), np.float32))
    run = tf.function(lambda x, s: th.translate_core(x, s),
                      input_signature=[tf.TensorSpec([None, 4, 4, 1]), tf.TensorSpec([None, 2])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"translate_core: images batch size B \(runtime\)"):
        run(tf.zeros((5, 4, 4, 1)), tf.zeros((2, 2)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(jitter_stddev=-0.5), "Translation: jitter_stddev must be a finite number >= 0, got -0.5"),
    (dict(jitter_stddev=float("nan")), "Translation: jitter_stddev must be a finite number >= 0, got nan"),
    (dict(jitter_stddev="1"), "Translation: jitter_stddev must be a finite number >= 0, got '1'"),
    (dict(interpolation="cubic"), "Translation: interpolation must be 'bilinear' or 'nearest', got 'cubic'"),
])
def test_translation_layer_rejects_bad_settings_exactly(kwargs, message):
    with pytest.raises(ValueError) as info:
        th.Translation(use_xla=True, **kwargs)
    assert str(info.value) == message


def test_translation_layer_jitter_is_added_seeded_noise_of_its_stddev(monkeypatch):
    """training=True moves by shifts + N(0, stddev²) drawn from SeedGenerator(seed), nearest or bilinear as set;
    call reads no global switch (a garbage USE_XLA_TRANSLATE after construction is never looked at)."""
    rng = np.random.default_rng(8)
    images = tf.constant(rng.standard_normal((3, 12, 12, 1)).astype(np.float32))
    shifts = tf.constant(rng.uniform(-2, 2, (3, 2)).astype(np.float32))
    layer = th.Translation(jitter_stddev=0.6, use_xla=True, seed=11)
    monkeypatch.setenv(th.ENV_VAR, "not-a-bool")
    out = layer([images, shifts], training=True).numpy()
    noise = keras.random.normal((3, 2), stddev=0.6, seed=keras.random.SeedGenerator(11))
    np.testing.assert_allclose(out, translate_xla(images, shifts + noise).numpy(), atol=1e-5)
    assert not np.allclose(out, translate_xla(images, shifts - noise).numpy(), atol=1e-3)
    nearest = th.Translation(use_xla=True, interpolation="nearest")([images, shifts]).numpy()
    np.testing.assert_array_equal(nearest, translate_xla(images, shifts, "nearest").numpy())
    assert not np.allclose(nearest, translate_xla(images, shifts, "bilinear").numpy(), atol=1e-3)
    np.testing.assert_array_equal(th.Translation(jitter_stddev=0, use_xla=True)([images, shifts]).numpy(),
                                  translate_xla(images, shifts).numpy())


def test_translation_layer_config_and_symbolic_dtype():
    layer = th.Translation(jitter_stddev=0.25, use_xla=False, interpolation="nearest", seed=5, name="t")
    config = layer.get_config()
    assert {k: config[k] for k in ("jitter_stddev", "use_xla", "interpolation", "seed")} == \
        {"jitter_stddev": 0.25, "use_xla": False, "interpolation": "nearest", "seed": 5}
    clone = th.Translation.from_config(config)
    assert (clone.jitter_stddev, clone.use_xla, clone.interpolation, clone.seed) == (0.25, False, "nearest", 5)
    images = keras.Input((8, 8, 1), dtype="complex64")
    shifts = keras.Input((2,), dtype="float32")
    out = layer([images, shifts])
    assert out.dtype == "complex64" and tuple(out.shape) == (None, 8, 8, 1)
    assert layer.compute_output_shape([(None, 8, 8, 1), (None, 2)]) == (None, 8, 8, 1)


def test_channel_flat_round_trip_non_square():
    x = np.arange(2 * 3 * 5 * 4, dtype=np.float32).reshape(2, 3, 5, 4)
    flat = th.channel_to_flat(x)
    assert tuple(flat.shape) == (8, 3, 5, 1)
    np.testing.assert_array_equal(th.flat_to_channel(flat, 4).numpy(), x)


# ---------------------------------------------------------------- argument checks, boundaries and the stitch against
# a NumPy reference (mutation survivors of merge/extract/stitch, issue 13)

_R, _E = "reassemble_patches_position_real", "extract_patches_position"


def _merge(imgs_shape, off, P=12):
    return lambda: th.reassemble_patches_position_real(np.zeros(imgs_shape), off, padded_size=P)


def _extract(canvas_shape, off, N=8):
    return lambda: th.extract_patches_position(np.zeros(canvas_shape), off, N)


def _stitch(patches_shape, offsets, **kwargs):
    return lambda: th.reassemble_position(np.zeros(patches_shape, np.complex64), offsets, **kwargs)


_OFF1 = np.zeros((1, 1, 2, 1))


@pytest.mark.parametrize("call, message", [
    (_merge((8, 8, 1), _OFF1), f"{_R}: imgs must have rank 4 with static H, W, C, got (8, 8, 1)"),
    (_merge((1, 8, 12, 1), _OFF1), f"{_R}: patches must be square, got (1, 8, 12, 1)"),
    (_merge((1, 6, 6, 1), _OFF1, P=8), f"{_R}: patch size N must be a multiple of 4, got 6"),
    (_merge((1, 8, 8, 1), _OFF1, P=11), f"{_R}: padded_size P must be an int with P - N even and >= 0, got P=11, N=8"),
    (_merge((1, 8, 8, 3), np.zeros((1, 1, 2, 3)), P=None), "padded_size=None needs C = gridsize**2, got C = 3"),
    (_merge((1, 8, 8, 1), np.zeros((1, 3, 2, 1))), f"{_R}: offsets_xy must have shape (B, 1, 2, 1), got (1, 3, 2, 1)"),
    (_merge((1, 8, 8, 1), np.zeros((1, 1, 3, 1))), f"{_R}: offsets_xy must have shape (B, 1, 2, 1), got (1, 1, 3, 1)"),
    (_merge((1, 8, 8, 1), np.zeros((1, 1, 2, 1, 1))),
     f"{_R}: offsets_xy must have shape (B, 1, 2, 1), got (1, 1, 2, 1, 1)"),
    (_merge((1, 8, 8, 1), np.zeros((1, 1, 2))), f"{_R}: offsets_xy must have shape (B, 1, 2, 1), got (1, 1, 2)"),
    (_merge((2, 8, 8, 1), np.zeros((3, 1, 2, 1))), f"{_R}: offsets_xy batch 3 != images batch 2"),
    (_extract((12, 12, 1), _OFF1), f"{_E}: canvas must have rank 4 with static H, W, C, got (12, 12, 1)"),
    (_extract((1, 12, 16, 1), _OFF1), f"{_E}: canvas must have shape (B, P, P, 1), got (1, 12, 16, 1)"),
    (_extract((1, 12, 12, 2), _OFF1), f"{_E}: canvas must have shape (B, P, P, 1), got (1, 12, 12, 2)"),
    (_extract((1, 12, 12, 1), _OFF1, N=6), f"{_E}: patch size N must be a multiple of 4, got 6"),
    (_extract((1, 8, 8, 1), _OFF1, N=12), f"{_E}: padded_size P must be an int with P - N even and >= 0, got P=8, N=12"),
    (_extract((1, 12, 12, 1), np.zeros((1, 2, 1))), f"{_E}: offsets_xy must have shape (B, 1, 2, C), got (1, 2, 1)"),
    (_extract((1, 12, 12, 1), np.zeros((1, 1, 3, 4))), f"{_E}: offsets_xy must have shape (B, 1, 2, 4), got (1, 1, 3, 4)"),
    (_extract((2, 12, 12, 1), np.zeros((1, 1, 2, 4))), f"{_E}: offsets_xy batch 1 != images batch 2"),
    (_stitch((8, 8, 1), _OFF1), "reassemble_position: patches must have rank 4 with static H, W, C, got (8, 8, 1)"),
    (_stitch((1, 8, 12, 1), _OFF1, M=4),  # once centred the crop on H for both axes: silently wrong columns
     "reassemble_position: patches must have shape (B, N, N, 1) (square, one channel), got (1, 8, 12, 1)"),
    (_stitch((1, 8, 8, 2), _OFF1, M=4),
     "reassemble_position: patches must have shape (B, N, N, 1) (square, one channel), got (1, 8, 8, 2)"),
    (_stitch((2, 8, 8, 1), _OFF1), "reassemble_position: global_offsets must have shape (2, 1, 2, 1), got (1, 1, 2, 1)"),
    (_stitch((1, 8, 8, 1), np.full((1, 1, 2, 1), np.nan)), "reassemble_position: global_offsets must be finite"),
    (_stitch((1, 8, 8, 1), _OFF1, M=0), "reassemble_position: M must be an int in [1, N=8], got 0"),
    (_stitch((1, 8, 8, 1), _OFF1, M=9), "reassemble_position: M must be an int in [1, N=8], got 9"),
    (_stitch((1, 8, 8, 1), _OFF1, M=2.5), "reassemble_position: M must be an int in [1, N=8], got 2.5"),
    (_stitch((1, 8, 8, 1), _OFF1, M=4, chunk_size=0), "reassemble_position: chunk_size must be a positive int, got 0"),
    (_stitch((1, 8, 8, 1), _OFF1, M=4, chunk_size=-1), "reassemble_position: chunk_size must be a positive int, got -1"),
    (_stitch((1, 8, 8, 1), _OFF1, M=4, chunk_size=2.5),
     "reassemble_position: chunk_size must be a positive int, got 2.5"),
    (_stitch((0, 8, 8, 1), np.zeros((0, 1, 2, 1)), M=4), "reassemble_position: patches is empty"),
])
def test_merge_extract_and_stitch_reject_bad_arguments_naming_function_and_argument(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_merge_and_extract_accept_list_offsets_and_an_unknown_offset_batch():
    """Offsets given as nested lists work like arrays; a batch known only at run time is not compared."""
    rng = np.random.default_rng(12)
    x = _patches(rng, 2, 8, 1)
    offsets = rng.uniform(-2, 2, (2, 1, 2, 1)).astype(np.float32)
    merged = th.reassemble_patches_position_real(x, offsets, padded_size=12, use_xla=False).numpy()
    np.testing.assert_array_equal(
        th.reassemble_patches_position_real(x, offsets.tolist(), padded_size=12, use_xla=False).numpy(), merged)
    canvas = _patches(rng, 2, 12, 1)
    extracted = th.extract_patches_position(canvas, offsets, 8, use_xla=False).numpy()
    np.testing.assert_array_equal(th.extract_patches_position(canvas, offsets.tolist(), 8, use_xla=False).numpy(),
                                  extracted)
    traced = tf.function(lambda imgs, off: th.reassemble_patches_position_real(imgs, off, padded_size=12,
                                                                                use_xla=False),
                         input_signature=[tf.TensorSpec([2, 8, 8, 1], tf.complex64),
                                          tf.TensorSpec([None, 1, 2, 1], tf.float32)])
    np.testing.assert_allclose(traced(x, offsets).numpy(), merged, atol=1e-6)


def test_merge_extract_and_stitch_honour_use_xla_without_reading_the_switch(monkeypatch):
    """An explicit use_xla decides the path; the global switch (here garbage, which raises if read) is not read."""
    monkeypatch.setenv(th.ENV_VAR, "not-a-bool")
    rng = np.random.default_rng(13)
    x = _patches(rng, 2, 8, 4)
    offsets = rng.uniform(-3, 3, (2, 1, 2, 4)).astype(np.float32)
    canvas = _patches(rng, 2, 16, 1)
    patches = _patches(rng, 3, 8, 1)
    global_offsets = rng.uniform(0, 5, (3, 1, 2, 1))
    results = {}
    for use_xla in (True, False):
        results[use_xla] = (
            th.reassemble_patches_position_real(x, offsets, padded_size=16, use_xla=use_xla).numpy(),
            th.extract_patches_position(canvas, offsets, 8, use_xla=use_xla).numpy(),
            th.reassemble_position(patches, global_offsets, M=4, use_xla=use_xla).numpy())
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("M, rel, side", [
    (20, np.zeros((0, 2)), 20),             # no offsets: the crop itself
    (20, [[0.0, 0.0]], 20),
    (5, [[0.5, -0.2]], 8),                  # 5 + 2*1 = 7, rounded up to even
    (6, [[0.0, -1.0]], 8),                  # already even
    (7, [[2.0, 0.3], [-1.5, 0.0]], 12),     # 7 + 2*2 = 11 -> 12
    (4, [[-2.5, 1.0]], 10),                 # |-2.5| -> 3: 4 + 6
])
def test_stitch_canvas_size_closed_form(M, rel, side):
    assert th.stitch_canvas_size(M, np.asarray(rel, np.float32)) == side


def _numpy_stitch(patches, offsets, M):
    """Reference stitch for integer offsets - mean: crop the central M×M, add at its place, divide by the count."""
    B, N = patches.shape[:2]
    rel = np.rint(offsets[:, 0, :, 0] - offsets[:, 0, :, 0].mean(axis=0)).astype(int)   # (B, 2) [dx, dy]
    S = M + 2 * int(np.abs(rel).max())
    S += S % 2
    lo, before = N // 2 - M // 2, S // 2 - M // 2
    num, den = np.zeros((S, S), complex), np.zeros((S, S))
    for b in range(B):
        r, c = before + rel[b, 1], before + rel[b, 0]
        num[r:r + M, c:c + M] += patches[b, lo:lo + M, lo:lo + M, 0]
        den[r:r + M, c:c + M] += 1
    return num / (den + 1e-9)


@pytest.mark.parametrize("N, M, chunk_size, B", [
    (8, 6, 256, 4),      # N != 2M: the crop is not the complement of a border of width M
    (8, 5, 3, 4),        # odd M, chunks of 3
    (8, 8, 1, 4),        # M == N, one patch per chunk
    (8, 1, 2, 4),        # M == 1
    (12, 4, 256, 1),     # a single patch
])
def test_stitch_matches_numpy_reference_at_integer_offsets(N, M, chunk_size, B):
    rng = np.random.default_rng(N * 100 + M)
    patches = _patches(rng, B, N, 1)
    # non-square spread, mean (12.25, 20.5) non-zero and not an integer; offsets - mean are integers
    offsets = np.array([[11.25, 20.5], [14.25, 20.5], [10.25, 23.5], [13.25, 17.5]])[:B, None, :, None]
    out = th.reassemble_position(patches, offsets, M=M, chunk_size=chunk_size, use_xla=False).numpy()
    expected = _numpy_stitch(patches, offsets, M)
    assert out.shape == expected.shape + (1,) and out.dtype == np.complex64
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)


def test_stitch_default_crop_is_20_pixels():
    rng = np.random.default_rng(14)
    patches = _patches(rng, 1, 24, 1)
    out = th.reassemble_position(patches, np.full((1, 1, 2, 1), 7.0), use_xla=False).numpy()
    assert out.shape == (20, 20, 1)
    np.testing.assert_allclose(out, patches[0, 2:22, 2:22], atol=1e-6)


# ---------------------------------------------------------------- the switch's accepted values, routing to the
# jit kernel, and shape checks of list inputs (added for the mutation score)

from ptycho import projective_warp_xla as pwx  # noqa: E402


@pytest.mark.parametrize("value, expected", [(1, True), (0, False), (np.int64(1), True), (np.int32(0), False)])
def test_should_use_xla_accepts_integers_zero_and_one(monkeypatch, legacy_cfg, value, expected):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg["use_xla_translate"] = value
    assert th.should_use_xla() is expected


@pytest.mark.parametrize("value", [2, -1, np.int64(7)])
def test_should_use_xla_rejects_other_integers_listing_the_spellings(monkeypatch, legacy_cfg, value):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg["use_xla_translate"] = value
    message = (f"params.cfg['use_xla_translate'] must be a boolean (1/true/yes/on or 0/false/no/off), "
               f"got {value!r}")
    with pytest.raises(ValueError) as info:
        th.should_use_xla()
    assert str(info.value) == message


def test_should_use_xla_defaults_to_true_without_the_key(monkeypatch, legacy_cfg):
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg.pop("use_xla_translate", None)
    assert th.should_use_xla() is True


def _spy_jit_kernels(monkeypatch):
    calls = []
    for interpolation, kernel in list(pwx._JIT_KERNELS.items()):
        def spy(images, shifts, kernel=kernel, interpolation=interpolation):
            calls.append(interpolation)
            return kernel(images, shifts)
        monkeypatch.setitem(pwx._JIT_KERNELS, interpolation, spy)
    return calls


def test_xla_routes_run_the_jit_compiled_kernel_eagerly(monkeypatch, legacy_cfg):
    """translate_core(use_xla_workaround=True) and translate() with the switch on use the jit kernel; use_xla=False does not."""
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    legacy_cfg["use_xla_translate"] = True
    calls = _spy_jit_kernels(monkeypatch)
    images, shifts = np.ones((2, 5, 6, 1), np.float32), np.array([[0.5, -1.0]], np.float32)
    th.translate_core(images, shifts, "nearest", use_xla_workaround=True)
    assert calls == ["nearest"]
    th.translate(images, shifts)
    assert calls == ["nearest", "bilinear"]
    th.translate(images, shifts, use_xla=False)
    assert calls == ["nearest", "bilinear"]


def test_translate_without_xla_honours_nearest():
    """A shift of [0.3, 0.6] is [0, 1] for nearest (bilinear would spread the impulse)."""
    image = np.zeros((1, 7, 8, 1), np.float32)
    image[0, 3, 4, 0] = 1.0
    out = th.translate(image, np.array([[0.3, 0.6]], np.float32), "nearest", use_xla=False).numpy()
    assert np.argwhere(out[0, ..., 0]).tolist() == [[4, 4]] and out.sum() == 1.0


def test_oracle_path_matches_closed_form_roll_with_dx_not_dy_and_zero_fill():
    """Integer [dx, dy] = [2, -1] is a zero-filled roll (right 2, up 1), float and complex."""
    rng = np.random.default_rng(31)
    images = rng.standard_normal((2, 6, 7, 1)) + 1j * rng.standard_normal((2, 6, 7, 1))
    expected = np.zeros_like(images)
    expected[:, :5, 2:] = images[:, 1:, :5]
    for dtype in (np.float64, np.complex64):
        x = images.real.astype(dtype) if dtype == np.float64 else images.astype(dtype)
        want = expected.real if dtype == np.float64 else expected
        out = th.translate_core(x, np.array([[2.0, -1.0]], np.float32)).numpy()
        np.testing.assert_allclose(out, want, atol=1e-5)


def test_merge_and_extract_accept_nested_list_inputs():
    rng = np.random.default_rng(17)
    patches = rng.standard_normal((2, 8, 8, 2)).astype(np.float32)
    offsets = rng.uniform(-2, 2, (2, 1, 2, 2)).astype(np.float32)
    canvas = rng.standard_normal((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(
        th.reassemble_patches_position_real(patches.tolist(), offsets, padded_size=16, use_xla=False).numpy(),
        th.reassemble_patches_position_real(patches, offsets, padded_size=16, use_xla=False).numpy())
    np.testing.assert_array_equal(th.extract_patches_position(canvas.tolist(), offsets, 8, use_xla=False).numpy(),
                                  th.extract_patches_position(canvas, offsets, 8, use_xla=False).numpy())
    with pytest.raises(ValueError, match="rank 4 with static H, W, C"):
        th.reassemble_patches_position_real(patches[0].tolist(), offsets, padded_size=16, use_xla=False)


def test_merge_rejects_unknown_height_at_trace_time():
    run = tf.function(lambda x: th.reassemble_patches_position_real(x, np.zeros((1, 1, 2, 1), np.float32),
                                                                     padded_size=16, use_xla=False),
                      input_signature=[tf.TensorSpec([1, None, 8, 1])])
    with pytest.raises(ValueError, match=r"imgs must have rank 4 with static H, W, C"):
        run.get_concrete_function()


def test_tapered_stitch_of_patches_cut_from_one_object_reproduces_it_without_seams():
    """Weighted overlap-add (ledger STITCH-TAPER-001): patches of one smooth object, cut at scattered
    positions 14 px apart, stitch back to that object on every covered pixel — no seams, no holes."""
    from ptycho.physics import object_patches
    from ptycho.tf_helper import reassemble_position, stitch_weight_map, taper_window

    N, M = 64, 32
    yy, xx = np.mgrid[:200, :200]
    obj = (1 + 0.01 * xx + 0.005 * yy) * np.exp(1j * 0.002 * xx * yy / 10)
    axis = np.arange(60.0, 141.0, 14.0)
    x, y = [a.ravel() + 0.3 for a in np.meshgrid(axis, axis)]
    patches = object_patches(obj, x, y, N)[..., None]
    offsets = np.stack([x, y], axis=1)[:, None, :, None]
    sparse = np.stack(np.meshgrid(np.arange(60.0, 141.0, 24.0), np.arange(60.0, 141.0, 24.0)), -1).reshape(-1, 2)
    sparse = sparse[:, None, :, None]
    stitched = np.asarray(reassemble_position(patches, offsets, M=M, window=taper_window(M)))[..., 0]
    weights = np.asarray(stitch_weight_map(offsets, M, window=taper_window(M)))[..., 0]
    covered = weights >= 0.05
    S = stitched.shape[0]
    cx, cy = x.mean(), y.mean()
    rows, cols = np.nonzero(covered)
    truth = object_patches(obj, np.array([cx]), np.array([cy]), S)[0][rows, cols]
    np.testing.assert_allclose(stitched[rows, cols], truth, rtol=2e-3)
    inner = slice(S // 2 - 40, S // 2 + 40)
    assert covered[inner, inner].all()
    # at 24 px spacing the plain M=20 stitch leaves holes between windows; the N/2 taper covers them
    tapered = np.asarray(stitch_weight_map(sparse, M, window=taper_window(M)))[..., 0]
    plain = np.asarray(stitch_weight_map(sparse, 20))[..., 0]
    inner = slice(tapered.shape[0] // 2 - 36, tapered.shape[0] // 2 + 36)
    assert (tapered[inner, inner] >= 0.05).all()
    inner = slice(plain.shape[0] // 2 - 36, plain.shape[0] // 2 + 36)
    assert not (plain[inner, inner] > 0.5).all()


def test_taper_window_is_positive_and_separable():
    from ptycho.tf_helper import reassemble_position, taper_window

    w = taper_window(8)
    assert w.shape == (8, 8) and np.all(w > 0) and w.max() <= 1
    np.testing.assert_allclose(w, np.outer(w[4] / w[4, 4], w[:, 4] / w[4, 4]) * w[4, 4], rtol=1e-6)
    with pytest.raises(ValueError, match="window"):
        reassemble_position(np.ones((2, 16, 16, 1), np.complex64), np.zeros((2, 1, 2, 1)), M=8, window=np.ones((4, 4)))
