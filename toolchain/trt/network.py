"""The parsed network (TensorRT objects, thin): parse the ONNX, check what became of the LRN nodes,
and read what the manifest records of the network (layer counts, plugin I/O, I/O tensors).

``find_plugin_layers`` reads the engine inspector's JSON of a loaded engine.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from toolchain import lrn_op
from toolchain.errors import ToolchainError
from toolchain.trt import create_checked, manifest as manifest_mod
from toolchain.trt.onnx_graph import OnnxInfo, parser_model_bytes
from toolchain.trt.plan import BuildPlan


def layer_counts(types: list[str]) -> dict[str, int]:
    """Layer type name -> count, most common first (the manifest's ``layers.by_type``)."""
    counts: dict[str, int] = {}
    for name in types:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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
