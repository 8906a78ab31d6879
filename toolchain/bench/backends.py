"""Loaders for the benchmark: which runners to build, whether they can run here, and from which weights.

A :class:`Candidate` is a name, the reason it cannot run here (or None) and a factory
for its runner (:mod:`toolchain.runners`): the benchmark builds each runner only when
it times it. :func:`weights_mismatch` checks the sha256 chain checkpoint -> ONNX
``metadata_props`` -> engine manifest, so backends timed side by side run the same
weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from toolchain.environment import cuda_unavailable
from toolchain.errors import ToolchainError

BACKEND_NAMES = ("eager-fp32", "eager-fp16", "eager-fp16-fused-lrn", "compile", "eager-fp16-cuda-graph",
                 "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-cpu-int8", "tensorrt-plugin",
                 "tensorrt-plugin-graph", "tensorrt-native", "tensorrt-native-graph", "tensorrt-int8")


@dataclass
class Candidate:
    name: str
    device: str
    precision: str
    make: Callable[[], object]          # -> an inactive Runner
    unavailable: str | None = None
    weights: dict = field(default_factory=dict)   # where its weights come from, as recorded
    mismatch: str | None = None                    # set with --allow-mismatch: the row is marked


def parse_backend_names(text: str | None) -> list[str]:
    """Comma-separated backend names (or None/"all" for all), validated."""
    if text is None or not text.strip() or text.strip() == "all":
        return list(BACKEND_NAMES)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise ToolchainError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(BACKEND_NAMES)}")
    return names


# ---------------------------------------------------------------------- the weights chain (pure)


def weights_identity(meta: dict) -> dict:
    """What identifies a model's weights: checkpoint sha256, else variant + weights + seed."""
    sha = meta.get("checkpoint_sha256") or None
    out = {"checkpoint_sha256": sha, "variant": meta.get("variant")}
    if not sha:
        weights = meta.get("weights") or None
        out["weights"] = None if weights in (None, "", "checkpoint") or str(weights).startswith("random") else weights
        out["seed"] = int(meta["seed"]) if meta.get("seed") not in (None, "") else None
    return out


def weights_mismatch(reference: dict, artifact: dict, what: str) -> str | None:
    """Why ``artifact`` (a :func:`weights_identity`) holds other weights than ``reference``, or None."""
    ref_sha, art_sha = reference.get("checkpoint_sha256"), artifact.get("checkpoint_sha256")
    if ref_sha or art_sha:
        if ref_sha == art_sha:
            return None
        if not art_sha:
            return f"{what} was not exported from a checkpoint (the reference is checkpoint {ref_sha[:12]}...)"
        if not ref_sha:
            return f"{what} was exported from checkpoint {art_sha[:12]}..., the reference is a variant"
        return f"{what} was exported from checkpoint {art_sha[:12]}..., the reference is {ref_sha[:12]}..."
    for key in ("variant", "weights", "seed"):
        a, b = reference.get(key), artifact.get(key)
        if a is not None and b is not None and a != b:
            return f"{what} holds {key} {b!r}, the reference {a!r}"
    return None


def engine_identity(engine_path) -> dict | None:
    """The weights identity an engine's manifest records (None when there is no readable manifest)."""
    from toolchain.trt import manifest as manifest_mod

    try:
        manifest = manifest_mod.read_manifest(engine_path)
    except ToolchainError:
        return None
    return weights_identity(manifest.get("model") or {})


def check_weights(reference: dict | None, sources: dict[str, dict | None], *, allow_mismatch: bool,
                  found: dict[str, str] | None = None) -> dict[str, str]:
    """{artifact: mismatch} over ``sources`` ({"--onnx x.onnx": identity}) and the mismatches already
    ``found`` (by content, :mod:`toolchain.weights`); raises unless ``allow_mismatch``."""
    by_content, found = found or {}, {}
    for what, identity in (sources.items() if reference else ()):
        if identity is None:
            continue
        problem = weights_mismatch(reference, identity, what)
        if problem:
            found[what] = problem
    for what, problem in by_content.items():  # the recorded identity says more, where it differs too
        found.setdefault(what, problem)
    if found and not allow_mismatch:
        first = next(iter(found.values()))
        raise ToolchainError(f"{first}: its timings would not be comparable",
                             hint="pass the artifacts built from the reference weights, or --allow-mismatch to "
                                  "time them anyway (the rows are marked)")
    return found


# ---------------------------------------------------------------------- INT8 files for their runtime (pure)

#: The quantization target each INT8 row needs (``toolchain quantize --target``).
INT8_TARGETS = {"onnxruntime-cpu-int8": ("--onnx-int8", "onnxruntime"), "tensorrt-int8": ("--int8-engine", "tensorrt")}


def int8_target_problem(backend: str, path, recorded: str | None) -> str | None:
    """Why ``backend`` must not time a file quantized for ``recorded`` (None: it may, or nothing says).

    A Q/DQ placement is made for one runtime: ONNX Runtime runs TensorRT's placement
    (Q/DQ on Conv/Gemm inputs only) as dequantize + float convolution, slower than FP32,
    and TensorRT cannot parse ONNX Runtime's INT32 biases. Timing the wrong one would put
    a misleading number in the INT8 row.
    """
    flag, wanted = INT8_TARGETS[backend]
    if recorded in (None, "") or recorded == wanted:
        return None
    return f"{flag} {path} was quantized for {recorded}, not for the {backend} row ({wanted})"


def check_int8_targets(found: dict[str, tuple], names) -> None:
    """Refuse (one line) before timing: ``found`` = {backend: (path, recorded target)} of the rows selected."""
    for backend, (path, recorded) in found.items():
        if backend not in names:
            continue
        problem = int8_target_problem(backend, path, recorded)
        if problem:
            wanted = INT8_TARGETS[backend][1]
            raise ToolchainError(problem, hint=f"pass the file of `toolchain quantize --target {wanted}`"
                                 + (" (and the engine built from it)" if wanted == "tensorrt" else ""))


# ---------------------------------------------------------------------- selection


def batches_for(requested: Sequence[int], static_batch: int | None) -> tuple[list[int], str | None]:
    """The batch sizes a runner is timed at: a static-batch model only at its batch (and the note saying so)."""
    requested = [int(b) for b in requested]
    if static_batch is None or requested == [static_batch]:
        return requested, None
    return [static_batch], f"static batch {static_batch}: timed only at it (asked for {', '.join(map(str, requested))})"


def make_backends(*, model_factory: Callable[[], object] | None, input_shape, onnx=None, engine=None,
                  native_engine=None, onnx_int8=None, int8_engine=None, plugin_library=None,
                  names: Sequence[str] = BACKEND_NAMES,
                  device: str = "auto", include_compile: bool = False, compile_mode: str = "default",
                  ort_threads: int | None = None) -> list[Candidate]:
    """The candidates named in ``names``, in a fixed order.

    ``device``: where eager FP32 runs ("auto": the GPU when there is one).
    ``include_compile``: torch.compile also on the CPU (slow to compile on few cores).
    ``onnx_int8`` / ``int8_engine``: a Q/DQ ONNX (``toolchain quantize``) and the engine built
    from it; their rows get the INT8 tolerances.
    The fused-LRN row and its eager FP16 baseline both run NCHW (the kernel's layout),
    so the row compares the LRN and nothing else.
    """
    from toolchain.runners import CompileRunner, CudaGraphRunner, OnnxRuntimeRunner, TorchRunner

    has_cuda = cuda_unavailable() is None
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device not in ("cpu", "cuda"):
        raise ToolchainError(f"unknown device {device!r}", hint="use auto, cpu or cuda")
    selected = set(names)
    out: list[Candidate] = []
    no_model = None if model_factory is not None else "no model given (--checkpoint or --variant)"

    def gpu_reason(extra: str | None = None) -> str | None:
        return no_model or cuda_unavailable() or extra

    def torch_kwargs(**kw):
        return dict(model_factory=model_factory, input_shape=input_shape, **kw)

    if "eager-fp32" in selected:
        out.append(Candidate("eager-fp32", device, "fp32", lambda: TorchRunner(
            **torch_kwargs(device=device, dtype="fp32", name="eager-fp32")),
            no_model or (cuda_unavailable() if device == "cuda" else None)))
    if "eager-fp16" in selected:
        out.append(Candidate("eager-fp16", "cuda", "fp16", lambda: TorchRunner(
            **torch_kwargs(device="cuda", dtype="fp16", name="eager-fp16")), gpu_reason()))
    if "eager-fp16-fused-lrn" in selected:
        reason = gpu_reason()
        if reason is None:
            from toolchain.plugin import find_library

            if find_library("kernels") is None:
                reason = "the fused LRN kernel library is not built (toolchain plugin build)"
        out.append(Candidate("eager-fp16-fused-lrn", "cuda", "fp16", lambda: TorchRunner(
            **torch_kwargs(device="cuda", dtype="fp16", fused_lrn=True, name="eager-fp16-fused-lrn")), reason))
    if "compile" in selected:
        if device == "cuda":
            out.append(Candidate("compile-fp16", "cuda", "fp16", lambda: CompileRunner(
                **torch_kwargs(device="cuda", dtype="fp16", channels_last=True, mode=compile_mode,
                               name="compile-fp16")), gpu_reason()))
        else:
            reason = no_model or (None if include_compile else
                                  "torch.compile on the CPU is slow to compile on few cores; pass --include-compile "
                                  "to time it")
            out.append(Candidate("compile-fp32", "cpu", "fp32", lambda: CompileRunner(
                **torch_kwargs(device="cpu", dtype="fp32", mode=compile_mode, name="compile-fp32")), reason))
    if "eager-fp16-cuda-graph" in selected:
        out.append(Candidate("eager-fp16-cuda-graph", "cuda", "fp16", lambda: CudaGraphRunner(
            **torch_kwargs(device="cuda", dtype="fp16", channels_last=True, name="eager-fp16-cuda-graph")),
            gpu_reason()))
    for provider in ("cpu", "cuda"):
        name = f"onnxruntime-{provider}"
        if name not in selected:
            continue
        reason = _onnxruntime_reason(provider, onnx)
        out.append(Candidate(name, provider, "fp32", lambda p=provider: OnnxRuntimeRunner(
            onnx, provider=p, threads=ort_threads if p == "cpu" else None, input_shape=input_shape), reason))
    if "onnxruntime-cpu-int8" in selected:
        out.append(Candidate("onnxruntime-cpu-int8", "cpu", "int8", lambda: OnnxRuntimeRunner(
            onnx_int8, provider="cpu", threads=ort_threads, input_shape=input_shape, name="onnxruntime-cpu-int8"),
            _onnxruntime_reason("cpu", onnx_int8, flag="--onnx-int8")))
    from toolchain.runners.tensorrt import TensorRTTimedRunner  # imports no TensorRT

    for lrn, path in (("plugin", engine), ("native", native_engine)):
        for graph in (False, True):
            name = f"tensorrt-{lrn}{'-graph' if graph else ''}"
            if name in selected:
                out.append(Candidate(name, "cuda", "fp16", lambda p=path, l=lrn, g=graph: TensorRTTimedRunner(
                    p, lrn=l, cuda_graph=g, plugin_library=plugin_library), _tensorrt_reason(lrn, path)))
    if "tensorrt-int8" in selected:
        out.append(Candidate("tensorrt-int8", "cuda", "int8", lambda: TensorRTTimedRunner(
            int8_engine, lrn="plugin", plugin_library=plugin_library, name="tensorrt-int8"),
            _tensorrt_reason("plugin", int8_engine, flag="--int8-engine")))
    return out


def _onnxruntime_reason(provider: str, onnx, *, flag: str = "--onnx") -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if provider == "cuda":
        reason = cuda_unavailable()
        if reason:
            return reason
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return ("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); available: "
                    + ", ".join(ort.get_available_providers()))
    if onnx is None:
        return f"no ONNX file given ({flag})"
    return None


def _tensorrt_reason(lrn: str, path, *, flag: str | None = None) -> str | None:
    # The most fundamental reason first: no GPU, then no TensorRT, then no engine.
    reason = cuda_unavailable()
    if reason:
        return reason
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
        return f"no {flag or ('--engine' if lrn == 'plugin' else '--native-engine')} given"
    return None
