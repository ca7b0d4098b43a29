"""The model of SPEC §4: architecture, per-model weights, batch independence, physics, layers."""
import numpy as np
import pytest

import keras

from ptycho import device
from ptycho import model as ptycho_model
from ptycho.model import create_model_with_gridsize, get_intensity_scale, get_probe


def _inputs(rng, B, N, C, neighbours=0):
    """Random model inputs; ``neighbours`` = K adds a gridsize-1 model's scan neighbours (RETRIEVAL-NEIGHBOURS-001)."""
    d = rng.uniform(0, 4, (B, N, N, C)).astype(np.float32)
    p = rng.uniform(-4, 4, (B, 1, 2, C)).astype(np.float32)
    p -= p.mean(axis=-1, keepdims=True)
    inputs = {"diffraction": d, "positions": p}
    if neighbours:
        inputs["neighbour_diffraction"] = rng.uniform(0, 4, (B, N, N, neighbours)).astype(np.float32)
        inputs["neighbour_positions"] = rng.uniform(-4, 4, (B, 1, 2, neighbours)).astype(np.float32)
    return inputs


@pytest.mark.parametrize("gridsize, reference", [(1, 2_252_026), (2, 2_257_000)])
def test_trainable_parameter_count_matches_reference(gridsize, reference):
    ae, d2o = create_model_with_gridsize(gridsize, 64, intensity_scale=10.0, architecture="reference",
                                         input_normalization="none")
    count = sum(int(np.prod(w.shape)) for w in ae.trainable_weights)
    assert count == reference
    assert [layer.name for layer in ae.layers][:3] == ["diffraction", "intensity_scale", "enc0_conv_a"]
    assert sum(int(np.prod(w.shape)) for w in d2o.trainable_weights) == reference  # shared encoder/decoders


@pytest.mark.parametrize("gridsize, expected", [(1, 2_400_634), (2, 2_409_064)])
def test_default_unet_parameter_count(gridsize, expected):
    """The default ('unet') network: the reference's layers plus wider decoder convs after each skip."""
    ae, _ = create_model_with_gridsize(gridsize, 64, intensity_scale=10.0)
    assert sum(int(np.prod(w.shape)) for w in ae.trainable_weights) == expected
    names = {layer.name for layer in ae.layers}
    assert {"input_features", "input_standardizer", "dec_amp0_skip", "dec_phase1_skip"} <= names


def test_filters_follow_spec():
    assert ptycho_model.encoder_filters(64) == (64, 128, 256)
    assert ptycho_model.encoder_filters(128) == (32, 64, 128, 256)
    assert ptycho_model.decoder_filters(64) == (128, 64)
    assert ptycho_model.decoder_filters(128) == (256, 128, 64)


def test_probe_and_scale_are_tracked_weights():
    probe = np.full((64, 64), 0.3 + 0.1j, np.complex64)
    ae, d2o = create_model_with_gridsize(1, 64, intensity_scale=12.5, probe=probe)
    names = {w.path for w in ae.weights}
    assert {"probe/probe_real", "probe/probe_imag", "intensity_scale/log_intensity_scale"} <= names
    assert "intensity_scale/log_intensity_scale" in {w.path for w in d2o.weights}
    assert {w.path for w in ae.non_trainable_weights} >= {"probe/probe_real", "intensity_scale/log_intensity_scale"}
    np.testing.assert_allclose(get_probe(ae), probe)
    assert get_intensity_scale(d2o) == pytest.approx(12.5, rel=1e-6)

    # The weights are what the graph uses: doubling the probe doubles the predicted amplitude.
    inputs = _inputs(np.random.default_rng(0), 2, 64, 1, neighbours=3)
    amp = ae.predict(inputs, verbose=0)[1]
    ae.get_layer("probe").set_probe(2 * probe)
    np.testing.assert_allclose(ae.predict(inputs, verbose=0)[1], 2 * amp, rtol=1e-4, atol=1e-4)


def test_probe_and_scale_can_be_made_trainable():
    ae, _ = create_model_with_gridsize(1, 64, intensity_scale=3.0, probe_trainable=True,
                                       intensity_scale_trainable=True)
    trainable = {w.path for w in ae.trainable_weights}
    assert {"probe/probe_real", "intensity_scale/log_intensity_scale"} <= trainable


def test_intensity_scale_is_per_model():
    """Two models built in one process keep their own s; the output amplitude scales with it."""
    rng = np.random.default_rng(1)
    ae_a, _ = create_model_with_gridsize(2, 64, intensity_scale=100.0, seed=7)
    ae_b, _ = create_model_with_gridsize(2, 32, intensity_scale=3.0, seed=7)
    ae_c, _ = create_model_with_gridsize(2, 64, intensity_scale=25.0, seed=7)
    assert get_intensity_scale(ae_a) == pytest.approx(100.0, rel=1e-6)
    assert get_intensity_scale(ae_b) == pytest.approx(3.0, rel=1e-6)
    assert get_intensity_scale(ae_c) == pytest.approx(25.0, rel=1e-6)

    inputs = _inputs(rng, 2, 64, 4)
    x_over_s = inputs["diffraction"] / 100.0
    amp_a = ae_a.predict(inputs, verbose=0)[1]
    amp_c = ae_c.predict({"diffraction": x_over_s * 25.0, "positions": inputs["positions"]}, verbose=0)[1]
    # Same network input d/s, same weights: amplitudes differ exactly by the ratio of the scales.
    # float32 round-off of d/s (d/100 vs d'/25) propagates through ~20 layers: compare on the signal's
    # own scale (max amplitude), not per element near zero (ledger FLOAT-TOLERANCE-001).
    np.testing.assert_allclose(amp_a, amp_c * 4.0, rtol=1e-4, atol=1e-3 * float(np.abs(amp_a).max()))


def test_predict_is_batch_independent():
    """gridsize 2, 40 groups (B·C = 160 >= 64): batch_size 16, 40 and one-at-a-time agree to 1e-5."""
    rng = np.random.default_rng(2)
    ae, d2o = create_model_with_gridsize(2, 64, intensity_scale=30.0, seed=1)
    inputs = _inputs(rng, 40, 64, 4)
    out16 = d2o.predict(inputs, batch_size=16, verbose=0)
    out40 = d2o.predict(inputs, batch_size=40, verbose=0)
    np.testing.assert_allclose(out16, out40, atol=1e-5)
    for i in (0, 17, 39):
        alone = d2o.predict({k: v[i:i + 1] for k, v in inputs.items()}, batch_size=1, verbose=0)
        np.testing.assert_allclose(alone[0], out40[i], atol=1e-5)
    amp_all = ae.predict(inputs, batch_size=40, verbose=0)[1]
    amp_one = ae.predict({k: v[5:6] for k, v in inputs.items()}, batch_size=1, verbose=0)[1]
    np.testing.assert_allclose(amp_one[0], amp_all[5], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [16, 32])
def test_train_on_batch_works(batch):
    rng = np.random.default_rng(batch)
    ae, _ = create_model_with_gridsize(2, 64, intensity_scale=30.0, seed=2)
    inputs = _inputs(rng, batch, 64, 4)
    targets = [None, inputs["diffraction"], inputs["diffraction"] ** 2]
    before = {w.path: w.numpy().copy() for w in ae.trainable_weights}
    loss = ae.train_on_batch(inputs, targets, return_dict=True)["loss"]
    assert np.isfinite(loss)
    changed = {w.path for w in ae.trainable_weights if not np.array_equal(before[w.path], w.numpy())}
    # The default network's logits start at zero (GROUP-RETRIEVAL-001): the first step moves them (and
    # nothing behind them, whose gradient passes through the zero kernels).
    assert {"dec_amp_logits/kernel", "dec_phase_logits/kernel"} <= changed, sorted(changed)


def test_object_output_is_zero_outside_the_union_of_windows():
    """gridsize 1: the object is nonzero only on the central N/2 window."""
    ae, d2o = create_model_with_gridsize(1, 64, intensity_scale=10.0)
    obj = d2o.predict(_inputs(np.random.default_rng(3), 2, 64, 1, neighbours=3), verbose=0)
    assert obj.dtype == np.complex64 and obj.shape == (2, 64, 64, 1)
    assert np.abs(obj[:, :16]).max() == 0 and np.abs(obj[:, 48:]).max() == 0
    assert np.abs(obj[:, 17:47, 17:47]).min() > 0
    # amplitude_max·sigmoid bounds the amplitude; the window divides by (1 + 1e-3).
    assert np.abs(obj).max() < 2.0


def test_layer_values():
    """Closed forms for the simple layers."""
    x = np.full((1, 4, 4, 1), 6.0, np.float32)
    scaler = ptycho_model.IntensityScale(3.0)
    np.testing.assert_allclose(scaler(x), 18.0, rtol=1e-6)
    np.testing.assert_allclose(scaler(x, inverse=True), 2.0, rtol=1e-6)
    patches = ptycho_model.ComplexPatches(8, amplitude_max=2.0)(np.zeros((1, 4, 4, 1), np.float32),
                                                                np.zeros((1, 4, 4, 1), np.float32))
    expected = np.zeros((1, 8, 8, 1), np.complex64)
    expected[:, 2:6, 2:6] = 1.0  # 2·sigmoid(0)·exp(iπ·tanh 0)
    np.testing.assert_allclose(patches, expected, atol=1e-7)
    field = np.random.default_rng(0).normal(size=(2, 8, 8, 3)) + 1j * np.random.default_rng(1).normal(size=(2, 8, 8, 3))
    amp = ptycho_model.FarFieldAmplitude()(field.astype(np.complex64))
    ref = np.abs(np.fft.fftshift(np.fft.fft2(field, axes=(1, 2), norm="ortho"), axes=(1, 2)))
    np.testing.assert_allclose(amp, ref, rtol=1e-4, atol=1e-5)


def test_model_physics_reproduces_simulator_amplitudes():
    """Extract + probe + far field of the model, fed the true object, equals the simulator (1e-4).

    The group canvas is cut from the true object at an integer centroid, so the only interpolation is the
    model's own sub-pixel extract at fractional offsets; a sign or x/y error in it would fail here.
    """
    from ptycho.objects import lines_object
    from ptycho.physics import far_field_amplitude, illuminate, object_patches
    from ptycho.probe import get_default_probe, normalize_probe

    N, P, scale = 64, 78, 40.0
    obj = lines_object(128, 100, np.random.default_rng(5))
    probe = np.asarray(normalize_probe(get_default_probe(N, fmt="np"), 4.0)).astype(np.complex64)
    centroid = np.array([64.0, 60.0])
    rel = np.array([[1.3, -2.7], [-0.6, 2.2], [2.1, 0.4], [-2.8, 0.1]])
    rel -= rel.mean(axis=0)
    pos = centroid + rel  # (C, 2) [x, y], not symmetric about the centroid
    simulated = far_field_amplitude(illuminate(probe, object_patches(obj, pos[:, 0], pos[:, 1], N)))

    ae, _ = create_model_with_gridsize(2, N, probe=probe, intensity_scale=scale)
    canvas = object_patches(obj, centroid[:1], centroid[1:], P)[..., None]  # (1, P, P, 1)
    positions = (-rel.T)[None, None].astype(np.float32)  # coords_relative (1, 1, 2, C)
    patches = ae.get_layer("extract_group")(canvas, positions)
    amplitude = ae.get_layer("intensity_scale")(ae.get_layer("far_field")(ae.get_layer("probe")(patches)))
    model_amp = np.moveaxis(np.asarray(amplitude)[0], -1, 0) / scale
    peak = simulated.max()
    np.testing.assert_allclose(model_amp, simulated, atol=1e-4 * peak)
    assert np.abs(model_amp - simulated).max() < 1e-4 * peak


@pytest.mark.parametrize("architecture", ["unet", "retrieval"])
def test_layers_read_no_global_state_and_xla_switch_keeps_semantics(legacy_cfg, monkeypatch, architecture):
    """The XLA switch is read once at build time; both paths predict the same object. The two translation paths
    differ by float32 rounding of interpolation weights (~1e-7); the retrieval's modulus projection ψ·X/|ψ| is
    ill-conditioned where |ψ| is near 0, so its passes grow that to ~1e-3 at weakly lit pixels: for it the
    whole object must agree to 1e-4 in relative norm."""
    from ptycho.config import SimulationConfig
    from ptycho.inputs import model_inputs
    from ptycho.simulate import simulate_dataset

    data = simulate_dataset(SimulationConfig(N=64, gridsize=2, n_positions=8, seed=4))
    inputs = model_inputs(data, data.intensity_scale)
    monkeypatch.delenv("USE_XLA_TRANSLATE", raising=False)
    legacy_cfg["use_xla_translate"] = False
    build = dict(probe=data.probe, intensity_scale=data.intensity_scale, seed=5, jit_compile=False,
                 architecture=architecture)
    _, d2o_core = create_model_with_gridsize(2, 64, **build)
    legacy_cfg["use_xla_translate"] = True
    ae_xla, d2o_xla = create_model_with_gridsize(2, 64, **build)
    assert d2o_core.get_layer("merge_group").get_config()["use_xla"] is False
    assert ae_xla.get_layer("extract_group").get_config()["use_xla"] is True
    # A value should_use_xla() rejects: any layer that consulted it while predicting would raise.
    legacy_cfg["use_xla_translate"] = "not-a-bool"
    out_core = d2o_core.predict(inputs, verbose=0)
    out_xla = d2o_xla.predict(inputs, verbose=0)
    if architecture == "unet":
        np.testing.assert_allclose(out_core, out_xla, atol=1e-5)
    else:
        assert np.linalg.norm(out_core - out_xla) / np.linalg.norm(out_xla) < 1e-4


def test_real_model_archive_round_trip(tmp_path):
    """wts.h5.zip of a real model: identical predictions, per-model scale and probe restored, shared weights."""
    from ptycho.persistence import load_model, save_model

    probe = np.full((32, 32), 0.4 - 0.2j, np.complex64)
    ae, d2o = create_model_with_gridsize(2, 32, probe=probe, intensity_scale=17.0, seed=9, jit_compile=False)
    inputs = _inputs(np.random.default_rng(6), 3, 32, 4)
    expected = ae.predict(inputs, verbose=0)
    path = tmp_path / "wts.h5.zip"
    save_model(str(path), ae, d2o, metadata={"N": 32, "gridsize": 2, "intensity_scale": 17.0})
    ae2, d2o2, manifest = load_model(str(path))
    for got, want in zip(ae2.predict(inputs, verbose=0), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d2o2.predict(inputs, verbose=0), expected[0], rtol=1e-6, atol=1e-6)
    assert get_intensity_scale(ae2) == pytest.approx(17.0, rel=1e-6)
    np.testing.assert_array_equal(get_probe(ae2), probe)
    assert manifest["metadata"] == {"N": 32, "gridsize": 2, "intensity_scale": 17.0}
    # diffraction_to_obj shares the autoencoder's weights after loading, as after building.
    ae2.get_layer("dec_amp_logits").kernel.assign(ae2.get_layer("dec_amp_logits").kernel + 0.5)
    assert not np.allclose(d2o2.predict(inputs, verbose=0), expected[0])


def test_model_forward_layers_and_nll_identify_the_object():
    """Control for training: a free object fitted through the model's own forward layers recovers the truth.

    Adam on the object pixels (no network), Poisson NLL on counts, the model's extract, probe, far field
    and scale layers: 200 steps reach amplitude correlation > 0.99 with the simulated object and cut the flat start's
    error twenty-fold. So the data,
    the physics and the loss identify the object; slow PINN training is the network's optimisation
    (ledger TRAINING-BUDGET-001), not a wrong forward model or target.
    """
    import tensorflow as tf

    from ptycho.config import SimulationConfig
    from ptycho.losses import poisson_nll
    from ptycho.simulate import simulate_dataset

    data = simulate_dataset(SimulationConfig(N=64, gridsize=1, n_positions=256, nphotons=1e9, seed=0))
    size, pad, batch = data.obj.shape[0], 32, 64
    ae, _ = create_model_with_gridsize(1, 64, probe=data.probe, intensity_scale=data.intensity_scale)
    extract = ptycho_model.ExtractGroup(64, batch)
    probe, far_field, scale = (ae.get_layer(n) for n in ("probe", "far_field", "intensity_scale"))
    centre = (size + 2 * pad) // 2 - pad  # object pixel at the centre of the padded canvas
    offsets = (centre - np.stack([data.xcoords, data.ycoords])).astype(np.float32)  # (2, M) = coords_relative
    counts = ((data.diffraction * data.intensity_scale) ** 2).transpose(1, 2, 0)  # (N, N, M)
    logits = tf.Variable(tf.zeros((2, size, size)))
    optimizer = keras.optimizers.Adam(1e-2)

    def estimate():
        amplitude = 2.0 * tf.sigmoid(logits[0])
        phase = np.pi * tf.tanh(logits[1])
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    @tf.function(jit_compile=True)
    def step(idx):
        with tf.GradientTape() as tape:
            canvas = tf.pad(estimate(), [[pad, pad], [pad, pad]])[None, :, :, None]
            patches = extract(canvas, tf.gather(offsets, idx, axis=1)[None, None])
            predicted = tf.square(scale(far_field(probe(patches))))
            loss = poisson_nll(tf.gather(counts, idx, axis=2)[None], predicted)
        optimizer.apply_gradients([(tape.gradient(loss, logits), logits)])

    rows = slice(int(data.ycoords.min()), int(data.ycoords.max()) + 1)
    cols = slice(int(data.xcoords.min()), int(data.xcoords.max()) + 1)
    truth = np.abs(data.obj[rows, cols]).ravel()

    def amplitude():
        return np.abs(estimate().numpy()[rows, cols]).ravel()

    flat_error = np.abs(amplitude() - truth).mean()
    assert flat_error > 0.1  # the flat start (amplitude 1) is far from the lines object
    rng = np.random.default_rng(0)
    for _ in range(200):
        step(tf.constant(rng.choice(data.n_positions, batch, replace=False)))
    assert np.corrcoef(amplitude(), truth)[0, 1] > 0.99
    assert np.abs(amplitude() - truth).mean() < 0.05 * flat_error


def test_nll_gradient_at_a_twin_symmetric_estimate_is_twin_symmetric():
    """Why a network that first fits a near-uniform object is slow to leave it (ledger TWIN-IMAGE-001).

    With the real default probe, centred at ((N-1)/2, (N-1)/2), one pattern's loss is unchanged by the twin
    map T(o) = conj(o reflected about the probe centre). So at a T-symmetric estimate — a uniform object is
    one — the gradient of the Poisson NLL through the model's probe, far-field and scale layers is T-symmetric
    as well, whatever (asymmetric) object made the counts: gradient steps cannot prefer the object to its twin.
    At an asymmetric estimate the gradient is asymmetric (the control that lets this test fail).
    """
    import tensorflow as tf

    from ptycho.losses import poisson_nll
    from ptycho.objects import lines_object
    from ptycho.probe import get_default_probe, normalize_probe

    N = 64
    probe_array = normalize_probe(get_default_probe(N, fmt="np"), 4.0)
    ae, _ = create_model_with_gridsize(1, N, probe=probe_array, intensity_scale=30.0)
    probe, far_field, scale = (ae.get_layer(n) for n in ("probe", "far_field", "intensity_scale"))

    def twin(o):  # (N, N) complex: conj of the point reflection about pixel ((N-1)/2, (N-1)/2)
        return np.conj(o[::-1, ::-1])

    def intensity(o):
        return tf.square(scale(far_field(probe(tf.reshape(o, (1, N, N, 1))))))

    truth = lines_object(N, 20, np.random.default_rng(1), phase=True)
    counts = intensity(tf.constant(truth)).numpy()
    assert np.abs(truth - twin(truth)).max() > 0.1  # the data come from an object that is not its own twin

    def gradient(estimate):
        estimate = tf.Variable(tf.constant(estimate, tf.complex64))
        with tf.GradientTape() as tape:
            loss = poisson_nll(counts, intensity(estimate))
        return tape.gradient(loss, estimate).numpy()

    rng = np.random.default_rng(2)
    asymmetric = (1.0 + 0.3 * rng.standard_normal((N, N)) + 0.3j * rng.standard_normal((N, N))).astype(np.complex64)
    symmetric = 0.5 * (asymmetric + twin(asymmetric))
    for estimate in (symmetric, np.ones((N, N), np.complex64)):
        g = gradient(estimate)
        assert np.abs(g).max() > 0  # the estimate is not a minimum
        assert np.abs(g - twin(g)).max() < 1e-4 * np.abs(g).max()
    g = gradient(asymmetric)
    assert np.abs(g - twin(g)).max() > 0.1 * np.abs(g).max()


def test_holographic_estimate_of_a_uniform_object_is_the_probe_power_ratio():
    """Closed form: for O = a (uniform), X = a|F[P]| back-propagates to ψ = a·P, so the estimate is
    a·|P|² / (|P|² + 0.05·max|P|²) (real); the amplitudes pass through as kind 0 (ledger HOLOGRAPHIC-INPUT-001)."""
    from ptycho.model import HolographicEstimate
    from ptycho.probe import defocus_probe, get_default_probe, normalize_probe

    N = 32
    probe = defocus_probe(normalize_probe(get_default_probe(N, default_probe_scale=0.7), 4.0), 5.0)
    far = np.abs(np.fft.fftshift(np.fft.fft2(probe, norm="ortho")))
    layer = HolographicEstimate(N)
    layer.build((None, N, N, 2))
    layer.set_probe(probe)
    out = layer(np.stack([far, 2.0 * far], axis=-1)[None].astype(np.float32)).numpy()[0]
    power = np.abs(probe) ** 2
    expected = power / (power + 0.05 * power.max())
    assert out.shape == (N, N, 6)
    np.testing.assert_allclose(out[..., 0], far, rtol=1e-6)
    np.testing.assert_allclose(out[..., 2], expected, atol=2e-4)
    np.testing.assert_allclose(out[..., 3], 2.0 * expected, atol=4e-4)
    np.testing.assert_allclose(out[..., 4:], 0.0, atol=4e-4)


def test_standardizer_is_identity_until_adapted_then_standardizes_each_pixel_and_kind():
    from ptycho.model import DiffractionStandardizer

    rng = np.random.default_rng(3)
    N, C, K = 4, 3, 2
    layer = DiffractionStandardizer(N, kinds=K)
    layer.build((None, N, N, K * C))
    kinds = [rng.normal(5.0, 2.0, size=(40, N, N, C)), rng.normal(-1.0, 0.1, size=(40, N, N, C))]
    feats = np.concatenate(kinds, axis=-1).astype(np.float32)  # kind-major channels
    np.testing.assert_array_equal(layer(feats).numpy(), feats)
    assert not layer.is_adapted
    layer.adapt(feats)
    assert layer.is_adapted
    for k, values in enumerate(kinds):
        pooled = np.moveaxis(values, -1, 1).reshape(-1, N, N)  # every channel of kind k is a sample
        np.testing.assert_allclose(layer.mean.numpy()[..., k], pooled.mean(axis=0), rtol=1e-5)
        std = pooled.std(axis=0)
        np.testing.assert_allclose(layer.std.numpy()[..., k], std + 0.01 * std.mean(), rtol=1e-5)
    out = layer(feats).numpy()
    assert abs(out.mean()) < 1e-5 and 0.95 < out.std() < 1.0
    with pytest.raises(ValueError, match="features"):
        layer.adapt(np.ones((5, N, N, 5), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        layer.adapt(np.full((5, N, N, K * C), np.nan, np.float32))


def test_jit_compile_default_is_xla_only_where_a_gpu_is_visible(monkeypatch):
    """XLA-PER-DEVICE-001: None means XLA on a GPU machine, not on a CPU-only one; explicit values win."""
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [] if kind == "GPU" else ["cpu"])
    assert ptycho_model.resolve_jit_compile(None) is False
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"])
    assert ptycho_model.resolve_jit_compile(None) is True
    assert ptycho_model.resolve_jit_compile(False) is False and ptycho_model.resolve_jit_compile(True) is True
    with pytest.raises(ValueError, match="jit_compile: must be True, False or None"):
        ptycho_model.resolve_jit_compile("auto")


def test_factory_compiles_both_models_with_the_resolved_jit_setting(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [] if kind == "GPU" else ["cpu"])
    ae, d2o = create_model_with_gridsize(1, 32, intensity_scale=10.0, architecture="reference",
                                         input_normalization="none")
    assert ae.jit_compile is False and d2o.jit_compile is False
    ae, d2o = create_model_with_gridsize(1, 32, intensity_scale=10.0, architecture="reference",
                                         input_normalization="none", jit_compile=True)
    assert ae.jit_compile is True and d2o.jit_compile is True


def test_conv_dtype_default_is_bfloat16_only_where_the_device_computes_it_natively(monkeypatch):
    """BF16-CONV-001: None means bfloat16 on a GPU of compute capability >= 8 or a oneDNN CPU with AVX-512 BF16 or
    AMX, float32 everywhere else (where bfloat16 is emulated, it is slower); explicit values win."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    cpu_only = lambda kind=None: [] if kind == "GPU" else ["cpu"]  # noqa: E731
    monkeypatch.setattr(tf.config, "list_physical_devices", cpu_only)
    monkeypatch.setattr(_pywrap_util_port, "IsMklEnabled", lambda: True)
    for flags, expected in [({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                            ({"avx512f", "avx2", "fma"}, "float32"), (set(), "float32")]:
        monkeypatch.setattr(device, "_cpu_flags", lambda flags=flags: frozenset(flags))
        assert ptycho_model.resolve_conv_dtype(None) == expected, flags
    monkeypatch.setattr(_pywrap_util_port, "IsMklEnabled", lambda: False)  # TF's own kernels: no native bf16
    assert ptycho_model.resolve_conv_dtype(None) == "float32"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu:0"])
    for details, expected in [({"compute_capability": (8, 0)}, "bfloat16"), ({"compute_capability": (9, 0)}, "bfloat16"),
                              ({"compute_capability": (7, 5)}, "float32"), ({}, "float32")]:
        monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device, d=details: d)
        assert ptycho_model.resolve_conv_dtype(None) == expected, details
    assert ptycho_model.resolve_conv_dtype("float32") == "float32"
    assert ptycho_model.resolve_conv_dtype("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="conv_dtype: must be 'float32', 'bfloat16' or None"):
        ptycho_model.resolve_conv_dtype("float16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert device._cpu_flags(str(cpuinfo)) == frozenset({"fpu", "avx512f", "avx512_bf16"})
    assert device._cpu_flags(str(tmp_path / "absent")) == frozenset()


def test_bfloat16_conv_stack_keeps_logits_and_physics_float32_and_round_trips(tmp_path):
    """bfloat16 is the compute dtype of the conv blocks only: weights, logits and the physics stay float32 /
    complex64; outputs differ from float32 by bfloat16 round-off (not zero, not more); an archive keeps it."""
    from ptycho.persistence import load_model, save_model

    # 'unet': its random logits make the outputs depend on the conv stack (the default's start at zero)
    build = dict(gridsize=2, N=32, intensity_scale=17.0, n_filters_scale=1, seed=5, jit_compile=False,
                 architecture="unet")
    ae, d2o = create_model_with_gridsize(conv_dtype="bfloat16", **build)
    ae32, _ = create_model_with_gridsize(conv_dtype="float32", **build)
    policies = {layer.name: layer.dtype_policy.name for layer in ae.layers}
    blocks = [name for name in policies if name.startswith(("enc", "dec")) and not name.endswith("_logits")]
    assert len(blocks) > 10 and {policies[name] for name in blocks} == {"mixed_bfloat16"}
    assert {name for name, policy in policies.items() if policy != "float32"} == set(blocks)
    assert ptycho_model.get_conv_dtype(ae) == "bfloat16" and ptycho_model.get_conv_dtype(ae32) == "float32"
    assert all(w.dtype == "float32" for w in ae.weights)
    inputs = _inputs(np.random.default_rng(6), 3, 32, 4)
    outputs, outputs32 = ae.predict(inputs, verbose=0), ae32.predict(inputs, verbose=0)
    assert [o.dtype for o in outputs] == [np.complex64, np.float32, np.float32]
    for got, want in zip(outputs, outputs32):
        difference = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert 1e-5 < difference < 3e-2, difference
    path = tmp_path / "wts.h5.zip"
    save_model(str(path), ae, d2o, metadata={"N": 32, "gridsize": 2, "intensity_scale": 17.0})
    ae2, _, _ = load_model(str(path))
    assert ptycho_model.get_conv_dtype(ae2) == "bfloat16"
    for got, want in zip(ae2.predict(inputs, verbose=0), outputs):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("architecture", ["retrieval", "unet"])
def test_conv_stack_is_the_models_convolutions_alone(architecture):
    """PEER-BENCH-001: the benchmark's cost model has the model's conv layers, weights and outputs exactly."""
    from ptycho.config import ModelConfig

    ae, _ = create_model_with_gridsize(2, 32, intensity_scale=10.0, n_filters_scale=1, seed=4, jit_compile=False,
                                       architecture=architecture)
    stack = ptycho_model.build_conv_stack(ModelConfig(N=32, gridsize=2, n_filters_scale=1,
                                                      architecture=architecture), seed=4)
    weighted = [layer for layer in stack.layers if layer.weights]
    assert len(weighted) == len([layer for layer in ae.layers if layer.name.startswith(("enc", "dec"))
                                 and layer.weights])
    for layer in weighted:
        for ours, theirs in zip(layer.get_weights(), ae.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 30, (3, 32, 32, 4)).astype(np.float32), rng.uniform(-3, 3, (3, 1, 2, 4)).astype(np.float32)]
    features = keras.Model(ae.inputs, ae.get_layer("input_standardizer").output)(inputs)
    logits = keras.Model(ae.inputs, [ae.get_layer("dec_amp_logits").output, ae.get_layer("dec_phase_logits").output])(inputs)
    for ours, theirs in zip(stack(features), logits):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-5)
        if architecture == "unet":
            assert np.std(np.asarray(theirs)) > 0
        else:  # the residual network's logits start at zero: it outputs its retrieval estimate
            assert not np.asarray(theirs).any()
