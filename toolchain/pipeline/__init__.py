"""``toolchain pipeline``: train -> export -> parity -> plugin -> engines -> parity -> benchmark -> report.

One run folder holds everything::

    RUN/train/            checkpoint (model.safetensors + model.json), history
    RUN/onnx/             model-fp32.onnx, model-fp16.onnx (plugin LRN), model-fp16-native.onnx,
                          model-int8-tensorrt.onnx and model-int8-onnxruntime.onnx (one calibration of
                          model-fp32.onnx, each Q/DQ placement for its runtime)
    RUN/parity/           one JSON report per parity check
    RUN/engines/          model-fp16.engine, model-fp16-native.engine, model-int8.engine (+ manifests, layer
                          info), timing cache
    RUN/plugins/          the CMake build of the LRN kernel and the TensorRT plugin (--plugin-build-dir)
    RUN/benchmark/        benchmark.json, benchmark.md, latency.png, throughput.png
    RUN/REPORT.md         the summary; RUN/pipeline.json: every step's record

Each step calls the Python API (not the CLI) and records its equivalent ``toolchain ...`` command,
written from the same arguments. The pipeline fails (non-zero exit) when any step failed, never
because of skips.

- :mod:`~toolchain.pipeline.steps`: the table: each step's prerequisites, requirement check, command
  arguments and API call;
- :mod:`~toolchain.pipeline.engine`: a row (:class:`Step`) and the runner's bookkeeping (skips and their
  reasons, failures, tracebacks);
- :mod:`~toolchain.pipeline.command_line`: a step's ``toolchain ...`` line from its click command;
- :mod:`~toolchain.pipeline.run`: the run folder, what the steps share, the reports;
- :mod:`~toolchain.pipeline.config`: the options and their checks.
"""

from toolchain.pipeline.config import PipelineConfig
from toolchain.pipeline.engine import Step, StepResult
from toolchain.pipeline.run import Pipeline, PipelineError, raise_if_failed, run_pipeline
from toolchain.pipeline.steps import STEP_NAMES, STEPS, builder_flavour

__all__ = ["PipelineConfig", "Step", "StepResult", "STEP_NAMES", "STEPS", "Pipeline", "PipelineError",
           "builder_flavour", "raise_if_failed", "run_pipeline"]
