"""Golden fixtures (tests/fixtures/): operators against stored outputs, data files, the frozen model archive,
and regeneration without drift. See tests/fixtures/make_fixtures.py for what each file holds."""
import importlib.util
import json
import pathlib
import zipfile

import numpy as np
import pytest

from ptycho import physics
from ptycho.config import SimulationConfig
from ptycho.data import load_npz
from ptycho.projective_warp_xla import translate_xla
from ptycho.simulate import simulate_dataset
from ptycho.tf_helper import reassemble_patches_position_real, extract_patches_position, reassemble_position, translate_core

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
MAX_FIXTURE_BYTES = 5 * 1024 * 1024


def load_make_fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def golden(name):
    with np.load(FIXTURES / name, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def assert_close_to_scale(actual, expected, rel=1e-6, err_msg=""):
    """|actual - expected| <= rel * max|expected| elementwise; same shape and dtype."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, actual.dtype, err_msg)
    scale = float(np.nanmax(np.abs(expected))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * max(scale, 1e-30), err_msg=err_msg)


# --------------------------------------------------------------------------------------------------
# operators that once broke, against their stored outputs

@pytest.mark.xla
@pytest.mark.parametrize("use_jit", [True, False])
def test_translate_xla_grouped_complex_matches_golden(use_jit):
    g = golden("golden_translate.npz")
    assert g["images"].shape[0] == 4 * g["shifts"].shape[0] and g["images"].dtype == np.complex64
    for interpolation in ("bilinear", "nearest"):
        out = translate_xla(g["images"], g["shifts"], interpolation, use_jit=use_jit).numpy()
        assert_close_to_scale(out, g[interpolation], err_msg=interpolation)


def test_translate_core_grouped_complex_matches_golden():
    """The non-XLA path against the XLA path's stored output: same sign, same repeat broadcast (SPEC §2.1)."""
    g = golden("golden_translate.npz")
    for interpolation in ("bilinear", "nearest"):
        out = translate_core(g["images"], g["shifts"], interpolation).numpy()
        assert_close_to_scale(out, g[interpolation], rel=1e-5, err_msg=interpolation)


def _bilinear_reference(img, dx, dy):
    """out[y, x] = bilinear(img, x - dx, y - dy), zero outside (SPEC §2.1), by explicit loops."""
    H, W = img.shape
    out = np.zeros((H, W), np.complex128)
    for y in range(H):
        for x in range(W):
            sy, sx = y - dy, x - dx
            for yy in (int(np.floor(sy)), int(np.floor(sy)) + 1):
                for xx in (int(np.floor(sx)), int(np.floor(sx)) + 1):
                    w = max(0.0, 1 - abs(sy - yy)) * max(0.0, 1 - abs(sx - xx))
                    if w and 0 <= yy < H and 0 <= xx < W:
                        out[y, x] += w * img[yy, xx]
    return out


def test_golden_translate_is_a_repeat_broadcast_of_fractional_shifts():
    """The stored output itself obeys the spec: image i moved by shift i // 4 (repeat, not tile)."""
    g = golden("golden_translate.npz")
    np.testing.assert_array_equal(g["shifts"][0], np.float32([1.25, -0.5]))
    for i in (0, 1, 3, 4, 11):
        dx, dy = g["shifts"][i // 4].astype(np.float64)
        for c in range(g["images"].shape[-1]):
            expected = _bilinear_reference(g["images"][i, :, :, c].astype(np.complex128), dx, dy)
            np.testing.assert_allclose(g["bilinear"][i, :, :, c], expected, atol=1e-5, err_msg=f"image {i}")


@pytest.mark.xla
@pytest.mark.parametrize("use_xla", [True, False])
def test_merge_extract_and_stitch_match_golden_at_64_patches(use_xla):
    g = golden("golden_merge_extract.npz")
    B, N, _, C = g["patches"].shape
    assert B * C >= 64
    rel = 1e-6 if use_xla else 1e-5
    merged = reassemble_patches_position_real(g["patches"], g["offsets"], agg=True, use_xla=use_xla).numpy()
    assert_close_to_scale(merged, g["merged"], rel=rel, err_msg="merge agg=True")
    moved = reassemble_patches_position_real(g["patches"], g["offsets"], agg=False, use_xla=use_xla).numpy()
    assert_close_to_scale(moved, g["moved"], rel=rel, err_msg="merge agg=False")
    extracted = extract_patches_position(g["merged"], g["offsets"], N, use_xla=use_xla).numpy()
    assert_close_to_scale(extracted, g["extracted"], rel=rel, err_msg="extract")
    stitched = reassemble_position(g["stitch_patches"], g["global_offsets"], M=int(g["stitch_M"]), chunk_size=256,
                                   use_xla=use_xla).numpy()
    assert_close_to_scale(stitched, g["stitched"], rel=rel, err_msg="stitch")


def test_forward_model_and_poisson_draw_match_golden():
    g = golden("golden_forward.npz")
    N = g["probe"].shape[0]
    patches = physics.object_patches(g["obj"], g["xcoords"], g["ycoords"], N)
    np.testing.assert_array_equal(patches, g["patches"])
    amplitude = physics.far_field_amplitude(physics.illuminate(g["probe"], g["patches"]))
    assert_close_to_scale(amplitude, g["amplitude"], rel=1e-6)
    scale = physics.intensity_scale(g["amplitude"], float(g["nphotons"]))
    assert scale == pytest.approx(float(g["scale"]), rel=1e-12)
    counts, measured = physics.poisson_sample(g["amplitude"], float(g["scale"]),
                                              np.random.default_rng(int(g["poisson_seed"])))
    np.testing.assert_array_equal(counts, g["counts"])
    np.testing.assert_array_equal(measured, g["measured"])
    assert counts.sum() == pytest.approx(len(counts) * float(g["nphotons"]), rel=0.05)


# --------------------------------------------------------------------------------------------------
# data files

def test_ptychopinn_format_file_loads_with_its_ground_truth():
    ds = load_npz(FIXTURES / "sim_gridsize2_N32.npz", gridsize=2)
    with np.load(FIXTURES / "sim_gridsize2_N32.npz", allow_pickle=False) as npz:
        assert "diffraction" in npz.files and "diff3d" not in npz.files
        np.testing.assert_array_equal(ds.group_indices, npz["group_indices"])
    assert (ds.N, ds.C, ds.n_positions, ds.obj.shape) == (32, 4, 48, (64, 64))
    # the stored diffraction is the far field of the stored ground truth, up to Poisson noise at 1e6 photons
    clean = physics.far_field_amplitude(physics.illuminate(ds.probe, physics.object_patches(ds.obj, ds.xcoords,
                                                                                          ds.ycoords, ds.N)))
    s = ds.intensity_scale
    assert np.corrcoef((s * clean).ravel(), (s * ds.diffraction).ravel())[0, 1] > 0.99


def test_legacy_diff3d_file_loads_with_its_ground_truth():
    ds = load_npz(FIXTURES / "legacy_diff3d_N16.npz")
    with np.load(FIXTURES / "legacy_diff3d_N16.npz", allow_pickle=False) as npz:
        assert "diff3d" in npz.files and "diffraction" not in npz.files
        np.testing.assert_array_equal(ds.diffraction, npz["diff3d"])
        np.testing.assert_array_equal(ds.obj, npz["objectGuess"])
    assert (ds.N, ds.C, ds.n_positions, ds.nphotons) == (16, 1, 30, None)


# --------------------------------------------------------------------------------------------------
# the frozen model archive: SPEC §7 back-compatibility

#: How far today's predictions of the v1 archive may be from the stored ones, as a fraction of their scale. It was
#: 1e-6 (bit for bit up to summation order) until the translation kernel computed its bilinear weights from
#: floor(-d) instead of float32(j - d): the v1 kernel's weights carried that rounding, up to 3.4e-6 of scale
#: against float64 (the new kernel's error is 1.1e-7), and the v1 predictions carry it too (1.4e-6 measured;
#: ledger TRANSLATE-KERNEL-002). Any loading defect (weights, scale, probe, architecture) is orders larger.
FROZEN_V1_TOLERANCE = 5e-6


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_frozen_model_archive_loads_and_predicts_as_when_it_was_written():
    """An archive written by an earlier version must keep loading and give the same predictions.

    The stored predictions came from the factory's XLA-compiled model; ``load_model(compile=True)`` restores
    ``jit_compile`` and reproduces them to ``FROZEN_V1_TOLERANCE`` here (ledger FROZEN-ARCHIVE-001). If this fails
    after a deliberate format change, add a versioned loader and a frozen_model_v2/ fixture; never regenerate v1.
    """
    from ptycho import persistence
    from ptycho.model import get_intensity_scale

    folder = FIXTURES / "frozen_model_v1"
    params = json.loads((folder / "params.json").read_text())
    io = golden("frozen_model_v1/io.npz")
    autoencoder, diffraction_to_obj, manifest = persistence.load_model(folder / "wts.h5.zip", compile=True)
    assert manifest["format_version"] == 1
    assert get_intensity_scale(autoencoder) == pytest.approx(params["intensity_scale"], rel=1e-6)
    assert sum(int(np.prod(w.shape)) for w in autoencoder.trainable_weights) == params["trainable_parameters"]
    assert np.std(np.abs(io["object"])) > 1e-3  # the stored predictions are not trivially constant
    inputs = [io["diffraction"], io["positions"]]
    obj, amplitude, intensity = autoencoder.predict(inputs, batch_size=4, verbose=0)
    tolerance = FROZEN_V1_TOLERANCE
    assert_close_to_scale(obj, io["object"], rel=tolerance, err_msg="object")
    assert_close_to_scale(amplitude, io["amplitude"], rel=tolerance, err_msg="amplitude")
    assert_close_to_scale(intensity, io["intensity"], rel=tolerance, err_msg="intensity")
    diffraction_to_obj.compile(jit_compile=True)
    assert_close_to_scale(diffraction_to_obj.predict(inputs, batch_size=4, verbose=0), io["object"],
                          rel=tolerance, err_msg="diffraction_to_obj")


def test_frozen_model_archive_without_xla_agrees_to_1e5():
    """Loaded uncompiled, the model runs without XLA: same semantics, float32 round-off only (SPEC §2.1)."""
    from ptycho import persistence

    io = golden("frozen_model_v1/io.npz")
    _, diffraction_to_obj, _ = persistence.load_model(FIXTURES / "frozen_model_v1" / "wts.h5.zip")
    obj = diffraction_to_obj.predict([io["diffraction"], io["positions"]], batch_size=8, verbose=0)
    assert_close_to_scale(obj, io["object"], rel=1e-5)


def test_frozen_archive_inputs_are_the_fixture_data_set():
    make = load_make_fixtures()
    diffraction, positions, _, s = make.archive_inputs()
    io = golden("frozen_model_v1/io.npz")
    np.testing.assert_array_equal(io["diffraction"], diffraction)
    np.testing.assert_array_equal(io["positions"], positions)


# --------------------------------------------------------------------------------------------------
# regeneration: silent drift of the simulation or the operators fails here

def _compare_npz(new, old, name):
    """Same members; integers exact, floats to 1e-6 of their scale; object arrays (pickled by NumPy, never
    unpickled here) byte for byte."""
    with np.load(new, allow_pickle=False) as a, np.load(old, allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files), name
        for key in a.files:
            where = f"{name}:{key}"
            try:
                x, y = a[key], b[key]
            except ValueError:  # an object array: compare the stored bytes
                with zipfile.ZipFile(new) as za, zipfile.ZipFile(old) as zb:
                    assert za.read(f"{key}.npy") == zb.read(f"{key}.npy"), where
                continue
            assert x.dtype == y.dtype and x.shape == y.shape, where
            if x.dtype.kind in "fc":
                assert_close_to_scale(x, y, err_msg=where)
            else:
                np.testing.assert_array_equal(x, y, err_msg=where)


def test_make_fixtures_regenerates_the_committed_files(tmp_path):
    make = load_make_fixtures()
    out = make.make_fixtures(tmp_path / "fixtures")
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*")
                       if p.is_file() and p.suffix in (".npz", ".json")
                       and not p.relative_to(FIXTURES).as_posix().startswith(("frozen_model_", "defects/")))
    assert written == committed
    for name in written:
        if name.endswith(".npz"):
            _compare_npz(out / name, FIXTURES / name, name)
        else:
            assert (out / name).read_text() == (FIXTURES / name).read_text(), name


def test_fixture_folder_is_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < MAX_FIXTURE_BYTES, f"tests/fixtures holds {total / 1e6:.2f} MB"


def test_simulated_fixture_equals_a_fresh_simulation():
    """The committed NPZ is what today's simulate_dataset gives for the stored config (seeded end to end)."""
    make = load_make_fixtures()
    fresh = simulate_dataset(SimulationConfig(**make.SIM_CONFIG))
    stored = load_npz(FIXTURES / "sim_gridsize2_N32.npz", gridsize=2)
    np.testing.assert_array_equal(stored.diffraction, fresh.diffraction)
    np.testing.assert_array_equal(stored.obj, fresh.obj)
    np.testing.assert_array_equal(stored.group_indices, fresh.group_indices)
