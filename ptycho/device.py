"""Device policy: what the hardware this process sees computes fast, decided at call time.

Two defaults follow the device rather than a fixed setting:

- ``jit_compile`` (XLA for training and inference): on where TensorFlow sees a GPU, off on a CPU-only
  machine (ledger XLA-PER-DEVICE-001);
- ``conv_dtype`` (the convolution stack's compute precision): 'bfloat16' where the device multiplies it
  natively, 'float32' elsewhere (ledger BF16-CONV-001).

Importing this module does not import TensorFlow; each function imports it when called.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

#: Keras dtype policy of the convolution blocks for each ``conv_dtype`` (float32 weights in both).
KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 dot products, which oneDNN's convolutions use.
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def default_jit_compile() -> bool:
    """Whether XLA compiles training and inference by default: where it is faster, i.e. when TensorFlow sees
    a GPU, not on a CPU-only machine (the same rule as Keras 3's ``jit_compile='auto'``; ledger
    XLA-PER-DEVICE-001)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags from /proc/cpuinfo; empty where that file does not exist (not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def default_conv_dtype() -> str:
    """The convolution stack's default precision: 'bfloat16' where the device computes it natively (a GPU of
    compute capability >= 8.0, or a CPU with AVX-512 BF16 / AMX under TF's oneDNN kernels), else 'float32'.

    Where bfloat16 is only emulated it is slower than float32, so it is never the default there
    (ledger BF16-CONV-001).
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        return "bfloat16" if capability and tuple(capability) >= (8, 0) else "float32"
    from tensorflow.python.util import _pywrap_util_port

    return "bfloat16" if _pywrap_util_port.IsMklEnabled() and _cpu_flags() & _BF16_CPU_FLAGS else "float32"


def resolve_conv_dtype(conv_dtype: Optional[str]) -> str:
    """``conv_dtype`` as given ('float32' / 'bfloat16'), or :func:`default_conv_dtype` for None."""
    if conv_dtype is None:
        return default_conv_dtype()
    if conv_dtype not in KERAS_POLICY:
        raise ValueError(f"conv_dtype: must be 'float32', 'bfloat16' or None (bfloat16 where the device "
                         f"computes it natively), got {conv_dtype!r}")
    return conv_dtype


def resolve_jit_compile(jit_compile: Optional[bool]) -> bool:
    """``jit_compile`` as given (True / False), or :func:`default_jit_compile` for None."""
    if jit_compile is None:
        return default_jit_compile()
    if not isinstance(jit_compile, (bool, np.bool_)):
        raise ValueError(f"jit_compile: must be True, False or None (XLA where it is faster), got {jit_compile!r}")
    return bool(jit_compile)
