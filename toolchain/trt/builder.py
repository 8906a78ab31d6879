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
import sys
import tempfile
import time
from pathlib import Path

from toolchain import lrn_op
from toolchain.io import check_writable, write_bytes_atomic, write_text_atomic
from toolchain.errors import ToolchainError
from toolchain.trt import compat, make_logger, manifest as manifest_mod
from toolchain.trt.compat import BuildOptions
from toolchain.trt.network import ParsedNetwork, find_plugin_layers, network_io, network_layer_info, parse_checked
from toolchain.trt.onnx_graph import OnnxInfo, inspect_onnx
from toolchain.trt.plan import BuildPlan, load_decision, plan_build, summarize_plugin_trace


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
    body = manifest_mod.make_manifest(engine_path=paths["engine"], engine_sha256=engine_sha256, engine_bytes=len(engine_bytes),
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
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if plan.precision.precision == "fp32" and tf32 is not None:
        # TF32 is on by default for FP32 layers: an "FP32" engine would then be held to FP32 tolerances
        # while computing with 10-bit mantissas. Off, so FP32 means FP32 (as the eager reference runs).
        config.clear_flag(tf32)
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
