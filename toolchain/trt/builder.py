"""Build an FP16 TensorRT engine from the exported ONNX, with LRN through the FusedLRN plugin.

Flow (:func:`build_engine`): read the ONNX (metadata, input dims, FusedLRN nodes)
and decide everything in pure Python (:func:`plan_build`: network typing for this
TensorRT major, optimization profile, LRN mode); refuse existing outputs before
any work; then load the plugin library (sha256 recorded), parse with the plugin
override flag, check that the plugin (not the model-local function) took every
FusedLRN node, build with a persistent timing cache and DETAILED profiling
verbosity, and write the engine, its layer information and its manifest, each
atomically. Only :func:`_build_with_tensorrt` and its helpers touch TensorRT.

A Q/DQ ONNX (``toolchain quantize``) is explicit quantization: ``inspect_onnx`` counts
its Q/DQ nodes and :func:`toolchain.trt.compat.plan_precision` plans an INT8 engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import toolchain
from toolchain import lrn_op
from toolchain.errors import ToolchainError
from toolchain.io import check_writable, require_file, sha256_file, write_bytes_atomic, write_text_atomic
from toolchain.trt import compat, create_checked, make_logger, manifest as manifest_mod
from toolchain.trt.compat import BuildOptions, Flavour, PrecisionPlan, Profile

#: ONNX metadata keys copied into the manifest's "model" section (JSON-decoded).
MODEL_METADATA_KEYS = ("variant", "classes", "num_classes", "image_size", "in_channels", "mean", "std",
                       "checkpoint_sha256", "version", "dtype", "fp16_io", "lrn", "dataset", "precision",
                       "quant_method", "quant_samples", "quant_target", "quant_library_version")


# --------------------------------------------------------------------------- ONNX facts (onnx, no TensorRT)


@dataclass
class OnnxInfo:
    path: str
    sha256: str
    metadata: dict                 # raw metadata_props strings
    dtype: str | None              # "fp16"/"fp32"
    dtype_source: str              # "metadata" or "initializers"
    lrn: str | None                # metadata toolchain.lrn
    input_names: list[str]
    input_dims: list               # of the first input: ints, or str/None for symbolic axes
    output_names: list[str]
    fused_lrn_nodes: list[str]     # node names of the FusedLRN nodes in the main graph
    nodes_without_namespace: list[str]
    native_lrn_nodes: int
    local_functions: list[str]     # "domain:name" of model-local functions
    qdq_nodes: int = 0             # QuantizeLinear + DequantizeLinear nodes: explicit quantization
    int32_dq_nodes: int = 0        # DequantizeLinear of INT32 initializers (biases), which the parser refuses

    def model_section(self) -> dict:
        out = {}
        for key in MODEL_METADATA_KEYS:
            raw = self.metadata.get(f"toolchain.{key}")
            if raw is None:
                continue
            try:
                out[key] = json.loads(raw)
            except (TypeError, ValueError):
                out[key] = raw
        return out


def inspect_onnx(path: str | os.PathLike) -> OnnxInfo:
    """What the builder needs to know about an ONNX file; one-line errors for unreadable files."""
    import onnx

    path = require_file(path, "ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ToolchainError(f"{path} is not a readable ONNX model: {' '.join(str(exc).split())[:200]}",
                             hint="export it with `toolchain export`") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
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
    dtype, source = metadata.get("toolchain.dtype"), "metadata"
    if dtype is None:
        source = "initializers"
        half = sum(1 for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT16)
        full = sum(1 for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT)
        dtype = "fp16" if half > full else "fp32" if full else None
    return OnnxInfo(path=str(path), sha256=sha256_file(path), metadata=metadata, dtype=dtype, dtype_source=source,
                    lrn=metadata.get("toolchain.lrn"), input_names=[v.name for v in inputs], input_dims=dims,
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


# --------------------------------------------------------------------------- the plan (pure)


@dataclass
class BuildPlan:
    options: BuildOptions
    precision: PrecisionPlan
    profile: Profile
    input_name: str
    needs_plugin: bool
    notes: list[str] = field(default_factory=list)
    plugin_path: Path | None = None  # set by build_engine once the library is found
    flavour: Flavour = field(default_factory=lambda: Flavour(compat.FULL, "10.16.0"))
    targets: list[str] = field(default_factory=list)  # TensorRT-RTX compute capabilities; empty: portable

    @property
    def dynamic_plugin(self) -> bool:
        """Whether the plugin is the dynamic-registration library (IPluginRegistry.loadLibrary): what
        TensorRT-RTX loads, and what a build that serializes the library into the engine needs."""
        return self.needs_plugin and (self.flavour.rtx or self.options.serializes_plugin)


def plan_build(info: OnnxInfo, options: BuildOptions, builder: str | Flavour) -> BuildPlan:
    """Every decision of a build, before TensorRT does anything; one-line errors for bad combinations.

    ``builder``: the flavour that builds (a plain version string means the full TensorRT of that version).
    """
    options.validate()
    flavour = builder if isinstance(builder, Flavour) else Flavour(compat.FULL, builder)
    flavour_notes = compat.check_flavour_options(options, flavour)
    targets = compat.resolve_targets(options.compute_capabilities, flavour)
    if compat.INPUT_NAME not in info.input_names:
        raise ToolchainError(f"the ONNX input is named {info.input_names[0]!r}, expected {compat.INPUT_NAME!r}",
                             hint="export it with `toolchain export`")
    compat.check_lrn_mode(options.lrn, info.lrn, len(info.fused_lrn_nodes), lrn_op.OP_TYPE)
    function = f"{lrn_op.DOMAIN}:{lrn_op.OP_TYPE}"
    if options.lrn == "function" and function not in info.local_functions:
        raise ToolchainError(f"--lrn function needs the model-local function {function}, which {info.path} lacks",
                             hint="re-export it with `toolchain export`, or build it with --lrn plugin")
    if info.dtype is None:
        raise ToolchainError(f"cannot tell whether {info.path} is FP16 or FP32 (no toolchain.dtype metadata)",
                             hint="export it with `toolchain export --dtype fp16`")
    if info.metadata.get("toolchain.precision") == "int8" and not info.qdq_nodes:
        raise ToolchainError(f"{info.path} says it is INT8 but has no QuantizeLinear/DequantizeLinear nodes",
                             hint="quantize it again with `toolchain quantize`")
    if info.int32_dq_nodes:
        raise ToolchainError(f"{info.path} dequantizes {info.int32_dq_nodes} INT32 tensor(s) (biases quantized for "
                             "ONNX Runtime), which TensorRT's ONNX parser refuses",
                             hint="quantize with `toolchain quantize --target tensorrt`")
    precision = compat.plan_precision(info.dtype, flavour.version, allow_fp32=options.allow_fp32,
                                      quantized=info.qdq_nodes > 0, flavour=flavour.name)
    profile = compat.resolve_profile(info.input_dims, info.metadata, options)
    notes = [precision.reason, *flavour_notes]
    if info.dtype_source != "metadata":
        notes.append(f"no toolchain.dtype metadata: {info.dtype} guessed from the initializers")
    if options.serializes_plugin:
        notes.append(f"{'version-compatible: ' if options.version_compatible else ''}the dynamic plugin library is "
                     "serialized into the engine")
    if flavour.rtx:
        notes.append(f"{flavour.label} targets: {', '.join(targets) if targets else 'its portable default'}")
    if options.lrn == "function":
        notes.append(f"--lrn function: the parser imports the {lrn_op.OP_TYPE} nodes' local function as standard "
                     "layers; no plugin is loaded")
    if info.nodes_without_namespace:
        notes.append(f"{len(info.nodes_without_namespace)} {lrn_op.OP_TYPE} node(s) lack plugin_namespace: "
                     f"the parser looks the plugin up in namespace '' (or the node's domain), not {lrn_op.PLUGIN_NAMESPACE!r}")
    return BuildPlan(options=options, precision=precision, profile=profile, input_name=compat.INPUT_NAME,
                     needs_plugin=options.lrn == "plugin", notes=notes, flavour=flavour, targets=targets)


def load_decision(flavour: Flavour, device: dict | None, targets: list[str]) -> str | None:
    """Why the freshly built engine is not deserialized here (None: load it, inspect it, read its I/O).

    The full builder only runs with a GPU, so its engines are always loaded. TensorRT-RTX builds
    on the CPU; deserializing needs a GPU among the engine's targets.
    """
    if not flavour.rtx:
        return None
    if not device or not device.get("compute_capability"):
        return (f"no CUDA GPU here: {flavour.label} built it ahead of time on the CPU; it is compiled for the GPU "
                "when an RTX-class GPU loads it")
    problem = compat.rtx_gpu_problem(device["compute_capability"], targets)
    return f"{problem}, so it cannot be loaded here" if problem else None


def layer_counts(types: list[str]) -> dict[str, int]:
    """Layer type name -> count, most common first (the manifest's ``layers.by_type``)."""
    counts: dict[str, int] = {}
    for name in types:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


TRACE_LINE = re.compile(rf"{lrn_op.OP_TYPE} '(?P<node>[^']*)' build call (?P<method>\w+): (?P<detail>.*)")
DIMS = re.compile(r"type (?P<type>\w+) min \[(?P<min>[-\d,]*)\] max \[(?P<max>[-\d,]*)\]")


def summarize_plugin_trace(lines: list[str]) -> dict:
    """The FusedLRN plugin's build-call trace (one line per call TensorRT made) as the manifest records it:
    calls per method, and per node the type and min/max input shapes ``configurePlugin`` was given."""
    calls: dict[str, int] = {}
    configured: dict[str, dict] = {}
    for line in lines:
        match = TRACE_LINE.search(line)
        if not match:
            continue
        method = match["method"]
        calls[method] = calls.get(method, 0) + 1
        dims = DIMS.search(match["detail"]) if method == "configurePlugin" else None
        if dims:
            to_list = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
            configured[match["node"]] = {"type": dims["type"], "min": to_list(dims["min"]), "max": to_list(dims["max"])}
    return {"calls": calls, "configure": configured}



def output_paths(engine_path: str | os.PathLike) -> dict[str, Path]:
    engine_path = Path(engine_path)
    return {"engine": engine_path, "manifest": manifest_mod.manifest_path(engine_path),
            "layers": manifest_mod.layers_path(engine_path)}


def check_outputs(engine_path: str | os.PathLike, *, force: bool) -> dict[str, Path]:
    """Refuse (before an expensive build) to overwrite the engine, manifest or layer file without force."""
    paths = output_paths(engine_path)
    for path in paths.values():
        check_writable(path, force=force)
    return paths


def find_plugin_layers(layer_info: dict | list | str, op_type: str = lrn_op.OP_TYPE,
                       node_names: list[str] | None = None) -> list[str]:
    """Names of the plugin layers in engine-inspector JSON that are ours.

    A layer counts when its LayerType mentions "plugin" and the op type or one of
    the FusedLRN node names appears in it (the ONNX parser names layers after nodes).
    """
    if isinstance(layer_info, str):
        layer_info = json.loads(layer_info)
    layers = layer_info.get("Layers", []) if isinstance(layer_info, dict) else layer_info
    wanted = [op_type, *(node_names or [])]
    found = []
    for layer in layers:
        if isinstance(layer, str):  # ProfilingVerbosity.LAYER_NAMES_ONLY gives bare names
            continue
        if "plugin" not in str(layer.get("LayerType", "")).lower():
            continue
        text = json.dumps(layer)
        if any(w and w in text for w in wanted):
            found.append(str(layer.get("Name", "?")))
    return found


def make_manifest(*, engine_path: Path, engine_sha256: str, engine_bytes: int, info: OnnxInfo, plan: BuildPlan,
                  plugin_path: Path | None, plugin_sha256: str | None, tensorrt_version: str, tensorrt_package: str,
                  device: dict, io: dict, layers: dict, parser: dict, build_seconds: float,
                  loaded: dict | None = None, plugin_calls: dict | None = None,
                  warnings: list[str] | None = None, weights_bytes: int | None = None) -> dict:
    """The manifest body (see :mod:`toolchain.trt.manifest`); pure, so tested without TensorRT."""
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
        "created": manifest_mod.utc_now(),
        "toolchain_version": toolchain.__version__,
        "engine": {"file": Path(engine_path).name, "sha256": engine_sha256, "bytes": engine_bytes},
        "onnx": {"file": str(Path(info.path).resolve()), "sha256": info.sha256, "fused_lrn_nodes": len(info.fused_lrn_nodes),
                 "native_lrn_nodes": info.native_lrn_nodes, "local_functions": info.local_functions},
        "plugin": plugin,
        "model": info.model_section(),
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


# --------------------------------------------------------------------------- TensorRT


def build_engine(onnx_path, engine_path, *, plugin_library=None, lrn: str = "plugin", min_batch: int | None = None,
                 opt_batch: int | None = None, max_batch: int | None = None, workspace_mib: int | None = None,
                 timing_cache=None, force: bool = False, allow_fp32: bool = False, verbose: bool = False,
                 version_compatible: bool = False, embed_plugin: bool = False, compute_capabilities=(),
                 tensorrt: str = "auto", log=None) -> Path:
    """Build ENGINE from ONNX; write ENGINE, ENGINE.layers.json and ENGINE.manifest.json. Returns ENGINE.

    ``tensorrt`` picks the builder: "full" (``tensorrt``), "rtx" (``tensorrt_rtx``, builds on the CPU)
    or "auto" (the full one when installed, else TensorRT-RTX). ``plugin_library`` defaults to
    ``toolchain.plugin.find_library("tensorrt")`` (unused with ``lrn="native"``/``"function"``), or to
    the dynamic variant where the build needs it: TensorRT-RTX, ``version_compatible`` (a
    VERSION_COMPATIBLE engine the lean runtime runs) and ``embed_plugin`` (the library serialized
    into the engine). ``compute_capabilities``: TensorRT-RTX targets (default: its portable set).
    Batches left ``None`` default to 1 / max / 256 for a dynamic batch axis, or to the ONNX's static batch.
    """
    from toolchain.trt import import_tensorrt_builder

    log = log or (lambda message: print(message, file=sys.stderr))
    options = BuildOptions(lrn=lrn, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                           workspace_mib=workspace_mib, timing_cache=str(timing_cache) if timing_cache else None,
                           allow_fp32=allow_fp32, version_compatible=version_compatible, embed_plugin=embed_plugin,
                           compute_capabilities=tuple(str(c) for c in compute_capabilities or ())).validate()
    paths = check_outputs(engine_path, force=force)
    info = inspect_onnx(onnx_path)
    trt = import_tensorrt_builder(tensorrt)
    flavour = compat.flavour_of(trt.__name__, trt.__version__)
    plan = plan_build(info, options, flavour)
    if plugin_library and not plan.needs_plugin:
        plan.notes.append(f"--lrn {lrn}: the plugin library is not needed and not loaded")
    if flavour.rtx:
        from toolchain.trt import ensure_rtx_parser_library, rtx_library_dir

        # Before any plugin node reaches the parser, which would otherwise abort the process.
        if ensure_rtx_parser_library(rtx_library_dir(trt)) == "created":
            plan.notes.append(f"linked libtensorrt_rtx.so in {rtx_library_dir(trt)} (TensorRT-RTX's ONNX parser "
                              "dlopens that name)")
    plugin_path = plugin_sha256 = None
    if plan.needs_plugin:
        plugin_path, plugin_sha256 = _load_plugin(trt, plan, plugin_library)
        plan.plugin_path = plugin_path.resolve()
    device = _device_or_none()
    not_loaded = load_decision(flavour, device, plan.targets)
    started = time.perf_counter()
    with _plugin_trace_file() as trace_path:
        result = _build_with_tensorrt(trt, info, plan, load=not_loaded is None, verbose=verbose, log=log)
        trace = result["plugin_trace"] + _read_lines(trace_path)
    seconds = time.perf_counter() - started

    engine_bytes = result["engine"]
    engine_sha256 = hashlib.sha256(engine_bytes).hexdigest()
    layer_text = result["layer_info"]
    plugin_layers = find_plugin_layers(layer_text, node_names=info.fused_lrn_nodes) if result["loaded"] else []
    if plan.needs_plugin and result["loaded"] and not plugin_layers:
        # The network check passed, so this is about the inspector's format; say so instead of failing.
        log("warning: the engine inspector lists no FusedLRN plugin layer; see " + str(paths["layers"]))
    network = result["network"]
    layers = {"file": paths["layers"].name, "source": "engine inspector" if result["loaded"] else "network",
              "network_layers": network["total"], "by_type": network["by_type"],
              "network_plugin_layers": network["plugin_v3"], "plugin_io": network["plugin_io"],
              "network_lrn_layers": network["lrn"], "engine_plugin_layers": plugin_layers}
    if timing_cache and result["timing_cache"]:
        # A cache, not a result: replacing it is the point (still atomic).
        write_bytes_atomic(timing_cache, result["timing_cache"], force=True)
    write_bytes_atomic(paths["engine"], engine_bytes, force=force)
    write_text_atomic(paths["layers"], layer_text or "{}", force=force)
    body = make_manifest(engine_path=paths["engine"], engine_sha256=engine_sha256, engine_bytes=len(engine_bytes),
                         info=info, plan=plan, plugin_path=plugin_path, plugin_sha256=plugin_sha256,
                         tensorrt_version=trt.__version__, tensorrt_package=trt.__name__, device=device or {},
                         io=result["io"], layers=layers, parser=result["parser"], build_seconds=seconds,
                         loaded={"loaded": result["loaded"], "reason": not_loaded}, warnings=result["warnings"],
                         weights_bytes=result["weights_bytes"],
                         plugin_calls=summarize_plugin_trace(trace) if plan.needs_plugin else None)
    manifest_mod.write_manifest(paths["engine"], body, force=force)
    # After the work: a failed build says one line, a good one also what was decided on the way.
    for note in plan.notes:
        log(f"note: {note}")
    return paths["engine"]


def _load_plugin(trt, plan: BuildPlan, plugin_library) -> tuple[Path, str]:
    """Load the plugin library the plan needs (static: dlopen; dynamic: the registry's loadLibrary) and
    check that it registered the FusedLRN creator; return its path and sha256."""
    from toolchain.trt.plugins import (default_plugin_library, load_dynamic_plugin_library, load_plugin_library,
                                       require_creator)

    if plan.dynamic_plugin:
        path = Path(plugin_library) if plugin_library else default_plugin_library("tensorrt_dynamic")
        why = (f"{plan.flavour.label} loads plugins with IPluginRegistry.loadLibrary" if plan.flavour.rtx
               else "a plugin serialized into the engine must be")
        digest = load_dynamic_plugin_library(trt, path, why=why)
    else:
        path = Path(plugin_library) if plugin_library else default_plugin_library()
        digest = load_plugin_library(path)
    require_creator(trt, path)
    return path, digest


def _device_or_none() -> dict | None:
    """This machine's GPU 0 (name, compute capability, versions), or None without one."""
    from toolchain.errors import MissingDependencyError
    from toolchain.trt.device import device_info

    try:
        return device_info(0)
    except MissingDependencyError:
        return None


class _plugin_trace_file:
    """A temporary file named by $TOOLCHAIN_LRN_TRACE_FILE for the duration of a build: the plugin
    appends its build-call lines there (TensorRT-RTX hands a loaded library no logger)."""

    def __enter__(self) -> Path:
        handle, name = tempfile.mkstemp(prefix="toolchain-lrn-trace-", suffix=".log")
        os.close(handle)
        self.path = Path(name)
        self.previous = os.environ.get(lrn_op.TRACE_FILE_ENV)
        os.environ[lrn_op.TRACE_FILE_ENV] = name
        return self.path

    def __exit__(self, *exc) -> None:
        if self.previous is None:
            os.environ.pop(lrn_op.TRACE_FILE_ENV, None)
        else:
            os.environ[lrn_op.TRACE_FILE_ENV] = self.previous
        self.path.unlink(missing_ok=True)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _network_flags(trt, plan: BuildPlan) -> int:
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if plan.precision.strongly_typed and strongly_typed is not None:
        # Ignored where every network is strongly typed (11.x, RTX) but still defined there.
        flags |= 1 << int(strongly_typed)
    return flags


def _parse(trt, network, logger, info: OnnxInfo, plan: BuildPlan) -> tuple[object, dict]:
    parser = trt.OnnxParser(network, logger)
    override = getattr(trt.OnnxParserFlag, "ENABLE_PLUGIN_OVERRIDE", None)
    keep_function = plan.options.lrn == "function"
    if override is not None and not keep_function:
        # 10.15+: a node with a model-local function goes to the function unless this is set.
        parser.set_flag(override)
    # For the plugin, the parser gets the model without the FusedLRN local function, so every node
    # takes the plugin on every release; ``path`` lets it find external data beside the file.
    data = Path(info.path).read_bytes() if keep_function else parser_model_bytes(info.path)
    from toolchain.trt.plugins import captured_stderr, split_plugin_output

    with captured_stderr() as native:  # the plugin reports refusals there when TensorRT gives it no logger
        ok = parser.parse(data, info.path)
    refusals, rest = split_plugin_output(native["text"])
    if rest:
        print(rest, file=sys.stderr)
    if not ok or parser.num_errors:
        lines = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        if logger.verbose:
            for line in lines:
                print(f"onnx parser: {line}", file=sys.stderr)
        if refusals:
            node, reason = refusals[0]
            raise ToolchainError(f"the {lrn_op.OP_TYPE} plugin refused node {node!r} of {info.path}: {reason}",
                                 hint="fix the node's attributes (re-export with `toolchain export`); "
                                      "`toolchain plugin check --onnx` checks every node")
        first = lines[0] if lines else logger.last_error()
        raise ToolchainError(f"TensorRT could not parse {info.path}: {first}"
                             + (f" (and {len(lines) - 1} more error(s); --verbose lists them)" if len(lines) > 1 else ""),
                             hint="was it exported by `toolchain export` and does the plugin accept its nodes "
                                  "(`toolchain plugin check --onnx`)?")
    return parser, {"plugin_override_flag": override is not None and not keep_function,
                    "local_function_removed": not keep_function}


def set_timing_cache(config, cache_path: Path | None, log) -> str:
    """Give ``config`` the timing cache in ``cache_path`` or a fresh one; return "loaded", "new" or "replaced".

    A file TensorRT cannot read (corrupt, truncated, from another TensorRT/GPU) gives a
    warning and a fresh cache that replaces it after the build.
    """
    try:
        data = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    except OSError as exc:
        raise ToolchainError(f"cannot read timing cache {cache_path}: {exc.strerror or exc}",
                             hint="fix its permissions or give another --timing-cache") from None
    if data:
        cache = None
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # TensorRT raises or returns None for bytes it cannot read
            cache = None
        if cache is not None and config.set_timing_cache(cache, False):
            return "loaded"
        log(f"warning: timing cache {cache_path} is unreadable or from another TensorRT/GPU; "
            "starting a new one, which replaces it after the build")
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise ToolchainError("TensorRT could not create an empty timing cache", hint="build without --timing-cache")
    return "replaced" if data else "new"


def network_facts(trt, network) -> dict:
    """Layer counts by type, the PluginV3 layers (names and I/O types) and built-in LRN layers of a parsed network."""
    facts = {"total": network.num_layers, "plugin_v3": [], "plugin_io": [], "lrn": 0}
    lrn_type = getattr(trt.LayerType, "LRN", None)
    types = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        types.append(layer.type.name)
        if layer.type == trt.LayerType.PLUGIN_V3:
            facts["plugin_v3"].append(layer.name)
            facts["plugin_io"].append({"name": layer.name, "inputs": [layer.get_input(i).dtype.name
                                                                      for i in range(layer.num_inputs)],
                                       "outputs": [layer.get_output(i).dtype.name for i in range(layer.num_outputs)]})
        elif lrn_type is not None and layer.type == lrn_type:
            facts["lrn"] += 1
    facts["by_type"] = layer_counts(types)
    return facts


def network_layer_info(trt, network) -> dict:
    """The parsed network's layers (name, type, I/O tensors) in the engine inspector's JSON shape, for a
    build that is not deserialized here (the inspector needs a loaded engine)."""
    def tensor(t):
        return {"Name": t.name, "Dimensions": [int(d) for d in t.shape], "Format/Datatype": t.dtype.name}

    layers = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        layers.append({"Name": layer.name, "LayerType": layer.type.name,
                       "Inputs": [tensor(layer.get_input(i)) for i in range(layer.num_inputs)
                                  if layer.get_input(i) is not None],
                       "Outputs": [tensor(layer.get_output(i)) for i in range(layer.num_outputs)]})
    return {"Source": "network (the engine was not loaded here)", "Layers": layers}


def network_io(network, plan: BuildPlan) -> dict:
    """The I/O as :func:`toolchain.trt.runtime.engine_io` records it, from the network and the plan's profile."""
    io = {"inputs": [], "outputs": []}
    for index in range(network.num_inputs):
        t = network.get_input(index)
        spec = {"name": t.name, "dtype": manifest_mod.numpy_dtype_name(t.dtype.name), "shape": [int(d) for d in t.shape]}
        if t.name == plan.input_name:
            spec["profile"] = plan.profile.to_dict()
        io["inputs"].append(spec)
    for index in range(network.num_outputs):
        t = network.get_output(index)
        io["outputs"].append({"name": t.name, "dtype": manifest_mod.numpy_dtype_name(t.dtype.name),
                              "shape": [int(d) for d in t.shape]})
    return io


def check_plugin_took_nodes(info: OnnxInfo, plugin_layer_names: list[str], lrn_layers: int, lrn: str,
                            library: Path | str | None = None) -> None:
    """After parsing: with ``lrn="plugin"`` every FusedLRN node must be a PluginV3 layer (of ``library``, the
    only one that registered the creator); with ``lrn="function"`` none may be (pure; tested)."""
    if lrn == "function":
        if plugin_layer_names:
            raise ToolchainError(f"--lrn function, but TensorRT made plugin layer(s) {', '.join(plugin_layer_names)}: "
                                 f"a {lrn_op.OP_TYPE} creator is registered in this process",
                                 hint="build it in a process that loads no plugin library, or with --lrn plugin")
        return
    if lrn != "plugin":
        return
    missing = [name for name in info.fused_lrn_nodes if name not in plugin_layer_names]
    if missing or len(plugin_layer_names) != len(info.fused_lrn_nodes):
        of = f" of {library}" if library else ""
        named = f" (not: node {', '.join(repr(m) for m in missing)})" if missing else ""
        raise ToolchainError(
            f"TensorRT made {len(plugin_layer_names)} plugin layer(s){of} for the {len(info.fused_lrn_nodes)} "
            f"{lrn_op.OP_TYPE} node(s){named}: the parser did not find the plugin creator for every node",
            hint=f"check that the nodes carry plugin_version {lrn_op.PLUGIN_VERSION!r} and plugin_namespace "
                 f"{lrn_op.PLUGIN_NAMESPACE!r} (re-export with `toolchain export`) and that the plugin library "
                 "is built for this TensorRT (`toolchain plugin build --force`)")
    if lrn_layers:
        raise ToolchainError(f"TensorRT made {lrn_layers} built-in LRN layer(s) from an ONNX exported for the plugin")


@dataclass
class ParsedNetwork:
    builder: object
    network: object
    parser: object
    facts: dict        # network_facts
    parser_info: dict  # what the manifest records of the parser's settings


def parse_checked(trt, info: OnnxInfo, plan: BuildPlan, logger) -> ParsedNetwork:
    """A builder and the parsed network, after checking that the LRN nodes became what the plan asked."""
    builder = create_checked(lambda: trt.Builder(logger), logger, "builder")
    network = builder.create_network(_network_flags(trt, plan))
    parser, parser_info = _parse(trt, network, logger, info, plan)
    facts = network_facts(trt, network)
    check_plugin_took_nodes(info, facts["plugin_v3"], facts["lrn"], plan.options.lrn, plan.plugin_path)
    return ParsedNetwork(builder, network, parser, facts, parser_info)


def _build_with_tensorrt(trt, info: OnnxInfo, plan: BuildPlan, *, load: bool = True, verbose: bool, log) -> dict:
    """Parse, check, build, and (``load``) deserialize and inspect (see :func:`build_parsed`)."""
    logger = make_logger(trt, verbose=verbose, log=log, quiet=True)
    return build_parsed(trt, parse_checked(trt, info, plan, logger), plan, logger, load=load, log=log)


def build_parsed(trt, parsed: ParsedNetwork, plan: BuildPlan, logger, *, load: bool, log) -> dict:
    """Build the parsed network as planned, and (``load``) deserialize and inspect it. Returns engine bytes,
    layer JSON, I/O, network facts, timing cache bytes and the plugin's build-call trace from the logger."""
    builder, network, facts = parsed.builder, parsed.network, parsed.facts
    config = builder.create_builder_config()
    if plan.precision.fp16_flag:
        fp16 = getattr(trt.BuilderFlag, "FP16", None)
        if fp16 is None:  # only reachable if plan_precision's version logic is wrong
            raise ToolchainError(f"TensorRT {trt.__version__} has no FP16 builder flag", hint="export with --dtype fp16")
        config.set_flag(fp16)
    if plan.precision.int8_flag:
        # Explicit quantization (the ONNX's Q/DQ scales); no calibrator. Deprecated in 10.12+, gone in 11.
        int8 = getattr(trt.BuilderFlag, "INT8", None)
        if int8 is None:  # only reachable if plan_precision's version logic is wrong
            raise ToolchainError(f"TensorRT {trt.__version__} has no INT8 builder flag")
        config.set_flag(int8)
    if plan.options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.options.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, plan.profile.min, plan.profile.opt, plan.profile.max)
    if config.add_optimization_profile(profile) < 0:
        raise ToolchainError(f"TensorRT refused the optimization profile for {plan.input_name!r} (min "
                             f"{plan.profile.min}, opt {plan.profile.opt}, max {plan.profile.max}): {logger.last_error()}",
                             hint="give batch sizes with --min-batch <= --opt-batch <= --max-batch")
    if plan.targets:
        # TensorRT-RTX ahead-of-time targets; none set = its portable default.
        config.num_compute_capabilities = len(plan.targets)
        for index, name in enumerate(plan.targets):
            if not config.set_compute_capability(getattr(trt.ComputeCapability, name), index):
                raise ToolchainError(f"{plan.flavour.label} refused compute capability target {name}: "
                                     f"{logger.last_error()}", hint="leave --compute-capability out for its portable default")

    cache_path = Path(plan.options.timing_cache) if plan.options.timing_cache else None
    use_cache = cache_path is not None and not plan.flavour.rtx  # RTX: a no-op that would query a GPU
    if use_cache:
        set_timing_cache(config, cache_path, log)
    if plan.options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.options.serializes_plugin:
        # The dynamic plugin library goes into the engine: its runtime then needs no plugin file.
        config.plugins_to_serialize = [str(plan.plugin_path)]

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ToolchainError(f"TensorRT failed to build the engine: {logger.last_error()}")
    engine_bytes = bytes(serialized)
    new_cache = config.get_timing_cache() if use_cache else None
    cache_out = bytes(new_cache.serialize()) if new_cache is not None else None

    if load:
        layer_info, io = _load_and_inspect(trt, logger, engine_bytes, plan)
    else:
        layer_info, io = json.dumps(network_layer_info(trt, network), indent=1), network_io(network, plan)
    return {"engine": engine_bytes, "layer_info": layer_info, "io": io, "timing_cache": cache_out,
            "network": facts, "parser": parsed.parser_info, "loaded": load, "plugin_trace": list(logger.plugin_trace),
            "warnings": list(logger.warnings), "weights_bytes": logger.weights_bytes}


def _load_and_inspect(trt, logger, engine_bytes: bytes, plan: BuildPlan) -> tuple[str | None, dict]:
    runtime = trt.Runtime(logger)
    if plan.options.serializes_plugin:
        # The plan carries the plugin library (and a version-compatible one the lean runtime): host
        # code TensorRT refuses to deserialize unless allowed (as trtexec and Polygraphy do).
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ToolchainError(f"TensorRT cannot deserialize the engine it just built: {logger.last_error()}")
    inspector = engine.create_engine_inspector()
    layer_info = inspector.get_engine_information(trt.LayerInformationFormat.JSON) if inspector else None
    from toolchain.trt.runtime import engine_io

    io = engine_io(trt, engine)
    del inspector, engine, runtime
    return layer_info, io
