"""What a file says it is: the ``toolchain.*`` metadata of an ONNX export and an engine's manifest.

This module owns the contract between the commands that write files and those that read
them. :func:`encode_metadata` is how ``export`` and ``quantize`` write ``metadata_props``;
:func:`read_onnx` and :func:`read_engine` read a file once into a typed object
(:class:`OnnxArtifact`, :class:`EngineArtifact`) that commands hand to runners, so the
precision, the weights' identity and the quantization target are decided in one place.

Precision is what the file computes in: an INT8 Q/DQ file, the dtype of an export, the
precision an engine's manifest records. An explicit ``--precision`` that contradicts the
file is refused in one line (:func:`resolve_precision`) unless the caller allows it, and
then the note saying so goes into the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import ToolchainError

#: Prefix of every metadata_props key the toolchain writes.
META_PREFIX = "toolchain."
#: Name of the model's image input and of its output: the ONNX, engine and runner I/O contract.
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: What a file can compute in; each has its own parity tolerances.
PRECISIONS = ("fp32", "fp16", "int8")
#: Value types of the metadata keys that are not plain strings.
JSON_KEYS = ("classes", "mean", "std", "split")
INT_KEYS = ("image_size", "in_channels", "num_classes", "lrn_count", "opset", "seed", "quant_samples")
BOOL_KEYS = ("fp16_io",)


def encode_metadata(props: dict) -> dict[str, str]:
    """``metadata_props`` entries (prefixed keys, string values) for ``props``: lists and dicts as
    JSON, booleans as "true"/"false", numbers as text. None values are left out."""
    out = {}
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple, dict)):
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
        else:
            text = str(value)
        out[META_PREFIX + key] = text
    return out


def decode_metadata(model, *, source: str = "the ONNX model's") -> dict:
    """The toolchain metadata of an ONNX ModelProto: keys without the prefix, values decoded."""
    out = {}
    for prop in model.metadata_props:
        if not prop.key.startswith(META_PREFIX):
            continue
        key, value = prop.key[len(META_PREFIX):], prop.value
        try:
            if key in JSON_KEYS:
                value = json.loads(value)
            elif key in INT_KEYS:
                value = int(value)
            elif key in BOOL_KEYS:
                value = value == "true"
        except ValueError:  # json.JSONDecodeError is a ValueError
            raise ToolchainError(f"{source} metadata {prop.key} is not readable ({value[:40]!r})",
                                 hint="the file's metadata is damaged; re-export it with 'toolchain export'") from None
        out[key] = value
    return out


def precision_of_metadata(metadata: dict) -> str:
    """What an ONNX file computes in: INT8 for a quantized file, else its dtype (FP32 when unrecorded)."""
    if metadata.get("precision") in PRECISIONS:
        return metadata["precision"]
    return metadata.get("dtype") if metadata.get("dtype") in PRECISIONS else "fp32"


@dataclass(frozen=True)
class OnnxArtifact:
    """An ONNX file and what its metadata says."""

    path: Path
    metadata: dict

    @property
    def precision(self) -> str:
        return precision_of_metadata(self.metadata)

    @property
    def quant_target(self) -> str | None:
        return self.metadata.get("quant_target")

    @property
    def lrn(self) -> str | None:
        return self.metadata.get("lrn")

    def describe(self) -> str:
        return f"ONNX file {self.path}" + (f" (quantized for {self.quant_target})" if self.quant_target else "")


@dataclass(frozen=True)
class EngineArtifact:
    """A TensorRT engine and its manifest."""

    path: Path
    manifest: dict

    @property
    def metadata(self) -> dict:
        """The model section: the ONNX metadata the engine was built from."""
        return self.manifest.get("model") or {}

    @property
    def precision(self) -> str:
        built = (self.manifest.get("build") or {}).get("precision")
        return built if built in PRECISIONS else "fp16"

    @property
    def quant_target(self) -> str | None:
        return self.metadata.get("quant_target")

    @property
    def lrn(self) -> str | None:
        return (self.manifest.get("build") or {}).get("lrn")

    def describe(self) -> str:
        return f"engine {self.path}"


def load_onnx(path, *, load_weights: bool = True):
    """Load an ONNX file with a one-line error for a missing or corrupt file."""
    import onnx
    from google.protobuf.message import DecodeError

    from toolchain.io import require_file

    path = require_file(path, "ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ToolchainError(f"{path} is not a readable ONNX model ({type(exc).__name__})",
                             hint="re-export it with 'toolchain export'") from None
    if not model.graph.node:
        raise ToolchainError(f"{path} is not a readable ONNX model (it has no graph)",
                             hint="re-export it with 'toolchain export'")
    return model


def read_onnx(path, *, model=None) -> OnnxArtifact:
    """Read an ONNX file's metadata once (without its weights); one line for a missing or corrupt file."""
    if model is None:
        model = load_onnx(path, load_weights=False)
    return OnnxArtifact(Path(path), decode_metadata(model, source=f"ONNX file {path}"))


def read_engine(path) -> EngineArtifact:
    """Read and validate an engine's manifest (``ENGINE.manifest.json``); one line when it is missing or bad."""
    from toolchain.trt.manifest import read_manifest

    return EngineArtifact(Path(path), read_manifest(path))


def resolve_precision(requested: str | None, recorded: str, what: str, *,
                      allow_mismatch: bool = False) -> tuple[str, str | None]:
    """(the precision whose tolerances apply, a note for the report or None).

    ``recorded`` is what ``what`` (a file's :meth:`describe`, or a runner) computes in, and it
    decides; ``requested`` may repeat it. One that contradicts it is refused in one line (an INT8
    file held to FP16 tolerances, or FP32 ones to INT8's, checks something other than what runs)
    unless ``allow_mismatch``; then it applies and the note says so.
    """
    if requested is not None and requested not in PRECISIONS:
        raise ToolchainError(f"unknown precision {requested!r}", hint=f"choose {', '.join(PRECISIONS)}")
    if requested is None or requested == recorded:
        return recorded, None
    if not allow_mismatch:
        raise ToolchainError(f"--precision {requested} contradicts {what}, which computes in {recorded}",
                             hint=f"leave --precision out (the {recorded} tolerances apply), or pass "
                                  "--allow-precision-mismatch to hold it to other tolerances (the report says so)")
    return requested, f"{requested} tolerances applied to {what}, which computes in {recorded} (--allow-precision-mismatch)"
