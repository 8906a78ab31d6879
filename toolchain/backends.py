"""The backend registry: every way this toolchain runs the model, by name.

A backend is a name, the file it reads (a flag: ``--onnx``, ``--onnx-int8``, ``--engine``,
``--native-engine``, ``--int8-engine``; or none for the eager model), an availability check
and a factory for its runner (:mod:`toolchain.runners`). ``toolchain parity``, ``toolchain
benchmark``, the pipeline and the layer-wise check all take runners from here
(:func:`select`), so a name means the same runner, with the same file flag and the same
precision, everywhere.

Precision is decided once: an eager backend computes in its own (FP32, FP16); a backend
that reads a file computes in what the file says (:mod:`toolchain.artifacts`), and the
benchmark rows accept only what they are named for (``onnxruntime-cpu-int8`` an INT8 file
made for ONNX Runtime, ``tensorrt-int8`` an engine built from the TensorRT Q/DQ file,
``tensorrt-native`` a native-LRN engine). The two generic names ``onnxruntime`` and
``tensorrt`` take any file of their kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from toolchain.errors import ToolchainError

#: The file flags, by the :class:`Files` field that holds each.
FILE_FLAGS = {"onnx": "--onnx", "onnx_int8": "--onnx-int8", "engine": "--engine", "native_engine": "--native-engine",
              "int8_engine": "--int8-engine"}
FLOAT = ("fp32", "fp16")


@dataclass(frozen=True)
class Files:
    """The artifact files a command was given, one per flag."""

    onnx: object = None
    onnx_int8: object = None
    engine: object = None
    native_engine: object = None
    int8_engine: object = None
    plugin_library: object = None

    def get(self, field_name: str | None):
        return getattr(self, field_name) if field_name else None


@dataclass
class Context:
    """What the factories need: the eager model, the input shape, the files and the run's settings."""

    model_factory: Callable[[], object] | None = None
    input_shape: tuple | None = None
    files: Files = field(default_factory=Files)
    device: str = "auto"              # where eager FP32 runs: auto (the GPU when there is one), cpu, cuda
    include_compile: bool = False     # torch.compile on the CPU too (slow to compile on few cores)
    compile_mode: str = "default"
    ort_threads: int | None = None
    fused_reference: bool = False     # eager runners: LRN through the fused op

    def eager_device(self) -> str:
        from toolchain.environment import cuda_unavailable

        if self.device == "auto":
            return "cuda" if cuda_unavailable() is None else "cpu"
        if self.device not in ("cpu", "cuda"):
            raise ToolchainError(f"unknown device {self.device!r}", hint="use auto, cpu or cuda")
        return self.device


@dataclass(frozen=True)
class Backend:
    """One registry entry (see the module docstring)."""

    name: str
    family: str                       # the FP32 row its reduced-precision rows are compared with
    reads: str | None                 # the Files field it reads, None for the eager model
    make: Callable[..., object]        # (context, row name, artifact) -> an inactive Runner
    unavailable: Callable[[Context], str | None]    # why it cannot run here, or None
    precision: str | None = None      # eager backends: what they compute in
    accepts: tuple[str, ...] = ("fp32", "fp16", "int8")  # file backends: the precisions of files they take
    quant_target: str | None = None   # INT8 rows: the runtime the Q/DQ file must be made for
    lrn: str | None = None            # engine rows that need one LRN mode (native)
    device: str = "cpu"               # "cpu", "cuda", or "eager" (the context's eager device)

    @property
    def flag(self) -> str | None:
        return FILE_FLAGS.get(self.reads) if self.reads else None


@dataclass
class Candidate:
    """A backend selected for a run: its row name, device, precision, artifact, and why it cannot run."""

    name: str
    backend: Backend
    device: str
    precision: str
    make: Callable[[], object]
    unavailable: str | None = None
    artifact: object = None           # the OnnxArtifact/EngineArtifact it reads
    mismatch: str | None = None       # set by the benchmark with --allow-mismatch: the row is marked


# ---------------------------------------------------------------------- availability (no heavy imports)


def _no_model(ctx: Context) -> str | None:
    return None if ctx.model_factory is not None else "no model given (--checkpoint or --variant)"


def _cuda(ctx: Context) -> str | None:
    from toolchain.environment import cuda_unavailable

    return _no_model(ctx) or cuda_unavailable()


def _fused(ctx: Context) -> str | None:
    reason = _cuda(ctx)
    if reason is None:
        from toolchain.plugin import find_library

        if find_library("kernels") is None:
            reason = "the fused LRN kernel library is not built (toolchain plugin build)"
    return reason


def _compile(ctx: Context) -> str | None:
    if ctx.eager_device() == "cuda":
        return _cuda(ctx)
    return _no_model(ctx) or (None if ctx.include_compile else "torch.compile on the CPU is slow to compile on few "
                              "cores; pass --include-compile to time it")


def _onnxruntime(provider: str, reads: str) -> Callable[[Context], str | None]:
    def reason(ctx: Context) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if provider == "cuda":
            from toolchain.environment import cuda_unavailable

            if cuda_unavailable():
                return cuda_unavailable()
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return ("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); available: "
                        + ", ".join(ort.get_available_providers()))
        if ctx.files.get(reads) is None:
            return f"no ONNX file given ({FILE_FLAGS[reads]})"
        return None
    return reason


def _tensorrt(reads: str) -> Callable[[Context], str | None]:
    def reason(ctx: Context) -> str | None:
        # The most fundamental reason first: no GPU, then no TensorRT, then no engine.
        from toolchain.environment import cuda_unavailable

        if cuda_unavailable():
            return cuda_unavailable()
        path = ctx.files.get(reads)
        from toolchain.trt import tensorrt_available
        from toolchain.trt.runtime import rtx_runtime_reason

        rtx = rtx_runtime_reason(path) if path is not None else None
        if rtx is not None:
            return rtx or None  # a TensorRT-RTX engine: "" when it can run here
        ok, why = tensorrt_available()
        if not ok:
            import importlib.util

            if importlib.util.find_spec("tensorrt_lean") is None:
                return why
        if path is None:
            return f"no engine given ({FILE_FLAGS[reads]})"
        return None
    return reason


# ---------------------------------------------------------------------- factories


def _torch(dtype: str, *, device: str | None = None, **options):
    def make(ctx: Context, name: str, artifact=None):
        from toolchain.runners.torch import TorchRunner

        return TorchRunner(model_factory=ctx.model_factory, input_shape=ctx.input_shape, dtype=dtype,
                           device=device or ctx.eager_device(), name=name,
                           **{"fused_lrn": ctx.fused_reference, **options})
    return make


def _compile_runner(ctx: Context, name: str, artifact=None):
    from toolchain.runners.torch import CompileRunner

    if ctx.eager_device() == "cuda":
        return CompileRunner(model_factory=ctx.model_factory, input_shape=ctx.input_shape, device="cuda", dtype="fp16",
                             channels_last=True, mode=ctx.compile_mode, name=name)
    return CompileRunner(model_factory=ctx.model_factory, input_shape=ctx.input_shape, device="cpu", dtype="fp32",
                         mode=ctx.compile_mode, name=name)


def _cuda_graph(ctx: Context, name: str, artifact=None):
    from toolchain.runners.torch import CudaGraphRunner

    return CudaGraphRunner(model_factory=ctx.model_factory, input_shape=ctx.input_shape, device="cuda", dtype="fp16",
                           channels_last=True, name=name)


def _ort(provider: str, reads: str):
    def make(ctx: Context, name: str, artifact=None):
        from toolchain.runners.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(ctx.files.get(reads), provider=provider, input_shape=ctx.input_shape, name=name,
                                 threads=ctx.ort_threads if provider == "cpu" else None)
    return make


def _trt(reads: str, *, cuda_graph: bool = False):
    def make(ctx: Context, name: str, artifact=None):
        from toolchain.trt.runtime import TensorRTRunner

        # Only an engine built with the plugin gets the library: the runner refuses one for any other.
        plugin = ctx.files.plugin_library if artifact is None or artifact.manifest.get("plugin") else None
        return TensorRTRunner(ctx.files.get(reads), cuda_graph=cuda_graph, name=name,
                              **({"plugin_library": plugin} if plugin else {}))
    return make


def _entries() -> list[Backend]:
    ort_cpu, ort_cuda = _onnxruntime("cpu", "onnx"), _onnxruntime("cuda", "onnx")
    return [
        Backend("eager-fp32", "eager", None, _torch("fp32"), _no_model, precision="fp32", device="eager"),
        Backend("eager-fp16", "eager", None, _torch("fp16", device="cuda"), _cuda, precision="fp16", device="cuda"),
        Backend("eager-fp16-fused-lrn", "eager", None, _torch("fp16", device="cuda", fused_lrn=True), _fused,
                precision="fp16", device="cuda"),
        Backend("compile", "compile", None, _compile_runner, _compile, precision=None, device="eager"),
        Backend("eager-fp16-cuda-graph", "eager", None, _cuda_graph, _cuda, precision="fp16", device="cuda"),
        Backend("onnxruntime-cpu", "onnxruntime-cpu", "onnx", _ort("cpu", "onnx"), ort_cpu, accepts=FLOAT),
        Backend("onnxruntime-cuda", "onnxruntime-cuda", "onnx", _ort("cuda", "onnx"), ort_cuda, accepts=FLOAT,
                device="cuda"),
        Backend("onnxruntime-cpu-int8", "onnxruntime-cpu", "onnx_int8", _ort("cpu", "onnx_int8"),
                _onnxruntime("cpu", "onnx_int8"), accepts=("int8",), quant_target="onnxruntime"),
        Backend("tensorrt-plugin", "tensorrt", "engine", _trt("engine"), _tensorrt("engine"), accepts=FLOAT,
                device="cuda"),
        Backend("tensorrt-plugin-graph", "tensorrt", "engine", _trt("engine", cuda_graph=True), _tensorrt("engine"),
                accepts=FLOAT, device="cuda"),
        Backend("tensorrt-native", "tensorrt", "native_engine", _trt("native_engine"), _tensorrt("native_engine"),
                accepts=FLOAT, lrn="native", device="cuda"),
        Backend("tensorrt-native-graph", "tensorrt", "native_engine", _trt("native_engine", cuda_graph=True),
                _tensorrt("native_engine"), accepts=FLOAT, lrn="native", device="cuda"),
        Backend("tensorrt-int8", "tensorrt", "int8_engine", _trt("int8_engine"), _tensorrt("int8_engine"),
                accepts=("int8",), quant_target="tensorrt", device="cuda"),
    ]


#: Every backend the benchmark times, in its order.
REGISTRY: dict[str, Backend] = {entry.name: entry for entry in _entries()}
BACKEND_NAMES = tuple(REGISTRY)
#: Generic names for parity: ONNX Runtime CPU or TensorRT on whatever file of their kind is given.
GENERIC = {
    "onnxruntime": Backend("onnxruntime", "onnxruntime-cpu", "onnx", _ort("cpu", "onnx"),
                           _onnxruntime("cpu", "onnx")),
    "tensorrt": Backend("tensorrt", "tensorrt", "engine", _trt("engine"), _tensorrt("engine"), device="cuda"),
}
#: Every name ``parity --backend`` takes.
ALL_NAMES = (*GENERIC, *BACKEND_NAMES)


def lookup(name: str) -> Backend:
    entry = REGISTRY.get(name) or GENERIC.get(name)
    if entry is None:
        raise ToolchainError(f"unknown backend {name!r}", hint=f"choose from {', '.join(ALL_NAMES)}")
    return entry


def parse_backend_names(text: str | None) -> list[str]:
    """Comma-separated backend names (or None/"all" for every benchmark backend), validated."""
    if text is None or not text.strip() or text.strip() == "all":
        return list(BACKEND_NAMES)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ToolchainError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(BACKEND_NAMES)}")
    return names


# ---------------------------------------------------------------------- selection


def file_problem(backend: Backend, artifact) -> str | None:
    """Why ``artifact`` is not a file ``backend`` may run under its name (pure; tested), or None."""
    if artifact is None:
        return None
    what = f"{backend.flag} {artifact.path}"
    if artifact.precision not in backend.accepts:
        wanted = " or ".join(p.upper() for p in backend.accepts)
        hint = {"onnx": " (an INT8 file goes to --onnx-int8)", "engine": " (an INT8 engine goes to --int8-engine)",
                "native_engine": " (an INT8 engine goes to --int8-engine)",
                "onnx_int8": " (quantize it with toolchain quantize)",
                "int8_engine": " (build it from the --target tensorrt Q/DQ file)"}.get(backend.reads, "")
        return f"{backend.name} runs {wanted} files, but {what} computes in {artifact.precision.upper()}{hint}"
    if backend.quant_target and artifact.quant_target not in (None, backend.quant_target):
        return (f"{what} was quantized for {artifact.quant_target or 'no recorded runtime'}, not {backend.quant_target}"
                f" (toolchain quantize --target {backend.quant_target})")
    if backend.lrn and artifact.lrn != backend.lrn:
        return f"{what} was built with --lrn {artifact.lrn}, {backend.name} times a --lrn {backend.lrn} engine"
    return None


def read_artifact(backend: Backend, path, cache: dict):
    """The OnnxArtifact/EngineArtifact of ``path`` (read once per path through ``cache``)."""
    if path is None or backend.reads is None:
        return None
    key = (backend.reads.endswith("engine"), str(path))
    if key not in cache:
        from toolchain.artifacts import read_engine, read_onnx

        cache[key] = read_engine(path) if key[0] else read_onnx(path)
    return cache[key]


def select(names: Sequence[str], ctx: Context, *, artifacts: dict | None = None) -> list[Candidate]:
    """The candidates for ``names`` (registry order kept as given): each with its precision, the
    artifact it reads (refused in one line when it is not a file the backend may run), and the
    reason it cannot run here (None when it can)."""
    cache = artifacts if artifacts is not None else {}
    out = []
    for name in names:
        backend = lookup(name)
        unavailable = backend.unavailable(ctx)
        path = ctx.files.get(backend.reads)
        artifact = read_artifact(backend, path, cache)
        problem = file_problem(backend, artifact)
        if problem:
            raise ToolchainError(problem, hint=f"pass the right file, or leave {name} out (--backends)")
        row = name
        if name == "compile":
            row = "compile-fp16" if ctx.eager_device() == "cuda" else "compile-fp32"
        precision = backend.precision or (artifact.precision if artifact is not None else
                                          ("fp16" if row == "compile-fp16" else "fp32"))
        device = ctx.eager_device() if backend.device == "eager" else backend.device
        out.append(Candidate(row, backend, device, precision, lambda b=backend, r=row, a=artifact: b.make(ctx, r, a),
                             unavailable, artifact))
    return out
