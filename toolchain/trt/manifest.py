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
import sys
from pathlib import Path

import toolchain
from toolchain import lrn_op
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


def numpy_dtype_name(trt_dtype_name: str) -> str:
    try:
        return TRT_DTYPE_TO_NUMPY[trt_dtype_name]
    except KeyError:
        raise ToolchainError(f"TensorRT data type {trt_dtype_name} is not supported by this toolchain") from None


#: ONNX metadata keys copied into the manifest's "model" section.
MODEL_METADATA_KEYS = ("variant", "classes", "num_classes", "image_size", "in_channels", "mean", "std",
                       "checkpoint_sha256", "version", "dtype", "fp16_io", "lrn", "dataset", "precision",
                       "quant_method", "quant_samples", "quant_target", "quant_library_version")


def make_manifest(*, engine_path: Path, engine_sha256: str, engine_bytes: int, info, plan,
                  plugin_path: Path | None, plugin_sha256: str | None, tensorrt_version: str, tensorrt_package: str,
                  device: dict, io: dict, layers: dict, parser: dict, build_seconds: float,
                  loaded: dict | None = None, plugin_calls: dict | None = None,
                  warnings: list[str] | None = None, weights_bytes: int | None = None) -> dict:
    """The manifest body of a build (``info``: the OnnxInfo, ``plan``: the BuildPlan); pure, tested without
    TensorRT. :func:`write_manifest` stamps the format and validates it."""
    plugin = None
    if plugin_path is not None:
        plugin = {"file": str(Path(plugin_path).resolve()), "name": Path(plugin_path).name, "sha256": plugin_sha256,
                  "bytes": Path(plugin_path).stat().st_size, "creator": {
                      "name": lrn_op.OP_TYPE, "version": lrn_op.PLUGIN_VERSION, "namespace": lrn_op.PLUGIN_NAMESPACE},
                  "registration": "dynamic" if plan.dynamic_plugin else "static",
                  # An engine that carries the (dynamic) library needs none loaded at run time.
                  "serialized_in_engine": plan.options.serializes_plugin,
                  "build_calls": plugin_calls}
    return {
        "created": utc_now(),
        "toolchain_version": toolchain.__version__,
        "engine": {"file": Path(engine_path).name, "sha256": engine_sha256, "bytes": engine_bytes},
        "onnx": {"file": str(Path(info.path).resolve()), "sha256": info.sha256, "fused_lrn_nodes": len(info.fused_lrn_nodes),
                 "native_lrn_nodes": info.native_lrn_nodes, "local_functions": info.local_functions},
        "plugin": plugin,
        "model": {key: info.metadata[key] for key in MODEL_METADATA_KEYS if key in info.metadata},
        "environment": {
            "flavour": plan.flavour.name, "tensorrt": tensorrt_version, "tensorrt_package": tensorrt_package,
            "cuda_runtime": device.get("cuda_runtime"), "cuda_driver": device.get("cuda_driver"),
            "nvidia_driver": device.get("nvidia_driver"), "python": sys.version.split()[0],
            "gpu": {"name": device.get("name"), "compute_capability": device.get("compute_capability"),
                    "total_memory_bytes": device.get("total_memory_bytes")},
        },
        "build": {**plan.options.to_dict(), "precision": plan.precision.precision,
                  "strongly_typed": plan.precision.strongly_typed, "fp16_builder_flag": plan.precision.fp16_flag,
                  "int8_builder_flag": plan.precision.int8_flag, "qdq_nodes": info.qdq_nodes,
                  "typing": plan.precision.reason, "profile": {plan.input_name: plan.profile.to_dict()},
                  "targets": plan.targets or ("portable" if plan.flavour.rtx else "this GPU"),
                  "parser": parser, "seconds": round(build_seconds, 2), "notes": plan.notes,
                  "tensorrt_warnings": warnings or [], "weights_bytes": weights_bytes},
        "io": io,
        "layers": layers,
        "loaded": loaded or {"loaded": True, "reason": None},
    }
