"""The scanned region (ptycho.scan_region): crop a stitch and the truth to it, and evaluate there."""
import numpy as np
import pytest

from ptycho import scan_region
from ptycho.reconstruction import Reconstruction


def _truth():
    """A (40, 40) complex64 object with structure in amplitude and phase."""
    y, x = np.mgrid[:40, :40]
    amp = 1.0 + 0.5 * np.sin(x / 3.0) * np.cos(y / 5.0)
    return (amp * np.exp(0.3j * np.sin(y / 4.0))).astype(np.complex64)


def test_crop_to_scan_integer_origin_is_exact():
    truth = _truth()
    recon = truth[3:37, 2:38]  # stitch with origin x0=2, y0=3
    centroids = np.array([[10.0, 12.0], [25.5, 30.2], [17.0, 9.0]])  # x in [10, 25.5], y in [9, 30.2]
    rec, tru, origin = scan_region.crop_to_scan(recon, 2.0, 3.0, truth, centroids)
    assert origin == (10.0, 9.0)
    assert rec.shape == (22, 16)  # rows y = 9..30, cols x = 10..25
    np.testing.assert_array_equal(rec, truth[9:31, 10:26])
    np.testing.assert_allclose(tru, truth[9:31, 10:26], rtol=1e-6)
    assert scan_region.crop_slices(2.0, 3.0, origin, rec.shape) == (slice(6, 28), slice(8, 24))
    np.testing.assert_array_equal(recon[scan_region.crop_slices(2.0, 3.0, origin, rec.shape)], rec)


def test_crop_to_scan_subpixel_origin_samples_truth_bilinearly():
    y, x = np.mgrid[:40, :40].astype(np.float64)
    truth = (x + 2j * y).astype(np.complex64)  # bilinear interpolation is exact on a linear ramp
    recon = np.zeros((30, 30), np.complex64)
    rec, tru, origin = scan_region.crop_to_scan(recon, 4.25, 5.5, truth, np.array([[6.0, 8.0], [28.0, 30.0]]))
    assert origin == (6.25, 8.5) and tru.shape == (22, 22)
    rows, cols = np.mgrid[:tru.shape[0], :tru.shape[1]]
    np.testing.assert_allclose(tru, (origin[0] + cols) + 2j * (origin[1] + rows), rtol=1e-6)


def test_crop_to_scan_rejects_tiny_region():
    with pytest.raises(ValueError, match=r"scanned region 16x3 px is smaller than 16 px.*--n-test"):
        scan_region.crop_to_scan(np.zeros((30, 30)), 0.0, 0.0, np.zeros((30, 30)),
                                 np.array([[10.0, 10.0], [12.0, 25.0]]))


def test_evaluate_on_scan_perfect_stitch_and_coverage():
    """The stitch equal to the truth on its grid: SSIM 1, MAE 0; coverage fraction recorded and cropped."""
    truth = _truth()
    coverage = np.ones((34, 36), bool)
    coverage[6:8, 8:10] = False  # 4 uncovered pixels inside the scanned box
    rec = Reconstruction(obj=truth[3:37, 2:38], x0=2.0, y0=3.0, coverage=coverage,
                         centroids=np.array([[10.0, 12.0], [30.0, 30.2], [17.0, 9.0]]))
    scored = scan_region.evaluate_on_scan(rec, truth)
    assert scored.origin == (10.0, 9.0) and scored.reconstruction.shape == (22, 21)
    assert scored.coverage.shape == (22, 21) and scored.coverage.sum() == 22 * 21 - 4
    assert scored.metrics["crop_coverage"] == pytest.approx(1 - 4 / (22 * 21))
    assert scored.metrics["amplitude_ssim"] == pytest.approx(1.0) and scored.metrics["amplitude_mae"] == 0.0
    with pytest.raises(ValueError, match="rec.centroids"):
        scan_region.evaluate_on_scan(Reconstruction(obj=truth, x0=0.0, y0=0.0, coverage=coverage), truth)
