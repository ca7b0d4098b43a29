"""Benchmark translate_xla against ImageProjectiveTransformV3 and tf.roll; prints one JSON line.

All timings come from this one run, on (256, 64, 64, 1) tensors with shifts uniform in [-10, 10]:
median wall-clock ms per call (after warm-up; the operations take turns, ROUND calls each) of translate_xla (jit) for float32 and complex64, of the
native op (float32) and of ``tf.roll`` (XLA-compiled, static shift: the memory-traffic floor).
TF thread settings are left at their defaults and reported.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptycho.projective_warp_xla import translate_xla  # noqa: E402

SHAPE = (256, 64, 64, 1)
N_CALLS = 50
N_WARMUP = 5
ROUND = 10


def interleaved_median_ms(calls: dict) -> dict:
    """Median wall time in ms of each zero-argument call (result materialised), N_CALLS each, taken in rounds
    of ROUND calls per operation in turn so that load drift during the run hits every operation alike."""
    for fn in calls.values():
        for _ in range(N_WARMUP):
            fn().numpy()
    times = {name: [] for name in calls}
    for _ in range(N_CALLS // ROUND):
        for name, fn in calls.items():
            for _ in range(ROUND):
                t0 = time.perf_counter()
                fn().numpy()
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def native(images, shifts):
    """ImageProjectiveTransformV3 with the SPEC §2.1 transform [1,0,-dx,0,1,-dy,0,0]."""
    one, zero = tf.ones_like(shifts[:, 0]), tf.zeros_like(shifts[:, 0])
    transforms = tf.stack([one, zero, -shifts[:, 0], zero, one, -shifts[:, 1], zero, zero], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def main():
    rng = np.random.default_rng(0)
    real = tf.constant(rng.standard_normal(SHAPE).astype(np.float32))
    cplx = tf.complex(real, tf.constant(rng.standard_normal(SHAPE).astype(np.float32)))
    shifts = tf.constant(rng.uniform(-10, 10, (SHAPE[0], 2)).astype(np.float32))
    roll = tf.function(lambda x: tf.roll(x, shift=[3, -5], axis=[1, 2]), jit_compile=True)
    ms = interleaved_median_ms({
        "translate_xla_float32_ms": lambda: translate_xla(real, shifts),
        "translate_xla_complex64_ms": lambda: translate_xla(cplx, shifts),
        "native_float32_ms": lambda: native(real, shifts),
        "roll_float32_ms": lambda: roll(real),
    })
    f32 = ms["translate_xla_float32_ms"]
    result = {
        "benchmark": "translate",
        "shape": list(SHAPE),
        "shift_range": [-10, 10],
        "calls": N_CALLS,
        **{k: round(v, 4) for k, v in ms.items()},
        "ratio_ours_over_native": round(f32 / ms["native_float32_ms"], 3),
        "ratio_ours_over_roll": round(f32 / ms["roll_float32_ms"], 3),
        "ratio_complex64_over_float32": round(ms["translate_xla_complex64_ms"] / f32, 3),
        "tf_version": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
