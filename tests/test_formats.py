"""ptycho.formats: each reader on a small file written in its program's conventions, every wrong-convention
file refused or warned about by text, ``ptycho import``, and the real tike siemens-star subset."""
import dataclasses
import pathlib
import warnings

import h5py
import numpy as np
import pytest

from ptycho import cli, formats, physics
from ptycho.cli import common
from ptycho.config import SimulationConfig
from ptycho.data import load_npz, save_npz
from ptycho.formats._common import zero_frequency
from ptycho.simulate import default_probe, simulate_dataset

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
SIM = SimulationConfig(N=32, gridsize=1, n_positions=20, object_size=64, buffer=16, nphotons=1e5)
N = SIM.N
PX = 10e-9                       # object pixel (m) of the HDF5 files
ENERGY_J = 8e3 * 1.602176634e-19  # 8 keV
DISTANCE = 2.0
WAVELENGTH = 6.62607015e-34 * 299792458.0 / ENERGY_J
# The files' positions in pixels minus the originals: tike's scan is the probe's corner, centred by -32 px;
# the HDF5 files' positions are offset in metres (see the writers).
TIKE, PTYCHODUS, CXI = (-N / 2 - 32, -N / 2 - 32), (-7.0, 3.0), (1.5, -4.0)


@pytest.fixture(scope="module")
def sim():
    """(dataset on a 1/1024 px lattice, integer counts K (M, N, N) centred, the simulation's photon scale)."""
    ds = simulate_dataset(SIM)
    amplitudes = physics.far_field_amplitude(physics.illuminate(ds.probe, physics.object_patches(
        ds.obj, ds.xcoords, ds.ycoords, N)))
    s_sim = physics.intensity_scale(amplitudes, SIM.nphotons)
    exact = (s_sim * ds.diffraction.astype(np.float64)) ** 2
    counts = np.rint(exact)
    assert np.max(np.abs(exact - counts)) < 0.05  # X = sqrt(K)/s_sim: the counts are recovered exactly
    ds = dataclasses.replace(ds, xcoords=np.round(ds.xcoords * 1024) / 1024, ycoords=np.round(ds.ycoords * 1024) / 1024)
    return ds, counts, s_sim


def expected_scale(counts, mask=None):
    good = counts if mask is None else counts * mask
    return np.sqrt(np.mean(good.sum(axis=(1, 2))) / formats.PROBE_POWER[N])


def assert_converted(conv, ds, counts, s_sim, offset, mask=None, order=slice(None)):
    """diffraction = original X · s_sim / s (masked pixels 0), positions = originals + the documented shift
    (``offset``: the file's positions in pixels minus the originals)."""
    out = conv.dataset
    s = expected_scale(counts, mask)
    X = ds.diffraction[order] * (s_sim / s)
    if mask is not None:
        X = X * mask
    np.testing.assert_allclose(out.diffraction, X, rtol=1e-5, atol=1e-6 * X.max())
    assert out.intensity_scale == pytest.approx(s, rel=1e-6) and conv.scale == pytest.approx(s, rel=1e-12)
    assert out.nphotons == pytest.approx(np.mean((counts if mask is None else counts * mask).sum(axis=(1, 2))))
    x, y = ds.xcoords[order], ds.ycoords[order]
    np.testing.assert_allclose(out.xcoords, x + (N / 2 - x.min()), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.ycoords, y + (N / 2 - y.min()), rtol=0, atol=1e-6)
    assert conv.shift_px == pytest.approx((N / 2 - x.min() - offset[0], N / 2 - y.min() - offset[1]), abs=1e-6)
    assert np.sum(np.abs(out.probe) ** 2) == pytest.approx(formats.PROBE_POWER[N], rel=1e-5)
    np.testing.assert_allclose(out.probe, ds.probe, rtol=1e-5, atol=1e-6 * np.abs(ds.probe).max())
    if mask is None:
        assert out.mask is None
    else:
        np.testing.assert_array_equal(out.mask, mask)


def message(fn):
    with pytest.raises(ValueError) as info:
        fn()
    text = str(info.value)
    assert "\n" not in text
    return text


# ----- tike ------------------------------------------------------------------------------------------
def write_tike(path, ds, counts, s_sim, *, corner=True, data=None, probe=None, scan=None, drop=()):
    """tike's conventions: counts at the corner, probe in unnormalised-FFT units (s·P/N), scan [row, col] of the
    probe's minimum corner, centred near 0; leading singleton axes."""
    K = np.fft.ifftshift(counts, axes=(-2, -1)) if corner else counts
    arrays = {"data": (K if data is None else data)[None].astype(np.float32),
              "probe": (s_sim * ds.probe / N if probe is None else probe)[None, None, None].astype(np.complex64),
              "scan": (np.stack([ds.ycoords - N / 2 - 32, ds.xcoords - N / 2 - 32], axis=-1)
                       if scan is None else scan)[None].astype(np.float32)}
    arrays["probe"] = arrays["probe"].reshape((1,) * (6 - arrays["probe"].ndim) + arrays["probe"].shape)
    for key in drop:
        del arrays[key]
    np.savez(path, **arrays)
    return path


def test_probe_power_is_the_default_probes(sim):
    for n in (32, 64, 128):
        P = default_probe(SimulationConfig(N=n))
        assert formats.PROBE_POWER[n] == pytest.approx(np.sum(np.abs(P.astype(np.complex128)) ** 2), rel=1e-12)
    assert np.sum(np.abs(sim[0].probe) ** 2) == pytest.approx(formats.PROBE_POWER[N], rel=1e-5)


def test_tike_round_trip(sim, tmp_path):
    ds, counts, s_sim = sim
    path = write_tike(tmp_path / "scan.npz", ds, counts, s_sim)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv = formats.convert(path)
    assert conv.format == "tike" and conv.fftshifted and conv.pixel_size_m is None
    assert_converted(conv, ds, counts, s_sim, TIKE)
    assert conv.probe_factor == pytest.approx(N / s_sim, rel=1e-5)
    assert "M=20 patterns, N=32" in conv.summary()
    # .npz.bz2 is decompressed in memory and gives the same data set
    import bz2

    packed = tmp_path / "scan.npz.bz2"
    packed.write_bytes(bz2.compress(path.read_bytes()))
    again = formats.read(packed, "tike")
    np.testing.assert_array_equal(again.diffraction, conv.dataset.diffraction)
    assert formats.guess_format(packed) == "tike"


def test_tike_already_shifted_is_warned_and_used_as_is(sim, tmp_path):
    ds, counts, s_sim = sim
    path = write_tike(tmp_path / "centred.npz", ds, counts, s_sim, corner=False)
    with pytest.warns(UserWarning, match=r"key 'data': the patterns are already fftshifted .*used unshifted"):
        conv = formats.convert(path, "tike")
    assert not conv.fftshifted
    assert_converted(conv, ds, counts, s_sim, TIKE)


@pytest.mark.parametrize("change, expected", [
    (dict(drop=("probe",)), r"key 'probe': missing; a tike file holds data, probe, scan, this one \['data', 'scan'\]"),
    (dict(data="nan"), r"key 'data': contains NaN or infinite counts; mask those pixels or drop those frames"),
    (dict(data="negative"), r"key 'data': holds negative counts \(min -3\); photon counts are >= 0"),
    (dict(data="views"), r"key 'data': has shape \(2, 20, 32, 32\): 1 leading axes of size > 1 \(several views\?\)"),
    (dict(scan="short"), r"key 'scan': 19 x and 19 y positions for 20 patterns; there must be one per pattern"),
    (dict(probe="small"), r"key 'probe': probe has shape \(1, 1, 1, 1, 16, 16\), but the patterns are 32x32"),
])
def test_tike_refusals_name_file_key_and_fix(sim, tmp_path, change, expected):
    ds, counts, s_sim = sim
    kw = dict(change)
    K = np.fft.ifftshift(counts, axes=(-2, -1))
    if kw.get("data") == "nan":
        kw["data"] = K.copy()
        kw["data"][3, 0, 0] = np.nan
    elif kw.get("data") == "negative":
        kw["data"] = K.copy()
        kw["data"][3, 5, 5] = -3
    elif kw.get("data") == "views":
        kw["data"] = np.stack([K, K])
    if kw.get("scan") == "short":
        kw["scan"] = np.zeros((19, 2))
    if kw.get("probe") == "small":
        kw["probe"] = np.ones((16, 16))
    path = write_tike(tmp_path / "bad.npz", ds, counts, s_sim, **kw)
    text = message(lambda: formats.read(path, "tike"))
    assert text.startswith(f"{path}: ")
    assert __import__("re").search(expected, text), text


def test_tike_amplitudes_claimed_as_counts_are_warned(sim, tmp_path):
    ds, counts, s_sim = sim
    amplitudes = np.fft.ifftshift(ds.diffraction / ds.diffraction.max() * 0.9, axes=(-2, -1))
    path = write_tike(tmp_path / "amplitudes.npz", ds, counts, s_sim, data=amplitudes)
    with pytest.warns(UserWarning, match=r"key 'data': values are all below 1 and not integers: the file may hold "
                                         r"amplitudes"):
        formats.read(path, "tike")


def test_tike_probe_modes_use_the_first_with_a_warning(sim, tmp_path):
    ds, counts, s_sim = sim
    modes = np.stack([s_sim * ds.probe / N, np.ones((N, N))])  # (2, N, N) -> (1, 1, 1, 2, N, N)
    path = write_tike(tmp_path / "modes.npz", ds, counts, s_sim, probe=modes)
    with pytest.warns(UserWarning, match=r"key 'probe': 2 probe modes \(shape \(1, 1, 1, 2, 32, 32\)\); using the "
                                         r"first mode only"):
        conv = formats.convert(path, "tike")
    assert_converted(conv, ds, counts, s_sim, TIKE)


# ----- ptychodus -------------------------------------------------------------------------------------
def write_ptychodus(tmp_path, ds, counts, s_sim, *, bad=None, corner=False, pixel_attrs=True, indexes=None):
    """Product file (positions in metres, reversed order with their indexes) + diffraction file (patterns in
    index order, bad_pixels True = bad); probe in arbitrary units, two OPR/mode axes."""
    M = ds.n_positions
    order = np.arange(M)[::-1]
    product, diffraction = tmp_path / "product-in.h5", tmp_path / "diffraction.h5"
    with h5py.File(product, "w") as h5:
        h5.attrs["probe_photon_count"] = 123
        h5.attrs["probe_energy_eV"] = 8e3
        h5.attrs["detector_object_distance_m"] = DISTANCE
        h5["probe_position_indexes"] = order if indexes is None else indexes
        h5["probe_position_x_m"] = (ds.xcoords[order] - 7.0) * PX
        h5["probe_position_y_m"] = (ds.ycoords[order] + 3.0) * PX
        probe = h5.create_dataset("probe", data=(3.7 * ds.probe)[None, None].astype(np.complex64))
        probe.attrs["pixel_width_m"] = probe.attrs["pixel_height_m"] = PX
        obj = h5.create_dataset("object", data=np.ones((1, 64, 64), np.complex64))
        obj.attrs["center_x_m"] = obj.attrs["center_y_m"] = 0.0
        if pixel_attrs:
            obj.attrs["pixel_width_m"] = obj.attrs["pixel_height_m"] = PX
    K = np.fft.ifftshift(counts, axes=(-2, -1)) if corner else counts
    with h5py.File(diffraction, "w") as h5:
        h5["indexes"] = np.arange(M)
        h5["patterns"] = K.astype(np.uint32)
        h5["bad_pixels"] = np.zeros((N, N), bool) if bad is None else (
            np.fft.ifftshift(bad) if corner else bad)
    return product, diffraction


def bad_pixels():
    bad = np.zeros((N, N), bool)
    bad[3, 7] = bad[20, 11] = bad[N // 2 + 1, N // 2] = True
    return bad


def test_ptychodus_round_trip_with_bad_pixels_and_index_order(sim, tmp_path):
    ds, counts, s_sim = sim
    product, diffraction = write_ptychodus(tmp_path, ds, counts, s_sim, bad=bad_pixels())
    assert formats.guess_format(product) == "ptychodus"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv = formats.convert(product, "ptychodus", diffraction=diffraction)
    order = np.arange(ds.n_positions)[::-1]
    assert_converted(conv, ds, counts[order], s_sim, PTYCHODUS, mask=~bad_pixels(), order=order)
    assert conv.pixel_size_m == (PX, PX) and not conv.fftshifted
    assert conv.probe_factor == pytest.approx(1 / 3.7, rel=1e-5)
    # the standard layout: diffraction.h5 beside the product is found without diffraction=
    np.testing.assert_array_equal(formats.read(product).diffraction, conv.dataset.diffraction)


def test_ptychodus_corner_data_are_fftshifted_with_a_warning(sim, tmp_path):
    ds, counts, s_sim = sim
    product, diffraction = write_ptychodus(tmp_path, ds, counts, s_sim, bad=bad_pixels(), corner=True)
    with pytest.warns(UserWarning, match=r"key 'patterns': the zero frequency is at the array corner, not at the "
                                         r"centre N//2 as this format stores it; the patterns \(and the mask\) are "
                                         r"fftshifted"):
        conv = formats.convert(product, "ptychodus", diffraction=diffraction)
    order = np.arange(ds.n_positions)[::-1]
    assert conv.fftshifted
    assert_converted(conv, ds, counts[order], s_sim, PTYCHODUS, mask=~bad_pixels(), order=order)


def test_ptychodus_without_a_pixel_size_is_refused(sim, tmp_path):
    ds, counts, s_sim = sim
    product, diffraction = write_ptychodus(tmp_path, ds, counts, s_sim, pixel_attrs=False)
    text = message(lambda: formats.read(product, "ptychodus", diffraction=diffraction))
    assert text == (f"{product}: key 'object': attribute 'pixel_width_m' / 'pixel_height_m' missing, and no far-field "
                    "geometry (detector_object_distance_m, probe_energy_eV, detector_pixel_width_m) to compute it: the "
                    "positions in metres cannot be converted to pixels; add the object pixel size")
    # with the detector pixel as root attributes it is λz/(N·p)
    detector_pixel = WAVELENGTH * DISTANCE / (N * PX)
    with h5py.File(product, "a") as h5:
        h5.attrs["detector_pixel_width_m"] = h5.attrs["detector_pixel_height_m"] = detector_pixel
    conv = formats.convert(product, "ptychodus", diffraction=diffraction)
    assert conv.pixel_size_m == pytest.approx((PX, PX), rel=1e-9)


def test_ptychodus_mismatched_files_are_refused(sim, tmp_path):
    ds, counts, s_sim = sim
    product, diffraction = write_ptychodus(tmp_path, ds, counts, s_sim, indexes=np.arange(ds.n_positions) + 5)
    assert message(lambda: formats.read(product, "ptychodus", diffraction=diffraction)) == (
        f"{product}: key 'probe_position_indexes': 5 positions (first index 20) have no pattern in {diffraction}; "
        "pass the matching diffraction file")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "product.h5").write_bytes(product.read_bytes())
    assert message(lambda: formats.read(alone / "product.h5", "ptychodus")).startswith(
        f"{alone / 'product.h5'}: key 'patterns': the patterns live in a separate diffraction file; none given")


# ----- CXI -------------------------------------------------------------------------------------------
def write_cxi(path, ds, counts, s_sim, *, mask=None, drop=(), probe_modes=False):
    """CXI 1.6: counts centred, translation [x, y, z] in metres (y pixel twice the x pixel: the detector's y pixel
    is half its x pixel), energy in J, mask nonzero = bad."""
    p_x = WAVELENGTH * DISTANCE / (N * PX)
    with h5py.File(path, "w") as h5:
        h5["cxi_version"] = 160
        det = h5.create_group("entry_1/instrument_1/detector_1")
        det["data"] = counts.astype(np.float32)
        for key, value in (("distance", DISTANCE), ("x_pixel_size", p_x), ("y_pixel_size", p_x / 2)):
            if key not in drop:
                det[key] = value
        if mask is not None:
            det["mask"] = np.where(mask, 0, 7).astype(np.uint32)
        src = h5.create_group("entry_1/instrument_1/source_1")
        if "energy" not in drop:
            src["energy"] = ENERGY_J
        probe = 0.01 * ds.probe
        if "probe" not in drop:
            src["illumination"] = np.stack([probe, probe]) if probe_modes else probe
        translation = np.stack([(ds.xcoords + 1.5) * PX, (ds.ycoords - 4.0) * 2 * PX, np.zeros(ds.n_positions)], 1)
        h5.create_group("entry_1/sample_1/geometry_1")["translation"] = translation
    return path


def test_cxi_round_trip_with_mask(sim, tmp_path):
    ds, counts, s_sim = sim
    good = ~bad_pixels()
    path = write_cxi(tmp_path / "scan.cxi", ds, counts, s_sim, mask=good)
    assert formats.guess_format(path) == "cxi"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv = formats.convert(path)
    assert_converted(conv, ds, counts, s_sim, CXI, mask=good)
    assert conv.pixel_size_m == pytest.approx((PX, 2 * PX), rel=1e-12)
    assert conv.probe_factor == pytest.approx(100, rel=1e-5)


def test_cxi_corner_data_probe_modes_and_missing_geometry(sim, tmp_path):
    ds, counts, s_sim = sim
    path = write_cxi(tmp_path / "corner.cxi", ds, np.fft.ifftshift(counts, axes=(-2, -1)), s_sim, probe_modes=True)
    with pytest.warns(UserWarning) as record:
        conv = formats.convert(path, "cxi")
    texts = [str(w.message) for w in record]
    assert any("/entry_1/instrument_1/detector_1/data': the zero frequency is at the array corner" in t for t in texts)
    assert any("'/entry_1/instrument_1/source_1/illumination': 2 probe modes" in t for t in texts)
    assert_converted(conv, ds, counts, s_sim, CXI)
    for drop, key in ((("distance",), "/entry_1/instrument_1/detector_1/distance"),
                      (("energy",), "/entry_1/instrument_1/source_1/energy"),
                      (("probe",), "/entry_1/instrument_1/source_1/illumination")):
        bad = write_cxi(tmp_path / f"no-{drop[0]}.cxi", ds, counts, s_sim, drop=drop)
        assert message(lambda: formats.read(bad, "cxi")).startswith(f"{bad}: key '{key}': ")
    nan = write_cxi(tmp_path / "nan.cxi", ds, np.where(np.arange(N) == 4, np.nan, counts), s_sim)
    assert message(lambda: formats.read(nan)) == (f"{nan}: key '/entry_1/instrument_1/detector_1/data': contains NaN "
                                                  "or infinite counts; mask those pixels or drop those frames")
    # NaN under the mask is fine: bad pixels are left out
    masked = write_cxi(tmp_path / "masked.cxi", ds, np.where(np.arange(N) == 4, np.nan, counts), s_sim,
                       mask=np.arange(N)[None, :].repeat(N, 0) != 4)
    assert formats.read(masked).diffraction[:, :, 4].max() == 0


# ----- PtychoPINN ------------------------------------------------------------------------------------
def test_ptychopinn_files_are_kept_as_stored(sim, tmp_path):
    ds = dataclasses.replace(sim[0], mask=~bad_pixels())
    path = tmp_path / "own.npz"
    save_npz(path, ds)
    assert formats.guess_format(path) == "ptychopinn"
    conv = formats.convert(path)
    out = conv.dataset
    for name in ("diffraction", "xcoords", "ycoords", "probe", "obj", "mask"):
        np.testing.assert_array_equal(getattr(out, name), getattr(ds, name), err_msg=name)
    assert out.nphotons == ds.nphotons and conv.probe_factor == 1 and conv.shift_px == (0.0, 0.0)
    # the reference project's legacy keys: diff3d, xcoords_start, no nphotons -> sqrt(counts), nphotons explicit
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, diff3d=ds.diffraction, xcoords_start=ds.xcoords, ycoords_start=ds.ycoords, probeGuess=ds.probe)
    back = formats.read(legacy, "ptychopinn")
    np.testing.assert_array_equal(back.xcoords, ds.xcoords)
    assert back.nphotons == pytest.approx(np.mean(np.sum(ds.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
    assert back.intensity_scale == pytest.approx(1.0, rel=1e-6)


def test_ptychopinn_corner_data_and_counts_are_warned(sim, tmp_path):
    ds = sim[0]
    path = tmp_path / "corner.npz"
    np.savez(path, diffraction=np.fft.ifftshift(ds.diffraction, axes=(-2, -1)), xcoords=ds.xcoords,
             ycoords=ds.ycoords, probeGuess=ds.probe)
    with pytest.warns(UserWarning, match=r"key 'diffraction': the zero frequency is at the array corner"):
        out = formats.read(path)
    np.testing.assert_array_equal(out.diffraction, ds.diffraction)
    counts = tmp_path / "counts.npz"
    np.savez(counts, diffraction=sim[1], xcoords=ds.xcoords, ycoords=ds.ycoords, probeGuess=ds.probe)
    with pytest.warns(UserWarning, match=r"key 'diffraction': values are integers, as photon counts would be"):
        formats.read(counts)
    broken = tmp_path / "broken.npz"
    np.savez(broken, diffraction=ds.diffraction, ycoords=ds.ycoords, probeGuess=ds.probe)
    assert message(lambda: formats.read(broken)).startswith(f"{broken}: key 'xcoords': missing")


# ----- format guessing, CLI --------------------------------------------------------------------------
def test_unknown_files_and_formats_are_refused(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a data file")
    assert message(lambda: formats.guess_format(junk)) == (
        f"{junk}: neither HDF5 nor an NPZ (or NPZ.bz2) archive; pass the format explicitly "
        "(--format tike|ptychodus|cxi|ptychopinn)")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(2))
    assert "an NPZ with neither 'data' (tike) nor 'diffraction'/'diff3d'" in message(lambda: formats.read(other))
    assert message(lambda: formats.read(other, "hdf")) == \
        "format: must be one of tike, ptychodus, cxi, ptychopinn, got 'hdf'"
    assert message(lambda: formats.read(other, "tike", diffraction=other)).startswith("diffraction: only the ptychodus")


def test_cli_import_writes_a_file_train_accepts(sim, tmp_path, capsys):
    ds, counts, s_sim = sim
    src = write_tike(tmp_path / "scan.npz", ds, counts, s_sim)
    out = tmp_path / "sub" / "data.npz"
    assert cli.main(["import", str(src), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: {src} (tike): M=20 patterns, N=32, mean counts ") and "\n" not in line
    assert "probe x" in line and "positions shifted by [" in line and "patterns fftshifted" in line
    back = load_npz(out)
    direct = formats.read(src)
    np.testing.assert_array_equal(back.diffraction, direct.diffraction)
    assert back.nphotons == direct.nphotons and back.intensity_scale == pytest.approx(direct.intensity_scale)
    grouped = common.grouped(common.with_dose(common.load_data(out), out), out, 2, None, 0, "--gridsize")  # as train
    assert grouped.C == 4
    # exists without --force; a failing import leaves no output; --diffraction for tike is refused
    assert cli.main(["import", str(src), "--out", str(out)]) == 2
    assert "exists (use --force to overwrite)" in capsys.readouterr().err
    bad = write_tike(tmp_path / "bad.npz", ds, counts, s_sim, data=np.full((20, N, N), np.nan))
    failed = tmp_path / "failed.npz"
    assert cli.main(["import", str(bad), "--out", str(failed), "--format", "tike"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ptycho import: error: {bad}: key 'data': contains NaN or infinite counts; mask those pixels or " \
                  "drop those frames"
    assert not failed.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert cli.main(["import", str(src), "--out", str(failed), "--diffraction", str(src)]) == 2
    assert "argument --diffraction: only the ptychodus format" in capsys.readouterr().err
    assert not failed.exists()


def test_cli_import_prints_warnings_as_one_line(sim, tmp_path, capsys):
    ds, counts, s_sim = sim
    src = write_tike(tmp_path / "centred.npz", ds, counts, s_sim, corner=False)
    out = tmp_path / "data.npz"
    assert cli.main(["import", str(src), "--out", str(out), "--format", "tike"]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ptycho import: warning: {src}: key 'data': the patterns are already")
    assert "patterns not shifted" in captured.out and out.exists()


# ----- the real siemens star (tike) ------------------------------------------------------------------
STAR = FIXTURES / "siemens_star_subset.npz.bz2"


def test_siemens_star_subset_reads_as_a_centred_dataset():
    conv = formats.convert(STAR, "tike")
    ds = conv.dataset
    assert ds.N == 128 and ds.n_positions == 80 and conv.fftshifted
    assert zero_frequency(np.mean(ds.diffraction.astype(np.float64) ** 2, axis=0)) == "centre"
    assert conv.mean_counts == pytest.approx(461e3, rel=0.2) and ds.nphotons == conv.mean_counts
    assert np.sum(np.abs(ds.probe.astype(np.complex128)) ** 2) == pytest.approx(formats.PROBE_POWER[128], rel=1e-5)
    assert ds.intensity_scale == pytest.approx(conv.scale, rel=1e-6)
    assert ds.xcoords.min() == pytest.approx(64) and ds.ycoords.min() == pytest.approx(64)
    assert ds.xcoords.min() >= 64 and ds.ycoords.min() >= 64


def test_siemens_star_subset_is_the_scripted_subset_of_tikes_file():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_star_subset", FIXTURES / "make_star_subset.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    committed = make.load(STAR)
    assert {k: (v.shape, v.dtype) for k, v in committed.items()} == {
        "data": ((1, 80, 128, 128), np.float32), "probe": ((1, 1, 1, 1, 128, 128), np.complex64),
        "scan": ((1, 80, 2), np.float32)}
    assert (FIXTURES / "siemens_star_LICENSE.txt").read_text().count("UChicago Argonne, LLC") >= 2
    # Regenerating it needs tike's full file (not shipped): python tests/fixtures/make_star_subset.py SOURCE
    # The selection rule is idempotent: the subset of the subset is the committed file, in its order.
    fresh = make.star_subset({k: v.copy() for k, v in committed.items()})
    for key in committed:
        np.testing.assert_array_equal(committed[key], fresh[key], err_msg=key)
