"""PyTorch runners: eager FP32/FP16 (optionally the fused LRN op), ``torch.compile``, CUDA-graph replay."""

from __future__ import annotations

from typing import Callable

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.artifacts import INPUT_NAME, OUTPUT_NAME
from toolchain.runners.base import Runner


class TorchRunner(Runner):
    """Eager PyTorch: ``{"input": NCHW float array} -> {"logits": float32 array}``.

    ``model`` is a module, or ``model_factory`` builds one at activation (and it is
    dropped at deactivation, so a sweep holds one model at a time). FP32 on a GPU
    runs with TF32 off (``tf32=False``), so "FP32" means FP32; the setting is recorded.
    The input is cast (dtype, memory format) on the device, inside the compute step.
    """

    kind = "eager"

    def __init__(self, model=None, *, model_factory: Callable[[], object] | None = None, device: str = "cpu",
                 dtype: str = "fp32", fused_lrn: bool = False, channels_last: bool = False, tf32: bool = False,
                 input_shape=None, cudnn_benchmark: bool = True, name: str | None = None):
        super().__init__()
        if dtype not in ("fp32", "fp16"):
            raise ToolchainError(f"unknown dtype {dtype!r} for the PyTorch runner", hint="use fp32 or fp16")
        if model is None and model_factory is None:
            raise ToolchainError("the PyTorch runner needs a model", hint="pass --checkpoint or --variant")
        self.model = model
        self.model_factory = model_factory
        self.device = device
        self.dtype = self.precision = dtype
        self.fused_lrn = fused_lrn
        self.channels_last = channels_last
        self.tf32 = tf32
        self.cudnn_benchmark = cudnn_benchmark
        self.input_shape = tuple(input_shape) if input_shape else None
        self.name = name or f"torch-{device}-{dtype}{'-fused-lrn' if fused_lrn else ''}"
        layout = "channels_last" if channels_last else "NCHW"
        self.description = (f"eager PyTorch {dtype.upper()} on {device}, {layout}"
                            + (", LRN through the fused CUDA kernel (toolchain::fused_lrn)" if fused_lrn else ""))

    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    def _activate(self) -> None:
        import torch

        if self.on_cuda and not torch.cuda.is_available():
            raise MissingDependencyError("no CUDA GPU for the PyTorch runner", hint="use --device cpu")
        if self.on_cuda:
            # Global switches: set for every CUDA runner, so each runs with the settings it records.
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
        self._torch_dtype = torch.float16 if self.dtype == "fp16" else torch.float32
        model = self.model if self.model is not None else self.model_factory()
        model = model.eval().to(device=self.device, dtype=self._torch_dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.fused_lrn:
            from toolchain.fused_lrn import enable_fused_lrn

            enable_fused_lrn(model)
        self.model = model
        self._forward = self._make_forward(model)

    def _make_forward(self, model):
        return model

    def _deactivate(self) -> None:
        self._forward = None
        if self.model_factory is not None:
            self.model = None
        if self.on_cuda:
            import torch

            torch.cuda.empty_cache()

    def _cast(self, x):
        import torch

        x = x.to(device=self.device, dtype=self._torch_dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _infer(self, feed: dict) -> dict:
        import torch

        x = torch.as_tensor(feed[INPUT_NAME])
        with torch.inference_mode():
            y = self._forward(self._cast(x))
        return {OUTPUT_NAME: y.float().cpu().numpy()}

    def run(self) -> None:
        import torch

        with torch.inference_mode():
            self.output = self._forward(self._cast(self.io.device_input))

    def settings(self) -> dict:
        import torch

        out = {"layout": "channels_last" if self.channels_last else "NCHW", "dtype": self.dtype}
        if self.on_cuda:
            out.update({"tf32": self.tf32, "cudnn_benchmark": self.cudnn_benchmark})
        else:
            out["torch_threads"] = torch.get_num_threads()
        return out


class CompileRunner(TorchRunner):
    """``torch.compile`` (static shapes: one compilation per batch size, in the first call at that size)."""

    kind = "compile"

    def __init__(self, model=None, *, mode: str = "default", **kwargs):
        kwargs.setdefault("name", f"compile-{kwargs.get('dtype', 'fp32')}")
        super().__init__(model, **kwargs)
        self.mode = mode
        self.description = f"torch.compile(mode={mode!r}, dynamic=False) {self.dtype.upper()} on {self.device}"

    def _make_forward(self, model):
        import torch

        return torch.compile(model, mode=self.mode, dynamic=False)

    def settings(self) -> dict:
        return {**super().settings(), "compile_mode": self.mode}


class CudaGraphRunner(TorchRunner):
    """Eager PyTorch captured into one CUDA graph per batch size (input cast included) and replayed.

    ``infer`` copies the feed into the graph's static input and replays, so parity
    checks the replayed graph, not the eager model.
    """

    kind = "cuda-graph"

    def __init__(self, model=None, **kwargs):
        kwargs.setdefault("device", "cuda")
        kwargs.setdefault("name", f"eager-{kwargs.get('dtype', 'fp16')}-cuda-graph")
        super().__init__(model, **kwargs)
        self.description = f"{self.description}, replayed from a CUDA graph"
        self._graphs: dict = {}

    def _deactivate(self) -> None:
        self._graphs.clear()
        super()._deactivate()

    def _graph(self, batch_size: int, static_input=None):
        import torch

        key = batch_size if static_input is None else ("io", batch_size)
        entry = self._graphs.get(key)
        if entry is not None:
            return entry
        x = static_input if static_input is not None else \
            torch.zeros((batch_size, *self.input_shape), device=self.device, dtype=torch.float32)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cudnn.benchmark autotuning and allocator warm-up happen outside the capture
                self.model(self._cast(x))
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            out = self.model(self._cast(x))
        entry = {"graph": graph, "input": x, "output": out}
        self._graphs[key] = entry
        return entry

    def _infer(self, feed: dict) -> dict:
        import torch

        x = torch.as_tensor(feed[INPUT_NAME], dtype=torch.float32)
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        entry = self._graph(int(x.shape[0]))
        entry["input"].copy_(x)
        entry["graph"].replay()
        return {OUTPUT_NAME: entry["output"].float().cpu().numpy()}

    def _prepare(self, batch_size: int) -> None:
        self._graphs.pop(("io", batch_size), None)  # a new input buffer: capture again
        self._entry = self._graph(batch_size, static_input=self.io.device_input)
        self.output = self._entry["output"]

    def run(self) -> None:
        self._entry["graph"].replay()
