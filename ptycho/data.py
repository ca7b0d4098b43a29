"""The ``PtychoDataset`` container and its NPZ file format (SPEC §3).

NPZ keys (interoperable with PtychoPINN data files):

==============  ==================  =====================================================
key             shape / dtype        meaning
==============  ==================  =====================================================
diffraction     (M, N, N) float32    amplitudes X = sqrt(counts)/s (legacy name ``diff3d``)
xcoords         (M,) float           scan x (column), object pixels
ycoords         (M,) float           scan y (row), object pixels
probeGuess      (N, N) complex       probe
objectGuess     (H, W) complex       object (optional)
scan_index      (M,) int             (optional)
group_indices   (B, C) int64         groups of C = gridsize² positions (optional, written by save_npz)
nphotons        () float64           dose per pattern (optional, written by save_npz)
mask            (N, N) uint8         detector mask, 1 = measured pixel, 0 = bad (optional; absent = all measured)
==============  ==================  =====================================================

Loading never unpickles (``allow_pickle=False``) and validates every key; any problem raises
``ValueError`` naming the file and the key. Saving is atomic (temporary file + ``os.replace``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ptycho.grouping import gridsize_of, group_positions


class DatasetFieldError(ValueError):
    """A ``PtychoDataset`` field is invalid: ``str()`` is ``"PtychoDataset.<field>: <message>"``; ``field`` and
    ``message`` are kept so a reader can name its own file and key instead (``load_npz``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"PtychoDataset.{field}: {message}")
        self.field, self.message = field, message


def _fail(field: str, message: str) -> None:
    raise DatasetFieldError(field, message)


def _real_array(field: str, value, ndim: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        _fail(field, f"must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        _fail(field, f"expected a {ndim}-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        _fail(field, "contains NaN or infinite values")
    return arr


def _complex_array(field: str, value, ndim: int) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        _fail(field, f"must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == ndim + 1 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != ndim:
        _fail(field, f"expected a {ndim}-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        _fail(field, "contains NaN or infinite values")
    return arr.astype(np.complex64, copy=False)


def _checked_mask(value, N: int) -> np.ndarray:
    """(N, N) bool detector mask (True = measured) from a boolean or 0/1 array; ValueError naming ``mask``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        _fail("mask", f"must be a boolean or 0/1 array, got dtype {arr.dtype}")
    if arr.shape != (N, N):
        _fail("mask", f"expected shape (N, N) = ({N}, {N}) to match diffraction, got {arr.shape}")
    if arr.dtype.kind != "b":
        if not np.all((arr == 0) | (arr == 1)):
            _fail("mask", "must hold only 0 and 1 (or booleans), 1 = measured pixel")
        arr = arr != 0
    return arr


def _checked_groups(value, M: int) -> np.ndarray:
    """(B, C) int64 group indices into M positions, C = gridsize²; None -> one group per position."""
    if value is None:
        return np.arange(M, dtype=np.int64)[:, None]
    groups = np.asarray(value)
    if groups.ndim != 2 or groups.shape[0] < 1 or groups.dtype.kind not in "iu":
        _fail("group_indices", f"expected a (B, C) integer array with B >= 1, got {groups.shape} {groups.dtype}")
    try:
        gridsize_of(groups.shape[1])
    except ValueError as exc:
        _fail("group_indices", str(exc))
    if groups.min() < 0 or groups.max() >= M:
        _fail("group_indices", f"expected indices in [0, {M}), got [{groups.min()}, {groups.max()}]")
    return groups.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class PtychoDataset:
    """Raw per-position data plus the grouping (SPEC §2, §3).

    Fields
    ------
    diffraction : (M, N, N) float32, amplitudes X = sqrt(counts)/s (√photons / s), finite and >= 0.
    xcoords, ycoords : (M,) float64, true scan positions in object pixels (x = column, y = row).
    probe : (N, N) complex64.
    group_indices : (B, C) int64 indices into the M positions, C = gridsize²; None -> one group per
        position.
    obj : (H, W) complex64 ground-truth object or None; positions must lie in [0, W-1] x [0, H-1].
    nphotons : expected counts per pattern, or None.
    scan_index : (M,) int64 or None.
    mask : (N, N) bool detector mask, True = measured pixel, or None (every pixel measured). Readers set the
        amplitudes of masked (False) pixels to 0 and leave them out of ``nphotons``; the loss should skip them.

    Grouped views (``X``, ``positions``, ``coords_offsets``, ``coords_relative``, ``Y``) are computed on
    each access from these fields; the dataset is immutable (``dataclasses.replace`` for variants).
    """

    diffraction: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    group_indices: Optional[np.ndarray] = None
    obj: Optional[np.ndarray] = None
    nphotons: Optional[float] = None
    scan_index: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        diff = _real_array("diffraction", self.diffraction, 3)
        M, N = diff.shape[0], diff.shape[1]
        if M < 1 or diff.shape[2] != N:
            _fail("diffraction", f"expected (M, N, N) with M >= 1, got shape {diff.shape}")
        if np.any(diff < 0):
            _fail("diffraction", "negative amplitudes (they must be >= 0)")
        set_("diffraction", diff.astype(np.float32, copy=False))
        for name in ("xcoords", "ycoords"):
            coords = _real_array(name, getattr(self, name), 1)
            if coords.shape != (M,):
                _fail(name, f"expected shape (M,) = ({M},) to match diffraction, got {coords.shape}")
            set_(name, coords.astype(np.float64, copy=False))
        probe = _complex_array("probe", self.probe, 2)
        if probe.shape != (N, N):
            _fail("probe", f"expected shape (N, N) = ({N}, {N}) to match diffraction, got {probe.shape}")
        set_("probe", probe)
        set_("group_indices", _checked_groups(self.group_indices, M))
        if self.obj is not None:
            set_("obj", _complex_array("obj", self.obj, 2))
            self._check_inside_object()
        if self.nphotons is not None:
            if isinstance(self.nphotons, bool) or not isinstance(self.nphotons, (int, float, np.number)) \
                    or not math.isfinite(self.nphotons) or self.nphotons <= 0:
                _fail("nphotons", f"must be None or a finite number > 0, got {self.nphotons!r}")
            set_("nphotons", float(self.nphotons))
        if self.scan_index is not None:
            idx = _real_array("scan_index", self.scan_index, 1)
            if idx.shape != (M,) or idx.dtype.kind not in "iu":
                _fail("scan_index", f"expected (M,) = ({M},) integers, got {idx.shape} {idx.dtype}")
            set_("scan_index", idx.astype(np.int64, copy=False))
        if self.mask is not None:
            set_("mask", _checked_mask(self.mask, N))

    def _check_inside_object(self) -> None:
        H, W = self.obj.shape
        for name, limit in (("xcoords", W - 1), ("ycoords", H - 1)):
            coords = getattr(self, name)
            if coords.min() < 0 or coords.max() > limit:
                _fail(name, f"positions outside the object [0, {limit}]: "
                            f"[{coords.min():.3f}, {coords.max():.3f}]")

    # ----- sizes -------------------------------------------------------------------------------
    @property
    def N(self) -> int:
        """Pattern side in pixels."""
        return int(self.diffraction.shape[-1])

    @property
    def C(self) -> int:
        """Positions per group, gridsize²."""
        return int(self.group_indices.shape[1])

    @property
    def gridsize(self) -> int:
        """√C, positions per group side (``grouping.gridsize_of``)."""
        return gridsize_of(self.C)

    @property
    def n_groups(self) -> int:
        """B, the number of groups."""
        return int(self.group_indices.shape[0])

    @property
    def n_positions(self) -> int:
        """M, the number of scan positions."""
        return int(self.diffraction.shape[0])

    # ----- grouped views -----------------------------------------------------------------------
    @property
    def X(self) -> np.ndarray:
        """(B, N, N, C) float32 grouped amplitudes (channel c = position ``group_indices[b, c]``)."""
        return np.ascontiguousarray(self.diffraction[self.group_indices].transpose(0, 2, 3, 1))

    def _positions64(self) -> np.ndarray:
        """(B, 1, 2, C) float64 [x, y] of each group member."""
        xy = np.stack([self.xcoords[self.group_indices], self.ycoords[self.group_indices]], axis=1)
        return xy[:, None, :, :]

    @property
    def positions(self) -> np.ndarray:
        """(B, 1, 2, C) float32 true positions [x, y] of each group member, object pixels."""
        return self._positions64().astype(np.float32)

    @property
    def coords_offsets(self) -> np.ndarray:
        """(B, 1, 2, 1) float32 group centroid mean_c(pos)."""
        return self._positions64().mean(axis=3, keepdims=True).astype(np.float32)

    @property
    def coords_relative(self) -> np.ndarray:
        """(B, 1, 2, C) float32 ``-(pos - centroid)`` (computed in float64; sums to 0 over c)."""
        pos = self._positions64()
        return (-(pos - pos.mean(axis=3, keepdims=True))).astype(np.float32)

    @property
    def Y(self) -> Optional[np.ndarray]:
        """(B, N, N, C) complex64 ground-truth object patches cut at the true positions, or None."""
        if self.obj is None:
            return None
        from ptycho.physics import object_patches

        idx = self.group_indices.ravel()
        patches = object_patches(self.obj, self.xcoords[idx], self.ycoords[idx], self.N)
        return np.ascontiguousarray(patches.reshape(self.n_groups, self.C, self.N, self.N).transpose(0, 2, 3, 1))

    @property
    def intensity_scale(self) -> float:
        """s = sqrt(nphotons / mean_m Σ X_m²) from the stored amplitudes (ValueError if nphotons is None)."""
        if self.nphotons is None:
            raise ValueError("PtychoDataset.nphotons: is None, so the intensity scale is unknown")
        power = float(np.mean(np.sum(np.square(self.diffraction, dtype=np.float64), axis=(1, 2))))
        if power <= 0:
            raise ValueError("PtychoDataset.diffraction: all zero, the intensity scale is undefined")
        return math.sqrt(self.nphotons / power)

    def subset(self, group_idx) -> "PtychoDataset":
        """A dataset with the same positions and only the groups ``group_indices[group_idx]``.

        ``group_idx``: int, slice, 1-D integer array or boolean mask over the B groups.
        """
        if isinstance(group_idx, (int, np.integer)) and not isinstance(group_idx, bool):
            group_idx = [group_idx]
        try:
            groups = self.group_indices[group_idx]
        except (IndexError, TypeError) as exc:
            raise ValueError(f"group_idx: cannot select groups of {self.n_groups}: {exc}") from None
        if groups.ndim != 2 or groups.shape[0] == 0:
            raise ValueError(f"group_idx: must select at least one group, got shape {groups.shape}")
        return dataclasses.replace(self, group_indices=groups)


# ----- NPZ ---------------------------------------------------------------------------------------
_REQUIRED_KEYS = ("xcoords", "ycoords", "probeGuess")


def _bad(path, key: str, message: str) -> None:
    raise ValueError(f"{os.fspath(path)}: key {key!r}: {message}")


def _read_key(npz, path, key: str) -> np.ndarray:
    try:
        arr = npz[key]
    except ValueError as exc:  # object arrays: refused by allow_pickle=False, nothing is unpickled
        raise ValueError(f"{os.fspath(path)}: key {key!r}: cannot be loaded without pickle ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:  # zlib: corrupt compressed member
        raise ValueError(f"{os.fspath(path)}: key {key!r}: unreadable ({exc})") from None
    if arr.dtype.hasobject:
        _bad(path, key, "object arrays are not allowed")
    return arr


#: The NPZ key of each ``PtychoDataset`` field, where the two differ (``diffraction`` may also be ``diff3d``).
_FILE_KEYS = {"probe": "probeGuess", "obj": "objectGuess"}
#: Optional keys and the dtype kinds they may hold; the values are checked by ``PtychoDataset`` itself.
_OPTIONAL_KEYS = {"objectGuess": "biufc", "scan_index": "iu", "nphotons": "biuf", "mask": "biu", "group_indices": "iu"}


def _numeric(path, key: str, arr: np.ndarray, kinds: str) -> np.ndarray:
    if arr.dtype.kind not in kinds:
        _bad(path, key, f"unsupported dtype {arr.dtype}")
    return arr


def _read_arrays(npz, path) -> dict:
    """The file's arrays as ``PtychoDataset`` fields, read without pickle; the keys present and the dtype kinds
    are checked here, every value (shapes, finiteness, ranges) by ``PtychoDataset`` (see ``_dataset_from_file``).
    Adds ``"_diffraction_key"``: the key the amplitudes came from ('diffraction' or legacy 'diff3d')."""
    files = set(npz.files)
    diff_key = "diffraction" if "diffraction" in files else "diff3d" if "diff3d" in files else None
    if diff_key is None:
        _bad(path, "diffraction", f"missing (neither 'diffraction' nor legacy 'diff3d'); keys: {sorted(files)}")
    for key in _REQUIRED_KEYS:
        if key not in files:
            _bad(path, key, f"missing; keys: {sorted(files)}")
    amplitudes = _numeric(path, diff_key, _read_key(npz, path, diff_key), "biuf")
    out = {"_diffraction_key": diff_key, "diffraction": amplitudes}
    for key in ("xcoords", "ycoords"):
        out[key] = _numeric(path, key, _read_key(npz, path, key), "biuf")
    out["probe"] = _numeric(path, "probeGuess", _read_key(npz, path, "probeGuess"), "biufc")
    if out["probe"].ndim != 2:
        _bad(path, "probeGuess", f"expected shape (N, N), got {out['probe'].shape}")
    for key, kinds in _OPTIONAL_KEYS.items():
        field = {"objectGuess": "obj"}.get(key, key)
        out[field] = _numeric(path, key, _read_key(npz, path, key), kinds) if key in files else None
    if out["nphotons"] is not None:
        if out["nphotons"].ndim != 0:
            _bad(path, "nphotons", f"expected a scalar, got shape {out['nphotons'].shape}")
        out["nphotons"] = float(out["nphotons"])
    return out


def dataset_from_npz(npz, path) -> "PtychoDataset":
    """The ``PtychoDataset`` of an open NPZ (anything with ``files`` and ``[key]``), its stored groups as they
    are (None: one group per position). Every problem is a ``ValueError`` naming the file and the key
    (``path: key 'probeGuess': expected shape ...``): the reader checks keys and dtypes, ``PtychoDataset`` the
    values, so the two never disagree."""
    fields = _read_arrays(npz, path)
    diffraction_key = fields.pop("_diffraction_key")
    try:
        return PtychoDataset(**fields)
    except DatasetFieldError as exc:
        key = diffraction_key if exc.field == "diffraction" else _FILE_KEYS.get(exc.field, exc.field)
        raise ValueError(f"{os.fspath(path)}: key {key!r}: {exc.message}") from None


def open_npz(path, what: str = "an NPZ archive with keys") -> np.lib.npyio.NpzFile:
    """Open ``path`` with ``np.load(allow_pickle=False)``; ``ValueError`` naming the file if it is not an NPZ.

    ``what`` names the expected content in the message for a single ``.npy`` array.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{os.fspath(path)}: cannot be read as an NPZ archive without pickle ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{os.fspath(path)}: is a single .npy array, not {what}")
    return npz


def load_npz(path, gridsize: int = 1, K: Optional[int] = None, n_groups: Optional[int] = None, seed: int = 0,
             nphotons: Optional[float] = None) -> PtychoDataset:
    """Load and validate a data set written in the NPZ format of SPEC §3.

    Groups: the stored ``group_indices`` are used when their C equals gridsize² and ``n_groups`` is None
    or equals their count; otherwise positions are regrouped with
    ``grouping.group_positions(x, y, gridsize, K, n_groups, numpy.random.default_rng(seed))``.
    ``nphotons`` (if given) overrides the stored value.

    Raises ``ValueError`` naming the file and the key for any malformed content; nothing is unpickled.
    """
    if isinstance(gridsize, bool) or not isinstance(gridsize, (int, np.integer)) or gridsize < 1:
        raise ValueError(f"gridsize: must be a positive int, got {gridsize!r}")
    npz = open_npz(path)
    with npz:
        checked = dataset_from_npz(npz, path)  # the file's own groups are checked even where they are not used
        stored = groups = checked.group_indices if "group_indices" in npz.files else None
    if stored is None or stored.shape[1] != gridsize ** 2 or (n_groups is not None and n_groups != stored.shape[0]):
        M = checked.n_positions
        if gridsize ** 2 > M:
            raise ValueError(f"{os.fspath(path)}: gridsize: groups of gridsize**2 = {gridsize ** 2} positions "
                             f"need at least that many scan positions, the file has {M}")
        try:
            groups = group_positions(checked.xcoords, checked.ycoords, gridsize, K, n_groups,
                                     np.random.default_rng(seed))
        except ValueError as exc:  # names the grouping argument (n_groups, K); add the file
            raise ValueError(f"{os.fspath(path)}: {exc}") from None
    try:
        return dataclasses.replace(checked, group_indices=groups,
                                   nphotons=checked.nphotons if nphotons is None else nphotons)
    except ValueError as exc:  # only the nphotons argument can be invalid here
        raise ValueError(f"{os.fspath(path)}: {exc}") from None


def save_npz(path, dataset: PtychoDataset) -> None:
    """Write ``dataset`` to ``path`` (exactly that name) in the NPZ format of SPEC §3, atomically.

    Uncompressed (``np.savez``), through ``ptycho.files.write_npz``: a hidden temporary file in the same
    directory is renamed over ``path``; on any error it is removed and an existing ``path`` is left untouched.
    """
    if not isinstance(dataset, PtychoDataset):
        raise ValueError(f"dataset: must be a PtychoDataset, got {type(dataset).__name__}")
    arrays = {"diffraction": dataset.diffraction, "xcoords": dataset.xcoords, "ycoords": dataset.ycoords,
              "probeGuess": dataset.probe, "group_indices": dataset.group_indices}
    if dataset.obj is not None:
        arrays["objectGuess"] = dataset.obj
    if dataset.scan_index is not None:
        arrays["scan_index"] = dataset.scan_index
    if dataset.nphotons is not None:
        arrays["nphotons"] = np.float64(dataset.nphotons)
    if dataset.mask is not None:
        arrays["mask"] = dataset.mask.astype(np.uint8)
    from ptycho import files

    files.write_npz(path, arrays, compress=False)


def load_object(path) -> np.ndarray:
    """The ``objectGuess`` (H, W) of an NPZ file as complex64, validated like :func:`load_npz` (no pickle).

    Only that key is read, so a file holding nothing but the true object also works. ``ValueError``
    naming the file and the key if it is missing or malformed.
    """
    npz = open_npz(path)
    with npz:
        if "objectGuess" not in npz.files:
            _bad(path, "objectGuess", f"missing (the true object is needed); keys: {sorted(npz.files)}")
        obj = _numeric(path, "objectGuess", _read_key(npz, path, "objectGuess"), "biufc")
    try:
        obj = _complex_array("obj", obj, 2)
    except DatasetFieldError as exc:
        _bad(path, "objectGuess", exc.message)
    if min(obj.shape) < 1:
        _bad(path, "objectGuess", f"expected a non-empty (H, W) object, got {obj.shape}")
    return obj
