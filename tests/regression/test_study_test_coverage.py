"""STUDY-TEST-DENSITY-001: the study's test scan is dense enough that the stitch covers its whole region.

With 128 test positions the central 20×20 windows left holes in the evaluated region; a hole is a zero
in the reconstruction, so SSIM and PSNR measured the scan's gaps as much as the network (the same trained
high-dose model: SSIM 0.640 at 128 test positions, 0.794 at 512).
"""
import numpy as np
import pytest

from ptycho.scan_region import crop_slices, crop_to_scan
from ptycho.simulate import simulate_dataset
from ptycho.studies import dose
from ptycho.tf_helper import reassemble_position


def stitched_coverage(config: dose.StudyConfig) -> float:
    """Covered fraction of the region the study evaluates, for ``config``'s test scan (seed 0)."""
    test = simulate_dataset(config.simulation_config("high_nll", "test"), obj=dose.make_ground_truth(config))
    offsets = np.asarray(test.coords_offsets, np.float32)
    ones = np.ones((test.n_groups, config.N, config.N, 1), np.complex64)
    counts = np.abs(np.asarray(reassemble_position(ones, offsets, M=config.stitch_M))[..., 0])
    side = counts.shape[0]
    centroids = offsets.reshape(-1, 2).astype(np.float64)
    x0, y0 = centroids.mean(axis=0) - side // 2
    crop, _, origin = crop_to_scan(counts, x0, y0, dose.make_ground_truth(config), centroids)
    rows, cols = crop_slices(x0, y0, origin, crop.shape)
    return float(np.mean(counts[rows, cols] > 0.5))


@pytest.mark.parametrize("preset", sorted(dose.PRESETS))
def test_every_preset_test_scan_covers_the_evaluated_region(tmp_path, preset):
    assert stitched_coverage(dose.StudyConfig(output_dir=tmp_path, preset=preset)) == 1.0


def test_the_old_sparse_test_scan_left_holes(tmp_path):
    """The oracle can fail: 128 test positions (the presets before this finding) leave gaps."""
    assert stitched_coverage(dose.StudyConfig(output_dir=tmp_path, n_test=128)) < 0.995
