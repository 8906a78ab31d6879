"""``toolchain plugin check``: is this plugin library right for this TensorRT and this model?

Loads the library into TensorRT's real plugin registry (the full ``tensorrt`` or the
lean runtime ``tensorrt_lean``, which needs no GPU), finds the FusedLRN creator, checks
its fields against :mod:`toolchain.lrn_op`, and asks it to create a plugin for every
``FusedLRN`` node of an ONNX model with the fields TensorRT's ONNX parser would pass, so a
node the plugin refuses is named here instead of an hour into an engine build. On a GPU
it also runs each node through the plugin's ``enqueue`` (the conformance harness built
next to the library) and compares with PyTorch.

The decisions (which fields the parser passes, what a check concluded) are pure
functions; only :func:`run_plugin_check` touches TensorRT.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain import lrn_op
from toolchain.environment import cuda_unavailable
from toolchain.checks import Check
from toolchain.errors import ToolchainError
from toolchain.trt.plugins import captured_stderr

#: ONNX attribute type -> the PluginFieldType TensorRT's parser passes for it.
PARSER_FIELD_TYPES = {"INT": "INT32", "FLOAT": "FLOAT32", "INTS": "INT32", "FLOATS": "FLOAT32"}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Numerics tolerances of the plugin against float64 PyTorch, per input type.
NUMERICS_TOLERANCE = {"fp32": (1e-5, 1e-6), "fp16": (2e-3, 1e-3)}


@dataclass
class ParserField:
    """One plugin field as TensorRT's ONNX parser builds it from a node attribute."""

    name: str
    type: str            # PluginFieldType name: INT32, FLOAT32
    values: list          # after the parser's narrowing
    problem: str | None = None  # why the parser would pass something other than the attribute


@dataclass
class NodeResult:
    name: str
    attributes: dict
    accepted: bool | None = None
    reason: str = ""
    numerics: dict | None = None

    @property
    def ok(self) -> bool:
        return bool(self.accepted) and (self.numerics is None or self.numerics.get("ok") is not False)


@dataclass
class PluginCheckReport:
    tensorrt: dict = field(default_factory=dict)
    library: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    nodes: list[NodeResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks) and all(n.ok for n in self.nodes)

    def failure(self) -> str | None:
        """The first failure, in one line."""
        for c in self.checks:
            if c.passed is False:
                return f"{c.name}: {c.detail}" if c.detail else c.name
        for n in self.nodes:
            if not n.accepted:
                return f"the plugin refuses node {n.name!r}: {n.reason or 'no reason logged'}"
            if n.numerics and n.numerics.get("ok") is False:
                return f"node {n.name!r} differs from PyTorch: {n.numerics.get('detail', '')}"
        return None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tensorrt": self.tensorrt, "library": self.library,
                "checks": [c.to_dict() for c in self.checks],
                "nodes": [{**asdict(n), "ok": n.ok} for n in self.nodes]}


# --------------------------------------------------------------------------- pure decisions


def attribute_value(attr) -> tuple[str, list]:
    """(ONNX attribute type name, values as a list) of an onnx AttributeProto."""
    import onnx

    kind = onnx.AttributeProto.AttributeType.Name(attr.type)
    if kind == "INT":
        return kind, [int(attr.i)]
    if kind == "FLOAT":
        return kind, [float(attr.f)]
    if kind == "INTS":
        return kind, [int(v) for v in attr.ints]
    if kind == "FLOATS":
        return kind, [float(v) for v in attr.floats]
    if kind == "STRING":
        return kind, [attr.s.decode(errors="replace")]
    return kind, []


def narrow_int32(value: int) -> int:
    """What a C++ static_cast<int32_t> of an int64 gives (the parser's narrowing)."""
    return (int(value) + 2**31) % 2**32 - 2**31


def parser_fields(node) -> list[ParserField]:
    """The fields TensorRT's ONNX parser passes to the creator for ``node``: only attributes
    named in the creator's fields, INT/INTS narrowed to int32, FLOAT/FLOATS as float32."""
    import numpy as np

    out = []
    for attr in node.attribute:
        if attr.name not in lrn_op.FIELDS:
            continue  # the parser passes only names the creator declares
        kind, values = attribute_value(attr)
        field_type = PARSER_FIELD_TYPES.get(kind)
        if field_type is None:
            out.append(ParserField(attr.name, kind, values, problem=f"attribute {attr.name} has type {kind}, "
                                   "which TensorRT's parser does not pass as a number"))
            continue
        problem = None
        if field_type == "INT32":
            narrowed = [narrow_int32(v) for v in values]
            if narrowed != values:
                problem = (f"attribute {attr.name}={values[0] if len(values) == 1 else values} does not fit the "
                           f"INT32 field TensorRT's parser passes (it would pass {narrowed[0] if len(narrowed) == 1 else narrowed})")
            values = narrowed
        else:
            values = [float(np.float32(v)) for v in values]
        out.append(ParserField(attr.name, field_type, values, problem))
    return out


def fused_lrn_nodes(model) -> list:
    """Every FusedLRN node of the model's main graph, in order."""
    return [n for n in model.graph.node if n.op_type == lrn_op.OP_TYPE]


def node_input_shape(model, node, *, batch: int = 2) -> tuple[int, ...] | None:
    """The node's input shape from ONNX shape inference, symbolic dims set to ``batch``."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom domains can stop inference; numerics then use a default shape
        return None
    name = node.input[0]
    for value in list(inferred.graph.value_info) + list(inferred.graph.input):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else batch for d in value.type.tensor_type.shape.dim]
            return tuple(dims) if len(dims) == 4 else None
    return None


def expected_field_types() -> dict[str, str]:
    """toolchain.lrn_op.FIELDS as PluginFieldType names."""
    return {name: PARSER_FIELD_TYPES[kind] for name, kind in lrn_op.FIELDS.items()}


def library_registration(path: Path) -> str:
    """"dynamic" for the getCreators library (loaded with IPluginRegistry.loadLibrary), else "static"."""
    return "dynamic" if "dynamic" in path.name else "static"


# --------------------------------------------------------------------------- TensorRT side


def _clean_reason(text: str) -> str:
    lines = [line.strip().removeprefix("[FusedLRN] ") for line in text.splitlines() if line.strip()]
    return " | ".join(lines)


def _plugin_field_collection(trt, fields: list[ParserField]):
    import numpy as np

    dtypes = {"INT32": np.int32, "FLOAT32": np.float32}
    plugin_fields = []
    for f in fields:
        if f.type not in dtypes:
            continue
        plugin_fields.append(trt.PluginField(f.name, np.array(f.values, dtype=dtypes[f.type]),
                                             getattr(trt.PluginFieldType, f.type)))
    return trt.PluginFieldCollection(plugin_fields)


def _tensorrt_libs_dir(trt) -> Path | None:
    import importlib.util

    for name in ("tensorrt_lean_libs", "tensorrt_libs") if "lean" in trt.__name__ else ("tensorrt_libs",):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    return None


def _default_library(rtx: bool = False) -> Path:
    from toolchain.plugin import find_library

    for kind in ("tensorrt_dynamic",) if rtx else ("tensorrt", "tensorrt_dynamic"):
        path = find_library(kind)
        if path is not None:
            return path
    raise ToolchainError("no FusedLRN plugin library found", hint="run `toolchain plugin build` or pass --library")


#: ``plugin check --tensorrt``: a builder (as ``toolchain build --tensorrt``), or the lean runtime's registry.
CHECK_TENSORRT = ("auto", "full", "rtx", "lean")


def checking_tensorrt(which: str = "auto"):
    """The TensorRT whose registry (and, when it has one, parser and builder) the check drives: "auto" a
    builder (the full TensorRT, else TensorRT-RTX) when installed, else the lean runtime."""
    import os

    from toolchain.trt import LEAN_ENV, import_tensorrt, import_tensorrt_builder

    if which == "lean" or (which == "auto" and os.environ.get(LEAN_ENV) == "1"):
        module = import_tensorrt(lean_ok=True)
        if which == "lean" and module.__name__ != "tensorrt_lean":
            from toolchain.errors import MissingDependencyError

            raise MissingDependencyError("TensorRT's lean runtime (tensorrt_lean) is not installed",
                                         hint="pip install tensorrt-lean-cu13 (or -cu12)")
        return module
    if which != "auto":
        return import_tensorrt_builder(which)
    try:
        return import_tensorrt_builder("auto")
    except ToolchainError:
        return import_tensorrt(lean_ok=True)


def run_plugin_check(library=None, onnx_path=None, *, numerics: bool | None = None,
                     tensorrt: str = "auto") -> PluginCheckReport:
    """Check ``library`` (default: the built one) in this process's TensorRT, and every FusedLRN
    node of ``onnx_path``: in the creator, then (with a builder) through the real ONNX parser and a
    batch-1 engine build. ``numerics``: run nodes through enqueue (default: when a GPU is present)."""
    from toolchain.io import require_file, sha256_file
    from toolchain.trt.compat import flavour_of

    report = PluginCheckReport()
    model = None
    if onnx_path is not None:
        import onnx

        path = require_file(onnx_path, "ONNX model")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ToolchainError(f"{path} is not an ONNX model: {exc}") from None

    trt = checking_tensorrt(tensorrt)
    rtx = flavour_of(trt.__name__, trt.__version__).rtx if hasattr(trt, "Builder") else False
    report.tensorrt = {"module": trt.__name__, "version": getattr(trt, "__version__", "unknown"),
                       "builder": hasattr(trt, "Builder")}
    lib_path = (require_file(library, "plugin library").resolve() if library is not None
                else _default_library(rtx).resolve())
    how = "dynamic" if rtx else library_registration(lib_path)
    report.library = {"path": str(lib_path), "sha256": sha256_file(lib_path), "registration": how}

    registry = trt.get_plugin_registry()
    from toolchain.trt.plugins import load_dynamic_plugin_library, load_plugin_library

    with captured_stderr() as log:
        try:
            if how == "dynamic":
                load_dynamic_plugin_library(trt, lib_path, why=f"{trt.__name__} needs a library"
                                            if rtx else "a library named *_dynamic.so is")
            else:
                load_plugin_library(lib_path)
            loaded = True
        except ToolchainError as exc:
            loaded, log["error"] = False, exc.one_line()
    detail = log.get("error") or _clean_reason(log["text"])
    report.checks.append(Check(f"loads ({how} registration)", loaded, detail=detail))
    creator_id = f"{lrn_op.OP_TYPE}/{lrn_op.PLUGIN_VERSION}/{lrn_op.PLUGIN_NAMESPACE}"
    creator = (registry.get_creator(lrn_op.OP_TYPE, lrn_op.PLUGIN_VERSION, lrn_op.PLUGIN_NAMESPACE)
               if loaded else None)
    report.checks.append(Check("registers the creator", creator is not None,
                               detail=creator_id if creator is not None else
                               f"no creator {creator_id} in TensorRT {report.tensorrt['version']}'s registry "
                               "(built for another TensorRT major?)"))
    if creator is None:
        return report
    got = {f.name: f.type.name for f in creator.field_names}
    want = expected_field_types()
    report.checks.append(Check("fields match toolchain.lrn_op.FIELDS", got == want,
                               detail="" if got == want else f"creator declares {got}, expected {want}"))

    if model is not None:
        nodes = fused_lrn_nodes(model)
        report.checks.append(Check("the model has FusedLRN nodes", bool(nodes),
                                   detail=f"{len(nodes)} node(s)" if nodes else f"no {lrn_op.OP_TYPE} node in {onnx_path}"))
        for node in nodes:
            report.nodes.append(_check_node(trt, creator, node))
        if report.tensorrt["builder"] and nodes and all(n.accepted for n in report.nodes):
            report.checks.extend(parse_and_build(trt, Path(onnx_path), lib_path))
        elif nodes:
            why = ("no TensorRT builder is installed (only the lean runtime)" if not report.tensorrt["builder"]
                   else "the creator refuses a node")
            report.checks.append(Check("the real ONNX parser and builder take the nodes", None, detail=f"skipped: {why}"))
        want_numerics = numerics if numerics is not None else cuda_unavailable() is None
        if want_numerics:
            _node_numerics(report, model, nodes, lib_path, trt)
        else:
            reason = cuda_unavailable() or "not asked for"
            report.checks.append(Check("numerics against PyTorch", None, detail=f"skipped: {reason}"))
    return report


def parse_and_build(trt, onnx_path: Path, library: Path) -> list[Check]:
    """Parse ``onnx_path`` with the real ONNX parser of ``trt`` (the plugin library already loaded) and
    build a batch-1 engine through it: the builder's own check (every FusedLRN node a plugin layer of
    ``library``, or the node that is not) and the build, one check each; nothing is written."""
    from toolchain.trt import compat, make_logger
    from toolchain.trt.builder import build_parsed
    from toolchain.trt.network import parse_checked
    from toolchain.trt.onnx_graph import inspect_onnx
    from toolchain.trt.plan import plan_build

    flavour = compat.flavour_of(trt.__name__, trt.__version__)
    parsed = Check(f"{flavour.label}'s ONNX parser makes every {lrn_op.OP_TYPE} node a plugin layer of the library",
                   False)
    built = Check("builds a batch-1 engine through the library", None, detail="skipped: the parse failed")
    try:
        info = inspect_onnx(onnx_path)
        batch = info.input_dims[0] if isinstance(info.input_dims[0], int) and info.input_dims[0] > 0 else 1
        plan = plan_build(info, compat.BuildOptions(lrn="plugin", min_batch=batch, opt_batch=batch, max_batch=batch,
                                                    allow_fp32=True), flavour)
        plan.plugin_path = library
        if flavour.rtx:
            from toolchain.trt import ensure_rtx_parser_library, rtx_library_dir

            ensure_rtx_parser_library(rtx_library_dir(trt))  # the parser aborts the process without it
        logger = make_logger(trt, log=lambda message: None)
        network = parse_checked(trt, info, plan, logger)
    except ToolchainError as exc:
        parsed.detail = exc.one_line()
        return [parsed, built]
    names = network.facts["plugin_v3"]
    parsed.passed, parsed.detail = True, f"{len(names)} plugin layer(s): {', '.join(names)}"
    try:
        result = build_parsed(trt, network, plan, logger, load=False, log=lambda message: None)
        built.passed, built.detail = True, f"{len(result['engine']) / 1e6:.1f} MB plan, {plan.precision.precision}"
    except ToolchainError as exc:
        built.passed, built.detail = False, exc.one_line()
    return [parsed, built]


def _check_node(trt, creator, node) -> NodeResult:
    fields = parser_fields(node)
    result = NodeResult(node.name or "<unnamed>", {f.name: f.values[0] if len(f.values) == 1 else f.values
                                                    for f in fields})
    from toolchain.onnx_lrn import node_problems

    # The plugin may accept what ONNX Runtime and the op's function refuse (a FLOAT size).
    problems = [f.problem for f in fields if f.problem] + node_problems(node)
    with captured_stderr() as log:
        plugin = creator.create_plugin(result.name, _plugin_field_collection(trt, fields), trt.TensorRTPhase.BUILD)
    result.accepted = plugin is not None and not problems
    result.reason = "; ".join(problems + ([_clean_reason(log["text"])] if plugin is None else []))
    del plugin
    return result


def _node_numerics(report: PluginCheckReport, model, nodes, lib_path: Path, trt) -> None:
    """Each accepted node through the conformance harness's enqueue, against F.local_response_norm."""
    from toolchain.plugin import HARNESS_NAMES

    harness = lib_path.parent / HARNESS_NAMES["conformance"]
    if not harness.is_file():
        report.checks.append(Check("numerics against PyTorch", False,
                                   detail=f"{harness} not found (it is built with the plugin by `toolchain plugin build`)"))
        return
    fp16 = any(i.type.tensor_type.elem_type == 10 for i in model.graph.input)  # TensorProto.FLOAT16
    for node, result in zip(nodes, report.nodes):
        if not result.accepted:
            continue
        shape = node_input_shape(model, node) or (2, 16, 13, 13)
        result.numerics = enqueue_against_torch(harness, lib_path, result.attributes, shape,
                                                "fp16" if fp16 else "fp32", libs_dir=_tensorrt_libs_dir(trt))


def enqueue_against_torch(harness: Path, lib_path: Path, attributes: dict, shape, dtype: str, *,
                          libs_dir: Path | None = None, seed: int = 0, scale: float = 3.0) -> dict:
    """Run one LRN through the plugin's enqueue (the harness, with TensorRT's libraries from
    ``libs_dir``) and compare with float64 PyTorch."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    np_dtype = np.float16 if dtype == "fp16" else np.float32
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np_dtype)
    size, alpha, beta, bias = (attributes["size"], attributes["alpha"], attributes["beta"], attributes["bias"])
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        x.tofile(src)
        env = dict(os.environ)
        if libs_dir is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs_dir), env.get("LD_LIBRARY_PATH")]))
        how = "--dynamic" if library_registration(lib_path) == "dynamic" else "--static"
        proc = subprocess.run([str(harness), "enqueue", how, str(lib_path), repr(size), repr(alpha), repr(beta),
                               repr(bias), dtype, *map(str, shape), str(src), str(dst)],
                              capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0 or not dst.is_file():
            failed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{\"check\"")]
            detail = "; ".join(f"{c['check']}: {c['detail']}" for c in failed if not c["ok"]) or proc.stderr.strip()
            return {"ok": False, "shape": list(shape), "dtype": dtype, "detail": detail or f"exit {proc.returncode}"}
        y = np.fromfile(dst, dtype=np_dtype).reshape(shape).astype(np.float64)
    ref = F.local_response_norm(torch.from_numpy(x.astype(np.float64)), int(size), alpha, beta, bias).numpy()
    rtol, atol = NUMERICS_TOLERANCE[dtype]
    finite = np.isfinite(ref)
    err = np.abs(y - ref)
    max_err = float(err[finite].max()) if finite.any() else 0.0
    ok = bool(np.array_equal(np.isnan(y), np.isnan(ref)) and np.all(err[finite] <= atol + rtol * np.abs(ref[finite])))
    return {"ok": ok, "shape": list(shape), "dtype": dtype, "max_abs_error": max_err, "rtol": rtol, "atol": atol,
            "detail": "" if ok else f"max |error| {max_err:.3g} over rtol {rtol} / atol {atol}"}
