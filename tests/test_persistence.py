"""Model archive wts.h5.zip (SPEC §7): round trip, manifest, integrity errors, atomic write, safe mode."""
import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptycho import persistence

N, C = 8, 1


@keras.saving.register_keras_serializable(package="ptycho_test")
class ScaledComplex(keras.layers.Layer):
    """(B, N, N, 2) float → (B, N, N, 1) complex64 = exp(log_scale)·(x0 + i·x1); non-trainable log_scale."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(), trainable=False,
            initializer=keras.initializers.Constant(np.log(self.scale)))

    def call(self, x):
        s = tf.exp(tf.cast(self.log_scale, x.dtype))
        return tf.complex(s * x[..., :1], s * x[..., 1:2])

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape[:-1] + (1,), dtype="complex64")

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="ptycho_test")
class Magnitude(keras.layers.Layer):
    def call(self, z):
        return tf.abs(z)

    def compute_output_spec(self, z):
        return keras.KerasTensor(z.shape, dtype="float32")


def build_models(seed=0, scale=3.5):
    """Two inputs, a registered layer with a non-trainable weight, three outputs; the first output is
    what diffraction_to_obj returns (the factory's layout in miniature)."""
    init = keras.initializers.GlorotUniform(seed=seed)   # seeded explicitly, no global RNG
    diffraction = keras.Input((N, N, C), name="diffraction")
    positions = keras.Input((1, 2, C), name="positions")
    bias = keras.layers.Dense(2, kernel_initializer=init, name="pos_dense")(keras.layers.Flatten()(positions))
    features = keras.layers.Conv2D(2, 3, padding="same", kernel_initializer=init, name="conv")(diffraction)
    features = features + keras.layers.Reshape((1, 1, 2))(bias)
    obj = ScaledComplex(scale, name="to_complex")(features)
    amplitude = Magnitude(name="amplitude")(obj)
    intensity = keras.layers.Multiply(name="intensity")([amplitude, amplitude])
    autoencoder = keras.Model([diffraction, positions], [obj, amplitude, intensity], name="autoencoder")
    diffraction_to_obj = keras.Model([diffraction, positions], obj, name="diffraction_to_obj")
    return autoencoder, diffraction_to_obj


def _inputs(rng, batch=5):
    return [rng.uniform(0, 2, (batch, N, N, C)).astype("float32"),
            rng.uniform(-3, 3, (batch, 1, 2, C)).astype("float32")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    autoencoder, diffraction_to_obj = build_models()
    path = str(tmp_path_factory.mktemp("archive") / "wts.h5.zip")
    metadata = {"N": N, "gridsize": 1, "intensity_scale": 3.5, "model_config": {"offset": 4}}
    persistence.save_model(path, autoencoder, diffraction_to_obj, metadata)
    return path, autoencoder, diffraction_to_obj, metadata


def test_round_trip_predicts_identically_and_shares_weights(saved):
    path, autoencoder, diffraction_to_obj, _ = saved
    auto2, d2o2, _ = persistence.load_model(path)
    x = _inputs(np.random.default_rng(1))
    for before, after in zip(autoencoder.predict(x, verbose=0), auto2.predict(x, verbose=0)):
        np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    obj = d2o2.predict(x, verbose=0)
    assert obj.dtype == np.complex64
    np.testing.assert_allclose(obj, diffraction_to_obj.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    for w_before, w_after in zip(autoencoder.weights, auto2.weights):
        assert w_before.path == w_after.path and w_before.trainable == w_after.trainable
        np.testing.assert_array_equal(w_after.numpy(), w_before.numpy())
    assert auto2.get_layer("to_complex").log_scale.numpy() == pytest.approx(np.log(3.5))
    # shared, as built by the factory: changing the autoencoder's weight changes diffraction_to_obj
    assert {id(w) for w in d2o2.weights} <= {id(w) for w in auto2.weights}
    auto2.get_layer("to_complex").log_scale.assign(0.0)
    np.testing.assert_allclose(np.abs(d2o2.predict(x, verbose=0)), np.abs(obj) / 3.5, rtol=1e-5)


def test_manifest_holds_metadata_versions_and_digests(saved):
    import hashlib

    import ptycho

    path, _, _, metadata = saved
    _, _, manifest = persistence.load_model(path)
    assert manifest["metadata"] == metadata
    assert manifest["ptycho_version"] == ptycho.__version__
    assert manifest["tensorflow_version"] == tf.__version__
    assert manifest["keras_version"] == keras.__version__
    assert manifest["diffraction_to_obj"] == {"inputs": ["diffraction", "positions"],
                                              "output": {"autoencoder_output": 0}}
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["autoencoder.keras", "diffraction_to_obj.keras",
                                              "manifest.json"]
        assert json.loads(archive.read("manifest.json")) == manifest
        for name in ("autoencoder", "diffraction_to_obj"):
            data = archive.read(f"{name}.keras")
            assert manifest["members"][name]["sha256"] == hashlib.sha256(data).hexdigest()
            assert zipfile.is_zipfile(__import__("io").BytesIO(data))   # Keras-native .keras


def test_manifest_versions_are_the_run_record(saved, tmp_path, monkeypatch):
    """One version record: the manifest's versions are ``runlog.versions()``'s, which falls back to an
    imported module's ``__version__`` when a distribution's metadata is missing (e.g. tensorflow-cpu)."""
    import importlib.metadata

    from ptycho import runlog

    _, autoencoder, diffraction_to_obj, _ = saved
    real_version = importlib.metadata.version

    def without_tensorflow(dist):
        if dist == "tensorflow":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real_version(dist)

    monkeypatch.setattr(importlib.metadata, "version", without_tensorflow)
    assert runlog.versions()["tensorflow"] == tf.__version__
    monkeypatch.setattr(runlog, "versions", lambda: {"ptycho": "p", "tensorflow": "t", "keras": "k", "numpy": "n"})
    persistence.save_model(tmp_path / "v.zip", autoencoder, diffraction_to_obj)
    with zipfile.ZipFile(tmp_path / "v.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert {k: v for k, v in manifest.items() if k.endswith("_version") and k != "format_version"} == \
        {"ptycho_version": "p", "tensorflow_version": "t", "keras_version": "k"}


def test_manifest_gridsize_must_match_the_model(saved, tmp_path):
    """The gridsize recorded in the manifest is read back: one that is not the model's √C is refused."""
    path = saved[0]

    def gridsize(value):
        def replace(name, data):
            if name != "manifest.json":
                return data
            manifest = json.loads(data)
            manifest["metadata"]["gridsize"] = value
            return json.dumps(manifest).encode()
        return replace

    bad = tmp_path / "gridsize2.zip"
    _rewrite(path, bad, replace=gridsize(2))
    with pytest.raises(ValueError) as caught:
        persistence.load_model(bad)
    assert str(caught.value) == (f"{bad}: the manifest records gridsize 2, but the model's input is for gridsize 1 "
                                 "(C = 1)")
    _rewrite(path, tmp_path / "gridsize1.zip", replace=gridsize(1))
    persistence.load_model(tmp_path / "gridsize1.zip")


def _rewrite(src, dst, replace=None, drop=None):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for name in a.namelist():
            if name == drop:
                continue
            data = a.read(name)
            b.writestr(name, replace(name, data) if replace else data)


def test_tampered_member_is_rejected(saved, tmp_path):
    path = saved[0]
    bad = tmp_path / "tampered.zip"

    def flip(name, data):   # a valid zip whose member no longer matches its recorded SHA-256
        if name != "autoencoder.keras":
            return data
        return data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]

    _rewrite(path, bad, replace=flip)
    with pytest.raises(ValueError, match=r"tampered\.zip: checksum mismatch for member 'autoencoder\.keras'"):
        persistence.load_model(bad)
    raw = bytearray(open(path, "rb").read())   # bytes changed in place: the zip CRC catches it
    offset = raw.find(b"PK\x03\x04", 10) + 200
    raw[offset] ^= 0xFF
    (tmp_path / "flipped.zip").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"flipped\.zip: not a valid zip archive \(corrupt or truncated\)"):
        persistence.load_model(tmp_path / "flipped.zip")


def test_truncated_archive_is_rejected(saved, tmp_path):
    data = open(saved[0], "rb").read()
    for size in (0, 100, len(data) // 2, int(len(data) * 0.99), len(data) - 10):
        bad = tmp_path / f"truncated{size}.zip"
        bad.write_bytes(data[:size])
        with pytest.raises(ValueError, match=r"truncated.*: not a valid zip archive"):
            persistence.load_model(bad)


def test_non_zip_and_missing_files_are_rejected(tmp_path):
    bad = tmp_path / "notes.zip"
    bad.write_text("not a zip at all")
    with pytest.raises(ValueError, match=r"notes\.zip: not a valid zip archive"):
        persistence.load_model(bad)
    with pytest.raises(FileNotFoundError, match=r"absent\.zip: no such model archive"):
        persistence.load_model(tmp_path / "absent.zip")


@pytest.mark.parametrize("member", ["diffraction_to_obj.keras", "manifest.json"])
def test_missing_member_is_rejected(saved, tmp_path, member):
    bad = tmp_path / "missing.zip"
    _rewrite(saved[0], bad, drop=member)
    with pytest.raises(ValueError, match=rf"missing\.zip: missing member '{member}'"):
        persistence.load_model(bad)


def test_write_is_atomic(saved, tmp_path, monkeypatch):
    """A failure mid-write leaves no new file, no temporary file, and a previous archive intact."""
    path, autoencoder, diffraction_to_obj, _ = saved
    target = tmp_path / "wts.h5.zip"
    previous = open(path, "rb").read()
    target.write_bytes(previous)
    real_writestr = zipfile.ZipFile.writestr

    def failing_writestr(self, name, data, *args, **kwargs):
        if name == "autoencoder.keras":   # the manifest is already written, this model is not
            raise OSError("disk full (simulated)")
        return real_writestr(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        persistence.save_model(target, autoencoder, diffraction_to_obj)
    with pytest.raises(OSError, match="disk full"):
        persistence.save_model(tmp_path / "new.zip", autoencoder, diffraction_to_obj)
    assert sorted(os.listdir(tmp_path)) == ["wts.h5.zip"]
    assert target.read_bytes() == previous
    monkeypatch.undo()
    persistence.save_model(target, autoencoder, diffraction_to_obj, {"run": 2})
    assert persistence.load_model(target)[2]["metadata"] == {"run": 2}
    assert sorted(os.listdir(tmp_path)) == ["wts.h5.zip"]


def test_lambda_layers_are_refused(tmp_path):
    """safe_mode=True: an archive whose model holds a Lambda (arbitrary code) is not loaded."""
    diffraction = keras.Input((N, N, C), name="diffraction")
    positions = keras.Input((1, 2, C), name="positions")
    doubled = keras.layers.Lambda(lambda t: 2.0 * t, name="doubler")(diffraction)
    autoencoder = keras.Model([diffraction, positions], [doubled, doubled])
    d2o = keras.Model([diffraction, positions], doubled)
    path = tmp_path / "lambda.zip"
    persistence.save_model(path, autoencoder, d2o)
    with pytest.raises(ValueError, match=r"lambda\.zip: member autoencoder\.keras could not be loaded "
                                         r"safely.*[Ll]ambda"):
        persistence.load_model(path)


def test_save_validates_arguments(saved, tmp_path):
    _, autoencoder, diffraction_to_obj, _ = saved
    with pytest.raises(ValueError, match="metadata: must be JSON-serialisable"):
        persistence.save_model(tmp_path / "a.zip", autoencoder, diffraction_to_obj, {"x": np.float32(1)})
    with pytest.raises(ValueError, match="metadata: must be a dict"):
        persistence.save_model(tmp_path / "a.zip", autoencoder, diffraction_to_obj, [1, 2])
    with pytest.raises(ValueError, match="diffraction_to_obj: must be a keras.Model"):
        persistence.save_model(tmp_path / "a.zip", autoencoder, None)
    other, _ = build_models(seed=1)
    with pytest.raises(ValueError, match="diffraction_to_obj: must be a single-output sub-model"):
        persistence.save_model(tmp_path / "a.zip", other, diffraction_to_obj)
    assert os.listdir(tmp_path) == []


def test_mismatched_archived_sub_model_is_rejected(tmp_path, monkeypatch):
    """If the archived diffraction_to_obj's weights differ from the autoencoder's, loading fails."""
    autoencoder, diffraction_to_obj = build_models(seed=2)
    good = tmp_path / "good.zip"
    persistence.save_model(good, autoencoder, diffraction_to_obj)
    conv = autoencoder.get_layer("conv")
    real_keras_bytes = persistence._keras_bytes

    def perturbed(model, directory, name):
        if name != "diffraction_to_obj":
            return real_keras_bytes(model, directory, name)
        kernel = conv.kernel.numpy()
        conv.kernel.assign(kernel + 1.0)
        try:
            return real_keras_bytes(model, directory, name)
        finally:
            conv.kernel.assign(kernel)

    monkeypatch.setattr(persistence, "_keras_bytes", perturbed)
    bad = tmp_path / "bad.zip"
    persistence.save_model(bad, autoencoder, diffraction_to_obj)
    monkeypatch.undo()
    persistence.load_model(good)
    with pytest.raises(ValueError, match=r"bad\.zip: diffraction_to_obj weight 'conv/kernel' differs"):
        persistence.load_model(bad)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_compiled_model_round_trip_with_package_losses(tmp_path):
    """compile=True restores the ptycho losses by their registered names (ptycho.losses is imported)."""
    from ptycho import losses

    autoencoder, diffraction_to_obj = build_models(seed=3)
    autoencoder.compile(optimizer="adam", loss=[None, losses.mae, losses.poisson_nll], jit_compile=False)
    path = tmp_path / "compiled.zip"
    persistence.save_model(path, autoencoder, diffraction_to_obj)
    auto2, _, _ = persistence.load_model(path, compile=True)
    x = _inputs(np.random.default_rng(4), batch=4)
    y = autoencoder.predict(x, verbose=0)
    targets = [y[0], y[1] + 0.5, y[2] + 1.0]
    np.testing.assert_allclose(auto2.evaluate(x, targets, verbose=0),
                               autoencoder.evaluate(x, targets, verbose=0), rtol=1e-5)


@keras.saving.register_keras_serializable(package="ptycho_test")
class FromAbsentModule(keras.layers.Layer):
    def call(self, x):
        return x


FromAbsentModule.__module__ = "ptycho._absent_for_test"


def test_archive_needing_a_missing_package_module_is_rejected(tmp_path):
    diffraction = keras.Input((N, N, C), name="diffraction")
    positions = keras.Input((1, 2, C), name="positions")
    out = FromAbsentModule(name="absent")(diffraction)
    autoencoder = keras.Model([diffraction, positions], [out, out])
    path = tmp_path / "absent_module.zip"
    persistence.save_model(path, autoencoder, keras.Model([diffraction, positions], out))
    with pytest.raises(ValueError, match=r"absent_module\.zip: the models need module "
                                         r"'ptycho\._absent_for_test'"):
        persistence.load_model(path)
