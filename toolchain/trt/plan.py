"""Every decision of an engine build, before TensorRT does anything (pure; tested on CPU).

:func:`plan_build` turns the ONNX facts, the options and the builder's flavour into a
:class:`BuildPlan` (network typing, optimization profile, LRN mode, targets, notes);
:func:`load_decision` says whether the built engine can be loaded here;
:func:`summarize_plugin_trace` reads the plugin's build-call trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from toolchain import lrn_op
from toolchain.artifacts import INPUT_NAME
from toolchain.errors import ToolchainError
from toolchain.trt import compat
from toolchain.trt.compat import BuildOptions, Flavour, PrecisionPlan, Profile
from toolchain.trt.onnx_graph import OnnxInfo


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
    if INPUT_NAME not in info.input_names:
        raise ToolchainError(f"the ONNX input is named {info.input_names[0]!r}, expected {INPUT_NAME!r}",
                             hint="export it with `toolchain export`")
    compat.check_lrn_mode(options.lrn, info.lrn, len(info.fused_lrn_nodes), lrn_op.OP_TYPE)
    function = f"{lrn_op.DOMAIN}:{lrn_op.OP_TYPE}"
    if options.lrn == "function" and function not in info.local_functions:
        raise ToolchainError(f"--lrn function needs the model-local function {function}, which {info.path} lacks",
                             hint="re-export it with `toolchain export`, or build it with --lrn plugin")
    if info.dtype is None:
        raise ToolchainError(f"cannot tell whether {info.path} is FP16 or FP32 (no toolchain.dtype metadata)",
                             hint="export it with `toolchain export --dtype fp16`")
    if info.metadata.get("precision") == "int8" and not info.qdq_nodes:
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
    return BuildPlan(options=options, precision=precision, profile=profile, input_name=INPUT_NAME,
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
