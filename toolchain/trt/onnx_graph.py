"""What the builder needs to know about an ONNX graph (inputs, FusedLRN and LRN nodes, Q/DQ), and the
bytes the parser gets. Pure onnx, no TensorRT; the ``toolchain.*`` metadata is read by
:mod:`toolchain.artifacts`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from toolchain import lrn_op
from toolchain.artifacts import decode_metadata
from toolchain.errors import ToolchainError
from toolchain.io import require_file, sha256_file


@dataclass
class OnnxInfo:
    path: str
    sha256: str
    metadata: dict                 # the toolchain.* metadata, decoded (toolchain.artifacts)
    dtype: str | None              # "fp16"/"fp32"
    dtype_source: str              # "metadata" or "initializers"
    lrn: str | None                # metadata "lrn"
    input_names: list[str]
    input_dims: list               # of the first input: ints, or str/None for symbolic axes
    output_names: list[str]
    fused_lrn_nodes: list[str]     # node names of the FusedLRN nodes in the main graph
    nodes_without_namespace: list[str]
    native_lrn_nodes: int
    local_functions: list[str]     # "domain:name" of model-local functions
    qdq_nodes: int = 0             # QuantizeLinear + DequantizeLinear nodes: explicit quantization
    int32_dq_nodes: int = 0        # DequantizeLinear of INT32 initializers (biases), which the parser refuses


def inspect_onnx(path: str | os.PathLike) -> OnnxInfo:
    """What the builder needs to know about an ONNX file; one-line errors for unreadable files."""
    import onnx

    path = require_file(path, "ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ToolchainError(f"{path} is not a readable ONNX model: {' '.join(str(exc).split())[:200]}",
                             hint="export it with `toolchain export`") from None
    metadata = decode_metadata(model, source=f"ONNX file {path}")
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializer_names]
    if not inputs:
        raise ToolchainError(f"{path} has no graph inputs")
    dims = []
    for dim in inputs[0].type.tensor_type.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None))
    fused, no_namespace, native = [], [], 0
    qdq = sum(1 for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear"))
    int32_inits = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT32}
    int32_dq = sum(1 for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in int32_inits)
    for index, node in enumerate(graph.node):
        if node.op_type == lrn_op.OP_TYPE:
            name = node.name or f"{lrn_op.OP_TYPE}_{index}"
            fused.append(name)
            if not any(attr.name == "plugin_namespace" for attr in node.attribute):
                no_namespace.append(name)
        elif node.op_type == "LRN" and node.domain in ("", "ai.onnx"):
            native += 1
    dtype, source = metadata.get("dtype"), "metadata"
    if dtype is None:
        source = "initializers"
        half = sum(1 for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT16)
        full = sum(1 for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT)
        dtype = "fp16" if half > full else "fp32" if full else None
    return OnnxInfo(path=str(path), sha256=sha256_file(path), metadata=metadata, dtype=dtype, dtype_source=source,
                    lrn=metadata.get("lrn"), input_names=[v.name for v in inputs], input_dims=dims,
                    output_names=[v.name for v in graph.output], fused_lrn_nodes=fused,
                    nodes_without_namespace=no_namespace, native_lrn_nodes=native,
                    local_functions=[f"{f.domain}:{f.name}" for f in model.functions], qdq_nodes=qdq,
                    int32_dq_nodes=int32_dq)


def parser_model_bytes(model) -> bytes:
    """The model the ONNX parser gets: ``model`` (a ModelProto, or a path) without the FusedLRN
    model-local function, serialized. The file on disk keeps the function for other consumers.

    Which wins when a local function and a plugin share a name changed across TensorRT
    releases (10.0-10.6: the function; 10.15+: the function unless ENABLE_PLUGIN_OVERRIDE);
    without the function every 10.x and 11.x parser falls back to the plugin registry.
    Nodes, their plugin_namespace/plugin_version attributes, opsets and everything else stay.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    keep = [f for f in copy.functions if not (f.name == lrn_op.OP_TYPE and f.domain == lrn_op.DOMAIN)]
    del copy.functions[:]
    copy.functions.extend(keep)
    return copy.SerializeToString()
