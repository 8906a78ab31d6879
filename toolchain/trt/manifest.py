"""The engine manifest: what an engine was built from, with what, and how to feed it.

``ENGINE.manifest.json`` sits beside every engine. Engines and plugin libraries
are executable code, so their sha256 is recorded here and checked before either
is loaded (:func:`verify_artifacts`). The I/O section (names, dtypes, shapes,
profile) lets the Triton packager and the deployment examples work from the
manifest alone, without TensorRT.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.io import sha256_file, write_json_atomic

FORMAT = "toolchain.tensorrt-engine"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
LAYERS_SUFFIX = ".layers.json"

#: Sections every manifest must have, and the keys each needs.
REQUIRED = {
    "engine": ("file", "sha256"),
    "onnx": ("sha256",),
    "environment": ("tensorrt", "gpu"),
    "build": ("precision", "lrn"),
    "io": ("inputs", "outputs"),
}
#: numpy dtype name of each TensorRT DataType member name (what the manifest stores).
TRT_DTYPE_TO_NUMPY = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
    "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8_e4m3fn", "INT4": "int4", "FP4": "float4",
}


def manifest_path(engine_path: str | os.PathLike) -> Path:
    return Path(str(engine_path) + MANIFEST_SUFFIX)


def layers_path(engine_path: str | os.PathLike) -> Path:
    return Path(str(engine_path) + LAYERS_SUFFIX)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def file_record(path: str | os.PathLike | None, *, relative_to: Path | None = None) -> dict | None:
    """{"file", "sha256", "bytes"} of a file; "file" relative to the engine's folder when inside it."""
    if path is None:
        return None
    path = Path(path)
    name = str(path)
    if relative_to is not None:
        try:
            name = str(path.resolve().relative_to(relative_to.resolve()))
        except ValueError:
            name = str(path.resolve())
    return {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def validate_manifest(manifest: dict, source: str = "manifest") -> dict:
    """Raise a one-line ToolchainError naming every missing section/key."""
    if not isinstance(manifest, dict):
        raise ToolchainError(f"{source} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ToolchainError(f"{source} is not a toolchain engine manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ToolchainError(f"{source} has format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}",
                             hint="rebuild the engine with this toolchain")
    missing = []
    for section, keys in REQUIRED.items():
        value = manifest.get(section)
        if not isinstance(value, dict):
            missing.append(section)
            continue
        missing.extend(f"{section}.{key}" for key in keys if key not in value)
    for kind in ("inputs", "outputs"):
        for spec in (manifest.get("io") or {}).get(kind) or []:
            missing.extend(f"io.{kind}[{spec.get('name', '?')}].{key}" for key in ("name", "dtype", "shape")
                           if key not in spec)
    if missing:
        raise ToolchainError(f"{source} lacks {', '.join(missing)}", hint="rebuild the engine with `toolchain build --force`")
    return manifest


def write_manifest(engine_path: str | os.PathLike, manifest: dict, *, force: bool = False) -> Path:
    """Write ``ENGINE.manifest.json`` (atomically) after stamping format and version."""
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
    validate_manifest(manifest, "the new manifest")
    return write_json_atomic(manifest_path(engine_path), manifest, force=force)


def read_manifest(engine_or_manifest: str | os.PathLike) -> dict:
    """Read and validate the manifest of an engine (give the engine path or the manifest path)."""
    path = Path(engine_or_manifest)
    if not str(path).endswith(MANIFEST_SUFFIX):
        path = manifest_path(path)
    if not path.is_file():
        raise ToolchainError(f"engine manifest {path} does not exist",
                             hint="engines are only loaded with the manifest `toolchain build` writes beside them")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ToolchainError(f"engine manifest {path} is not valid JSON: {exc}") from None
    return validate_manifest(manifest, str(path))


def verify_artifacts(manifest: dict, engine_path: str | os.PathLike | None = None,
                     plugin_path: str | os.PathLike | None = None) -> None:
    """Check the sha256 of the engine and the plugin library against the manifest.

    Raises ToolchainError naming each file whose hash differs (all checked before
    failing). ``None`` skips that file. A plugin given for an engine built without
    one (``--lrn native``) is refused too: nothing recorded vouches for it.
    """
    problems = []
    if engine_path is not None:
        expected = manifest["engine"]["sha256"]
        actual = sha256_file(engine_path)
        if actual != expected:
            problems.append(f"engine {engine_path} has sha256 {actual[:16]}…, the manifest records {expected[:16]}…")
    if plugin_path is not None:
        recorded = manifest.get("plugin")
        if not recorded:
            problems.append(f"plugin library {plugin_path} was given but the engine was built without a plugin")
        else:
            actual = sha256_file(plugin_path)
            if actual != recorded["sha256"]:
                problems.append(f"plugin library {plugin_path} has sha256 {actual[:16]}…, "
                                f"the manifest records {recorded['sha256'][:16]}… ({recorded.get('file')})")
    if problems:
        raise ToolchainError("; ".join(problems),
                             hint="the file changed since the build: rebuild the engine, or use the files it was built with")


def input_specs(manifest: dict) -> list[dict]:
    return list(manifest["io"]["inputs"])


def output_specs(manifest: dict) -> list[dict]:
    return list(manifest["io"]["outputs"])


def numpy_dtype_name(trt_dtype_name: str) -> str:
    try:
        return TRT_DTYPE_TO_NUMPY[trt_dtype_name]
    except KeyError:
        raise ToolchainError(f"TensorRT data type {trt_dtype_name} is not supported by this toolchain") from None
