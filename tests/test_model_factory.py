"""Model factory: import side effects, lazy legacy singletons, several sizes in one process (fresh processes)."""
import json

import numpy as np
import pytest

from ptycho import params

# Prints one JSON line: per built model, N, gridsize, its intensity scale and a digest of a deterministic predict.
MULTI_N_SNIPPET = """
import json, os
import numpy as np
from ptycho import model, params
params.cfg["use_xla_translate"] = {use_xla}
results = []
for N, gridsize, scale in {sizes}:
    ae, d2o = model.create_model_with_gridsize(gridsize, N, intensity_scale=scale, seed=3, jit_compile={jit})
    rng = np.random.default_rng(N + gridsize)
    C = gridsize ** 2
    d = rng.uniform(0, 5, (2, N, N, C)).astype("float32")
    p = rng.uniform(-3, 3, (2, 1, 2, C)).astype("float32")
    p -= p.mean(axis=-1, keepdims=True)
    inputs = {{"diffraction": d, "positions": p}}
    K = ae.inputs[2].shape[-1] if len(ae.inputs) > 2 else 0  # a gridsize-1 model's scan neighbours
    if K:
        inputs["neighbour_diffraction"] = rng.uniform(0, 5, (2, N, N, K)).astype("float32")
        inputs["neighbour_positions"] = rng.uniform(-3, 3, (2, 1, 2, K)).astype("float32")
    obj, amp, inten = ae.predict(inputs, verbose=0, batch_size=2)
    obj2 = d2o.predict(inputs, verbose=0, batch_size=2)
    results.append({{"N": N, "gridsize": gridsize, "scale": model.get_intensity_scale(ae),
                     "shape": list(obj.shape), "finite": bool(np.isfinite(amp).all()),
                     "obj_abs_sum": float(np.abs(obj).sum()), "amp_sum": float(amp.sum()),
                     "d2o_matches": bool(np.allclose(obj, obj2, atol=1e-6))}})
print("RESULT" + json.dumps(results))
"""


def _run_sizes(fresh_python, sizes, use_xla=True, jit=True, env=None):
    out = fresh_python(MULTI_N_SNIPPET.format(sizes=sizes, use_xla=use_xla, jit=jit), timeout=600, env=env)
    return json.loads(next(l for l in out.splitlines() if l.startswith("RESULT"))[6:])


def _assert_same_model(a, b):
    assert (a["N"], a["gridsize"]) == (b["N"], b["gridsize"])
    assert a["scale"] == pytest.approx(b["scale"], rel=1e-6)
    assert a["obj_abs_sum"] == pytest.approx(b["obj_abs_sum"], rel=1e-4)
    assert a["amp_sum"] == pytest.approx(b["amp_sum"], rel=1e-4)


def test_import_no_side_effects(fresh_python):
    """`import ptycho.model` builds nothing; reading `autoencoder` builds both legacy singletons once."""
    out = fresh_python("""
        import json
        import tensorflow as tf
        from tensorflow.python.eager import context
        import ptycho.model as m
        report = {"cache_empty": m._lazy_cache == {}, "done": m._model_construction_done,
                  "context_initialized": bool(context.context()._initialized)}
        from ptycho import params
        params.cfg["gridsize"] = 2
        ae = m.autoencoder
        report.update(after_done=m._model_construction_done, keys=sorted(m._lazy_cache),
                      same=m.autoencoder is ae, channels=int(ae.inputs[0].shape[-1]),
                      d2o_is_cached=m.diffraction_to_obj is m._lazy_cache["diffraction_to_obj"])
        print("REPORT" + json.dumps(report))
    """, timeout=300)
    report = json.loads(next(l for l in out.splitlines() if l.startswith("REPORT"))[6:])
    assert report == {"cache_empty": True, "done": False, "context_initialized": False, "after_done": True,
                      "keys": ["autoencoder", "diffraction_to_obj"], "same": True, "channels": 4,
                      "d2o_is_cached": True}


def test_lazy_attribute_unknown_name_raises():
    import ptycho.model as m
    with pytest.raises(AttributeError, match="no_such_thing"):
        m.no_such_thing


def test_multi_n_model_creation(fresh_python):
    """N=128 then N=64 in one fresh process, predict each; the N=64 model equals one built alone."""
    together = _run_sizes(fresh_python, [(128, 1, 50.0), (64, 2, 20.0)])
    alone = _run_sizes(fresh_python, [(64, 2, 20.0)])
    assert [r["shape"] for r in together] == [[2, 128, 128, 1], [2, 64, 64, 1]]
    assert all(r["finite"] and r["d2o_matches"] for r in together)
    _assert_same_model(together[1], alone[0])


@pytest.mark.xla
def test_multi_n_with_xla_enabled(fresh_python):
    """XLA on for translation and compile: N=128 -> 64 -> 128 in one process, each predict as if alone."""
    runs = _run_sizes(fresh_python, [(128, 2, 50.0), (64, 2, 20.0), (128, 2, 50.0)],
                      use_xla=True, jit=True, env={"USE_XLA_TRANSLATE": "1"})
    assert [r["shape"][1] for r in runs] == [128, 64, 128]
    assert all(r["finite"] and r["d2o_matches"] for r in runs)
    _assert_same_model(runs[0], runs[2])
    assert runs[0]["scale"] == pytest.approx(50.0) and runs[1]["scale"] == pytest.approx(20.0)


def test_explicit_arguments_override_legacy_cfg(legacy_cfg, caplog):
    from ptycho.model import create_model_with_gridsize, get_intensity_scale, get_probe
    from ptycho.probe import get_default_probe, normalize_probe

    legacy_probe = (np.arange(64 * 64).reshape(64, 64) % 7 + 1j).astype(np.complex64)
    legacy_cfg["probe"] = legacy_probe
    legacy_cfg["intensity_scale"] = 5.0

    ae, _ = create_model_with_gridsize(1, 64)
    assert get_intensity_scale(ae) == pytest.approx(5.0)
    np.testing.assert_array_equal(get_probe(ae), legacy_probe)

    explicit_probe = np.full((64, 64), 0.5 + 0.25j, np.complex64)
    ae, _ = create_model_with_gridsize(1, 64, intensity_scale=7.0, probe=explicit_probe)
    assert get_intensity_scale(ae) == pytest.approx(7.0)
    np.testing.assert_array_equal(get_probe(ae), explicit_probe)

    with caplog.at_level("WARNING", logger="ptycho.model"):
        ae, _ = create_model_with_gridsize(1, 32)
    assert any("params.cfg['probe']" in r.getMessage() for r in caplog.records)
    expected = normalize_probe(get_default_probe(32, fmt="np"), 4.0)
    np.testing.assert_allclose(get_probe(ae), np.asarray(expected).astype(np.complex64), rtol=1e-6)


def test_params_defaults_match_model_config():
    """An untouched params.cfg must not change a model: its defaults equal ModelConfig's."""
    from ptycho.config import ModelConfig

    cfg = ModelConfig()
    for field in ("offset", "max_position_jitter", "n_filters_scale", "object_amplitude_max", "probe_scale",
                  "default_probe_scale"):
        assert params.DEFAULTS[field] == getattr(cfg, field), field
    assert params.DEFAULTS["probe.trainable"] == cfg.probe_trainable


@pytest.mark.parametrize("kwargs, match", [
    ({"gridsize": 2, "N": 62}, "N"),
    ({"gridsize": 2, "N": 48}, "N"),
    ({"gridsize": 0, "N": 64}, "gridsize"),
    ({"gridsize": 2, "N": 64, "offset": 3}, "padded_size"),
    ({"gridsize": 1, "N": 64, "probe": np.ones((32, 32))}, "probe"),
    ({"gridsize": 1, "N": 64, "intensity_scale": -1.0}, "intensity_scale"),
    ({"gridsize": 1, "N": 64, "nll_weight": 0.0, "mae_weight": 0.0}, "loss weights"),
])
def test_factory_rejects_bad_arguments(kwargs, match):
    from ptycho.model import create_model_with_gridsize
    with pytest.raises(ValueError, match=match):
        create_model_with_gridsize(**kwargs)
