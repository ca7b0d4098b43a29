"""XLA-compilable sub-pixel translation of image batches (SPEC §2.1).

Forward model, for images ``(B, H, W, C)`` and shifts ``(B, 2)`` = ``[dx, dy]`` in pixels::

    out[b, y, x, c] = sum_{i, j} My[b, y, j] * Mx[b, x, i] * in[b, j, i, c]
    Mx[b, x, i] = k(x - dx[b] - i),   My[b, y, j] = k(y - dy[b] - j)

with ``k(t) = max(0, 1 - |t|)`` (bilinear) or ``k(t) = [round(t) == 0]`` (nearest, half away from zero,
as ``std::round`` in ``ImageProjectiveTransformV3``). Source pixels outside the image contribute zero
per interpolation tap, so ``T_{-d}`` is exactly the adjoint of ``T_d``. A pure translation is
separable: rows are moved by gathers of whole rows (two taps, per-image integer index and fraction;
memory-bound), and columns by the same row gathers on the transposed image (XLA's CPU gathers of single
elements measured several times slower; the transposes cost a copy each, and the pass is 1.7× faster than
the dense banded (B, W, W) matmul it replaced, ledger TRANSLATE-KERNEL-001). Both passes are
differentiable in the image and the shift. Complex images are translated as complex (complex gathers).

Importing this module runs no TF op (``tf.function`` objects are traced on first call only).
"""
from __future__ import annotations

import tensorflow as tf

INTERPOLATIONS = ("bilinear", "nearest")
_REAL_DTYPES = {tf.float32: tf.float32, tf.float64: tf.float64,
                tf.complex64: tf.float32, tf.complex128: tf.float64}


def _static_dim(shape, axis):
    """Static size of ``shape[axis]`` as an int, or ``None`` when unknown."""
    dim = shape[axis]
    return None if dim is None else int(dim)


def validate_translate_args(images, translations, interpolation, name="translate"):
    """Check ranks, dtypes, interpolation and the batch rule statically; raise ValueError on bad input.

    Returns ``(images, translations)`` as tensors (translations cast to the images' real dtype).
    Runs before any TF computation on the data (conversion of array-likes only).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{name}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    images = tf.convert_to_tensor(images)
    translations = tf.convert_to_tensor(translations)
    if images.dtype not in _REAL_DTYPES:
        raise ValueError(f"{name}: images dtype must be float32, float64, complex64 or complex128, "
                         f"got {images.dtype.name}")
    if images.shape.rank != 4:
        raise ValueError(f"{name}: images must have shape (B, H, W, C), got {images.shape}")
    if translations.shape.rank != 2 or _static_dim(translations.shape, 1) not in (2, None):
        raise ValueError(f"{name}: translations must have shape (Bt, 2) = [dx, dy], got {translations.shape}")
    if not (translations.dtype.is_floating or translations.dtype.is_integer):
        raise ValueError(f"{name}: translations must be real numbers, got {translations.dtype.name}")
    b, bt = _static_dim(images.shape, 0), _static_dim(translations.shape, 0)
    if b is not None and bt is not None and not _batches_compatible(b, bt):
        raise ValueError(batch_message(b, bt, name))
    return images, tf.cast(translations, _REAL_DTYPES[images.dtype])


def _batches_compatible(b, bt):
    return (bt > 0 and b % bt == 0) or (bt == 0 and b == 0)


def batch_message(b, bt, name="translate"):
    """The error message of the batch rule; ``b``/``bt`` may be ints or placeholders."""
    return (f"{name}: images batch size {b} is incompatible with translations batch size {bt}: "
            f"need Bt == B, Bt == 1, or B == Bt*C' (flat layout of Bt groups; image i uses shift i // C')")


def broadcast_translations(images, translations, name="translate"):
    """Expand shifts ``(Bt, 2)`` to one row per image ``(B, 2)``: image i uses shift ``i // (B // Bt)``.

    The static rule was checked by ``validate_translate_args``; when a batch size is only known at run
    time this adds a ``tf.debugging`` assertion (InvalidArgumentError with the same message).
    """
    b, bt = _static_dim(images.shape, 0), _static_dim(translations.shape, 0)
    if b is not None and bt is not None:
        if b == bt:
            return translations
        reps = b // bt if bt else 0
        return tf.reshape(tf.broadcast_to(translations[:, None, :], [bt, reps, 2]), [b, 2])
    b_dyn, bt_dyn = tf.shape(images)[0], tf.shape(translations)[0]
    ok = tf.logical_or(tf.logical_and(bt_dyn > 0, tf.math.floormod(b_dyn, tf.maximum(bt_dyn, 1)) == 0),
                       tf.logical_and(bt_dyn == 0, b_dyn == 0))
    msg = batch_message("B (runtime)", "Bt (runtime)", name)
    with tf.control_dependencies([tf.debugging.Assert(ok, [msg, b_dyn, bt_dyn])]):
        reps = b_dyn // tf.maximum(bt_dyn, 1)
    expanded = tf.broadcast_to(translations[:, None, :], tf.stack([bt_dyn, reps, 2]))
    return tf.reshape(expanded, tf.stack([b_dyn, 2]))


def _round_half_away(v):
    """``std::round``: nearest integer, halves away from zero (the oracle's nearest-neighbour rule)."""
    return tf.sign(v) * tf.floor(tf.abs(v) + 0.5)


def _row_taps(d, n, interpolation):
    """Interpolation taps along one axis: a list of ``(index (B, n) int32, weight (B, n))``.

    Output index ``j`` of image ``b`` reads source ``j - d[b]``; a tap outside ``[0, n)`` gets weight 0
    (its index is clamped so the gather stays in bounds). Bilinear taps are ``j + k[b]`` and ``j + k[b] + 1``
    with ``k = floor(-d)`` and weights ``1 - f``, ``f`` for ``f = -d - k``: one integer offset and one
    fraction per image, so the per-element work is an integer add and a bounds test (computing
    ``floor(j - d)`` per element made the fused XLA kernel 1.45× slower and rounded the weights, ledger
    TRANSLATE-KERNEL-002).
    """
    n_real = tf.cast(n, d.dtype)
    if interpolation == "bilinear":
        k = tf.floor(-d)
        frac = -d - k
        # Offsets beyond ±(n+1) put every tap outside; clamping first keeps the int32 cast in range.
        start = tf.range(n)[None, :] + tf.cast(tf.clip_by_value(k, -n_real - 1.0, n_real), tf.int32)[:, None]
        pairs = [(start, 1.0 - frac), (start + 1, frac)]
    else:
        src = _round_half_away(tf.range(n_real)[None, :] - d[:, None])
        pairs = [(tf.cast(tf.clip_by_value(src, -1.0, n_real), tf.int32), tf.ones_like(d))]
    taps = []
    for idx, weight in pairs:
        inside = tf.logical_and(idx >= 0, idx < n)
        weight = weight[:, None]
        taps.append((tf.clip_by_value(idx, 0, n - 1), tf.where(inside, weight, tf.zeros_like(weight))))
    return taps


def _shift_rows(x, d, n, interpolation):
    """Translate ``x (B, n, R)`` along axis 1 by ``d (B,)``: row gathers, two taps (one for nearest).

    Row gathers copy whole contiguous rows (memory-bound), so this pass costs about one copy of ``x``.
    Real or complex ``x`` (the weights are cast to its dtype).
    """
    out = None
    for idx, weight in _row_taps(d, n, interpolation):
        term = tf.cast(weight, x.dtype)[:, :, None] * tf.gather(x, idx, axis=1, batch_dims=1)
        out = term if out is None else out + term
    return out


def translate_kernel(images, shifts, interpolation="bilinear"):
    """Translate ``images (B, H, W, C)`` by ``shifts (B, 2)`` (already one row per image).

    Rows by row gathers (``_shift_rows``); columns by the same gathers on the transposed image. Float or
    complex, in the images' own dtype (complex images are not split into real and imaginary parts: under
    XLA on CPU the split and recombination cost more than the translation, ledger TRANSLATE-KERNEL-001).
    """
    shape = tf.shape(images)
    b, h, w, k = shape[0], shape[1], shape[2], shape[3]
    height = images.shape[1] if images.shape[1] is not None else h
    width = images.shape[2] if images.shape[2] is not None else w
    real_shifts = tf.cast(shifts, _REAL_DTYPES[images.dtype])
    rows_moved = _shift_rows(tf.reshape(images, tf.stack([b, h, w * k])), real_shifts[:, 1], height, interpolation)
    columns_first = tf.transpose(tf.reshape(rows_moved, shape), [0, 2, 1, 3])  # (B, W, H, C)
    moved = _shift_rows(tf.reshape(columns_first, tf.stack([b, w, h * k])), real_shifts[:, 0], width, interpolation)
    return tf.transpose(tf.reshape(moved, tf.stack([b, w, h, k])), [0, 2, 1, 3])


@tf.function(jit_compile=True)
def _kernel_jit_bilinear(images, shifts):
    return translate_kernel(images, shifts, "bilinear")


@tf.function(jit_compile=True)
def _kernel_jit_nearest(images, shifts):
    return translate_kernel(images, shifts, "nearest")


_JIT_KERNELS = {"bilinear": _kernel_jit_bilinear, "nearest": _kernel_jit_nearest}


def translate_xla(images, translations, interpolation="bilinear", use_jit=True):
    """Translate a batch of images by ``[dx, dy]`` shifts, in pure TF ops that XLA compiles.

    images : (B, H, W, C) float32 | float64 | complex64 | complex128
    translations : (Bt, 2) real, ``[dx, dy]`` in pixels; ``Bt == B``, ``Bt == 1`` or ``B == Bt*C'``
        (image i uses shift ``i // C'``). Positive dx moves content right, positive dy moves it down.
    interpolation : 'bilinear' | 'nearest' (zero fill per interpolation tap).
    use_jit : when called eagerly, run the kernel inside ``tf.function(jit_compile=True)``; ``False``
        runs the same ops without XLA (they agree to 1e-6 relative). Inside a traced function the
        kernel is inlined, so the enclosing ``tf.function``/Keras ``jit_compile`` setting applies.

    Returns (B, H, W, C), the dtype of ``images``. Differentiable in ``images`` and ``translations``.
    Raises ValueError for bad ranks/dtypes/batch sizes (InvalidArgumentError when batch sizes are only
    known at run time).
    """
    images, translations = validate_translate_args(images, translations, interpolation, "translate_xla")
    shifts = broadcast_translations(images, translations, "translate_xla")
    if use_jit and tf.executing_eagerly():
        return _JIT_KERNELS[interpolation](images, shifts)
    # Inside a traced graph the kernel is inlined and the enclosing compilation decides (a Keras model
    # compiled with jit_compile=True compiles it with XLA). A nested jit function there would be
    # re-compiled on every call once differentiated (ledger XLA-NESTED-JIT-RECOMPILE-001).
    return translate_kernel(images, shifts, interpolation)
