"""Batch rule of translate (SPEC §2.1): image i of a flat (B*C, N, N, 1) stack uses shift i // C.

FIX-GRIDSIZE-TRANSLATE-BATCH-001: a tiled broadcast (i % B) moved patches by another group's shift.
"""
import numpy as np
import pytest
import tensorflow as tf

from ptycho.projective_warp_xla import translate_xla
from ptycho.tf_helper import translate_core

B, C, N = 3, 4, 12


def _grouped_case():
    """Flat impulses (B*C, N, N, 1), all at the centre, and one integer shift per group (B, 2)."""
    images = np.zeros((B * C, N, N, 1), np.float32)
    images[:, N // 2, N // 2, 0] = 1.0
    shifts = np.array([[1, 0], [0, 2], [-3, -1]], np.float32)
    return images, shifts


def _assert_repeat_broadcast(out):
    _, shifts = _grouped_case()
    for i in range(B * C):
        dx, dy = shifts[i // C].astype(int)
        assert np.argwhere(out[i, ..., 0]).tolist() == [[N // 2 + dy, N // 2 + dx]], f"image {i}"


@pytest.mark.xla
def test_translate_xla_gridsize_broadcast():
    images, shifts = _grouped_case()
    _assert_repeat_broadcast(translate_xla(images, shifts, use_jit=False).numpy())


@pytest.mark.xla
def test_translate_xla_gridsize_broadcast_jit():
    images, shifts = _grouped_case()
    _assert_repeat_broadcast(translate_xla(images, shifts, use_jit=True).numpy())
    wrapped = tf.function(lambda x, s: translate_xla(x, s, use_jit=False), jit_compile=True)
    _assert_repeat_broadcast(wrapped(images, shifts).numpy())


def test_translate_core_gridsize_broadcast():
    images, shifts = _grouped_case()
    _assert_repeat_broadcast(translate_core(images, shifts).numpy())


@pytest.mark.xla
@pytest.mark.parametrize("fn", [translate_xla, translate_core])
@pytest.mark.parametrize("bt", [5, 24])
def test_mismatched_batches_raise_value_error_naming_both(fn, bt):
    images, _ = _grouped_case()
    with pytest.raises(ValueError, match=f"images batch size {B * C} .*translations batch size {bt}"):
        fn(images, np.zeros((bt, 2), np.float32))


@pytest.mark.parametrize("fn", [translate_xla, translate_core])
def test_mismatched_batches_raise_at_run_time_when_shapes_unknown(fn):
    spec = [tf.TensorSpec([None, N, N, 1], tf.float32), tf.TensorSpec([None, 2], tf.float32)]
    graph_fn = tf.function(lambda x, s: fn(x, s), input_signature=spec)
    images, shifts = _grouped_case()
    _assert_repeat_broadcast(graph_fn(images, shifts).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="incompatible with translations batch size"):
        graph_fn(images, np.zeros((5, 2), np.float32))
