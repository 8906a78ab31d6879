"""Runners: one object per backend that turns a feed dict into an output dict.

Polygraphy-style: a runner is activated (loads its model/session/engine), runs
``infer({"input": array}) -> {"logits": array}`` on host arrays any number of
times (what parity compares), and is deactivated (frees it); ``with runner:``
does both. For timing the same runner also runs on device-resident inputs:
``prepare(batch)`` makes an FP32 input on the device (and a pinned FP32 host
copy), ``run()`` is one inference on it, ``h2d()``/``d2h()`` are the copies.
Runners only run: which runner a backend name means is the registry's
(:mod:`toolchain.backends`), building engines the builder's (:mod:`toolchain.trt.builder`),
comparing the comparator's (:mod:`toolchain.parity`).

Modules: :mod:`~toolchain.runners.base` (the protocol, device I/O, the run step of parity),
:mod:`~toolchain.runners.torch` (eager FP32/FP16, fused LRN, ``torch.compile``, CUDA-graph
replay), :mod:`~toolchain.runners.onnxruntime` (CPU/CUDA providers); the TensorRT runner is
:class:`toolchain.trt.runtime.TensorRTRunner`.
"""
