"""Forward model: far field against numpy.fft, photon statistics, bilinear patch cutting."""
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from ptycho import physics
from ptycho.objects import lines_object
from ptycho.probe import get_default_probe, normalize_probe


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("N", [16, 15])
def test_far_field_matches_numpy_fft_and_parseval(N):
    field = _complex(np.random.default_rng(0), (3, N, N))
    amp = physics.far_field_amplitude(field)
    for m in range(3):  # independent: unnormalised fft, shift by hand, divide by N
        ref = np.abs(np.roll(np.fft.fft2(field[m]), (N // 2, N // 2), axis=(0, 1))) / N
        np.testing.assert_allclose(amp[m], ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sum(amp ** 2, axis=(1, 2)), np.sum(np.abs(field) ** 2, axis=(1, 2)), rtol=1e-12)


def test_far_field_zero_frequency_and_plane_wave_at_expected_pixels():
    N = 16
    amp = physics.far_field_amplitude(np.full((N, N), 2.0 + 0j))
    assert amp[N // 2, N // 2] == pytest.approx(2.0 * N)
    assert np.sum(amp > 1e-9) == 1
    x = np.arange(N)
    wave = np.exp(2j * np.pi * 3 * x / N)[None, :] * np.exp(-2j * np.pi * 2 * x / N)[:, None]  # kx=3, ky=-2
    peak = np.unravel_index(np.argmax(physics.far_field_amplitude(wave)), (N, N))
    assert peak == (N // 2 - 2, N // 2 + 3)


def test_far_field_single_precision_in_single_precision_out():
    field = _complex(np.random.default_rng(0), (2, 8, 8)).astype(np.complex64)
    assert physics.far_field_amplitude(field).dtype == np.float32


def test_illuminate_multiplies_and_checks_shapes():
    rng = np.random.default_rng(0)
    probe, patches = _complex(rng, (8, 8)), _complex(rng, (4, 8, 8))
    np.testing.assert_array_equal(physics.illuminate(probe, patches), probe[None] * patches)
    with pytest.raises(ValueError, match="patches"):
        physics.illuminate(probe, patches[:, :7, :7])
    with pytest.raises(ValueError, match="probe"):
        physics.illuminate(patches, patches)


def test_intensity_scale_closed_form():
    amp = np.full((5, 8, 8), 0.5)
    assert physics.intensity_scale(amp, 1e4) == pytest.approx(np.sqrt(1e4 / (64 * 0.25)))
    with pytest.raises(ValueError, match="nphotons"):
        physics.intensity_scale(amp, 0.0)
    with pytest.raises(ValueError, match="amplitudes"):
        physics.intensity_scale(np.zeros((5, 8, 8)), 1e4)


def _noise_free_amplitudes(M=200, N=64):
    rng = np.random.default_rng(11)
    obj = lines_object(128, 100, rng)
    probe = normalize_probe(get_default_probe(N, default_probe_scale=0.7), 4.0)
    x, y = rng.uniform(15, 113, M), rng.uniform(15, 113, M)
    return physics.far_field_amplitude(physics.illuminate(probe, physics.object_patches(obj, x, y, N)))


@pytest.mark.parametrize("nphotons", [1e4, 1e9])
def test_poisson_counts_match_nphotons(nphotons):
    amp = _noise_free_amplitudes()
    M = amp.shape[0]
    s = physics.intensity_scale(amp, nphotons)
    counts, X = physics.poisson_sample(amp, s, np.random.default_rng(2))
    assert counts.dtype == np.int64 and counts.min() >= 0
    np.testing.assert_array_equal(X, (np.sqrt(counts) / s).astype(np.float32))
    assert X.dtype == np.float32
    totals = counts.sum(axis=(1, 2))
    expected = (s ** 2) * np.sum(amp.astype(np.float64) ** 2, axis=(1, 2))   # per-pattern Poisson mean
    assert expected.mean() == pytest.approx(nphotons, rel=1e-9)
    # mean of M independent Poisson totals: sd = sqrt(nphotons / M)
    assert abs(totals.mean() - nphotons) < 4 * np.sqrt(nphotons / M)
    assert np.all(np.abs(totals - expected) < 5 * np.sqrt(expected))
    # (s X)^2 recovers the integer counts
    np.testing.assert_allclose((s * X.astype(np.float64)) ** 2, counts, rtol=1e-6, atol=1e-6)


def test_poisson_sample_is_seeded_and_validates():
    amp = np.full((2, 8, 8), 0.3)
    a = physics.poisson_sample(amp, 10.0, np.random.default_rng(1))[0]
    b = physics.poisson_sample(amp, 10.0, np.random.default_rng(1))[0]
    c = physics.poisson_sample(amp, 10.0, np.random.default_rng(2))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="amplitudes"):
        physics.poisson_sample(-amp, 10.0, np.random.default_rng(1))
    with pytest.raises(ValueError, match="scale"):
        physics.poisson_sample(amp, 0.0, np.random.default_rng(1))
    with pytest.raises(ValueError, match="rng"):
        physics.poisson_sample(amp, 1.0, None)


def test_object_patches_match_map_coordinates_grid_constant():
    rng = np.random.default_rng(0)
    obj = _complex(rng, (23, 31)).astype(np.complex64)  # odd, non-square
    x, y, N = rng.uniform(-6, 36, 40), rng.uniform(-6, 28, 40), 12
    patches = physics.object_patches(obj, x, y, N)
    r, c = np.mgrid[:N, :N]
    for m in range(40):
        coords = [y[m] + r - N // 2, x[m] + c - N // 2]
        ref = (map_coordinates(obj.real, coords, order=1, mode="grid-constant", cval=0.0)
               + 1j * map_coordinates(obj.imag, coords, order=1, mode="grid-constant", cval=0.0))
        np.testing.assert_allclose(patches[m], ref, atol=2e-6)
    assert patches.dtype == np.complex64


def test_object_patches_integer_positions_are_exact_slices():
    obj = np.arange(40 * 50).reshape(40, 50).astype(np.complex64)
    patches = physics.object_patches(obj, np.array([20.0, 3.0]), np.array([15.0, 30.0]), 8)
    np.testing.assert_array_equal(patches[0], obj[11:19, 16:24])
    expected = np.zeros((8, 8), np.complex64)
    expected[:, 1:] = obj[26:34, 0:7]  # zero fill where x < 0
    np.testing.assert_array_equal(patches[1], expected)


def test_object_patches_match_tf_projective_transform():
    """Same operator as the model's translate (SPEC §2.1 oracle): out = in(x - dx, y - dy)."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    obj = rng.standard_normal((30, 26)).astype(np.float32)
    x, y, N = rng.uniform(-3, 28, 6), rng.uniform(-3, 32, 6), 16
    patches = physics.object_patches(obj, x, y, N)
    for m in range(6):
        dx, dy = -(x[m] - N // 2), -(y[m] - N // 2)
        ref = tf.raw_ops.ImageProjectiveTransformV3(
            images=obj[None, :, :, None], transforms=np.array([[1, 0, -dx, 0, 1, -dy, 0, 0]], np.float32),
            output_shape=np.array([N, N], np.int32), fill_value=0.0, interpolation="BILINEAR",
            fill_mode="CONSTANT")
        np.testing.assert_allclose(patches[m].real, ref.numpy()[0, :, :, 0], atol=1e-5)


def test_object_patches_validates():
    with pytest.raises(ValueError, match="obj"):
        physics.object_patches(np.ones(5), [1.0], [1.0], 4)
    with pytest.raises(ValueError, match="xcoords"):
        physics.object_patches(np.ones((5, 5)), [1.0, 2.0], [1.0], 4)
    with pytest.raises(ValueError, match="xcoords"):
        physics.object_patches(np.ones((5, 5)), [np.nan], [1.0], 4)


def test_real_exit_waves_give_centrosymmetric_patterns():
    """The default probe is real and the default lines object has zero phase, so each exit wave is real and
    its pattern obeys A(k) = A(-k): one pattern cannot tell the object patch from its point reflection
    about the probe centre (the twin image; ledger TWIN-IMAGE-001). A smooth object phase breaks the symmetry.
    """
    N = 64
    probe = normalize_probe(get_default_probe(N, fmt="np"), 4.0)
    x = np.array([40.3, 64.0, 87.6])
    y = np.array([52.1, 70.5, 61.0])

    def patterns(phase):
        obj = lines_object(128, 100, np.random.default_rng(3), phase=phase)
        return physics.far_field_amplitude(physics.illuminate(probe, physics.object_patches(obj, x, y, N)))

    def reflected(amps):  # index N/2 + k -> N/2 - k, i.e. i -> (N - i) mod N
        return np.roll(amps[:, ::-1, ::-1], 1, axis=(1, 2))

    real = patterns(phase=False)
    assert np.abs(real - reflected(real)).max() < 1e-5 * real.max()
    complex_ = patterns(phase=True)
    assert np.abs(complex_ - reflected(complex_)).max() > 1e-2 * complex_.max()


# --------------------------------------------------------------------------------------------------
# Validation messages, boundaries and the chunked patch loop (added for the mutation score, issue 13)

def _message(call):
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_shape_checks_name_the_argument_exactly():
    sq = np.ones((4, 4), np.complex64)
    assert _message(lambda: physics.illuminate(np.ones((4, 5)), sq)) == \
        "probe: last two axes must be (N, N), got shape (4, 5)"
    assert _message(lambda: physics.illuminate(sq, np.ones((2, 3, 4)))) == \
        "patches: last two axes must be (N, N), got shape (2, 3, 4)"
    assert _message(lambda: physics.illuminate(sq, np.ones(4))) == \
        "patches: last two axes must be (N, N), got shape (4,)"
    assert _message(lambda: physics.illuminate(sq, np.ones((3, 5, 5)))) == \
        "patches: last two axes (5, 5) do not match probe (4, 4)"
    assert _message(lambda: physics.far_field_amplitude(np.ones((2, 3, 4)))) == \
        "field: last two axes must be (N, N), got shape (2, 3, 4)"
    # patches with extra leading axes broadcast against the probe
    out = physics.illuminate(2 * sq, np.ones((2, 3, 4, 4), np.complex64))
    assert out.shape == (2, 3, 4, 4) and np.all(out == 2)


def test_intensity_scale_and_poisson_validation_messages_and_boundaries():
    amps = np.ones((2, 4, 4))
    assert _message(lambda: physics.intensity_scale(np.ones((4, 4)), 1.0)) == \
        "amplitudes: must be (M, N, N), got shape (4, 4)"
    for bad in (True, 0.0, -1.0, float("nan")):
        assert _message(lambda: physics.intensity_scale(amps, bad)) == \
            f"nphotons: must be a finite number > 0, got {bad!r}"
    assert physics.intensity_scale(amps, 0.5) == pytest.approx(np.sqrt(0.5 / 16))
    assert _message(lambda: physics.intensity_scale(np.zeros((2, 4, 4)), 1.0)) == \
        "amplitudes: mean total power must be finite and > 0, got 0.0"
    assert physics.intensity_scale(np.full((1, 2, 2), 0.25), 1.0) == pytest.approx(2.0)  # power 0.25 < 1 is valid
    # float32 amplitudes: the power is accumulated in float64
    big = np.full((1, 64, 64), 1 + 2 ** -12, np.float32)
    expected = np.sqrt(1e6 / (4096 * np.float64(big[0, 0, 0]) ** 2))
    assert physics.intensity_scale(big, 1e6) == pytest.approx(expected, rel=1e-14)

    rng = np.random.default_rng(0)
    assert _message(lambda: physics.poisson_sample(amps, 1.0, 5)) == \
        "rng: must be a numpy.random.Generator, got int"
    for bad in (True, 0.0, float("inf")):
        assert _message(lambda: physics.poisson_sample(amps, bad, rng)) == \
            f"scale: must be a finite number > 0, got {bad!r}"
    for bad in (amps + 0j, -amps, np.full((2, 4, 4), np.nan)):
        assert _message(lambda: physics.poisson_sample(bad, 1.0, rng)) == "amplitudes: must be real, finite and >= 0"
    counts, x = physics.poisson_sample(np.zeros((1, 2, 2)), 0.5, rng)  # zero amplitude and scale < 1 are valid
    assert counts.sum() == 0 and x.dtype == np.float32
    # λ = s²A² in float64: float32 amplitudes give the same draws as their float64 values
    a32 = rng.uniform(0, 30, (2, 8, 8)).astype(np.float32)
    c32, _ = physics.poisson_sample(a32, 3.3, np.random.default_rng(5))
    c64, _ = physics.poisson_sample(a32.astype(np.float64), 3.3, np.random.default_rng(5))
    np.testing.assert_array_equal(c32, c64)


def test_object_patches_validation_messages_and_boundaries():
    obj = np.ones((6, 6), np.complex64)
    assert _message(lambda: physics.object_patches(obj, [1.0], [np.nan], 2)) == "xcoords, ycoords: must be finite"
    for bad in (0, True, 2.0):
        assert _message(lambda: physics.object_patches(obj, [1.0], [1.0], bad)) == \
            f"N: must be a positive int, got {bad!r}"
    one = physics.object_patches(obj * 3, [2.0], [2.0], 1)  # N = 1 is a valid patch size
    assert one.shape == (1, 1, 1) and one[0, 0, 0] == 3


def test_object_patches_far_outside_the_object_are_zero():
    """Zero fill per tap, even for positions many patch widths outside the object (no wrap-around)."""
    obj = np.ones((10, 12), np.complex64)
    patches = physics.object_patches(obj, [-100.0, 5.0, 300.0], [5.0, -80.5, 200.0], 4)
    assert np.all(patches == 0)


def test_object_patches_chunks_cover_every_position():
    """More positions than one chunk (_PATCH_CHUNK): every patch equals the patch cut alone."""
    rng = np.random.default_rng(2)
    obj = (rng.standard_normal((20, 20)) + 1j * rng.standard_normal((20, 20))).astype(np.complex64)
    M = 2 * physics._PATCH_CHUNK + 37
    x, y = rng.uniform(0, 19, M), rng.uniform(0, 19, M)
    patches = physics.object_patches(obj, x, y, 4)
    for m in (0, physics._PATCH_CHUNK - 1, physics._PATCH_CHUNK, 2 * physics._PATCH_CHUNK + 1, M - 1):
        np.testing.assert_array_equal(patches[m], physics.object_patches(obj, x[m:m + 1], y[m:m + 1], 4)[0])
