"""``toolchain pipeline``: train -> export -> parity -> plugin -> engines -> parity -> benchmark -> report.

One run folder holds everything::

    RUN/train/            checkpoint (model.safetensors + model.json), history
    RUN/onnx/             model-fp32.onnx, model-fp16.onnx (plugin LRN), model-fp16-native.onnx,
                          model-int8-tensorrt.onnx and model-int8-onnxruntime.onnx (one calibration of
                          model-fp32.onnx, each Q/DQ placement for its runtime)
    RUN/parity/           one JSON report per parity check
    RUN/engines/          model-fp16.engine, model-fp16-native.engine, model-int8.engine (+ manifests, layer
                          info), timing cache
    RUN/benchmark/        benchmark.json, benchmark.md, latency.png, throughput.png
    RUN/REPORT.md         the summary; RUN/pipeline.json: every step's record

Each step calls the Python API (not the CLI) and records its equivalent
``toolchain ...`` command. A step whose requirement is missing here (a CUDA GPU,
TensorRT, nvcc) is *skipped* with the reason and that command; a step whose
prerequisite step did not run is skipped naming it; everything else runs. A step
that raises is *failed* (the error's one line; for a bug also the traceback in
pipeline.json) and the pipeline goes on with what does not depend on it. The
pipeline fails (non-zero exit) when any step failed, never because of skips.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from toolchain.errors import MissingDependencyError, ToolchainError

STATUSES = ("ran", "skipped", "failed")


class PipelineError(ToolchainError):
    """At least one pipeline step failed (the report was still written)."""

    exit_code = 1


@dataclass
class PipelineConfig:
    out_dir: str = "runs/pipeline"
    variant: str = "paper"
    dataset: str = "digits"
    image_size: int | None = 64
    epochs: int | None = None          # None: the dataset's default (12 for digits)
    batch_size: int | None = None
    target_top1: float | None = 0.95   # stop training once validation top-1 reaches it
    seed: int = 0
    device: str = "auto"               # training device
    data_dir: str | None = None
    parity_batch_sizes: tuple[int, ...] = (1, 32)
    parity_limit: int | None = None    # None: the whole validation split
    quant_samples: int = 256           # INT8 calibration images (training split)
    quant_method: str = "minmax"
    bench_batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    bench_max_seconds: float = 5.0
    bench_warmup: int = 10
    bench_window: int | None = None
    include_compile: bool = False
    plugin_build_dir: str = "build/plugins"
    cuda_archs: str | None = None
    tensorrt_root: str | None = None   # TensorRT headers (and libraries) for the plugin build
    builder: str = "auto"              # engine builder: auto, full (needs a GPU) or rtx (builds on the CPU)
    skip: tuple[str, ...] = ()
    force: bool = False
    progress: bool = True


@dataclass
class StepResult:
    name: str
    title: str
    command: str
    status: str = "skipped"
    reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: str = ""
    outputs: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


STEP_NAMES = ("train", "export-fp32", "export-fp16", "export-fp16-native", "parity-onnxruntime",
              "parity-onnxruntime-fp16", "quantize-int8", "parity-onnxruntime-int8", "plugin-build", "plugin-check", "engine-build",
              "engine-build-native", "engine-build-int8", "parity-tensorrt", "parity-tensorrt-native",
              "parity-tensorrt-int8", "benchmark")


def _q(value) -> str:
    return shlex.quote(str(value))


def cuda_reason() -> str | None:
    from toolchain.environment import cuda_unavailable

    return cuda_unavailable()


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


def check_config(config: PipelineConfig) -> None:
    """Everything the user chose, checked before the run folder is touched (no step runs on a bad value)."""
    from toolchain.quantize import METHODS, check_samples
    from toolchain.train import TrainConfig, check_train_config, resolve_device
    from toolchain.validate import MAX_BATCH, check_number

    unknown = [s for s in config.skip if s not in STEP_NAMES]
    if unknown:
        raise ToolchainError(f"unknown step(s) to skip: {', '.join(unknown)}", hint=f"steps: {', '.join(STEP_NAMES)}")
    check_train_config(TrainConfig(variant=config.variant, dataset=config.dataset, image_size=config.image_size,
                                   epochs=config.epochs, batch_size=config.batch_size,
                                   target_top1=config.target_top1, seed=config.seed, device=config.device))
    resolve_device(config.device)
    for name, sizes in (("--parity-batch-sizes", config.parity_batch_sizes),
                        ("--bench-batch-sizes", config.bench_batch_sizes)):
        if not sizes:
            raise ToolchainError(f"{name} is empty", hint="e.g. 1,32")
        for size in sizes:
            check_number(name, size, low=1, high=MAX_BATCH, integer=True)
    if config.parity_limit is not None:
        check_number("--parity-limit", config.parity_limit, low=1, integer=True)
        if config.parity_limit < max(config.parity_batch_sizes):
            raise ToolchainError(f"--parity-limit {config.parity_limit} gives fewer images than the parity batch size "
                                 f"{max(config.parity_batch_sizes)}",
                                 hint=f"pass --parity-limit {max(config.parity_batch_sizes)} or more, or smaller "
                                      "--parity-batch-sizes")
    check_samples(config.quant_samples)
    if config.quant_method not in METHODS:
        raise ToolchainError(f"unknown calibration method {config.quant_method!r}", hint=f"choose {', '.join(METHODS)}")
    check_number("--bench-max-seconds", config.bench_max_seconds, low=0.0, low_open=True)
    check_number("--bench-warmup", config.bench_warmup, low=0, integer=True)
    if config.bench_window is not None:
        check_number("--bench-window", config.bench_window, low=1, integer=True)


def check_run_folder(out_dir, *, force: bool, inputs=()) -> Path:
    from toolchain.io import guard_output

    return guard_output(out_dir, folder=True, force=force, inputs=inputs, what="--out")


class Pipeline:
    """Runs the steps in order and keeps their records; see the module docstring."""

    def __init__(self, config: PipelineConfig, console=None):
        from rich.console import Console

        from toolchain.data import dataset_inputs_paths

        check_config(config)
        self.config = config
        self.out = check_run_folder(config.out_dir, force=config.force,
                                    inputs=dataset_inputs_paths(config.dataset, config.data_dir))
        self.console = console or Console(stderr=True, quiet=not config.progress)
        self.steps: list[StepResult] = []
        self.state: dict = {}
        self.root_reasons: dict[str, str] = {}  # step -> the first cause of its skip
        self.said: dict[str, str] = {}  # skip reason -> the step that gave it in full
        self.paths = {
            "train": self.out / "train", "checkpoint": self.out / "train" / "model.safetensors",
            "onnx_fp32": self.out / "onnx" / "model-fp32.onnx", "onnx_fp16": self.out / "onnx" / "model-fp16.onnx",
            "onnx_native": self.out / "onnx" / "model-fp16-native.onnx",
            "onnx_int8": self.out / "onnx" / "model-int8-tensorrt.onnx",  # the engine build's
            "onnx_int8_ort": self.out / "onnx" / "model-int8-onnxruntime.onnx",  # ONNX Runtime's
            "engine_int8": self.out / "engines" / "model-int8.engine",
            "engine": self.out / "engines" / "model-fp16.engine",
            "engine_native": self.out / "engines" / "model-fp16-native.engine",
            "timing_cache": self.out / "engines" / "timing.cache", "parity": self.out / "parity",
            "benchmark": self.out / "benchmark", "report": self.out / "REPORT.md", "json": self.out / "pipeline.json",
        }

    # ------------------------------------------------------------------ machinery

    def result(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def ran(self, name: str) -> bool:
        step = self.result(name)
        return step is not None and step.status == "ran"

    def _once(self, name: str, reason: str) -> str:
        """``reason`` in full the first time a step gives it; later its gist and the step that gave it in full
        (an environment reason carries an install hint, and several steps share it)."""
        first = self.said.setdefault(reason, name)
        if first == name:
            return reason
        gist = re.sub(r"\s*\([^()]*\)", "", reason.split("; ")[0]).strip()
        return f"{gist}; see step {first}"

    def step(self, name: str, title: str, command: str, fn: Callable[[StepResult], None], *,
             needs: tuple[str, ...] = (), requires: Callable[[], str | None] | None = None) -> StepResult:
        record = StepResult(name=name, title=title, command=command)
        self.steps.append(record)
        index = len(self.steps)
        self.console.rule(f"[bold]{index}/{len(STEP_NAMES)} {name}[/]: {title}", align="left")
        self.console.print(f"[dim]$ {command}[/]", highlight=False, soft_wrap=True)
        reason = None
        if name in self.config.skip:
            reason = "skipped by --skip"
        for dep in needs:
            if reason:
                break
            dep_step = self.result(dep)
            if dep_step is None or dep_step.status != "ran":
                if dep_step is None:
                    state = "did not run"
                elif dep_step.status == "failed":
                    state = "failed"
                else:  # carry the root cause along, so each skip says why on its own
                    root = self.root_reasons.get(dep, dep_step.reason)
                    state = f"was skipped ({root if root == 'skipped by --skip' else self._once(name, root)})"
                    record.details["root_reason"] = root
                reason = f"needs step {dep}, which {state}"
        if reason is None and requires is not None:
            reason = requires()
            if reason:
                record.details["skip_cause"] = reason  # in full, for the report and the dependents
                reason = self._once(name, reason)
        if reason:
            record.status, record.reason = "skipped", reason
            self.root_reasons[name] = record.details.get("root_reason") or record.details.get("skip_cause") or reason
            self.console.print(f"[yellow]skipped[/]: {reason}", highlight=False)
            return record
        started = time.perf_counter()
        try:
            fn(record)
            record.status = "ran"
        except MissingDependencyError as exc:  # found missing only while running (e.g. cmake)
            record.status, record.reason = "skipped", self._once(name, exc.one_line())
            record.details["skip_cause"] = self.root_reasons[name] = exc.one_line()
        except ToolchainError as exc:
            record.status, record.error = "failed", exc.one_line()
        except Exception as exc:  # a bug: keep going, keep the traceback for the report
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            record.details["traceback"] = traceback.format_exc()
        record.seconds = time.perf_counter() - started
        if record.status == "ran":
            self.console.print(f"[green]ran[/] in {record.seconds:.1f} s" + (f": {record.summary}" if record.summary
                                                                             else ""), highlight=False)
        elif record.status == "skipped":
            self.console.print(f"[yellow]skipped[/]: {record.reason}", highlight=False)
        else:
            self.console.print(f"[bold red]FAILED[/] after {record.seconds:.1f} s: {record.error}", highlight=False)
        return record

    # ------------------------------------------------------------------ steps

    def _checkpoint(self):
        if "checkpoint" not in self.state:
            from toolchain.checkpoint import load_checkpoint

            self.state["checkpoint"] = load_checkpoint(self.paths["checkpoint"])
        return self.state["checkpoint"]

    def _train(self, record: StepResult) -> None:
        from toolchain.train import TrainConfig, run_training

        c = self.config
        result = run_training(TrainConfig(
            variant=c.variant, dataset=c.dataset, out_dir=str(self.paths["train"]), image_size=c.image_size,
            epochs=c.epochs, batch_size=c.batch_size, target_top1=c.target_top1, seed=c.seed, device=c.device,
            data_dir=c.data_dir, force=c.force, progress=c.progress))
        metrics = dict(result.metrics)
        record.outputs = {"checkpoint": str(result.checkpoint)}
        record.details = {"metrics": metrics, "history": result.history}
        record.summary = (f"validation top-1 {metrics.get('val_top1', float('nan')):.4f} "
                          f"(epoch {metrics.get('epoch')}, {metrics.get('train_seconds')} s)")

    def _export(self, record: StepResult, *, key: str, dtype: str, lrn: str) -> None:
        from toolchain.export import export_model

        ckpt = self._checkpoint()
        result = export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=self.paths[key],
                              force=self.config.force, lrn=lrn, dtype=dtype)
        from toolchain.io import sha256_file

        record.outputs = {"onnx": str(result.path)}
        record.details = {"lrn_nodes": result.lrn_nodes, "bytes": result.path.stat().st_size,
                          "sha256": sha256_file(result.path), "export_seconds": round(result.seconds, 2)}
        record.summary = (f"{result.path.name}: {result.path.stat().st_size / 1e6:.1f} MB, {len(result.lrn_nodes)} "
                          f"{'FusedLRN' if lrn == 'plugin' else 'LRN'} node(s)")

    #: Which INT8 file feeds which step: each runtime gets the Q/DQ placement made for it.
    INT8_FEEDS = {"tensorrt": ("engine-build-int8", "parity-tensorrt-int8 (through the engine)"),
                  "onnxruntime": ("parity-onnxruntime-int8", "benchmark (onnxruntime-cpu-int8)")}

    def _quantize(self, record: StepResult) -> None:
        from toolchain.quantize import quantize_checkpoint_targets

        c = self.config
        files = {"tensorrt": self.paths["onnx_int8"], "onnxruntime": self.paths["onnx_int8_ort"]}
        results = quantize_checkpoint_targets(self.paths["checkpoint"], files, onnx_path=self.paths["onnx_fp32"],
                                              samples=c.quant_samples, method=c.quant_method, data_dir=c.data_dir,
                                              force=c.force)
        first = next(iter(results.values()))
        record.outputs = {target: str(result.path) for target, result in results.items()}
        record.details = {
            "feeds": [{"file": str(results[t].path), "target": t, "steps": list(steps)}
                      for t, steps in self.INT8_FEEDS.items()],
            **{target: {"qdq": result.summary.to_dict(),
                        "metadata": {k: v for k, v in result.metadata.items()
                                     if k.startswith(("toolchain.quant_", "toolchain.ort_"))}}
               for target, result in results.items()}}
        record.summary = ("; ".join(f"{r.path.name} ({r.path.stat().st_size / 1e6:.1f} MB, {t} placement) for "
                                    f"{' and '.join(s.split(' (')[0] for s in self.INT8_FEEDS[t])}"
                                    for t, r in results.items())
                          + f": {len(first.summary.quantized_ops)} Conv/Gemm on INT8 Q/DQ, "
                          f"{len(first.summary.fused_lrn)} FusedLRN kept, one {c.quant_method} calibration on "
                          f"{first.metadata.get('toolchain.quant_calibration')}")

    def _native_reason(self) -> str | None:
        from toolchain.export import check_native

        try:
            check_native(self._checkpoint().model)
        except ToolchainError as exc:
            return exc.one_line()
        return None

    def _inputs(self):
        if "inputs" not in self.state:
            from toolchain.inputs import dataset_inputs

            ckpt = self._checkpoint()
            images, labels = dataset_inputs(ckpt.meta.get("dataset") or self.config.dataset, ckpt.meta,
                                            limit=self.config.parity_limit, data_dir=self.config.data_dir)
            self.state["inputs"] = (images, labels)
        return self.state["inputs"]

    def _parity(self, record: StepResult, *, candidate_factory, precision: str, report_name: str,
                max_batch: int | None = None, onnx_key: str | None = None) -> None:
        from toolchain.io import write_json_atomic
        from toolchain.parity import load_tolerances, run_parity
        from toolchain.runners.torch import TorchRunner

        ckpt = self._checkpoint()
        onnx = self.paths[onnx_key] if onnx_key is not None else None
        if onnx is not None:  # the same weights, by content, before any inference
            from toolchain.weights import verify_onnx_weights

            verify_onnx_weights(ckpt.model, onnx, onnx_label=str(onnx),
                                reference_label=f"checkpoint {self.paths['checkpoint']}")
        images, labels = self._inputs()
        sizes = [b for b in self.config.parity_batch_sizes if max_batch is None or b <= max_batch] or [1]
        reference = TorchRunner(ckpt.model, device="cpu")
        candidate = candidate_factory()
        with reference, candidate:
            report = run_parity(reference, candidate, images, batch_sizes=sizes, labels=labels,
                                tolerances=load_tolerances(precision), precision=precision)
        source = f"{ckpt.meta.get('dataset')} validation split, {len(images)} images"
        report.inputs["source"] = source
        data = report.to_dict()
        path = self.paths["parity"] / report_name
        write_json_atomic(path, data, force=self.config.force)
        record.outputs = {"report": str(path)}
        record.details = {"report": data, "inputs": source}
        worst = max((c.metrics.get("max_abs_error", 0.0) for c in report.comparisons), default=0.0)
        agreement = min((c.metrics.get("top1_agreement", 1.0) for c in report.comparisons), default=1.0)
        record.summary = (f"{'PASS' if report.passed else 'FAIL'}: max abs error {worst:.3g}, top-1 agreement "
                          f"{agreement:.4f} on {len(images)} images, batch sizes {', '.join(map(str, sizes))}")
        if onnx is not None:  # which file it checked (two INT8 files come from one calibration)
            record.details["onnx"] = str(onnx)
            record.summary += f", {onnx.name}"
        report.raise_if_failed(report=path)  # after writing: the report shows every check

    def _plugin_build(self, record: StepResult) -> None:
        from toolchain.plugin import build_plugins

        result = build_plugins(self.config.plugin_build_dir, cuda_archs=self.config.cuda_archs,
                               tensorrt_root=self.config.tensorrt_root)
        from toolchain.io import sha256_file

        record.outputs = {k: result[k] for k in ("kernels", "tensorrt", "tensorrt_dynamic", "log") if result.get(k)}
        record.details = {"result": result, "sha256": {k: sha256_file(v) for k, v in record.outputs.items()
                                                        if k != "log"}}
        built = [k for k in ("kernels", "tensorrt", "tensorrt_dynamic") if result.get(k)]
        record.summary = f"built {', '.join(built)}" + (f"; TensorRT plugin skipped: {result['tensorrt_skipped']}"
                                                        if result.get("tensorrt_skipped") else "")

    def _plugin_check_reason(self) -> str | None:
        from toolchain.plugin_check import checking_tensorrt

        try:
            checking_tensorrt("auto")  # a builder's registry and parser, else the lean runtime's registry
        except ToolchainError as exc:
            return exc.one_line()
        if self._plugin_library() is None:
            return "the TensorRT plugin library was not built (toolchain plugin build, with TensorRT headers)"
        return None

    def _plugin_check(self, record: StepResult) -> None:
        from toolchain.plugin_check import run_plugin_check

        report = run_plugin_check(self._plugin_library(), self.paths["onnx_fp16"])
        record.details = report.to_dict()
        if not report.passed:
            raise ToolchainError(f"plugin check failed: {report.failure()}")
        nodes = len(report.nodes)
        parsed = [c for c in report.checks if "parser" in c.name and c.ok]
        record.summary = (f"{report.tensorrt['module']} {report.tensorrt['version']}: creator registered, "
                          f"{nodes} FusedLRN node(s) accepted"
                          + ("; the real ONNX parser made them plugin layers and a batch-1 engine built" if parsed else ""))

    def _builder(self):
        """(Flavour, None) of the engine builder, or (None, why none); asked once per run."""
        if "builder" not in self.state:
            self.state["builder"] = builder_flavour(self.config.builder)
        return self.state["builder"]

    def _plugin_library(self) -> str | None:
        """The plugin library this run's plugin-build step made (never a stale one found elsewhere: the
        run's engines and reports must describe what this run built). TensorRT-RTX loads only the
        dynamic-registration library (IPluginRegistry.loadLibrary)."""
        flavour, _ = self._builder()
        kind = "tensorrt_dynamic" if flavour is not None and flavour.rtx else "tensorrt"
        step = self.result("plugin-build")
        return step.outputs.get(kind) if step is not None and step.status == "ran" else None

    def _engine_reason(self) -> str | None:
        flavour, why = self._builder()
        if flavour is None:
            return why
        if not flavour.rtx and cuda_reason():
            return f"{flavour.label} builds on a GPU: {cuda_reason()}"
        return None

    def _engine_lrn(self, lrn: str) -> tuple[str, str | None]:
        """The --lrn an engine step builds with, and why it is not the plugin: without a plugin library
        the FusedLRN nodes' local function stands in (standard layers), so an engine is still built."""
        if lrn != "plugin":
            return lrn, None
        check = self.result("plugin-check")
        if check is not None and check.status == "failed":
            return lrn, None  # _plugin_check_failed skips the step: no build with a plugin that refuses nodes
        if self._plugin_library() is None:
            build = self.result("plugin-build")
            why = None
            if build is not None and build.status != "ran":
                why = f"plugin-build {build.status}: {build.reason or build.error}"
            elif build is not None:
                why = (build.details.get("result") or {}).get("tensorrt_skipped")
            return "function", ("the plugin library was not built"
                                + (f" ({why})" if why else " (toolchain plugin build needs nvcc and TensorRT headers: "
                                   "--tensorrt-root)") + "; the FusedLRN nodes' standard-op function stands in")
        return lrn, None

    def _plugin_check_failed(self) -> str | None:
        check = self.result("plugin-check")
        if check is not None and check.status == "failed":
            # No hour-long build with a plugin that refuses the model's nodes.
            return f"the plugin check failed: {check.error or check.reason}"
        return None

    def _engine_run_reason(self, engine_key: str) -> str | None:
        """Why the engine cannot run here (a CUDA GPU, then the runtime its manifest names), or None."""
        reason = cuda_reason()
        if reason:
            return reason
        from toolchain.trt.runtime import rtx_runtime_reason

        rtx = rtx_runtime_reason(self.paths[engine_key])
        if rtx is not None:
            return rtx or None
        return tensorrt_reason()

    def _engine_max_batch(self) -> int:
        return max(*self.config.bench_batch_sizes, *self.config.parity_batch_sizes)

    def _build_engine(self, record: StepResult, *, onnx_key: str, engine_key: str, lrn: str,
                      fallback: str | None) -> None:
        from toolchain.trt.builder import build_engine
        from toolchain.trt.manifest import read_manifest

        flavour, _ = self._builder()
        path = build_engine(self.paths[onnx_key], self.paths[engine_key],
                            plugin_library=self._plugin_library() if lrn == "plugin" else None, lrn=lrn,
                            max_batch=self._engine_max_batch(), tensorrt=self.config.builder,
                            timing_cache=None if flavour.rtx else self.paths["timing_cache"],
                            force=self.config.force, log=lambda m: self.console.print(m, highlight=False))
        manifest = read_manifest(path)
        record.outputs = {"engine": str(path)}
        record.details = {"manifest": manifest, "lrn": lrn, "lrn_fallback": fallback}
        layers = manifest["layers"]
        record.summary = (f"{path.name}: {manifest['engine']['bytes'] / 1e6:.1f} MB, {manifest['build'].get('precision')}, "
                          f"{flavour.label}, {layers['network_layers']} layers"
                          + (f" ({len(layers['network_plugin_layers'])} FusedLRN plugin)" if lrn == "plugin" else "")
                          + f", built in {manifest['build']['seconds']:.1f} s"
                          + (f"; {fallback}" if fallback else ""))

    def _benchmark(self, record: StepResult) -> None:
        from toolchain.bench.sources import benchmark_from_sources
        from toolchain.bench.timing import TimingConfig

        c = self.config
        config = TimingConfig(warmup_iters=c.bench_warmup, window_iters=c.bench_window,
                              max_seconds=c.bench_max_seconds,
                              warmup_seconds=min(0.5, c.bench_max_seconds)).validate()
        result, paths = benchmark_from_sources(
            checkpoint=self.paths["checkpoint"],
            onnx=self.paths["onnx_fp32"] if self.ran("export-fp32") else None,
            engine=self.paths["engine"] if self.ran("engine-build") else None,
            native_engine=self.paths["engine_native"] if self.ran("engine-build-native") else None,
            onnx_int8=self.paths["onnx_int8_ort"] if self.ran("quantize-int8") else None,
            int8_engine=self.paths["engine_int8"] if self.ran("engine-build-int8") else None,
            plugin_library=self._plugin_library() if any((self.result(s).details or {}).get("lrn") == "plugin"
                                                         for s in ("engine-build", "engine-build-int8") if self.ran(s))
            else None,
            batch_sizes=list(c.bench_batch_sizes), include_compile=c.include_compile, config=config,
            out_dir=self.paths["benchmark"], force=c.force, console=self.console, data_dir=c.data_dir,
            parity_samples=c.parity_limit or 32)
        data = result.to_dict()
        self.state["benchmark"] = data
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

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        from toolchain.environment import capture_environment

        c = self.config
        p = self.paths
        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        environment = capture_environment()
        force = " --force" if c.force else ""
        ckpt = _q(p["checkpoint"])

        train_cmd = (f"toolchain train --variant {_q(c.variant)} --dataset {_q(c.dataset)}"
                     + (f" --image-size {c.image_size}" if c.image_size else "")
                     + (f" --epochs {c.epochs}" if c.epochs else "")
                     + (f" --batch-size {c.batch_size}" if c.batch_size else "")
                     + (f" --target-top1 {c.target_top1}" if c.target_top1 is not None else "")
                     + f" --seed {c.seed} --device {c.device}"
                     + (f" --data-dir {_q(c.data_dir)}" if c.data_dir else "")
                     + f" --out {_q(p['train'])}{force}")
        self.step("train", "train the model", train_cmd, self._train)

        for name, key, dtype, lrn, title in (
                ("export-fp32", "onnx_fp32", "fp32", "plugin", "export FP32 ONNX (FusedLRN nodes)"),
                ("export-fp16", "onnx_fp16", "fp16", "plugin", "export FP16 ONNX for TensorRT (FusedLRN nodes)"),
                ("export-fp16-native", "onnx_native", "fp16", "native", "export FP16 ONNX with native LRN")):
            cmd = (f"toolchain export --checkpoint {ckpt} -o {_q(p[key])}"
                   + (f" --dtype {dtype}" if dtype != "fp32" else "") + (f" --lrn {lrn}" if lrn != "plugin" else "")
                   + force)
            self.step(name, title, cmd, lambda r, k=key, d=dtype, l=lrn: self._export(r, key=k, dtype=d, lrn=l),
                      needs=("train",), requires=self._native_reason if lrn == "native" else None)

        from toolchain.runners.onnxruntime import OnnxRuntimeRunner

        sizes = ",".join(map(str, c.parity_batch_sizes))
        limit = f" --limit {c.parity_limit}" if c.parity_limit else ""
        for name, key, precision, report in (("parity-onnxruntime", "onnx_fp32", "fp32", "onnxruntime-fp32.json"),
                                             ("parity-onnxruntime-fp16", "onnx_fp16", "fp16",
                                              "onnxruntime-fp16.json")):
            cmd = (f"toolchain parity --backend onnxruntime --onnx {_q(p[key])} --checkpoint {ckpt}"
                   f" --batch-sizes {sizes}{limit} --precision {precision} --report {_q(p['parity'] / report)}{force}")
            export_step = "export-fp32" if key == "onnx_fp32" else "export-fp16"
            self.step(name, f"ONNX Runtime CPU vs eager PyTorch ({precision.upper()} tolerances)", cmd,
                      lambda r, k=key, pr=precision, rep=report: self._parity(
                          r, candidate_factory=lambda: OnnxRuntimeRunner(p[k]), precision=pr, report_name=rep,
                          onnx_key=k),
                      needs=("train", export_step))

        self.step("quantize-int8", "calibrate once, write the INT8 Q/DQ ONNX for TensorRT and for ONNX Runtime",
                  f"toolchain quantize --checkpoint {ckpt} --onnx {_q(p['onnx_fp32'])}"
                  f" --target tensorrt -o {_q(p['onnx_int8'])} --target onnxruntime -o {_q(p['onnx_int8_ort'])}"
                  f" --samples {c.quant_samples} --method {c.quant_method}"
                  + (f" --data-dir {_q(c.data_dir)}" if c.data_dir else "") + force,
                  self._quantize, needs=("train", "export-fp32"))
        self.step("parity-onnxruntime-int8", "ONNX Runtime CPU INT8 vs eager PyTorch (INT8 tolerances)",
                  f"toolchain parity --backend onnxruntime --onnx {_q(p['onnx_int8_ort'])} --checkpoint {ckpt}"
                  f" --batch-sizes {sizes}{limit} --precision int8"
                  f" --report {_q(p['parity'] / 'onnxruntime-int8.json')}{force}",
                  lambda r: self._parity(r, candidate_factory=lambda: OnnxRuntimeRunner(p["onnx_int8_ort"]),
                                         precision="int8", report_name="onnxruntime-int8.json",
                                         onnx_key="onnx_int8_ort"),
                  needs=("train", "quantize-int8"))

        self.step("plugin-build", "build the LRN kernel and TensorRT plugin libraries",
                  f"toolchain plugin build --build-dir {_q(c.plugin_build_dir)}"
                  + (f" --cuda-archs {_q(c.cuda_archs)}" if c.cuda_archs else "")
                  + (f" --tensorrt-root {_q(c.tensorrt_root)}" if c.tensorrt_root else ""),
                  self._plugin_build, requires=nvcc_reason)

        # Before any long engine build: does the plugin load into this TensorRT (full or lean,
        # no GPU needed) and accept every FusedLRN node of the model?
        plugin = self._plugin_library()
        self.step("plugin-check", "check the plugin in TensorRT's registry against the model's FusedLRN nodes",
                  "toolchain plugin check" + (f" --library {_q(plugin)}" if plugin else "")
                  + f" --onnx {_q(p['onnx_fp16'])}", self._plugin_check, needs=("export-fp16",),
                  requires=self._plugin_check_reason)

        max_batch = self._engine_max_batch()
        flavour, _ = self._builder()
        titles = {"plugin": "FusedLRN plugin", "native": "native LRN", "function": "FusedLRN local function, no plugin"}
        for name, onnx_key, engine_key, wanted, export_step in (
                ("engine-build", "onnx_fp16", "engine", "plugin", "export-fp16"),
                ("engine-build-native", "onnx_native", "engine_native", "native", "export-fp16-native"),
                ("engine-build-int8", "onnx_int8", "engine_int8", "plugin", "quantize-int8")):
            lrn, fallback = self._engine_lrn(wanted)
            plugin = self._plugin_library() if lrn == "plugin" else None
            cmd = (f"toolchain build {_q(p[onnx_key])} -o {_q(p[engine_key])}"
                   + (f" --plugin {_q(plugin)}" if plugin else "") + (f" --lrn {lrn}" if lrn != "plugin" else "")
                   + (f" --tensorrt {c.builder}" if c.builder != "auto" else "") + f" --max-batch {max_batch}"
                   + (f" --timing-cache {_q(p['timing_cache'])}" if flavour is None or not flavour.rtx else "") + force)
            kind = "INT8" if engine_key == "engine_int8" else "FP16"
            builder = flavour.label if flavour else "TensorRT"
            self.step(name, f"build the {kind} {builder} engine ({titles[lrn]})", cmd,
                      lambda r, o=onnx_key, e=engine_key, l=lrn, f=fallback: self._build_engine(
                          r, onnx_key=o, engine_key=e, lrn=l, fallback=f),
                      needs=(export_step,),
                      requires=lambda l=lrn: self._engine_reason() or (self._plugin_check_failed() if l == "plugin"
                                                                       else None))

        for name, engine_key, build_step, report, precision in (
                ("parity-tensorrt", "engine", "engine-build", "tensorrt-plugin.json", "fp16"),
                ("parity-tensorrt-native", "engine_native", "engine-build-native", "tensorrt-native.json", "fp16"),
                ("parity-tensorrt-int8", "engine_int8", "engine-build-int8", "tensorrt-int8.json", "int8")):
            cmd = (f"toolchain parity --backend tensorrt --engine {_q(p[engine_key])} --checkpoint {ckpt}"
                   f" --batch-sizes {sizes}{limit} --precision {precision} --report {_q(p['parity'] / report)}{force}")

            def candidate(e=engine_key, build=build_step):
                from toolchain.trt.runtime import TensorRTRunner

                built_lrn = (self.result(build).details or {}).get("lrn")
                plugin = self._plugin_library() if built_lrn == "plugin" else None
                return TensorRTRunner(p[e], **({"plugin_library": plugin} if plugin else {}))

            self.step(name, f"TensorRT {precision.upper()} vs eager PyTorch on the validation split", cmd,
                      lambda r, f=candidate, rep=report, pr=precision: self._parity(
                          r, candidate_factory=f, precision=pr, report_name=rep, max_batch=max_batch),
                      needs=("train", build_step), requires=lambda e=engine_key: self._engine_run_reason(e))

        bench_cmd = (f"toolchain benchmark --checkpoint {ckpt}"
                     + (f" --onnx {_q(p['onnx_fp32'])}" if self.ran("export-fp32") else "")
                     + (f" --engine {_q(p['engine'])}" if self.ran("engine-build") else "")
                     + (f" --native-engine {_q(p['engine_native'])}" if self.ran("engine-build-native") else "")
                     + (f" --onnx-int8 {_q(p['onnx_int8_ort'])}" if self.ran("quantize-int8") else "")
                     + (f" --int8-engine {_q(p['engine_int8'])}" if self.ran("engine-build-int8") else "")
                     + f" --batch-sizes {','.join(map(str, c.bench_batch_sizes))} --warmup {c.bench_warmup}"
                     + (f" --window {c.bench_window}" if c.bench_window else "")
                     + f" --max-seconds {c.bench_max_seconds}" + (" --include-compile" if c.include_compile else "")
                     + (f" --data-dir {_q(c.data_dir)}" if c.data_dir else "")
                     + (f" --parity-samples {c.parity_limit}" if c.parity_limit else "")
                     + f" --out {_q(p['benchmark'])}{force}")
        self.step("benchmark", "time every backend available here", bench_cmd, self._benchmark, needs=("train",))

        record = {
            "out_dir": str(self.out), "started_at": started_at, "seconds": time.perf_counter() - started,
            "config": asdict(c), "environment": environment,
            "passed": not any(s.status == "failed" for s in self.steps),
            "steps": [asdict(s) for s in self.steps],
        }
        self.write_reports(record)
        return record

    def write_reports(self, record: dict) -> None:
        from toolchain.io import write_json_atomic, write_text_atomic
        from toolchain.report import pipeline_markdown

        text = pipeline_markdown(record, benchmark=self.state.get("benchmark"),
                                 benchmark_dir="benchmark" if self.state.get("benchmark") else None)
        write_json_atomic(self.paths["json"], record, force=True if self.config.force else False)
        write_text_atomic(self.paths["report"], text, force=True if self.config.force else False)


def run_pipeline(config: PipelineConfig, console=None) -> dict:
    """Run every step; return the pipeline record (also written to pipeline.json and REPORT.md)."""
    return Pipeline(config, console=console).run()


def raise_if_failed(record: dict) -> None:
    failed = [s for s in record["steps"] if s["status"] == "failed"]
    if failed:
        raise PipelineError(f"{len(failed)} pipeline step(s) failed: "
                            + "; ".join(f"{s['name']}: {s['error']}" for s in failed),
                            hint=f"see {Path(record['out_dir']) / 'REPORT.md'}")
