"""Runners: one object per backend that turns a feed dict into an output dict.

Polygraphy-style: a runner is activated (loads its model/session/engine), runs
``infer({"input": array}) -> {"logits": array}`` on host arrays any number of
times (what parity compares), and is deactivated (frees it); ``with runner:``
does both. For timing the same runner also runs on device-resident inputs:
``prepare(batch)`` makes an FP32 input on the device (and a pinned FP32 host
copy), ``run()`` is one inference on it, ``h2d()``/``d2h()`` are the copies.
Runners only run: building models and engines happens in loaders
(:mod:`toolchain.bench.backends`, :mod:`toolchain.trt.builder`), comparing in
:mod:`toolchain.parity`.

Modules: :mod:`~toolchain.runners.base` (the protocol, device I/O, ``make_runner``),
:mod:`~toolchain.runners.torch` (eager FP32/FP16, fused LRN, ``torch.compile``,
CUDA-graph replay), :mod:`~toolchain.runners.onnxruntime` (CPU/CUDA providers),
:mod:`~toolchain.runners.tensorrt` (``TensorRTRunner`` from
:mod:`toolchain.trt.runtime`, imported lazily, plus its timing wrapper).
"""

from __future__ import annotations

from toolchain.runners.base import BACKENDS, INPUT_NAME, OUTPUT_NAME, DeviceIO, Runner, make_runner
from toolchain.runners.onnxruntime import OnnxRuntimeRunner
from toolchain.runners.torch import CompileRunner, CudaGraphRunner, TorchRunner

__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAME", "DeviceIO", "Runner", "make_runner", "TorchRunner",
           "CompileRunner", "CudaGraphRunner", "OnnxRuntimeRunner", "TensorRTRunner", "TensorRTTimedRunner"]


def __getattr__(name):  # TensorRT lazily: toolchain.trt.runtime itself imports Runner from here
    if name in ("TensorRTRunner", "TensorRTTimedRunner"):
        from toolchain.runners import tensorrt

        return getattr(tensorrt, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
