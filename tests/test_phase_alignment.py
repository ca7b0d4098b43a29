"""Phase synchronisation of group patches before stitching (ptycho.phase_alignment, ledger PHASE-SYNC-001)."""
import numpy as np
import pytest

from ptycho.phase_alignment import align_group_phases
from ptycho.physics import object_patches
from ptycho.tf_helper import taper_window

N, M = 32, 16


def _patches_with_random_phases(seed, n=60, spread=12.0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:96, :96] / 96.0
    obj = (1.0 + 0.3 * np.sin(7 * x) * np.cos(5 * y)) * np.exp(1j * (0.8 * np.sin(6 * x + 4 * y) + 0.5 * x))
    centres = 48.0 + rng.uniform(-spread, spread, (n, 2))
    patches = object_patches(obj.astype(np.complex64), centres[:, 0], centres[:, 1], N)[..., None]
    phases = rng.uniform(-np.pi, np.pi, n)
    offsets = centres[:, None, :, None].astype(np.float32)
    return patches * np.exp(1j * phases)[:, None, None, None], phases, offsets


def _spread(angles):
    """Largest deviation of angles (rad) from their circular mean."""
    mean = np.angle(np.mean(np.exp(1j * angles)))
    return float(np.max(np.abs(np.angle(np.exp(1j * (angles - mean))))))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_constant_phases_of_overlapping_patches_are_undone_up_to_one_global_phase(seed):
    patches, phases, offsets = _patches_with_random_phases(seed)
    aligned, theta = align_group_phases(patches, offsets, M, taper_window(M) ** 2)
    assert _spread(phases) > 2.5  # the planted phases are spread over the circle
    assert _spread(phases + theta) < 0.05  # the same global phase, to bilinear-interpolation error
    np.testing.assert_allclose(aligned, patches * np.exp(1j * theta)[:, None, None, None], rtol=1e-5, atol=1e-6)
    assert abs(np.angle(np.mean(np.exp(1j * theta)))) < 1e-6  # the mean correction is zero


def test_patches_that_already_agree_are_left_alone():
    patches, phases, offsets = _patches_with_random_phases(2)
    agreeing = patches * np.exp(-1j * phases)[:, None, None, None]
    _, theta = align_group_phases(agreeing, offsets, M, taper_window(M))
    assert np.max(np.abs(theta)) < 0.05


def test_a_group_that_overlaps_no_other_keeps_its_phase():
    patches, _, offsets = _patches_with_random_phases(3, n=20, spread=6.0)
    offsets = offsets.copy()
    offsets[-1, 0, :, 0] += 200.0  # far from every other window
    _, theta = align_group_phases(patches, offsets, M)
    assert theta[-1] == 0.0  # and the rest are aligned among themselves
    assert np.count_nonzero(theta[:-1]) == len(theta) - 1


def test_patches_of_the_wrong_shape_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^patches: expected \(B, N, N, 1\), got \(4, 8, 8\)$"):
        align_group_phases(np.ones((4, 8, 8), np.complex64), np.zeros((4, 1, 2, 1), np.float32), 4)


def test_a_dense_scan_over_a_wide_field_is_aligned_without_a_slow_phase_twist():
    """Regression (PHASE-SYNC-002): 512 groups over a field six windows wide. The leading eigenvalue's gap is
    small there (λ2/λ1 ≈ 0.99), and the Lanczos solve on the stitch operator at tol 1e-4 left a twist across
    the field (largest deviation 0.60 rad here); the exact eigenvector undoes them."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[:128, :128] / 128.0
    obj = (1.0 + 0.3 * np.sin(9 * x) * np.cos(7 * y)) * np.exp(1j * (0.6 * np.sin(11 * x + 5 * y) + 0.4 * y))
    centres = rng.uniform(16.0, 112.0, (512, 2))
    patches = object_patches(obj.astype(np.complex64), centres[:, 0], centres[:, 1], N)[..., None]
    phases = rng.uniform(-np.pi, np.pi, 512)
    offsets = centres[:, None, :, None].astype(np.float32)
    _, theta = align_group_phases(patches * np.exp(1j * phases)[:, None, None, None], offsets, M,
                                  taper_window(M) ** 2)
    assert _spread(phases + theta) < 0.1
