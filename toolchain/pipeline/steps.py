"""The pipeline as a table of steps: name, prerequisites, requirement check, the ``toolchain`` command
and its arguments, and the API call.

Each row's ``args`` gives its command's arguments by click parameter name, from the run so far; REPORT.md's
command line is written from them (:mod:`toolchain.pipeline.command_line`) and the step's API call takes
its values from the same dict, so the two cannot disagree. Where the call takes something else, the body
says so: the checkpoint is loaded once per run and handed over in memory (export, parity), and progress
goes to the pipeline's console (its --quiet, not a step's). Every function here is given the
:class:`~toolchain.pipeline.run.Pipeline` (``p``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from toolchain.environment import cuda_unavailable
from toolchain.errors import ToolchainError
from toolchain.pipeline.engine import Step, StepResult

if TYPE_CHECKING:
    from toolchain.pipeline.run import Pipeline

#: Which INT8 file feeds which step: each runtime gets the Q/DQ placement made for it.
INT8_FEEDS = {"tensorrt": ("engine-build-int8", "parity-tensorrt-int8 (through the engine)"),
              "onnxruntime": ("parity-onnxruntime-int8", "benchmark (onnxruntime-cpu-int8)")}

LRN_TITLES = {"plugin": "FusedLRN plugin", "native": "native LRN", "function": "FusedLRN local function, no plugin"}


# ---------------------------------------------------------------------- what this machine has


def tensorrt_reason() -> str | None:
    from toolchain.trt import tensorrt_available

    ok, reason = tensorrt_available()
    return None if ok else reason


def builder_flavour(which: str):
    """(the builder's Flavour, None) or (None, why there is none) — never raises."""
    from toolchain.trt import builder_available, import_tensorrt_builder
    from toolchain.trt.compat import flavour_of

    ok, why = builder_available(which)
    if not ok:
        return None, why
    trt = import_tensorrt_builder(which)
    return flavour_of(trt.__name__, trt.__version__), None


def nvcc_reason() -> str | None:
    from toolchain.plugin import build_tools_unavailable

    return build_tools_unavailable()


# ---------------------------------------------------------------------- requirement checks


def native_reason(p: Pipeline) -> str | None:
    from toolchain.export import check_native

    try:
        check_native(p.checkpoint(p.paths["checkpoint"]).model)
    except ToolchainError as exc:
        return exc.one_line()
    return None


def plugin_check_reason(p: Pipeline) -> str | None:
    from toolchain.plugin_check import checking_tensorrt

    try:
        checking_tensorrt("auto")  # a builder's registry and parser, else the lean runtime's registry
    except ToolchainError as exc:
        return exc.one_line()
    if p.plugin_library() is None:
        return "the TensorRT plugin library was not built (toolchain plugin build, with TensorRT headers)"
    return None


def engine_reason(p: Pipeline) -> str | None:
    flavour, why = p.builder()
    if flavour is None:
        return why
    if not flavour.rtx and cuda_unavailable():
        return f"{flavour.label} builds on a GPU: {cuda_unavailable()}"
    return None


def plugin_check_failed(p: Pipeline) -> str | None:
    check = p.runner.result("plugin-check")
    if check is not None and check.status == "failed":
        # No hour-long build with a plugin that refuses the model's nodes.
        return f"the plugin check failed: {check.error or check.reason}"
    return None


def engine_run_reason(p: Pipeline, engine_key: str) -> str | None:
    """Why the engine cannot run here (a CUDA GPU, then the runtime its manifest names), or None."""
    reason = cuda_unavailable()
    if reason:
        return reason
    from toolchain.trt.runtime import rtx_runtime_reason

    rtx = rtx_runtime_reason(p.paths[engine_key])
    if rtx is not None:
        return rtx or None
    return tensorrt_reason()


# ---------------------------------------------------------------------- each command's arguments


def engine_lrn(p: Pipeline, wanted: str) -> str:
    """The --lrn an engine step builds with: without a plugin library the FusedLRN nodes' local
    function stands in (standard layers), so an engine is still built."""
    if wanted != "plugin":
        return wanted
    check = p.runner.result("plugin-check")
    if check is not None and check.status == "failed":
        return wanted  # plugin_check_failed skips the step: no build with a plugin that refuses nodes
    return "function" if p.plugin_library() is None else wanted


def lrn_fallback(p: Pipeline) -> str:
    """Why an engine step builds with --lrn function instead of the plugin."""
    build = p.runner.result("plugin-build")
    why = None
    if build is not None and build.status != "ran":
        why = f"plugin-build {build.status}: {build.reason or build.error}"
    elif build is not None:
        why = (build.details.get("result") or {}).get("tensorrt_skipped")
    return ("the plugin library was not built"
            + (f" ({why})" if why else " (toolchain plugin build needs nvcc and TensorRT headers: --tensorrt-root)")
            + "; the FusedLRN nodes' standard-op function stands in")


def train_args(p: Pipeline) -> dict:
    c = p.config
    return {"variant": c.variant, "dataset": c.dataset, "out_dir": str(p.paths["train"]), "image_size": c.image_size,
            "epochs": c.epochs, "batch_size": c.batch_size, "target_top1": c.target_top1, "seed": c.seed,
            "device": c.device, "data_dir": c.data_dir, "force": c.force}


def parity_args(p: Pipeline, *, precision: str, report: str, onnx_key: str | None = None,
                engine_key: str | None = None, build_step: str | None = None) -> dict:
    c = p.config
    plugin = None
    if build_step is not None and p.runner.ran(build_step):
        plugin = p.plugin_library() if p.runner.result(build_step).details.get("lrn") == "plugin" else None
    return {"backend": "onnxruntime" if onnx_key else "tensorrt",
            "onnx_path": p.paths[onnx_key] if onnx_key else None,
            "engine": p.paths[engine_key] if engine_key else None, "plugin_library": plugin,
            "checkpoint": p.paths["checkpoint"], "data_dir": c.data_dir, "limit": c.parity_limit,
            "batch_sizes": list(c.parity_batch_sizes), "precision": precision, "device": "cpu",
            "report": p.paths["parity"] / report, "force": c.force}


def quantize_args(p: Pipeline) -> dict:
    c = p.config
    return {"checkpoint": p.paths["checkpoint"], "onnx_path": p.paths["onnx_fp32"],
            "outputs": [p.paths["onnx_int8"], p.paths["onnx_int8_ort"]], "targets": ["tensorrt", "onnxruntime"],
            "data_dir": c.data_dir, "samples": c.quant_samples, "method": c.quant_method, "force": c.force}


def engine_args(p: Pipeline, *, onnx_key: str, engine_key: str, wanted: str) -> dict:
    flavour, _ = p.builder()
    lrn = engine_lrn(p, wanted)
    return {"onnx_path": p.paths[onnx_key], "engine": p.paths[engine_key],
            "plugin": p.plugin_library() if lrn == "plugin" else None, "lrn": lrn, "builder": p.config.builder,
            "max_batch": max(*p.config.bench_batch_sizes, *p.config.parity_batch_sizes),
            # TensorRT-RTX keeps no timing cache
            "timing_cache": None if flavour is not None and flavour.rtx else p.paths["timing_cache"],
            "force": p.config.force}


def benchmark_args(p: Pipeline) -> dict:
    paths, c, ran = p.paths, p.config, p.runner.ran
    with_plugin = any(p.runner.result(s).details.get("lrn") == "plugin"
                      for s in ("engine-build", "engine-build-int8") if ran(s))
    return {"checkpoint": paths["checkpoint"], "onnx_path": paths["onnx_fp32"] if ran("export-fp32") else None,
            "engine": paths["engine"] if ran("engine-build") else None,
            "native_engine": paths["engine_native"] if ran("engine-build-native") else None,
            "onnx_int8": paths["onnx_int8_ort"] if ran("quantize-int8") else None,
            "int8_engine": paths["engine_int8"] if ran("engine-build-int8") else None,
            "plugin_library": p.plugin_library() if with_plugin else None,
            "batch_sizes": ",".join(map(str, c.bench_batch_sizes)), "include_compile": c.include_compile,
            "warmup_iters": c.bench_warmup, "warmup_seconds": min(0.5, c.bench_max_seconds),  # within the budget
            "window_iters": c.bench_window, "max_seconds": c.bench_max_seconds, "data_dir": c.data_dir,
            "parity_samples": c.parity_limit or 32, "out_dir": paths["benchmark"], "force": c.force}


# ---------------------------------------------------------------------- the API calls


def train(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.train import TrainConfig, run_training

    result = run_training(TrainConfig(**args, progress=p.config.progress))
    metrics = dict(result.metrics)
    record.outputs = {"checkpoint": str(result.checkpoint)}
    record.details = {"metrics": metrics, "history": result.history}
    record.summary = (f"validation top-1 {metrics.get('val_top1', float('nan')):.4f} "
                      f"(epoch {metrics.get('epoch')}, {metrics.get('train_seconds')} s)")


def export(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.export import export_model
    from toolchain.io import sha256_file

    ckpt = p.checkpoint(args["checkpoint"])
    result = export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=args["output"],
                          force=args["force"], lrn=args["lrn"], dtype=args["dtype"])
    record.outputs = {"onnx": str(result.path)}
    record.details = {"lrn_nodes": result.lrn_nodes, "bytes": result.path.stat().st_size,
                      "sha256": sha256_file(result.path), "export_seconds": round(result.seconds, 2)}
    record.summary = (f"{result.path.name}: {result.path.stat().st_size / 1e6:.1f} MB, {len(result.lrn_nodes)} "
                      f"{'FusedLRN' if args['lrn'] == 'plugin' else 'LRN'} node(s)")


def quantize(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.quantize import pair_outputs, quantize_checkpoint_targets

    results = quantize_checkpoint_targets(args["checkpoint"], pair_outputs(args["outputs"], args["targets"]),
                                          onnx_path=args["onnx_path"], samples=args["samples"],
                                          method=args["method"], data_dir=args["data_dir"], force=args["force"])
    first = next(iter(results.values()))
    record.outputs = {target: str(result.path) for target, result in results.items()}
    record.details = {
        "feeds": [{"file": str(results[t].path), "target": t, "steps": list(steps)}
                  for t, steps in INT8_FEEDS.items()],
        **{target: {"qdq": result.summary.to_dict(),
                    "metadata": {k: v for k, v in result.metadata.items()
                                 if k.startswith(("toolchain.quant_", "toolchain.ort_"))}}
           for target, result in results.items()}}
    record.summary = ("; ".join(f"{r.path.name} ({r.path.stat().st_size / 1e6:.1f} MB, {t} placement) for "
                                f"{' and '.join(s.split(' (')[0] for s in INT8_FEEDS[t])}"
                                for t, r in results.items())
                      + f": {len(first.summary.quantized_ops)} Conv/Gemm on INT8 Q/DQ, "
                      f"{len(first.summary.fused_lrn)} FusedLRN kept, one {args['method']} calibration on "
                      f"{first.metadata.get('toolchain.quant_calibration')}")


def parity(p: Pipeline, record: StepResult, args: dict) -> None:
    """The parity command's load -> run -> compare (toolchain.parity_check) on the step's arguments."""
    from toolchain.backends import Files
    from toolchain.io import write_json_atomic
    from toolchain.parity_check import ParityRequest, prepare, run_check

    onnx = args["onnx_path"]
    request = ParityRequest(backend=args["backend"], files=Files(onnx=onnx, engine=args["engine"],
                                                                 plugin_library=args["plugin_library"]),
                            checkpoint=args["checkpoint"], data_dir=args["data_dir"], limit=args["limit"],
                            batch_sizes=tuple(args["batch_sizes"]), precision=args["precision"], device=args["device"])
    prepared = prepare(request)  # the candidate from the registry, its weights checked by content
    report = run_check(prepared, request)
    source = f"{prepared.source}, {len(prepared.inputs)} images"
    report.inputs["source"] = source
    data = report.to_dict()
    path = args["report"]
    write_json_atomic(path, data, force=args["force"])
    record.outputs = {"report": str(path)}
    record.details = {"report": data, "inputs": source}
    worst = max((c.metrics.get("max_abs_error", 0.0) for c in report.comparisons), default=0.0)
    agreement = min((c.metrics.get("top1_agreement", 1.0) for c in report.comparisons), default=1.0)
    sizes = args["batch_sizes"]
    record.summary = (f"{'PASS' if report.passed else 'FAIL'}: max abs error {worst:.3g}, top-1 agreement "
                      f"{agreement:.4f} on {len(prepared.inputs)} images, batch sizes {', '.join(map(str, sizes))}")
    if onnx is not None:  # which file it checked (two INT8 files come from one calibration)
        record.details["onnx"] = str(onnx)
        record.summary += f", {Path(onnx).name}"
    report.raise_if_failed(report=path)  # after writing: the report shows every check


def plugin_build(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.io import sha256_file
    from toolchain.plugin import build_plugins

    result = build_plugins(args["build_dir"], cuda_archs=args["cuda_archs"], tensorrt_root=args["tensorrt_root"])
    record.outputs = {k: result[k] for k in ("kernels", "tensorrt", "tensorrt_dynamic", "log") if result.get(k)}
    record.details = {"result": result, "sha256": {k: sha256_file(v) for k, v in record.outputs.items() if k != "log"}}
    built = [k for k in ("kernels", "tensorrt", "tensorrt_dynamic") if result.get(k)]
    record.summary = f"built {', '.join(built)}" + (f"; TensorRT plugin skipped: {result['tensorrt_skipped']}"
                                                    if result.get("tensorrt_skipped") else "")


def plugin_check(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.plugin_check import run_plugin_check

    report = run_plugin_check(args["library"], args["onnx_path"])
    record.details = report.to_dict()
    if not report.passed:
        raise ToolchainError(f"plugin check failed: {report.failure()}")
    parsed = [c for c in report.checks if "parser" in c.name and c.passed]
    record.summary = (f"{report.tensorrt['module']} {report.tensorrt['version']}: creator registered, "
                      f"{len(report.nodes)} FusedLRN node(s) accepted"
                      + ("; the real ONNX parser made them plugin layers and a batch-1 engine built" if parsed else ""))


def build_engine(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.trt.builder import build_engine as build
    from toolchain.trt.manifest import read_manifest

    flavour, _ = p.builder()
    lrn = args["lrn"]
    fallback = lrn_fallback(p) if lrn == "function" else None  # the rows ask for plugin or native
    path = build(args["onnx_path"], args["engine"], plugin_library=args["plugin"], lrn=lrn,
                 max_batch=args["max_batch"], tensorrt=args["builder"], timing_cache=args["timing_cache"],
                 force=args["force"], log=lambda m: p.console.print(m, highlight=False))
    manifest = read_manifest(path)
    record.outputs = {"engine": str(path)}
    record.details = {"manifest": manifest, "lrn": lrn, "lrn_fallback": fallback}
    layers = manifest["layers"]
    record.summary = (f"{path.name}: {manifest['engine']['bytes'] / 1e6:.1f} MB, {manifest['build'].get('precision')}, "
                      f"{flavour.label}, {layers['network_layers']} layers"
                      + (f" ({len(layers['network_plugin_layers'])} FusedLRN plugin)" if lrn == "plugin" else "")
                      + f", built in {manifest['build']['seconds']:.1f} s"
                      + (f"; {fallback}" if fallback else ""))


def benchmark(p: Pipeline, record: StepResult, args: dict) -> None:
    from toolchain.bench.sources import benchmark_from_sources
    from toolchain.bench.timing import TimingConfig
    from toolchain.options import parse_batch_sizes

    config = TimingConfig(warmup_iters=args["warmup_iters"], window_iters=args["window_iters"],
                          max_seconds=args["max_seconds"], warmup_seconds=args["warmup_seconds"]).validate()
    result, paths = benchmark_from_sources(
        checkpoint=args["checkpoint"], onnx=args["onnx_path"], engine=args["engine"],
        native_engine=args["native_engine"], onnx_int8=args["onnx_int8"], int8_engine=args["int8_engine"],
        plugin_library=args["plugin_library"], batch_sizes=parse_batch_sizes(args["batch_sizes"]),
        include_compile=args["include_compile"], config=config, out_dir=args["out_dir"], force=args["force"],
        console=p.console, data_dir=args["data_dir"], parity_samples=args["parity_samples"])
    data = result.to_dict()
    p.state["benchmark"] = data  # for REPORT.md's benchmark section
    record.outputs = {name: str(path) for name, path in paths.items()}
    record.details = {"skipped": data["skipped"], "errors": data["errors"], "backends": data["backends"]}
    record.summary = (f"{len(data['backends'])} backend(s) x {len(data['batch_sizes'])} batch size(s) timed, "
                      f"{len([s for s in data['skipped'] if s['batch_size'] is None])} backend(s) skipped")
    if not data["measurements"]:
        raise ToolchainError("no backend could be timed")
    if data["errors"]:
        from toolchain.bench.report import error_lines

        raise ToolchainError(f"{len(data['errors'])} backend error(s): " + "; ".join(error_lines(data)),
                             hint="the other results are in benchmark/benchmark.md")


# ---------------------------------------------------------------------- the table


def _export_step(name: str, key: str, dtype: str, lrn: str, title: str) -> Step:
    return Step(name, title, "export",
                args=lambda p: {"checkpoint": p.paths["checkpoint"], "output": p.paths[key], "dtype": dtype,
                                "lrn": lrn, "force": p.config.force},
                run=export, needs=("train",), requires=native_reason if lrn == "native" else None)


def _onnxruntime_parity_step(name: str, onnx_key: str, precision: str, report: str, source_step: str,
                             title: str) -> Step:
    return Step(name, title, "parity", args=lambda p: parity_args(p, precision=precision, report=report,
                                                                  onnx_key=onnx_key),
                run=parity, needs=("train", source_step))


def _engine_step(name: str, onnx_key: str, engine_key: str, wanted: str, source_step: str) -> Step:
    kind = "INT8" if engine_key == "engine_int8" else "FP16"

    def title(p, args):
        flavour, _ = p.builder()
        return f"build the {kind} {flavour.label if flavour else 'TensorRT'} engine ({LRN_TITLES[args['lrn']]})"

    return Step(name, title, "build",
                args=lambda p: engine_args(p, onnx_key=onnx_key, engine_key=engine_key, wanted=wanted),
                run=build_engine, needs=(source_step,),
                requires=lambda p: engine_reason(p) or (plugin_check_failed(p) if wanted == "plugin" else None))


def _tensorrt_parity_step(name: str, engine_key: str, build_step: str, report: str, precision: str) -> Step:
    return Step(name, f"TensorRT {precision.upper()} vs eager PyTorch on the validation split", "parity",
                args=lambda p: parity_args(p, precision=precision, report=report, engine_key=engine_key,
                                           build_step=build_step),
                run=parity, needs=("train", build_step), requires=lambda p: engine_run_reason(p, engine_key))


STEPS: tuple[Step, ...] = (
    Step("train", "train the model", "train", args=train_args, run=train),
    _export_step("export-fp32", "onnx_fp32", "fp32", "plugin", "export FP32 ONNX (FusedLRN nodes)"),
    _export_step("export-fp16", "onnx_fp16", "fp16", "plugin", "export FP16 ONNX for TensorRT (FusedLRN nodes)"),
    _export_step("export-fp16-native", "onnx_native", "fp16", "native", "export FP16 ONNX with native LRN"),
    _onnxruntime_parity_step("parity-onnxruntime", "onnx_fp32", "fp32", "onnxruntime-fp32.json", "export-fp32",
                             "ONNX Runtime CPU vs eager PyTorch (FP32 tolerances)"),
    _onnxruntime_parity_step("parity-onnxruntime-fp16", "onnx_fp16", "fp16", "onnxruntime-fp16.json", "export-fp16",
                             "ONNX Runtime CPU vs eager PyTorch (FP16 tolerances)"),
    Step("quantize-int8", "calibrate once, write the INT8 Q/DQ ONNX for TensorRT and for ONNX Runtime", "quantize",
         args=quantize_args, run=quantize, needs=("train", "export-fp32")),
    _onnxruntime_parity_step("parity-onnxruntime-int8", "onnx_int8_ort", "int8", "onnxruntime-int8.json",
                             "quantize-int8", "ONNX Runtime CPU INT8 vs eager PyTorch (INT8 tolerances)"),
    Step("plugin-build", "build the LRN kernel and TensorRT plugin libraries", "plugin build",
         args=lambda p: {"build_dir": p.paths["plugins"], "cuda_archs": p.config.cuda_archs,
                         "tensorrt_root": p.config.tensorrt_root},
         run=plugin_build, requires=lambda p: nvcc_reason()),
    # Before any long engine build: does the plugin load into this TensorRT (full or lean, no GPU
    # needed) and accept every FusedLRN node of the model?
    Step("plugin-check", "check the plugin in TensorRT's registry against the model's FusedLRN nodes", "plugin check",
         args=lambda p: {"library": p.plugin_library(), "onnx_path": p.paths["onnx_fp16"]},
         run=plugin_check, needs=("export-fp16",), requires=plugin_check_reason),
    _engine_step("engine-build", "onnx_fp16", "engine", "plugin", "export-fp16"),
    _engine_step("engine-build-native", "onnx_native", "engine_native", "native", "export-fp16-native"),
    _engine_step("engine-build-int8", "onnx_int8", "engine_int8", "plugin", "quantize-int8"),
    _tensorrt_parity_step("parity-tensorrt", "engine", "engine-build", "tensorrt-plugin.json", "fp16"),
    _tensorrt_parity_step("parity-tensorrt-native", "engine_native", "engine-build-native", "tensorrt-native.json",
                          "fp16"),
    _tensorrt_parity_step("parity-tensorrt-int8", "engine_int8", "engine-build-int8", "tensorrt-int8.json", "int8"),
    Step("benchmark", "time every backend available here", "benchmark", args=benchmark_args, run=benchmark,
         needs=("train",)),
)

STEP_NAMES = tuple(step.name for step in STEPS)
