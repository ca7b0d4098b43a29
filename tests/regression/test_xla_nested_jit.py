"""XLA-NESTED-JIT-RECOMPILE-001: translate_xla inside a traced function must not nest a jit function.

A nested ``tf.function(jit_compile=True)`` kernel, once differentiated inside an outer XLA-compiled
train step, made TF pass the step's data to XLA as compile-time constants: every batch recompiled and
constant-folded the whole network (minutes per step). The kernel is now inlined when traced.
"""
import numpy as np
import pytest
import tensorflow as tf

from ptycho.projective_warp_xla import translate_xla

CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}


def _op_types(fn, *args):
    return {op.type for op in fn.get_concrete_function(*args).graph.get_operations()}


@pytest.mark.xla
def test_translate_xla_is_inlined_when_traced():
    images = tf.TensorSpec([8, 9, 11, 1], tf.float32)
    shifts = tf.TensorSpec([8, 2], tf.float32)

    @tf.function(jit_compile=True)
    def step(x, s):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = translate_xla(x, s)
        return tape.gradient(tf.reduce_sum(y * y), x)

    assert not (_op_types(step, images, shifts) & CALL_OPS)


@pytest.mark.xla
def test_traced_gradient_matches_eager_jit_gradient():
    """The inlined kernel inside an XLA step gives the same values as the eager jit path."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 9, 11, 2)).astype(np.float32))
    s = tf.constant(rng.uniform(-2, 2, (4, 2)).astype(np.float32))

    def grads(x, s):
        with tf.GradientTape() as tape:
            tape.watch([x, s])
            y = translate_xla(x, s)
            loss = tf.reduce_sum(y * y * tf.range(9, dtype=tf.float32)[None, :, None, None])
        return tape.gradient(loss, [x, s])

    eager = grads(x, s)
    traced = tf.function(grads, jit_compile=True)(x, s)
    for a, b in zip(eager, traced):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
