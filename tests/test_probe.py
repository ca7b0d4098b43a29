"""Default probe and normalisation against the numbers of SPEC §3."""
import numpy as np
import pytest

from ptycho.probe import get_default_probe, normalize_probe, probe_mask


def _pixels_above_half_max(p):
    a = np.abs(np.asarray(p))
    return int(np.sum(a > a.max() / 2))


@pytest.mark.parametrize("scale, count", [(0.7, 376), (1.0, 188), (4.0, 12)])
def test_default_probe_pixels_above_half_max(scale, count):
    assert _pixels_above_half_max(get_default_probe(64, default_probe_scale=scale)) == count


def test_default_probe_radius_centre_and_floor():
    N = 64
    p = get_default_probe(N, default_probe_scale=0.7)
    assert p.shape == (N, N) and p.dtype == np.float64
    radius = np.sqrt(_pixels_above_half_max(p) / np.pi)
    assert radius / N == pytest.approx(0.17, abs=0.005)
    y, x = np.mgrid[:N, :N]
    assert np.sum(p * x) / p.sum() == pytest.approx((N - 1) / 2, abs=1e-9)
    assert np.sum(p * y) / p.sum() == pytest.approx((N - 1) / 2, abs=1e-9)
    np.testing.assert_allclose(p, p[::-1, :], atol=1e-15)
    np.testing.assert_allclose(p, p.T, atol=1e-15)
    assert p[0, 0] == pytest.approx(1e-9, rel=1e-6)  # blur of the disk is ~0 there: only the +1e-9 floor
    assert p.max() == pytest.approx(1.0, abs=1e-6)    # disk interior is far from the edge at sigma = 1


def test_default_probe_odd_size_is_symmetric_about_centre():
    p = get_default_probe(17, default_probe_scale=0.7)
    np.testing.assert_allclose(p, p[::-1, ::-1], atol=1e-15)
    assert np.unravel_index(np.argmax(p), p.shape) == (8, 8)


def test_default_probe_honours_legacy_cfg(legacy_cfg):
    legacy_cfg["default_probe_scale"] = 1.0
    assert _pixels_above_half_max(get_default_probe(64)) == 188
    legacy_cfg["default_probe_scale"] = 4.0
    assert _pixels_above_half_max(get_default_probe(64)) == 12
    assert _pixels_above_half_max(get_default_probe(64, default_probe_scale=0.7)) == 376  # explicit wins


def test_default_probe_tf_format_matches_numpy():
    p_tf = get_default_probe(32, fmt="tf", default_probe_scale=0.7)
    assert tuple(p_tf.shape) == (32, 32, 1) and p_tf.dtype.name == "complex64"
    np.testing.assert_allclose(p_tf.numpy()[..., 0], get_default_probe(32, default_probe_scale=0.7), rtol=1e-6)


@pytest.mark.parametrize("probe_scale", [4.0, 1.0, 2.5])
def test_normalize_probe_mean_inside_quarter_disk(probe_scale):
    N = 64
    rng = np.random.default_rng(1)
    raw = get_default_probe(N, default_probe_scale=0.7) * np.exp(1j * rng.uniform(-1, 1, (N, N)))
    p = normalize_probe(3.7 * raw, probe_scale)
    y, x = np.mgrid[:N, :N]
    mask = ((x - 31.5) ** 2 + (y - 31.5) ** 2) <= 16.0 ** 2  # radius N/4, built independently
    assert np.mean(np.abs(mask * p)) == pytest.approx(1 / probe_scale, rel=1e-12)
    np.testing.assert_allclose(p, normalize_probe(raw, probe_scale), rtol=1e-12)  # scale invariant
    np.testing.assert_array_equal(probe_mask(N), mask.astype(float))


def test_normalize_probe_keeps_tensor_type_and_shape():
    p_tf = normalize_probe(get_default_probe(32, fmt="tf", default_probe_scale=0.7), 4.0)
    assert tuple(p_tf.shape) == (32, 32, 1) and p_tf.dtype.name == "complex64"
    ref = normalize_probe(get_default_probe(32, default_probe_scale=0.7), 4.0)
    np.testing.assert_allclose(p_tf.numpy()[..., 0].real, ref, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"N": 0}, "N"), ({"N": 64, "fmt": "torch"}, "fmt"), ({"N": 64, "default_probe_scale": 0.0}, "default_probe_scale"),
    ({"N": 64, "default_probe_scale": float("nan")}, "default_probe_scale"),
])
def test_get_default_probe_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_default_probe(**kwargs)


def test_normalize_probe_rejects_bad_input():
    with pytest.raises(ValueError, match="probe_scale"):
        normalize_probe(np.ones((8, 8)), 0.0)
    with pytest.raises(ValueError, match="probe"):
        normalize_probe(np.ones((8, 8, 2)), 4.0)
    with pytest.raises(ValueError, match="probe"):
        normalize_probe(np.zeros((8, 8)), 4.0)


def test_defocus_probe_adds_the_quadratic_phase_and_keeps_the_modulus():
    from ptycho.probe import defocus_probe

    N, q = 64, 5.0
    p = normalize_probe(get_default_probe(N, default_probe_scale=0.7), 4.0)
    d = defocus_probe(p, q, default_probe_scale=0.7)
    assert d.dtype == np.complex64
    np.testing.assert_allclose(np.abs(d), p, rtol=1e-6)
    y, x = np.mgrid[:N, :N]
    r2 = (x - 31.5) ** 2 + (y - 31.5) ** 2
    radius = 0.12 * N / 0.7
    np.testing.assert_allclose(d, p * np.exp(1j * q * r2 / radius**2), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(defocus_probe(p, 0.0), p.astype(np.complex64))
    with pytest.raises(ValueError, match="defocus"):
        defocus_probe(p, float("inf"))
    with pytest.raises(ValueError, match="probe"):
        defocus_probe(np.ones((4, 5)), 1.0)
