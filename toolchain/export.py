"""PyTorch -> ONNX with every LRN as one ``toolchain.FusedLRN`` node (or native ``LRN``).

This module owns the custom-op export mapping; the op's names come from
:mod:`toolchain.lrn_op` and its ONNX function body from :mod:`toolchain.onnx_lrn`.

Exporter choice: the ``torch.export``-based ("dynamo") exporter,
``torch.onnx.export(..., dynamo=True, custom_translation_table=...)``. During
export every ``nn.LocalResponseNorm`` (ours and PyTorch's) is routed through the
PyTorch custom op ``toolchain::fused_lrn`` (:mod:`toolchain.fused_lrn`, the same op
the fused CUDA path calls), which ``torch.export`` keeps as one opaque graph node,
and the translation table maps that node to one ONNX ``FusedLRN`` node (or one
``LRN``). Why not the TorchScript exporter (``dynamo=False`` + an autograd.Function
``symbolic``)? It still works in torch 2.11-2.14 and is ~3x faster, but it is
deprecated since 2.9 and warns "the feature will be removed"; the dynamo exporter is
PyTorch's default and maintained path. It needs ``onnxscript`` and, with
onnxscript's pre-0.6 evaluator interface that torch <= 2.14 uses, an ``OpSchema``
for the custom node (built unregistered in :func:`toolchain.onnx_lrn.op_schema`).
It costs about 3-4 s per AlexNet on 2 CPU cores (tracing, not weights).

After export the model is post-processed here: LRN nodes are named after their
modules (the name becomes the TensorRT plugin instance name), per-node debug
metadata (local file paths) is dropped, the batch dimension is named ``batch``,
the model-local function and metadata_props are added, optionally the graph is
converted to FP16 (:func:`convert_to_fp16`), and the result must pass
``onnx.checker.check_model(full_check=True)`` and strict shape inference.

FP16 (``dtype="fp16"``): weights and every activation are FP16, the graph's I/O
stays FP32 behind Cast nodes unless ``fp16_io``. FusedLRN nodes then take and
return FP16; the function body accumulates in FP32. ONNX Runtime's CPU provider
has no FP16 kernels for several ops here (Conv, Gemm, MaxPool on x86); its
InsertCastTransformer runs those in FP32 between inserted casts, and its optimizer
may drop redundant FP16<->FP32 cast pairs, so the FP16 file runs in ONNX Runtime
CPU unchanged: the FP16 weights' rounding is exercised, activations are (partly)
kept in FP32, i.e. ORT CPU is at least as accurate as a true FP16 engine. A true
FP16 check of the same file is TensorRT's (``toolchain parity --backend tensorrt``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from toolchain import __version__, lrn_op
from toolchain.artifacts import INPUT_NAME, OUTPUT_NAME, encode_metadata
from toolchain.errors import ToolchainError
from toolchain.lrn_op import LRNParams
from toolchain.onnx_lrn import OPSET, add_lrn_function, native_lrn_problem

BATCH_DIM = "batch"
LRN_MODES = ("plugin", "native")
DTYPES = ("fp32", "fp16")


@dataclass
class ExportResult:
    path: Path | None
    model: object  # onnx.ModelProto
    lrn_nodes: list[str]
    metadata: dict
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def lrn_modules(model) -> list[tuple[str, object]]:
    """(qualified name, module) of every LocalResponseNorm in ``model``, registration order."""
    from torch import nn

    return [(name, module) for name, module in model.named_modules() if isinstance(module, nn.LocalResponseNorm)]


def module_params(module) -> LRNParams:
    return LRNParams(size=int(module.size), alpha=float(module.alpha), beta=float(module.beta),
                     bias=float(module.k))


def check_native(model) -> None:
    """Refuse ``--lrn native`` when any LRN would not be computed exactly as in PyTorch."""
    problems = [f"{name}: {problem}" for name, module in lrn_modules(model)
                if (problem := native_lrn_problem(module_params(module)))]
    if problems:
        raise ToolchainError(f"--lrn native cannot represent this model exactly ({'; '.join(problems)})",
                             hint="use the default --lrn plugin")


@contextlib.contextmanager
def _route_lrn_through_op(model):
    """Make every LRN call ``torch.ops.toolchain.fused_lrn`` (CPU: PyTorch's reference) for tracing."""
    import torch

    from toolchain.fused_lrn import ensure_registered

    ensure_registered()
    patched = []
    try:
        for _, module in lrn_modules(model):
            params = module_params(module)

            def forward(x, p=params):
                return torch.ops.toolchain.fused_lrn(x, p.size, p.alpha, p.beta, p.bias)

            module.forward = forward  # instance attribute shadows the class's forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def _translation_table(lrn: str) -> dict:
    import onnxscript
    import torch
    from onnxscript import opset18

    from toolchain.onnx_lrn import custom_node_attributes, op_schema

    if lrn == "plugin":
        fused = onnxscript.values.Op(onnxscript.values.Opset(lrn_op.DOMAIN, lrn_op.DOMAIN_VERSION), lrn_op.OP_TYPE,
                                     op_schema())

        def translate(x, size: int, alpha: float, beta: float, bias: float):
            return fused(x, **custom_node_attributes(LRNParams(size, alpha, beta, bias)))
    else:
        def translate(x, size: int, alpha: float, beta: float, bias: float):
            return opset18.LRN(x, size=size, alpha=alpha, beta=beta, bias=bias)

    return {torch.ops.toolchain.fused_lrn.default: translate}


def _trace_to_onnx(model, example, *, dynamic_batch: bool, lrn: str, opset: int):
    import logging
    import warnings

    import torch

    model = model.eval()
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1, max=1 << 20)},) if dynamic_batch else None
    # The exporter logs progress at INFO/WARNING level and warns about things we handle.
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [log.level for log in quiet]
    try:
        for log in quiet:
            log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), _route_lrn_through_op(model), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
                custom_translation_table=_translation_table(lrn), optimize=True, verbose=False, report=False)
    except Exception as exc:  # the exporter raises many types; this one is ours to explain
        if isinstance(exc, ToolchainError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ToolchainError(f"ONNX export failed: {type(exc).__name__}: {first}",
                             hint="run with a smaller model to debug, or report this") from exc
    finally:
        for log, level in zip(quiet, levels):
            log.setLevel(level)
    return program.model_proto


def _lrn_call_order(model, example) -> list[str]:
    """Names of the LRN modules in the order a forward pass calls them."""
    import torch

    order = []
    handles = [module.register_forward_pre_hook(lambda m, args, n=name: order.append(n))
               for name, module in lrn_modules(model)]
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return order


#: Node metadata_props key holding the qualified name of the PyTorch module a node came from.
NODE_MODULE_KEY = "toolchain.module"


def module_path(node) -> str | None:
    """The PyTorch module qualified name of an exported node, from the dynamo exporter's name scopes.

    ``pkg.torch.onnx.name_scopes`` is e.g. ``['', 'features', 'features.0', 'conv2d']``: the
    module path, then the op. Nodes of the root module's own forward (e.g. a flatten) give None.
    """
    import ast

    for prop in node.metadata_props:
        if prop.key == NODE_MODULE_KEY:
            return prop.value or None
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and len(scopes) >= 2 and scopes[-2]:
                return str(scopes[-2])
    return None


def _postprocess(proto, *, lrn: str, call_order: list[str], dynamic_batch: bool) -> list[str]:
    graph = proto.graph
    del proto.metadata_props[:]
    for node in graph.node:
        module = module_path(node)
        del node.metadata_props[:]  # exporter debug info with local file paths
        if module:  # the PyTorch module that produced it: layer-wise parity pairs layers by it
            node.metadata_props.add(key=NODE_MODULE_KEY, value=module)
    op_type = lrn_op.OP_TYPE if lrn == "plugin" else "LRN"
    domain = lrn_op.DOMAIN if lrn == "plugin" else ""
    lrn_nodes = [node for node in graph.node if node.op_type == op_type and node.domain == domain]
    if len(lrn_nodes) != len(call_order):
        raise ToolchainError(f"export produced {len(lrn_nodes)} {op_type} nodes for {len(call_order)} LRN calls",
                             hint="this is a bug in toolchain.export")
    taken = {node.name for node in graph.node}
    names = []
    for node, module_name in zip(lrn_nodes, call_order):
        name = f"{op_type}_{module_name}"
        suffix = 1
        while name in taken or name in names:  # a module called twice still gets unique node names
            suffix += 1
            name = f"{op_type}_{module_name}_{suffix}"
        node.name = name
        names.append(name)
    if dynamic_batch:
        for value in (*graph.input, *graph.output):
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_value")
            dim.dim_param = BATCH_DIM
    if lrn == "plugin" and names:
        add_lrn_function(proto, OPSET)
    proto.producer_name = "toolchain"
    proto.producer_version = __version__
    return names


def convert_to_fp16(model, *, fp16_io: bool = False):
    """Rewrite an FP32 graph in place to FP16 (weights, constants, activations).

    Graph I/O stays FP32 behind Cast nodes unless ``fp16_io``. Raises if a weight
    does not fit FP16 (|w| > 65504).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph

    def to_fp16(tensor):
        array = numpy_helper.to_array(tensor)
        if np.isfinite(array).all() and np.abs(array).max(initial=0.0) > 65504:
            raise ToolchainError(f"tensor {tensor.name} has values beyond FP16's range (65504)",
                                 hint="export with --dtype fp32")
        converted = numpy_helper.from_array(array.astype(np.float16), tensor.name)
        tensor.CopyFrom(converted)

    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            to_fp16(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain == "":
            for attr in list(node.attribute):  # scalar/list float constants become FP16 tensors
                if attr.name in ("value_float", "value_floats"):
                    values = [attr.f] if attr.name == "value_float" else list(attr.floats)
                    dims = [] if attr.name == "value_float" else [len(values)]
                    tensor = numpy_helper.from_array(np.asarray(values, dtype=np.float16).reshape(dims), "value")
                    node.attribute.remove(attr)
                    node.attribute.append(helper.make_attribute("value", tensor))
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                to_fp16(attr.t)
            if node.op_type in ("Cast", "RandomNormal", "RandomUniform", "EyeLike") and attr.name in ("to", "dtype") \
                    and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
            if attr.type == onnx.AttributeProto.GRAPH:
                raise ToolchainError(f"FP16 conversion does not handle subgraphs ({node.op_type} {node.name})")
    for value in graph.value_info:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16

    if fp16_io:
        for value in (*graph.input, *graph.output):
            if value.type.tensor_type.elem_type == TensorProto.FLOAT:
                value.type.tensor_type.elem_type = TensorProto.FLOAT16
        return model

    casts_in, casts_out = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}_fp16"
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == value.name:
                    node.input[i] = inner
        casts_in.append(helper.make_node("Cast", [value.name], [inner], name=f"cast_{value.name}_to_fp16",
                                         to=TensorProto.FLOAT16))
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}_fp16"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = inner
            for i, name in enumerate(node.input):  # an output may also feed other nodes
                if name == value.name:
                    node.input[i] = inner
        casts_out.append(helper.make_node("Cast", [inner], [value.name], name=f"cast_{value.name}_to_fp32",
                                          to=TensorProto.FLOAT))
    nodes = [*casts_in, *graph.node, *casts_out]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def check_onnx(model) -> object:
    """Run the ONNX checker (full) and strict, type-checked shape inference; return the inferred model."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = (str(exc).strip().splitlines() or ["invalid model"])[0]
        raise ToolchainError(f"the exported ONNX model is invalid: {first}",
                             hint="this is a bug in toolchain.export; please report it") from exc


def build_metadata(meta: dict, *, checkpoint_sha256: str | None, dtype: str, lrn: str, static_batch: int | None,
                   lrn_count: int, fp16_io: bool = False) -> dict[str, str]:
    """metadata_props (:func:`toolchain.artifacts.encode_metadata`) from a checkpoint's metadata."""
    classes = meta.get("classes") or [str(i) for i in range(int(meta["num_classes"]))]
    props = {
        "variant": str(meta["variant"]),
        "classes": list(classes),
        "num_classes": int(meta["num_classes"]),
        "image_size": int(meta["image_size"]),
        "in_channels": int(meta["in_channels"]),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "checkpoint_sha256": checkpoint_sha256 or "",
        "weights": str(meta.get("weights") or ("checkpoint" if checkpoint_sha256 else "")),
        "version": __version__,
        "dtype": dtype,
        "fp16_io": bool(fp16_io),
        "lrn": lrn,
        "lrn_count": int(lrn_count),
        "batch": "dynamic" if static_batch is None else int(static_batch),
        "opset": OPSET,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "dataset": str(meta["dataset"]) if meta.get("dataset") else None,
        "seed": int(meta["seed"]) if meta.get("seed") is not None else None,
        "split": meta["split"] if isinstance(meta.get("split"), dict) else None,
    }
    return encode_metadata(props)


def export_model(model, meta: dict, *, checkpoint_sha256: str | None = None, output=None, force: bool = False,
                 lrn: str = "plugin", dtype: str = "fp32", fp16_io: bool = False, static_batch: int | None = None,
                 opset: int = OPSET) -> ExportResult:
    """Export ``model`` (described by ``meta``: variant, num_classes, image_size, ...) to ONNX.

    Writes ``output`` atomically when given; always returns the checked ModelProto.
    """
    import time

    import onnx
    import torch

    from toolchain.io import atomic_output, check_writable

    if lrn not in LRN_MODES:
        raise ToolchainError(f"unknown LRN mode {lrn!r}", hint=f"choose one of {', '.join(LRN_MODES)}")
    if dtype not in DTYPES:
        raise ToolchainError(f"unknown dtype {dtype!r}", hint=f"choose one of {', '.join(DTYPES)}")
    if opset != OPSET:
        raise ToolchainError(f"opset {opset} is not supported", hint=f"the toolchain pins opset {OPSET}")
    if fp16_io and dtype != "fp16":
        raise ToolchainError("--fp16-io needs --dtype fp16")
    if static_batch is not None and static_batch < 1:
        raise ToolchainError(f"--static-batch must be >= 1, got {static_batch}")
    if output is not None:
        check_writable(output, force=force)
    if lrn == "native":
        check_native(model)

    started = time.perf_counter()
    model = model.eval().cpu().float()
    shape = (static_batch or 2, int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    call_order = _lrn_call_order(model, example)
    proto = _trace_to_onnx(model, example, dynamic_batch=static_batch is None, lrn=lrn, opset=opset)
    names = _postprocess(proto, lrn=lrn, call_order=call_order, dynamic_batch=static_batch is None)
    if dtype == "fp16":
        convert_to_fp16(proto, fp16_io=fp16_io)
    metadata = build_metadata(meta, checkpoint_sha256=checkpoint_sha256, dtype=dtype, lrn=lrn,
                              static_batch=static_batch, lrn_count=len(names), fp16_io=fp16_io)
    onnx.helper.set_model_props(proto, metadata)
    check_onnx(proto)
    seconds = time.perf_counter() - started
    path = None
    if output is not None:
        with atomic_output(output, force=force) as tmp:
            onnx.save_model(proto, str(tmp), save_as_external_data=False)
        path = Path(output)
    return ExportResult(path=path, model=proto, lrn_nodes=names, metadata=metadata, seconds=seconds)


def export_from_source(output, *, checkpoint=None, variant: str | None = None, weights: str | None = None,
                       image_size: int | None = None, num_classes: int | None = None,
                       in_channels: int | None = None, seed: int = 0, **options) -> ExportResult:
    """Export a checkpoint, or a variant with pretrained or seeded random weights."""
    from toolchain.checkpoint import model_from_source

    if checkpoint is not None and (variant or weights not in (None, "none") or image_size or num_classes
                                   or in_channels):
        raise ToolchainError("--checkpoint describes the model fully",
                             hint="drop --variant/--weights/--image-size/--num-classes/--in-channels")
    if output is not None:
        from toolchain.io import guard_output

        guard_output(output, force=options.get("force", False), inputs={"--checkpoint": checkpoint},
                     what="--output")
    source = model_from_source(checkpoint=checkpoint, variant=variant, weights=weights, image_size=image_size,
                               num_classes=num_classes, in_channels=in_channels, seed=seed)
    meta = dict(source.meta)
    if checkpoint is None:
        meta.setdefault("seed", seed)
    return export_model(source.model, meta, checkpoint_sha256=source.sha256, output=output, **options)
