"""Evaluation metrics (SPEC §5) against closed forms: registration, phase offset/plane, PSNR, SSIM, FRC."""
import math

import numpy as np
import pytest
from scipy import ndimage

from ptycho import evaluation as ev
from ptycho.evaluation import resolution


def smooth_object(n, rng, sigma=3.0, phase_std=0.8):
    """(n, n) complex128, periodic: amplitude 1 ± 0.5·smooth noise, phase smooth noise (radians)."""
    amp = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    phase = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    return (1.0 + 0.5 * amp / amp.std()) * np.exp(1j * phase_std * phase / phase.std())


def fourier_shift(image, shift):
    """Exact band-limited periodic shift by (dy, dx) pixels (positive = towards larger index)."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift))


@pytest.fixture
def obj():
    return smooth_object(64, np.random.default_rng(0))


def test_identical_images_give_perfect_metrics(obj):
    """MAE 0, SSIM 1, PSNR inf (IEEE infinity, documented), FRC ≡ 1 and FRC50 at Nyquist."""
    result = ev.evaluate(obj, obj)
    assert set(result) == set(ev.RESULT_KEYS)
    assert result["shift"] == [0.0, 0.0]
    for part in ("amplitude", "phase"):
        assert result[f"{part}_mae"] == 0.0
        assert result[f"{part}_psnr"] == math.inf
        assert result[f"{part}_ssim"] == pytest.approx(1.0, abs=1e-12)
        assert result[f"{part}_frc50"] == 0.5
    freqs, curve = ev.frc(obj, obj)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)
    np.testing.assert_allclose(freqs, np.arange(33) / 64)


@pytest.mark.parametrize("refine", [False, True])
def test_align_recovers_known_subpixel_shift_periodic(obj, refine):
    """A (2.3, -1.7) px Fourier shift is found to 0.05 px (the registration returns the inverse)."""
    recon = fourier_shift(obj, (2.3, -1.7))
    dy, dx = ev.register(recon, obj, upsample_factor=20, refine=refine)
    assert abs(dy + 2.3) < 0.05 and abs(dx - 1.7) < 0.05


def test_align_recovers_shift_on_non_periodic_crop():
    """EVAL-REGISTRATION-001: on a crop (content enters and leaves the field of view) phase correlation
    alone is off by > 0.05 px; the interior least-squares refinement recovers the shift to 0.05 px."""
    errors = {False: [], True: []}
    for seed in range(3):
        big = smooth_object(128, np.random.default_rng(10 + seed))
        truth = big[32:96, 32:96]
        recon = fourier_shift(big, (2.3, -1.7))[32:96, 32:96]
        for refine in (False, True):
            dy, dx = ev.register(recon, truth, refine=refine)
            errors[refine].append(max(abs(dy + 2.3), abs(dx - 1.7)))
    assert max(errors[True]) < 0.05, errors
    assert max(errors[False]) > 0.05, errors  # the bias the refinement exists for


def test_evaluate_near_perfect_after_shift_offset_and_scale(obj):
    """Shift + global phase offset + amplitude scale are all undone: metrics near perfect."""
    recon = 1.3 * np.exp(1j * 0.7) * fourier_shift(obj, (2.3, -1.7))
    result = ev.evaluate(recon, obj, crop=4)
    np.testing.assert_allclose(result["shift"], [-2.3, 1.7], atol=0.05)
    assert result["amplitude_mae"] < 5e-3 and result["phase_mae"] < 5e-3
    assert result["amplitude_ssim"] > 0.999 and result["phase_ssim"] > 0.999
    assert result["amplitude_psnr"] > 50 and result["phase_psnr"] > 50
    assert result["amplitude_frc50"] == 0.5 and result["phase_frc50"] == 0.5
    assert all(isinstance(result[k], float) for k in ev.METRIC_KEYS)


def test_align_border_covers_the_shift(obj):
    """The border dropped is max(crop, ceil(max|shift|)) and the truth is cropped identically."""
    recon = fourier_shift(obj, (5.2, 0.4))
    aligned = ev.align(recon, obj, crop=2)
    assert aligned.border == 6
    assert aligned.recon.shape == aligned.truth.shape == (52, 52)
    np.testing.assert_array_equal(aligned.truth, obj[6:-6, 6:-6])


@pytest.mark.parametrize("offset", [0.7, -2.9, 3.1])
def test_global_phase_offset_is_removed(offset):
    """recon = truth·e^{iα}: align applies -α (mod 2π) and the phase MAE is ~0, also when the truth
    phase sits at ±π (wrapping must not count as error)."""
    rng = np.random.default_rng(1)
    truth = smooth_object(48, rng, phase_std=0.3) * np.exp(1j * np.pi)   # phase around ±π
    aligned = ev.align(truth * np.exp(1j * offset), truth)
    assert ev.wrap_phase(aligned.phase_offset + offset) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(aligned.recon, truth, atol=1e-9)
    result = ev.evaluate(truth * np.exp(1j * offset), truth)
    assert result["phase_mae"] < 1e-9 and result["phase_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_phase_plane_is_removed_on_request(obj):
    ramp = np.exp(1j * (0.05 * np.arange(64)[:, None] - 0.03 * np.arange(64)[None, :] + 1.0))
    aligned = ev.align(obj * ramp, obj, remove_phase_plane=True)
    np.testing.assert_allclose(aligned.phase_plane, (-0.05, 0.03), atol=1e-9)
    np.testing.assert_allclose(aligned.recon, obj, atol=1e-8)
    without = ev.evaluate(obj * ramp, obj)
    assert without["phase_mae"] > 0.3   # a ramp of 0.05 rad/px is an error unless removed
    with_plane = ev.evaluate(obj * ramp, obj, remove_phase_plane=True)
    assert with_plane["phase_mae"] < 1e-8


def test_amplitude_scaled_to_truth_mean(obj):
    aligned = ev.align(0.25 * obj, obj)
    assert np.mean(np.abs(aligned.recon)) == pytest.approx(np.mean(np.abs(obj)), rel=1e-12)
    np.testing.assert_allclose(aligned.recon, obj, atol=1e-12)


def test_psnr_matches_closed_form():
    """PSNR = 10·log10(range(truth)² / mse), peak = the truth's data range (not the test image's)."""
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.5, 2.5, size=(64, 64))           # range ≈ 2
    sigma = 0.05
    recon = truth + rng.normal(0.0, sigma, size=truth.shape)
    peak = truth.max() - truth.min()
    mse = np.mean((recon - truth) ** 2)
    assert ev.psnr(recon, truth) == pytest.approx(10 * np.log10(peak ** 2 / mse), rel=1e-12)
    assert ev.psnr(recon, truth) == pytest.approx(10 * np.log10(4.0 / sigma ** 2), abs=0.15)
    assert ev.psnr(recon, truth, data_range=1.0) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-12)
    assert ev.psnr(3 * recon, truth) < ev.psnr(recon, truth)   # peak does not follow the test image


def test_ssim_is_one_for_identity_and_falls_with_noise():
    rng = np.random.default_rng(3)
    truth = np.abs(smooth_object(48, rng))
    noise = rng.standard_normal(truth.shape)
    values = [ev.ssim(truth + s * noise, truth) for s in (0.0, 0.01, 0.05, 0.2)]
    assert values[0] == pytest.approx(1.0, abs=1e-12)
    assert all(a > b for a, b in zip(values, values[1:])), values
    # luminance-only change on a constant patch: closed form (2μν + C1)/(μ² + ν² + C1)
    c1 = (0.01 * 1.0) ** 2
    flat = np.full((32, 32), 0.5)
    assert ev.ssim(flat + 0.1, flat, data_range=1.0) == pytest.approx(
        (2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), rel=1e-9)


def test_frc_of_independent_noise_is_low():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 128, 128))
    freqs, curve = ev.frc(a, b)
    assert np.mean(np.abs(curve[1:])) < 0.1
    assert ev.frc50(a, b) < 1.0 / 128   # crosses 0.5 before the first ring


def test_frc50_of_band_limited_pair_crosses_at_design_frequency():
    """a, b = common signal with power H(k) = 1/(1 + (k/k0)^8) + independent white noise of power 1/2
    each: FRC(k) = H/(H + 1/2), which crosses 0.5 exactly at k0 = 0.2 cycles/pixel."""
    n, k0 = 128, 0.2
    rng = np.random.default_rng(5)
    ky, kx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    transfer = np.sqrt(1.0 / (1.0 + (np.hypot(ky, kx) / k0) ** 8))
    common = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * transfer).real
    a = common + np.sqrt(0.5) * rng.standard_normal((n, n))
    b = common + np.sqrt(0.5) * rng.standard_normal((n, n))
    assert ev.frc50(a, b) == pytest.approx(k0, abs=0.015)
    freqs, curve = ev.frc(a, b)
    power = 1.0 / (1.0 + (freqs / k0) ** 8)
    expected = power / (power + 0.5)
    # per-ring sampling error ~ (1 - FRC²)/sqrt(independent pixels in the ring), ~0.1 at ring 10
    rings = slice(4, None)
    assert np.mean(np.abs(curve[rings] - expected[rings])) < 0.06


def test_frc50_conventions():
    """Linear interpolation between rings; 0.5 (Nyquist) if never below 0.5; non-square → central square."""
    rng = np.random.default_rng(6)
    img = rng.standard_normal((40, 64))
    freqs, curve = ev.frc(img, img)
    assert freqs[0] == 0.0 and freqs[-1] == 0.5 and len(freqs) == 21
    np.testing.assert_allclose(curve, 1.0)
    assert ev.frc50(img, img) == 0.5
    other = img.copy()
    other[:, :12] = 0.0   # outside the central 40×40 square: ignored
    other[:, -12:] = 0.0
    assert ev.frc50(img, other) == 0.5


def test_frc50_interpolates_linearly(monkeypatch):
    freqs = np.arange(5) / 8
    curve = np.array([1.0, 0.9, 0.7, 0.3, 0.1])
    monkeypatch.setattr(resolution, "frc", lambda a, b: (freqs, curve))  # frc50's own module
    assert ev.frc50(None, None) == pytest.approx(2 / 8 + 0.5 * (1 / 8))
    curve = np.array([0.4, 0.9, 0.7, 0.6, 0.6])
    assert ev.frc50(None, None) == 0.0


@pytest.mark.parametrize(
    "recon, truth, match",
    [
        (np.ones((32, 32, 1)), np.ones((32, 32)), r"recon: must be 2-D"),
        (np.ones((32, 32)), np.ones((32, 30)), r"recon and truth: shapes differ"),
        (np.ones((32, 32)), np.full((32, 32), np.nan), r"truth: contains 1024 non-finite"),
        (np.ones((0, 32)), np.ones((0, 32)), r"recon: is empty"),
        (np.ones((8, 8)), np.ones((8, 8)), r"recon: must be at least 16x16"),
        (np.array([["a"] * 16] * 16), np.ones((16, 16)), r"recon: must be a numeric array"),
    ],
)
def test_evaluate_rejects_bad_inputs(recon, truth, match):
    with pytest.raises(ValueError, match=match):
        ev.evaluate(recon, truth)


def test_bad_parameters_are_rejected(obj):
    with pytest.raises(ValueError, match=r"crop: border 30 px leaves"):
        ev.evaluate(obj, obj, crop=30)
    with pytest.raises(ValueError, match=r"crop: must be an int"):
        ev.evaluate(obj, obj, crop=-1)
    with pytest.raises(ValueError, match=r"upsample_factor: must be an int >= 1"):
        ev.align(obj, obj, upsample_factor=0)
    with pytest.raises(ValueError, match=r"data_range: the truth is constant"):
        ev.psnr(np.ones((16, 16)), np.ones((16, 16)))
    with pytest.raises(ValueError, match=r"a: must be real"):
        ev.psnr(obj, np.abs(obj))


def test_implausible_registration_shift_is_rejected_not_fatal():
    """A reconstruction unrelated to the truth gives metrics (poor ones), never a crash or a wild shift."""
    rng = np.random.default_rng(11)
    truth = (1.0 + rng.random((84, 88))).astype(np.complex64)
    recon = np.zeros_like(truth)
    recon[5:20, 60:80] = 1.0  # one bright block far from anything in the truth
    result = ev.evaluate(recon, truth, max_shift=2.0)
    assert result["registration_rejected"] is True and result["shift"] == [0.0, 0.0]
    assert result["amplitude_ssim"] < 0.2
    good = ev.evaluate(truth, truth)
    assert good["registration_rejected"] is False and good["amplitude_ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("offset", [0.0, np.pi, -2.0])
def test_phase_metrics_are_not_applicable_for_a_flat_truth_phase(obj, offset):
    """EVAL-PHASE-NA-001: with a constant truth phase (also at ±π, where the phase wraps) the phase metrics
    are None, not SSIM 1.0 / PSNR > 100 dB; the amplitude metrics are unchanged; JSON writes null."""
    import json

    truth = np.abs(obj) * np.exp(1j * offset)
    recon = np.abs(obj) * np.exp(1j * 1e-6 * np.random.default_rng(3).standard_normal(obj.shape))
    assert ev.phase_spread(truth) < 1e-9
    result = ev.evaluate(recon, truth)
    assert set(result) == set(ev.RESULT_KEYS)
    for key in ev.PHASE_METRIC_KEYS:
        assert result[key] is None, key
    assert result["amplitude_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert json.loads(json.dumps(result))["phase_ssim"] is None


def test_phase_metrics_apply_to_a_phase_above_the_flatness_threshold(obj):
    """A truth phase of 0.01 rad spread (10× the 1 mrad threshold) keeps numeric phase metrics; a spread
    weighted by amplitude ignores the phase of pixels without amplitude."""
    truth = np.abs(obj) * np.exp(1j * 0.01 * np.real(obj - obj.mean()) / np.std(np.real(obj)))
    assert ev.phase_spread(truth) > ev.FLAT_PHASE_RAD
    result = ev.evaluate(truth, truth)
    assert all(isinstance(result[k], float) for k in ev.PHASE_METRIC_KEYS)
    dark = np.ones((32, 32), complex)
    dark[:, :4] = 0.0 * np.exp(1j * 3.0)   # no amplitude: its phase is meaningless
    dark[:, 4:8] = 1e-6 * np.exp(1j * 3.0)
    assert ev.phase_spread(dark) < 1e-5


# ------------------------------------------------------------------- resolution (EVAL-FRC-RESOLUTION-001)


def _lines_amplitude():
    from ptycho.objects import lines_object

    return np.abs(lines_object(128, 100, np.random.default_rng(0))).astype(np.float64)


def test_frc_cutoff_falls_with_blur_where_frc50_stays_at_the_cap():
    """A 64 px crop of the lines object, blurred by σ px plus 1 % noise: the apodised FRC's 1/7 crossing falls
    (and the half-period grows) with every step of blur, while the unapodised FRC50 — the crop's edges
    correlate at every frequency — reports 0.5, its cap, up to σ = 2 px (the issue's "FRC50 = 0.5 for
    visibly blurred reconstructions")."""
    amplitude = _lines_amplitude()
    truth = amplitude[20:84, 20:84]
    rng = np.random.default_rng(1)
    cutoffs, periods = [], []
    for sigma in (0.5, 1.0, 2.0, 3.0):
        blurred = ndimage.gaussian_filter(amplitude, sigma)[20:84, 20:84]
        recon = blurred + 0.01 * rng.standard_normal(truth.shape)
        cutoffs.append(ev.frc_cutoff(recon, truth))
        periods.append(ev.half_period(cutoffs[-1]))
        if sigma <= 2.0:
            assert ev.frc50(recon, truth) == 0.5, sigma
    assert all(c is not None for c in cutoffs) and cutoffs == sorted(cutoffs, reverse=True), cutoffs
    assert cutoffs[0] > 0.35 and cutoffs[-1] < 0.2, cutoffs
    assert periods == sorted(periods) and periods[-1] == pytest.approx(0.5 / cutoffs[-1])
    result = ev.evaluate(ndimage.gaussian_filter(amplitude, 2.0)[20:84, 20:84]
                         + 0.01 * rng.standard_normal(truth.shape), truth)
    assert 0.1 < result["amplitude_frc_cutoff"] < 0.3 and result["amplitude_frc50"] == 0.5
    assert result["amplitude_half_period"] == pytest.approx(0.5 / result["amplitude_frc_cutoff"])


def test_frc_cutoff_is_none_when_never_reached_and_takes_the_half_bit_threshold():
    """Identical images: no crossing up to Nyquist -> None ("not reached"), never 0.5; half-bit works the same
    way; independent noise crosses within the first rings; a bad threshold is refused."""
    truth = _lines_amplitude()[20:84, 20:84]
    assert ev.frc_cutoff(truth, truth) is None and ev.half_period(None) is None
    assert ev.frc_cutoff(truth, truth, threshold="half-bit") is None
    result = ev.evaluate(truth.astype(complex), truth.astype(complex))
    assert result["amplitude_frc_cutoff"] is None and result["amplitude_half_period"] is None
    a, b = np.random.default_rng(2).standard_normal((2, 64, 64))
    assert ev.frc_cutoff(a, b) < 0.15 and ev.frc_cutoff(a, b, threshold="half-bit") < 0.15
    threshold = ev.half_bit_threshold(64)
    # ring 1 holds the 8 frequencies (±1, 0), (0, ±1), (±1, ±1); far out the threshold nears 0.2071/1.2071
    assert threshold.shape == (33,) and threshold[1] == pytest.approx((0.2071 + 1.9102 / math.sqrt(8))
                                                                      / (1.2071 + 0.9102 / math.sqrt(8)))
    assert threshold[1] > threshold[16] > 0.2071 / 1.2071 and np.all(threshold[1:] > 0.2071 / 1.2071)
    with pytest.raises(ValueError, match="threshold"):
        ev.frc_cutoff(a, b, threshold="1/7")
    with pytest.raises(ValueError, match="threshold"):
        ev.frc_cutoff(a, b, threshold=1.5)


def test_apodised_frc_ignores_the_mean(obj):
    """The window-weighted mean is removed before the window: an offset changes nothing; ring 0 reads 0."""
    _, apodised = ev.frc(np.abs(obj), np.abs(obj) + 5.0, apodize=True)
    assert apodised[0] == 0.0
    np.testing.assert_allclose(apodised[1:], 1.0, atol=1e-9)


# ------------------------------------------------------------- truth mismatch (EVAL-TRUTH-MISMATCH-001)


def test_agreement_warnings_flag_another_object_not_the_right_one(obj):
    """The right truth (shifted by 0.5 px) gives no warning; another object of the same size gives one line that
    names the shift found and the correlation."""
    assert ev.agreement_warnings(ev.evaluate(fourier_shift(obj, (0.5, -0.3)), obj)) == []
    other = smooth_object(64, np.random.default_rng(7))
    result = ev.evaluate(other, obj)
    assert result["correlation"] < ev.MIN_CORRELATION
    (warning,) = ev.agreement_warnings(result)
    assert warning.startswith("the reconstruction does not match the truth") and "\n" not in warning
    assert f"r = {result['correlation']:.2f}" in warning and "another object" in warning
