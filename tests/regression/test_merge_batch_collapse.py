"""MERGE-BATCH-COLLAPSE-001: the per-group merge never sums over the batch, for any B*C."""
import numpy as np

from ptycho.tf_helper import reassemble_patches_position_real


def test_merge_is_per_group_for_large_batches():
    B, C, N = 20, 4, 8  # B*C = 80 >= 64
    rng = np.random.default_rng(0)
    imgs = (rng.standard_normal((B, N, N, C)) + 1j * rng.standard_normal((B, N, N, C))).astype(np.complex64)
    offsets = rng.uniform(-3, 3, (B, 1, 2, C)).astype(np.float32)
    batched = reassemble_patches_position_real(imgs, offsets, agg=True, padded_size=16).numpy()
    assert batched.shape == (B, 16, 16, 1)
    for b in range(B):
        alone = reassemble_patches_position_real(imgs[b:b + 1], offsets[b:b + 1], padded_size=16).numpy()
        np.testing.assert_allclose(batched[b], alone[0], atol=1e-5)
    assert np.abs(batched[0] - batched.sum(axis=0)).max() > 1.0  # groups really differ
