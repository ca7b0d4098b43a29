"""Model archive ``wts.h5.zip`` (SPEC §7): save and load the two weight-sharing models safely.

Archive layout (a plain zip; the name is historical, there is no HDF5 inside)::

    manifest.json               format, versions, member files and SHA-256 digests, caller metadata
    autoencoder.keras           Keras-native archive of the autoencoder
    diffraction_to_obj.keras    Keras-native archive of diffraction_to_obj

``manifest.json`` holds::

    {"format": "ptycho-model-archive", "format_version": 1,
     "ptycho_version": ..., "tensorflow_version": ..., "keras_version": ...,
     "members": {"autoencoder": {"file": "autoencoder.keras", "sha256": "<hex>"},
                 "diffraction_to_obj": {"file": "diffraction_to_obj.keras", "sha256": "<hex>"}},
     "diffraction_to_obj": {"inputs": [autoencoder input names], "output": <locator>},
     "metadata": {... caller's JSON-serialisable dict: N, gridsize, intensity scale, ModelConfig ...}}

The two models share weights in memory; Keras archives them separately, so loading restores the
autoencoder and rebuilds ``diffraction_to_obj`` as a sub-model of it (from the same input tensors to the
tensor the locator names), then checks that its weights equal the archived ``diffraction_to_obj``'s.
The second archive is thus a check and a standalone copy, not the source of the returned model.

Writing is atomic (``ptycho.files.atomic_path``): the zip is written to a temporary file in the destination
directory and moved into place with ``os.replace``; any failure removes the temporary file and leaves a
previous archive intact. Loading checks the manifest's ``metadata.gridsize``, when present, against the
model's (B, N, N, C) input.
Loading never unpickles: ``keras.saving.load_model(..., safe_mode=True)`` refuses Lambda layers and
other arbitrary code.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import tempfile
import zipfile
import zlib

from ptycho import files

FORMAT = "ptycho-model-archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_NAMES = ("autoencoder", "diffraction_to_obj")


# ----------------------------------------------------------------------------- save


def _keras():
    import keras

    return keras


def _check_models(autoencoder, diffraction_to_obj) -> dict:
    """Validate the pair and return how diffraction_to_obj sits inside the autoencoder graph."""
    keras = _keras()
    for name, model in (("autoencoder", autoencoder), ("diffraction_to_obj", diffraction_to_obj)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"{name}: must be a keras.Model, got {type(model).__name__}")
    auto_inputs = {id(t): t.name for t in autoencoder.inputs}
    missing = [t.name for t in diffraction_to_obj.inputs if id(t) not in auto_inputs]
    if missing or len(diffraction_to_obj.outputs) != 1:
        raise ValueError("diffraction_to_obj: must be a single-output sub-model of autoencoder built on "
                         f"its input tensors (inputs not shared: {missing}, "
                         f"{len(diffraction_to_obj.outputs)} outputs)")
    return {"inputs": [t.name for t in diffraction_to_obj.inputs],
            "output": _locate(autoencoder, diffraction_to_obj.outputs[0])}


def _locate(autoencoder, tensor) -> dict:
    """Locator of ``tensor`` in the autoencoder: an output index, else (layer, node, tensor index)."""
    for index, output in enumerate(autoencoder.outputs):
        if output is tensor:
            return {"autoencoder_output": index}
    operation, node_index, tensor_index = tensor._keras_history
    if operation not in autoencoder.layers:
        raise ValueError("diffraction_to_obj: its output is not produced by a layer of autoencoder, so "
                         "the shared weights could not be restored on loading")
    return {"layer": operation.name, "node": int(node_index), "tensor": int(tensor_index)}


def _versions() -> dict:
    """The manifest's ``ptycho_version``, ``tensorflow_version`` and ``keras_version`` (``runlog.versions``)."""
    from ptycho.runlog import versions

    recorded = versions()
    return {f"{name}_version": recorded[name] for name in ("ptycho", "tensorflow", "keras")}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _keras_bytes(model, directory: str, name: str) -> bytes:
    file = os.path.join(directory, f"{name}.keras")
    model.save(file)
    with open(file, "rb") as handle:
        return handle.read()


def _write_atomically(path: str, members: dict) -> None:
    """Write ``members`` (name -> bytes) as a zip at ``path``, flushed to disk, with ``files.atomic_path``;
    ``path``'s directory is created if missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with files.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        # Deflated, not stored: a stored .keras member is itself a zip, and a truncated outer
        # archive would then read as that inner zip instead of failing.
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        handle.flush()
        os.fsync(handle.fileno())


def save_model(path, autoencoder, diffraction_to_obj, metadata: dict | None = None) -> str:
    """Save both models to the archive ``path`` (e.g. ``.../wts.h5.zip``) atomically; return the path.

    autoencoder : keras.Model; diffraction_to_obj : keras.Model, a single-output sub-model of the
        autoencoder on its input tensors (as built by ``ptycho.model.create_model_with_gridsize``).
    metadata : JSON-serialisable dict stored under ``manifest["metadata"]`` (N, gridsize, intensity
        scale, ModelConfig fields, ...). ValueError if it is not a dict or not JSON-serialisable.
    """
    path = os.fspath(path)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata: must be a dict, got {type(metadata).__name__}")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata: must be JSON-serialisable (finite numbers): {exc}") from None
    layout = _check_models(autoencoder, diffraction_to_obj)
    members, digests = {}, {}
    with tempfile.TemporaryDirectory(prefix="ptycho-save-") as scratch:
        for name, model in zip(MODEL_NAMES, (autoencoder, diffraction_to_obj)):
            data = _keras_bytes(model, scratch, name)
            members[f"{name}.keras"] = data
            digests[name] = {"file": f"{name}.keras", "sha256": _sha256(data)}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **_versions(),
                "members": digests, "diffraction_to_obj": layout, "metadata": metadata}
    members = {MANIFEST: json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"), **members}
    _write_atomically(path, members)
    return path


# ----------------------------------------------------------------------------- load


def _read_archive(path: str) -> tuple[dict, dict]:
    """Validate the zip and return (manifest, {model name: .keras bytes}); ValueError otherwise."""
    def fail(problem):
        raise ValueError(f"{path}: {problem}")

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model archive")
    try:
        with zipfile.ZipFile(path, "r") as archive:
            names = set(archive.namelist())
            if MANIFEST not in names:
                fail(f"missing member {MANIFEST!r} (not a ptycho model archive, or truncated)")
            manifest = json.loads(archive.read(MANIFEST).decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                fail(f"{MANIFEST} is not a {FORMAT} manifest")
            if manifest.get("format_version") != FORMAT_VERSION:
                fail(f"unsupported format_version {manifest.get('format_version')!r}")
            blobs = {}
            for name in MODEL_NAMES:
                entry = manifest.get("members", {}).get(name)
                if not isinstance(entry, dict) or "file" not in entry or "sha256" not in entry:
                    fail(f"{MANIFEST} has no file/sha256 entry for {name!r}")
                if entry["file"] not in names:
                    fail(f"missing member {entry['file']!r}")
                data = archive.read(entry["file"])
                if _sha256(data) != entry["sha256"]:
                    fail(f"checksum mismatch for member {entry['file']!r} (archive altered or corrupt)")
                blobs[name] = data
    except (zipfile.BadZipFile, zlib.error) as exc:
        fail(f"not a valid zip archive (corrupt or truncated): {type(exc).__name__}: {exc}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"{MANIFEST} is not valid JSON: {exc}")
    except (EOFError, zipfile.LargeZipFile, OSError) as exc:
        fail(f"unreadable archive (truncated?): {exc}")
    return manifest, blobs


def _referenced_modules(node, found: set) -> set:
    """Every ``"module"`` string in a Keras config tree."""
    if isinstance(node, dict):
        if isinstance(node.get("module"), str):
            found.add(node["module"])
        for value in node.values():
            _referenced_modules(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced_modules(value, found)
    return found


def _register_package_objects(path: str, blobs: dict, compile: bool) -> None:
    """Import the ``ptycho`` modules whose registered Keras objects the archive refers to.

    Keras (safe mode) resolves custom layers through its registry, which a module fills when it is
    imported; it does not import non-Keras modules itself. Only modules of this package are imported
    (named in the members' ``config.json``), plus ``ptycho.losses`` when compiling.
    """
    modules = {"ptycho.losses"} if compile else set()
    for name, data in blobs.items():
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                config = json.loads(inner.read("config.json").decode("utf-8"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: member {name}.keras is not a Keras archive ({exc})") from None
        modules |= {m for m in _referenced_modules(config, set())
                    if m == "ptycho" or m.startswith("ptycho.")}
    for module in sorted(modules):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ValueError(f"{path}: the models need module {module!r}, which cannot be imported "
                             f"({exc})") from exc


def _load_keras(path: str, directory: str, name: str, data: bytes, compile: bool):
    keras = _keras()
    file = os.path.join(directory, f"{name}.keras")
    with open(file, "wb") as handle:
        handle.write(data)
    try:
        return keras.saving.load_model(file, safe_mode=True, compile=compile)
    except Exception as exc:  # Keras raises many types for bad configs; report them uniformly
        raise ValueError(f"{path}: member {name}.keras could not be loaded safely: "
                         f"{type(exc).__name__}: {exc}") from exc


def _rebuild_sub_model(path: str, autoencoder, layout: dict):
    keras = _keras()
    by_name = {t.name: t for t in autoencoder.inputs}
    try:
        inputs = [by_name[name] for name in layout["inputs"]]
        output = layout["output"]
        if "autoencoder_output" in output:
            tensor = autoencoder.outputs[output["autoencoder_output"]]
        else:
            node = autoencoder.get_layer(output["layer"])._inbound_nodes[output["node"]]
            tensor = node.outputs[output["tensor"]]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: diffraction_to_obj cannot be located in the autoencoder "
                         f"({type(exc).__name__}: {exc})") from None
    inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, tensor, name="diffraction_to_obj")


def _check_same_weights(path: str, rebuilt, archived) -> None:
    import numpy as np

    mine = sorted((w.path, w) for w in rebuilt.weights)
    theirs = sorted((w.path, w) for w in archived.weights)
    if [p for p, _ in mine] != [p for p, _ in theirs]:
        raise ValueError(f"{path}: diffraction_to_obj weights differ from the autoencoder's sub-model "
                         "(different variables)")
    for (name, a), (_, b) in zip(mine, theirs):
        if a.shape != b.shape or not np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy())):
            raise ValueError(f"{path}: diffraction_to_obj weight {name!r} differs from the autoencoder's")


def _check_gridsize(path: str, manifest: dict, autoencoder) -> None:
    """ValueError naming ``path`` if ``manifest["metadata"]["gridsize"]`` (when recorded) is not the gridsize
    of the model's first input, (B, N, N, C) with C = gridsize² (``ptycho.inputs.model_geometry``)."""
    from ptycho.inputs import model_geometry

    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or "gridsize" not in metadata:
        return
    recorded = metadata["gridsize"]
    try:
        _, gridsize = model_geometry(autoencoder)
    except ValueError as exc:
        raise ValueError(f"{path}: the manifest records gridsize {recorded!r}, but the model's input is not "
                         f"(B, N, N, gridsize²): {exc}") from None
    if isinstance(recorded, bool) or recorded != gridsize:
        raise ValueError(f"{path}: the manifest records gridsize {recorded!r}, but the model's input is for "
                         f"gridsize {gridsize} (C = {gridsize ** 2})")


def load_model(path, compile: bool = False):
    """Load an archive written by :func:`save_model`.

    Returns ``(autoencoder, diffraction_to_obj, manifest)``: ``diffraction_to_obj`` is rebuilt as a
    sub-model of the loaded autoencoder (shared weights, as the factory builds it) and checked against
    the archived copy. ``compile=True`` also restores the compiled loss/optimizer of the autoencoder.
    Raises FileNotFoundError if ``path`` does not exist and ValueError naming ``path`` and the problem
    for anything else wrong: not a zip, truncated, missing member, checksum mismatch, bad manifest,
    unsafe content (Lambda layers), a diffraction_to_obj that does not match the autoencoder, or a manifest
    gridsize (``metadata.gridsize``) that is not the model's.
    """
    path = os.fspath(path)
    manifest, blobs = _read_archive(path)
    _register_package_objects(path, blobs, compile)
    with tempfile.TemporaryDirectory(prefix="ptycho-load-") as scratch:
        autoencoder = _load_keras(path, scratch, "autoencoder", blobs["autoencoder"], compile)
        archived = _load_keras(path, scratch, "diffraction_to_obj", blobs["diffraction_to_obj"], False)
    diffraction_to_obj = _rebuild_sub_model(path, autoencoder, manifest.get("diffraction_to_obj", {}))
    _check_same_weights(path, diffraction_to_obj, archived)
    _check_gridsize(path, manifest, autoencoder)
    return autoencoder, diffraction_to_obj, manifest
