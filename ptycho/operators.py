"""The physics of the model as linear operators with a forward (``fwd``) and an adjoint (``adj``).

In the style of tike: each operator is a small stateless class; its settings (sizes, interpolation,
translation path) go to the constructor, the arrays it acts on and the per-call parameters (shifts,
scan offsets, probe) to ``fwd``/``adj``. ``adj`` is the Hermitian adjoint Aᴴ, so for every x, y::

    <A x, y> = <x, Aᴴ y>            (<u, v> = Σ conj(u)·v)

Tensors are channel-last: *channel* ``(B, N, N, C)`` (B groups of C patterns), *flat* ``(B·C, N, N, 1)``,
positions ``(B, 1, 2, C)`` with axis 2 = ``[x, y]``. Shifts and offsets are in pixels (object pixels);
+dx moves content right, +dy down (SPEC §2.1). Arrays are complex64 in the model; every operator also
takes complex128 (and the translations float32/float64), which the property suite uses for exact checks.

    Translate      T_d x                          (B, H, W, C) -> (B, H, W, C)     adj: T_{-d}
    MergeGroup     M x = Σ_c T_{-o_c} pad_P(x_c)   (B, N, N, C) -> (B, P, P, 1)     adj: extract
    ExtractGroup   E y = crop_N(T_{+o_c} y)        (B, P, P, 1) -> (B, N, N, C)     adj: merge   (E = Mᴴ)
    Illuminate     x · P                          (B, N, N, C) -> (B, N, N, C)     adj: y · conj(P)
    FarField       F x = fftshift(fft2(x, ortho))  (B, H, W, C) -> (B, H, W, C)     adj: F⁻¹ (unitary)
    Compose(A, B)  A ∘ B                                                           adj: Bᴴ ∘ Aᴴ

``forward_model(N, C)`` = FarField ∘ Illuminate ∘ ExtractGroup: group canvas -> far-field wave of each
pattern; the model measures its modulus (``FarField.amplitude``). The model's ``MergeGroup`` *layer*
divides the merge by the merged window count (a positive, position-dependent diagonal weight D), so the
layer pair is D⁻¹M and Mᴴ: adjoint only up to that weight; the operators here are the unweighted M, Mᴴ.

The operators are built on the functions that do the work (``ptycho.tf_helper.translate``,
``reassemble_patches_position_real``, ``extract_patches_position``); NumPy twins in ``ptycho.physics``
(``illuminate``, ``far_field_amplitude``) are checked against them in tests/test_operators.py.
Importing this module runs no TF op.
"""
from __future__ import annotations

import tensorflow as tf

from ptycho.tf_helper import (
    extract_patches_position,
    flat_to_channel,
    reassemble_patches_position_real,
    translate,
)

__all__ = ["Operator", "Translate", "MergeGroup", "ExtractGroup", "Illuminate", "FarField", "Compose",
           "forward_model"]


class Operator:
    """A linear operator A: ``fwd(x, **params)`` = A x, ``adj(y, **params)`` = Aᴴ y.

    ``parameters`` names the keyword arguments ``fwd``/``adj`` take besides the array, in order
    (``Compose`` hands each operator its own).
    """

    parameters: tuple = ()

    def fwd(self, x, **params):
        raise NotImplementedError

    def adj(self, y, **params):
        raise NotImplementedError

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


class Translate(Operator):
    """Sub-pixel translation ``T_d`` of each image (SPEC §2.1), through ``tf_helper.translate``.

    images : (B, H, W, C) float32 | float64 | complex64 | complex128, any H, W (odd, non-square).
    shifts : (Bt, 2) ``[dx, dy]`` pixels, Bt == B, 1, or B/C' (image i uses shift i // C').
    interpolation : 'bilinear' | 'nearest';  use_xla : None -> ``should_use_xla()`` at each call.

    Adjoint: ``adj(y, shifts) = T_{-d} y``. For bilinear interpolation this *is* the transpose, not an
    approximation: a uniform shift d = k + f reads taps (j + k, j + k + 1) with weights (1 - f, f) and zero
    fill per tap, whose transpose reads (j - k - 1, j - k) with weights (f, 1 - f) = the taps of T_{-d}.
    The two differ only by rounding of the weights (f computed from -d vs from d): ~1e-16 relative in
    float64 on the XLA path; the non-XLA path (``ImageProjectiveTransformV3``) recomputes the fraction
    per pixel in float32, ~1e-7. The gradient of ``translate`` w.r.t. the images is the autodiff
    transpose of the kernel's gathers (scatter-adds), equal to ``adj`` to the same rounding.
    Exception: 'nearest' at exact half-integer shifts. Ties round away from zero (as the native op), so
    pixels on either side of 0 round in opposite directions and the map is not a uniform shift; there
    T_{-d} is *not* its transpose (tests/test_operators.py shows it). Elsewhere nearest = integer shift.
    """

    parameters = ("shifts",)

    def __init__(self, interpolation: str = "bilinear", use_xla=None):
        self.interpolation = interpolation
        self.use_xla = use_xla

    def fwd(self, images, shifts):
        return translate(images, shifts, self.interpolation, use_xla=self.use_xla)

    def adj(self, images, shifts):
        return translate(images, tf.negative(tf.convert_to_tensor(shifts)), self.interpolation,
                         use_xla=self.use_xla)


def _check_patches(name, patches, N, C):
    shape = tuple(patches.shape)
    if len(shape) != 4 or tuple(shape[1:]) != (N, N, C):
        raise ValueError(f"{name}: patches must have shape (B, {N}, {N}, {C}), got {shape}")


class MergeGroup(Operator):
    """Per-group merge M (SPEC §2.2): the C patches of a group onto one P×P canvas.

    fwd(patches (B, N, N, C), offsets (B, 1, 2, C)) -> canvas (B, P, P, 1):
        pad each patch to P×P, translate channel c by ``-offsets[..., c]`` pixels, sum over c
        (``tf_helper.reassemble_patches_position_real``, ``agg=True``).
    adj(canvas (B, P, P, 1), offsets (B, 1, 2, C)) -> patches (B, N, N, C):
        translate by ``+offsets[..., c]`` and centre-crop N×N (``tf_helper.extract_patches_position``,
        then ``flat_to_channel``). Exactly the adjoint, as ``Translate``'s: pad ↔ crop are transposes and
        T_{+o} is the transpose of T_{-o} (to weight rounding).
    Shapes: square patches, N % 4 == 0, P - N even >= 0 (``padded_size=None`` -> the SPEC default for
    C = gridsize², ``tf_helper.default_padded_size``; ``adj`` reads P from the canvas); no odd or non-square
    patches. float or complex (complex64 in the model).
    """

    parameters = ("offsets",)

    def __init__(self, N: int, C: int, padded_size: int | None = None, use_xla=None):
        self.N, self.C = int(N), int(C)
        self.padded_size = None if padded_size is None else int(padded_size)
        self.use_xla = use_xla

    def fwd(self, patches, offsets):
        patches = tf.convert_to_tensor(patches)
        _check_patches("MergeGroup.fwd", patches, self.N, self.C)
        return reassemble_patches_position_real(patches, offsets, agg=True, padded_size=self.padded_size,
                                                use_xla=self.use_xla)

    def adj(self, canvas, offsets):
        flat = extract_patches_position(canvas, offsets, self.N, use_xla=self.use_xla)
        return flat_to_channel(flat, self.C)


class ExtractGroup(Operator):
    """Extraction E = Mᴴ: canvas (B, P, P, 1) -> patches (B, N, N, C); adj = the merge. See ``MergeGroup``."""

    parameters = ("offsets",)

    def __init__(self, N: int, C: int, padded_size: int | None = None, use_xla=None):
        self._merge = MergeGroup(N, C, padded_size, use_xla)
        self.N, self.C, self.padded_size, self.use_xla = N, C, padded_size, use_xla

    def fwd(self, canvas, offsets):
        return self._merge.adj(canvas, offsets)

    def adj(self, patches, offsets):
        return self._merge.fwd(patches, offsets)


class Illuminate(Operator):
    """Exit waves: multiply object patches by the probe (``physics.illuminate`` in TF, channel-last).

    fwd(patches (B, N, N, C), probe) = patches · probe;  adj(y, probe) = y · conj(probe).
    probe : (N, N) or (N, N, 1) complex (one probe for every pattern and channel), or any array that
    broadcasts against the patches; cast to the patches' dtype. Any N×M (odd, non-square).
    """

    parameters = ("probe",)

    @staticmethod
    def _probe(probe, dtype):
        probe = tf.cast(tf.convert_to_tensor(probe), dtype)
        return probe[:, :, None] if probe.shape.rank == 2 else probe

    def fwd(self, patches, probe):
        patches = tf.convert_to_tensor(patches)
        return patches * self._probe(probe, patches.dtype)

    def adj(self, waves, probe):
        waves = tf.convert_to_tensor(waves)
        return waves * tf.math.conj(self._probe(probe, waves.dtype))


class FarField(Operator):
    """Far-field propagation F x = fftshift(fft2(x, norm='ortho')) over the image axes (SPEC §3).

    x : (B, H, W, C) complex64 | complex128, any H, W (odd, non-square); the FFT runs per (b, c).
    Zero frequency lands at index (H//2, W//2). Unitary (``norm='ortho'``: scaled by 1/sqrt(H·W)), so
    ``adj`` = F⁻¹ = ifft2(ifftshift(y), ortho) and ||F x|| = ||x||.
    ``amplitude(x)`` = |F x| in the real dtype (the model's ``FarFieldAmplitude`` layer; its NumPy twin
    is ``physics.far_field_amplitude``, axes last).
    """

    @staticmethod
    def _spatial_first(x):
        """(B, H, W, C) -> (B, C, H, W): fft2d transforms the last two axes."""
        return tf.transpose(x, [0, 3, 1, 2])

    @staticmethod
    def _channel_last(x):
        return tf.transpose(x, [0, 2, 3, 1])

    @staticmethod
    def _sqrt_size(x, dtype):
        """sqrt(H·W) in ``dtype`` (exactly N for square N×N images)."""
        shape = tf.shape(x)
        return tf.sqrt(tf.cast(shape[1] * shape[2], dtype))

    def _spectrum(self, x):
        """Unnormalised fftshift(fft2(x)) as (B, C, H, W)."""
        return tf.signal.fftshift(tf.signal.fft2d(self._spatial_first(x)), axes=(-2, -1))

    def fwd(self, x):
        x = tf.convert_to_tensor(x)
        scale = tf.cast(1.0 / self._sqrt_size(x, x.dtype.real_dtype), x.dtype)
        return self._channel_last(self._spectrum(x) * scale)

    def adj(self, y):
        y = tf.convert_to_tensor(y)
        field = tf.signal.ifft2d(tf.signal.ifftshift(self._spatial_first(y), axes=(-2, -1)))
        # ifft2d divides by H·W; 'ortho' wants 1/sqrt(H·W), so multiply by sqrt(H·W).
        return self._channel_last(field * tf.cast(self._sqrt_size(y, y.dtype.real_dtype), y.dtype))

    def amplitude(self, x):
        """|F x| : (B, H, W, C) real (float32 for complex64), √counts up to the intensity scale."""
        x = tf.convert_to_tensor(x)
        return self._channel_last(tf.abs(self._spectrum(x)) / self._sqrt_size(x, x.dtype.real_dtype))


class Compose(Operator):
    """``Compose(A, B, ...)`` = A ∘ B ∘ ...: ``fwd`` applies the last operator first, ``adj`` the adjoints
    in reverse order (Bᴴ ∘ Aᴴ applies Aᴴ first). Each operator receives only its own ``parameters``
    from the keywords given (e.g. ``offsets=``, ``probe=``, ``shifts=``).
    """

    def __init__(self, *operators: Operator):
        if not operators:
            raise ValueError("Compose: needs at least one operator")
        self.operators = tuple(operators)
        self.parameters = tuple(dict.fromkeys(p for op in operators for p in op.parameters))

    @staticmethod
    def _own(op, params):
        missing = [p for p in op.parameters if p not in params]
        if missing:
            raise ValueError(f"Compose: {type(op).__name__} needs {missing}, got {sorted(params)}")
        return {p: params[p] for p in op.parameters}

    def fwd(self, x, **params):
        for op in reversed(self.operators):
            x = op.fwd(x, **self._own(op, params))
        return x

    def adj(self, y, **params):
        for op in self.operators:
            y = op.adj(y, **self._own(op, params))
        return y


def forward_model(N: int, C: int, padded_size: int | None = None, use_xla=None) -> Compose:
    """FarField ∘ Illuminate ∘ ExtractGroup: group canvas (B, P, P, 1) complex -> far-field waves (B, N, N, C).

    ``fwd(canvas, offsets=(B, 1, 2, C), probe=(N, N[, 1]))``; the model's predicted amplitude is
    ``|fwd(...)|`` scaled by the intensity scale. ``adj`` back-propagates waves onto the canvas.
    """
    return Compose(FarField(), Illuminate(), ExtractGroup(N, C, padded_size, use_xla))
