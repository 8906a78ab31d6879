"""Runners: one object per backend that turns a feed dict into an output dict.

Polygraphy-style: a runner is activated (loads its session/engine), runs
``infer({"input": array}) -> {"logits": array}`` any number of times, and is
deactivated (frees it); ``with runner:`` does both. Runners only run: loading and
building happen elsewhere, comparing happens in :mod:`toolchain.parity`.

Backends: ``torch`` (eager PyTorch, the reference), ``onnxruntime``, and
``tensorrt`` (``toolchain.trt.runtime.TensorRTRunner``, imported lazily).
"""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import MissingDependencyError, ToolchainError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BACKENDS = ("torch", "onnxruntime", "tensorrt")


class Runner:
    """Base class: subclasses implement ``_activate``, ``_infer`` and ``_deactivate``."""

    name = "runner"

    def __init__(self):
        self.is_active = False

    def activate(self) -> None:
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def infer(self, feed: dict) -> dict:
        if not self.is_active:
            raise ToolchainError(f"runner {self.name} is not active", hint="use it in a 'with' block")
        return self._infer(feed)

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False

    # Optional: a fixed batch size the backend needs (None = any).
    @property
    def static_batch(self) -> int | None:
        return None

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


class TorchRunner(Runner):
    """Eager PyTorch: ``{"input": NCHW float array} -> {"logits": float32 array}``."""

    def __init__(self, model, *, device: str = "cpu", dtype: str = "fp32", fused_lrn: bool = False,
                 name: str | None = None):
        super().__init__()
        if dtype not in ("fp32", "fp16"):
            raise ToolchainError(f"unknown dtype {dtype!r} for the PyTorch runner", hint="use fp32 or fp16")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.fused_lrn = fused_lrn
        self.name = name or f"torch-{device}-{dtype}{'-fused-lrn' if fused_lrn else ''}"

    def _activate(self) -> None:
        import torch

        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise MissingDependencyError("no CUDA GPU for the PyTorch runner", hint="use --device cpu")
        self._torch_dtype = torch.float16 if self.dtype == "fp16" else torch.float32
        self.model = self.model.eval().to(device=self.device, dtype=self._torch_dtype)
        if self.fused_lrn:
            from toolchain.fused_lrn import enable_fused_lrn

            enable_fused_lrn(self.model)

    def _infer(self, feed: dict) -> dict:
        import torch

        x = torch.as_tensor(feed[INPUT_NAME]).to(device=self.device, dtype=self._torch_dtype)
        with torch.inference_mode():
            y = self.model(x)
        return {OUTPUT_NAME: y.float().cpu().numpy()}


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime session over an exported file (no custom-op library needed)."""

    def __init__(self, path, *, providers=None, name: str | None = None):
        super().__init__()
        self.path = Path(path)
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.name = name or f"onnxruntime-{self.providers[0].removesuffix('ExecutionProvider').lower()}"
        self.session = None

    def _activate(self) -> None:
        import onnxruntime as ort

        from toolchain.export import load_onnx

        model = load_onnx(self.path)  # a clear error for a missing or corrupt file
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise MissingDependencyError(f"ONNX Runtime lacks {', '.join(missing)}",
                                         hint=f"available: {', '.join(available)}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: FP16 cast insertion logs warnings
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ToolchainError(f"ONNX Runtime cannot load {self.path}: {first}") from None
        self._inputs = {i.name: i for i in self.session.get_inputs()}

    def _deactivate(self) -> None:
        self.session = None

    @property
    def static_batch(self) -> int | None:
        if self.session is None:
            return None
        dim = next(iter(self._inputs.values())).shape[0]
        return dim if isinstance(dim, int) else None

    def _infer(self, feed: dict) -> dict:
        import numpy as np

        types = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        inputs = {}
        for name, array in feed.items():
            if name not in self._inputs:
                raise ToolchainError(f"{self.path} has no input {name!r}",
                                     hint=f"its inputs: {', '.join(self._inputs)}")
            dtype = types.get(self._inputs[name].type, np.float32)
            inputs[name] = np.ascontiguousarray(np.asarray(array), dtype=dtype)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, inputs)))


def make_runner(backend: str, **kwargs) -> Runner:
    """``torch`` (model=...), ``onnxruntime`` (path=...), ``tensorrt`` (engine_path=...)."""
    if backend in ("torch", "pytorch"):
        return TorchRunner(kwargs.pop("model"), **kwargs)
    if backend == "onnxruntime":
        return OnnxRuntimeRunner(kwargs.pop("path"), **kwargs)
    if backend == "tensorrt":
        try:
            from toolchain.trt.runtime import TensorRTRunner
        except ImportError as exc:
            raise MissingDependencyError(f"the TensorRT runner is unavailable ({exc})",
                                         hint="install TensorRT (pip install 'alexnet-trt-toolchain[tensorrt]')") \
                from None
        return TensorRTRunner(kwargs.pop("engine_path"), **kwargs)
    raise ToolchainError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
