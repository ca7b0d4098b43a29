"""Synthetic objects: documented recipe, ranges, seeding."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ptycho.objects import PHASE_MAX, draw_lines, grf_object, lines_object


def test_draw_lines_rasterises_exact_pixels():
    canvas = draw_lines((6, 7), np.array([[1, 0, 1, 6], [0, 0, 5, 5], [5, 6, 5, 6]]))
    expected = np.zeros((6, 7))
    expected[1, :] = 1
    expected[np.arange(6), np.arange(6)] = 1
    expected[5, 6] = 1
    np.testing.assert_array_equal(canvas, expected)


def test_lines_object_follows_documented_recipe():
    size, nlines = 40, 12
    obj = lines_object(size, nlines, np.random.default_rng(7))
    ends = np.random.default_rng(7).integers(0, 2 * size, size=(nlines, 4))
    img = sum(w * gaussian_filter(draw_lines((2 * size, 2 * size), ends), s) for s, w in ((1, 1), (5, 2), (10, 5)))
    crop = img[size // 2: size // 2 + size, size // 2: size // 2 + size]
    expected = 0.5 + (crop - crop.min()) / (crop.max() - crop.min())
    assert obj.shape == (size, size) and obj.dtype == np.complex64
    np.testing.assert_allclose(obj.real, expected, rtol=1e-6)
    np.testing.assert_array_equal(obj.imag, 0)


def test_lines_object_amplitude_range_and_texture():
    amp = np.abs(lines_object(128, 100, np.random.default_rng(0)))
    assert amp.min() == pytest.approx(0.5, abs=1e-6) and amp.max() == pytest.approx(1.5, abs=1e-6)
    assert amp.std() > 0.1                      # visible lines, not a flat field
    assert np.mean(amp > 1.4) < 0.02            # not saturated: few pixels near the maximum
    assert np.mean(amp < 0.6) < 0.05


def test_lines_object_phase_option():
    plain = lines_object(64, 30, np.random.default_rng(3))
    phased = lines_object(64, 30, np.random.default_rng(3), phase=True)
    np.testing.assert_allclose(np.abs(phased), np.abs(plain), rtol=1e-6)  # phase drawn after amplitude
    phi = np.angle(phased)
    assert phi.min() == pytest.approx(-PHASE_MAX, abs=1e-5) and phi.max() == pytest.approx(PHASE_MAX, abs=1e-5)
    assert np.max(np.abs(np.diff(phi, axis=0))) < 0.1 and np.max(np.abs(np.diff(phi, axis=1))) < 0.1  # smooth


@pytest.mark.parametrize("make", [lambda r: lines_object(48, 20, r), lambda r: grf_object(48, r)])
def test_objects_are_seeded(make):
    a, b, c = make(np.random.default_rng(5)), make(np.random.default_rng(5)), make(np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_grf_object_range_and_correlation_length():
    amp = np.abs(grf_object(128, np.random.default_rng(0), correlation_length=4.0)).astype(np.float64)
    assert amp.min() == pytest.approx(0.5, abs=1e-6) and amp.max() == pytest.approx(1.5, abs=1e-6)
    z = amp - amp.mean()
    corr = lambda lag: np.mean(z * np.roll(z, lag, axis=1)) / np.mean(z * z)  # noqa: E731
    assert corr(1) > 0.9          # filtered white noise: exp(-lag²/(4 sigma²)) = exp(-1/64) ≈ 0.98
    assert abs(corr(32)) < 0.2    # far beyond the correlation length


@pytest.mark.parametrize("call, match", [
    (lambda: lines_object(0, 10, np.random.default_rng()), "size"),
    (lambda: lines_object(16, 0, np.random.default_rng()), "nlines"),
    (lambda: lines_object(16, 10, None), "rng"),
    (lambda: lines_object(16, 10, 42), "rng"),
    (lambda: grf_object(16, np.random.default_rng(), correlation_length=-1.0), "correlation_length"),
])
def test_objects_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_complex_grf_has_structure_in_amplitude_and_phase():
    from ptycho.objects import COMPLEX_GRF_PHASE_MAX, complex_grf_object

    obj = complex_grf_object(64, np.random.default_rng(0))
    assert obj.shape == (64, 64) and obj.dtype == np.complex64
    amp, phase = np.abs(obj), np.angle(obj)
    assert amp.min() == pytest.approx(0.5, abs=1e-5) and amp.max() == pytest.approx(1.5, abs=1e-5)
    assert phase.min() == pytest.approx(-COMPLEX_GRF_PHASE_MAX, abs=1e-5)
    assert phase.max() == pytest.approx(COMPLEX_GRF_PHASE_MAX, abs=1e-5)
    # Same correlation length in both: neighbouring pixels correlate alike, and the two fields are independent.
    corr = lambda f: np.corrcoef(f[:, :-4].ravel(), f[:, 4:].ravel())[0, 1]  # noqa: E731
    assert abs(corr(amp) - corr(phase)) < 0.2
    assert abs(np.corrcoef(amp.ravel(), phase.ravel())[0, 1]) < 0.3
    np.testing.assert_array_equal(obj, complex_grf_object(64, np.random.default_rng(0)))


def test_complex_grf_rejects_a_bad_phase_range():
    from ptycho.objects import complex_grf_object

    with pytest.raises(ValueError, match="phase_max"):
        complex_grf_object(16, np.random.default_rng(0), phase_max=4.0)


def test_simulation_config_offers_the_complex_grf():
    from ptycho.config import SimulationConfig
    from ptycho.simulate import simulate_dataset

    data = simulate_dataset(SimulationConfig(N=32, object_size=64, buffer=16, n_positions=8, object_kind="grf_complex"))
    assert np.ptp(np.angle(data.obj)) > 1.0
