"""A pipeline run: the run folder, what the steps share, the table run in order, REPORT.md and pipeline.json."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.pipeline.config import PipelineConfig, check_config
from toolchain.pipeline.engine import StepRunner
from toolchain.pipeline.steps import STEP_NAMES, STEPS, builder_flavour


class PipelineError(ToolchainError):
    """At least one pipeline step failed (the report was still written)."""

    exit_code = 1


class Pipeline:
    """Runs :data:`~toolchain.pipeline.steps.STEPS` in one run folder; the steps are given this object."""

    def __init__(self, config: PipelineConfig, console=None):
        from rich.console import Console

        from toolchain.data import dataset_inputs_paths
        from toolchain.io import guard_output

        check_config(config, STEP_NAMES)
        self.config = config
        self.out = guard_output(config.out_dir, folder=True, force=config.force,
                                inputs=dataset_inputs_paths(config.dataset, config.data_dir), what="--out")
        self.console = console or Console(stderr=True, quiet=not config.progress)
        self.runner = StepRunner(skip=config.skip, console=self.console, total=len(STEPS))
        self.state: dict = {}
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
            "plugins": Path(config.plugin_build_dir) if config.plugin_build_dir else self.out / "plugins",
        }

    # ------------------------------------------------------------------ what the steps share

    def checkpoint(self, path):
        """The checkpoint at ``path``, loaded once per run (the steps hand the model over in memory)."""
        key = ("checkpoint", str(path))
        if key not in self.state:
            from toolchain.checkpoint import load_checkpoint

            self.state[key] = load_checkpoint(path)
        return self.state[key]

    def builder(self):
        """(Flavour, None) of the engine builder, or (None, why none); asked once per run."""
        if "builder" not in self.state:
            self.state["builder"] = builder_flavour(self.config.builder)
        return self.state["builder"]

    def plugin_library(self) -> str | None:
        """The plugin library this run's plugin-build step made (never a stale one found elsewhere: the
        run's engines and reports must describe what this run built). TensorRT-RTX loads only the
        dynamic-registration library (IPluginRegistry.loadLibrary)."""
        flavour, _ = self.builder()
        kind = "tensorrt_dynamic" if flavour is not None and flavour.rtx else "tensorrt"
        step = self.runner.result("plugin-build")
        return step.outputs.get(kind) if step is not None and step.status == "ran" else None

    # ------------------------------------------------------------------ the run

    def run(self) -> dict:
        from toolchain.environment import capture_environment

        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        environment = capture_environment()
        for step in STEPS:
            self.runner.run(step, self)
        steps = self.runner.records
        record = {
            "out_dir": str(self.out), "started_at": started_at, "seconds": time.perf_counter() - started,
            "config": asdict(self.config), "environment": environment,
            "passed": not any(s.status == "failed" for s in steps),
            "steps": [asdict(s) for s in steps],
        }
        self.write_reports(record)
        return record

    def write_reports(self, record: dict) -> None:
        from toolchain.io import write_json_atomic, write_text_atomic
        from toolchain.report import pipeline_markdown

        text = pipeline_markdown(record, benchmark=self.state.get("benchmark"),
                                 benchmark_dir="benchmark" if self.state.get("benchmark") else None)
        write_json_atomic(self.paths["json"], record, force=self.config.force)
        write_text_atomic(self.paths["report"], text, force=self.config.force)


def run_pipeline(config: PipelineConfig, console=None) -> dict:
    """Run every step; return the pipeline record (also written to pipeline.json and REPORT.md)."""
    return Pipeline(config, console=console).run()


def raise_if_failed(record: dict) -> None:
    failed = [s for s in record["steps"] if s["status"] == "failed"]
    if failed:
        raise PipelineError(f"{len(failed)} pipeline step(s) failed: "
                            + "; ".join(f"{s['name']}: {s['error']}" for s in failed),
                            hint=f"see {Path(record['out_dir']) / 'REPORT.md'}")
