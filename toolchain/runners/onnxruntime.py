"""ONNX Runtime runner: CPU provider (host memory) or CUDA provider (I/O binding to device memory)."""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.runners.base import Runner

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def disabled_optimizers(metadata: dict, provider: str) -> list[str]:
    """The graph optimizers a file asks the CPU provider to leave out (``toolchain.ort_disabled_optimizers``).

    ``toolchain quantize --target onnxruntime`` writes them: measured faster on this model's
    Q/DQ graph (see :data:`toolchain.quantize.ORT_DISABLED_OPTIMIZERS`). Other providers
    take the file as it is.
    """
    if provider != "cpu":
        return []
    value = metadata.get("ort_disabled_optimizers") or ""
    return [name.strip() for name in str(value).split(",") if name.strip()]


def provider_check(requested: list[str], active: list[str]) -> str | None:
    """Why the session does not run on the requested first provider (ONNX Runtime falls back silently), or None."""
    if not requested or requested[0] == "CPUExecutionProvider":
        return None
    if not active or active[0] != requested[0]:
        return (f"ONNX Runtime fell back to {', '.join(active) or 'nothing'} instead of {requested[0]} "
                "(is the CUDA/cuDNN runtime it needs installed?)")
    return None


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime session over an exported file (no custom-op library needed: FusedLRN has a local function).

    The CUDA provider runs on its own stream, so it is timed on the host only (``gpu_events`` False).
    """

    def __init__(self, path, *, providers=None, provider: str | None = None, threads: int | None = None,
                 input_shape=None, name: str | None = None):
        super().__init__()
        self.path = Path(path)
        if provider is not None:
            if provider not in PROVIDERS:
                raise ToolchainError(f"unknown ONNX Runtime provider {provider!r}", hint="use cpu or cuda")
            providers = PROVIDERS[provider]
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.provider = self.providers[0].removesuffix("ExecutionProvider").lower()
        self.device = "cuda" if self.provider == "cuda" else "cpu"
        self.gpu_events = False
        self.threads = threads
        self.input_shape = tuple(input_shape) if input_shape else None
        self.name = name or f"onnxruntime-{self.provider}"
        self.description = f"ONNX Runtime {self.provider.upper()} execution provider"
        self.session = None
        self.disabled_optimizers: list[str] = []
        self.extra_outputs: list[str] = []  # graph tensors to add as outputs (the layer-wise check)

    def _activate(self) -> None:
        import onnxruntime as ort

        from toolchain.artifacts import load_onnx

        model = load_onnx(self.path)  # a clear error for a missing or corrupt file
        if self.extra_outputs:
            model = with_outputs(model, self.extra_outputs)
        from toolchain.artifacts import read_onnx

        # What the file computes in (an FP16 export, an INT8 Q/DQ file): its parity tolerances.
        artifact = read_onnx(self.path, model=model)
        metadata = artifact.metadata
        self.precision = artifact.precision
        self.disabled_optimizers = disabled_optimizers(metadata, self.provider)
        self.description = f"ONNX Runtime {self.provider.upper()} execution provider" + (
            f", without the graph optimizers the file names ({', '.join(self.disabled_optimizers)})"
            if self.disabled_optimizers else "")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise MissingDependencyError(f"ONNX Runtime lacks {', '.join(missing)}",
                                         hint=f"available: {', '.join(available)}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: FP16 cast insertion logs warnings
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=self.providers,
                                                **({"disabled_optimizers": self.disabled_optimizers}
                                                   if self.disabled_optimizers else {}))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ToolchainError(f"ONNX Runtime cannot load {self.path}: {first}") from None
        problem = provider_check(self.providers, self.session.get_providers())
        if problem:
            self.session = None
            raise MissingDependencyError(problem, hint="pip install onnxruntime-gpu matching your CUDA")
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]
        if self.input_shape is None:
            dims = tuple(next(iter(self._inputs.values())).shape[1:])
            if all(isinstance(d, int) and d > 0 for d in dims):
                self.input_shape = dims

    def _deactivate(self) -> None:
        self.session = None
        self._binding = None

    @property
    def static_batch(self) -> int | None:
        if self.session is None:
            return None
        dim = next(iter(self._inputs.values())).shape[0]
        return dim if isinstance(dim, int) else None

    def _typed(self, name, array):
        import numpy as np

        dtype = _NUMPY_TYPES.get(self._inputs[name].type, "float32")
        return np.ascontiguousarray(np.asarray(array), dtype=dtype)

    def _infer(self, feed: dict) -> dict:
        inputs = {}
        for name, array in feed.items():
            if name not in self._inputs:
                raise ToolchainError(f"{self.path} has no input {name!r}",
                                     hint=f"its inputs: {', '.join(self._inputs)}")
            inputs[name] = self._typed(name, array)
        return dict(zip(self._outputs, self.session.run(self._outputs, inputs)))

    # ------------------------------------------------------------------ timing

    def _prepare(self, batch_size: int) -> None:
        self._input_name = next(iter(self._inputs))
        if self.device != "cuda":
            return
        import numpy as np
        import torch

        dtype = _NUMPY_TYPES.get(self._inputs[self._input_name].type, "float32")
        self._typed_input = self.io.device_input if dtype == "float32" else \
            torch.empty(self.io.shape, dtype=getattr(torch, dtype), device="cuda")
        binding = self.session.io_binding()
        binding.bind_input(self._input_name, "cuda", 0, np.dtype(dtype).type, list(self.io.shape),
                           self._typed_input.data_ptr())
        for name in self._outputs:
            binding.bind_output(name, "cuda", 0)
        self._binding = binding
        self.session.run_with_iobinding(binding)  # learn the output shapes, then bind torch buffers
        outputs = binding.get_outputs()
        self._device_outputs = {}
        for name, value in zip(self._outputs, outputs):
            out_dtype = _NUMPY_TYPES.get(value.data_type(), "float32")
            tensor = torch.empty(tuple(value.shape()), dtype=getattr(torch, out_dtype), device="cuda")
            binding.bind_output(name, "cuda", 0, np.dtype(out_dtype).type, list(tensor.shape), tensor.data_ptr())
            self._device_outputs[name] = tensor
        self.output = self._device_outputs[self._outputs[0]]

    def run(self) -> None:
        if self.device == "cuda":
            import torch

            if self._typed_input is not self.io.device_input:
                self._typed_input.copy_(self.io.device_input)  # the cast is part of the compute
            # ORT runs on its own stream, unordered with torch's: the copy (and any H2D) must be done.
            torch.cuda.current_stream().synchronize()
            self.session.run_with_iobinding(self._binding)
            self._binding.synchronize_outputs()
        else:
            x = self.io.device_input.numpy()
            self.output = self.session.run(self._outputs, {self._input_name: self._typed(self._input_name, x)})[0]

    def settings(self) -> dict:
        out = {"providers": self.session.get_providers() if self.session is not None else self.providers}
        if self.device == "cpu":
            out["intra_op_threads"] = self.threads or "onnxruntime default (physical cores)"
        if self.disabled_optimizers:
            out["disabled_optimizers"] = list(self.disabled_optimizers)
        return out


def with_outputs(model, tensors: list[str]):
    """A copy of ``model`` whose graph also outputs ``tensors`` (types from shape inference where known)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
        known = {v.name: v for v in inferred.graph.value_info}
    except Exception:  # inference is a convenience here: untyped outputs work too
        known = {}
    existing = {o.name for o in copy.graph.output}
    for name in tensors:
        if name in existing:
            continue
        if name in known:
            copy.graph.output.append(known[name])
        else:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy
