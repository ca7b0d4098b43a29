"""Regressions of the reference translate paths (docs/findings.md: TF-NON-XLA-SHAPE-001, TRANSLATE-SIGN-001)."""
import numpy as np

from ptycho.projective_warp_xla import translate_xla
from ptycho.tf_helper import translate, translate_core


def test_non_xla_path_repeats_shifts_per_group():
    """Flat images (B*C, N, N, 1) with shifts (B, 2): image i moves by shift i // C, never i % B."""
    B, C, N = 2, 4, 10
    rng = np.random.default_rng(0)
    images = rng.standard_normal((B * C, N, N, 1)).astype(np.float32)
    shifts = np.array([[2.0, 0.0], [0.0, -3.0]], np.float32)
    out = translate_core(images, shifts).numpy()
    for i in range(B * C):
        expected = translate_xla(images[i:i + 1], shifts[i // C][None], use_jit=False).numpy()[0]
        tiled = translate_xla(images[i:i + 1], shifts[i % B][None], use_jit=False).numpy()[0]
        np.testing.assert_allclose(out[i], expected, atol=1e-6)
        if i // C != i % B:
            assert np.abs(out[i] - tiled).max() > 0.1, f"image {i} got the tiled shift"


def test_non_xla_path_sign_matches_xla():
    """+dx moves content right and +dy down on both paths; the switch changes nothing."""
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 4, 4, 0] = 1.0
    shifts = np.array([[2.5, -1.25]], np.float32)
    core = translate_core(image, shifts).numpy()
    xla = translate_xla(image, shifts).numpy()
    np.testing.assert_allclose(core, xla, atol=1e-6)
    np.testing.assert_allclose(translate(image, shifts, use_xla=False).numpy(),
                               translate(image, shifts, use_xla=True).numpy(), atol=1e-6)
    # bilinear mass lands at x = 4 + 2.5 (cols 6, 7), y = 4 - 1.25 (rows 2, 3)
    np.testing.assert_allclose(core[0, 2:4, 6:8, 0], [[0.125, 0.125], [0.375, 0.375]], atol=1e-6)
    assert core.sum() == np.float32(1.0) or abs(core.sum() - 1) < 1e-6
