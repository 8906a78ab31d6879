"""One harness that times every backend the same way.

Layout (Polygraphy-like): *backends* run (``prepare(batch)`` / ``run()`` /
``run_copy()`` / ``close()``), *timers* time a callable, :func:`measure` decides
how long to time, the pure statistics functions summarise, and
:func:`run_benchmark` sweeps backends x batch sizes into one
:class:`BenchmarkResult`. Reports (tables, Markdown, plots) live in
:mod:`toolchain.report`; the CLI (``toolchain benchmark``) only wires.

Metrics, per backend and batch size (latencies in milliseconds per batch):

``gpu``        CUDA-event time of one inference on device-resident data (events
               recorded on the current stream around each call; iterations are
               queued back to back and the host synchronises once per window).
``host``       wall-clock time (``time.perf_counter``) of one call including the
               wait for its completion. For GPU backends: device-resident input and
               output. For CPU backends this is the only metric.
``host_copy``  GPU backends only: wall-clock time of copying the input from pinned
               host memory to the device, the inference, and copying the output back
               into pinned host memory, then synchronising: what a client sees.

How long to time: one untimed first call (compilation, autotuning, CUDA-graph
capture), then a warm-up (``warmup_iters`` calls and at least ``warmup_seconds``,
so GPU clocks ramp up), then windows of ``window_iters`` calls (by default sized
from the warm-up so that a window lasts ``target_window_seconds``). Timing stops
once the medians of the last ``stable_windows`` windows agree within
``tolerance`` (relative spread (max - min) / median), or after ``max_windows``
windows or ``max_seconds``; then the result is marked unstable. Statistics use
the samples of the last ``stable_windows`` windows.

Backends that cannot run here are skipped with the reason ("no CUDA GPU",
"TensorRT is not installed ...", "no engine given"), never silently.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from toolchain.errors import ToolchainError
from toolchain.environment import cuda_unavailable
from toolchain.options import parse_batch_sizes

METRICS = ("gpu", "host", "host_copy")
METRIC_TITLES = {
    "gpu": "GPU time (CUDA events, device-resident)",
    "host": "end-to-end host time (data already where the backend reads it)",
    "host_copy": "end-to-end host time with copies (pinned host memory <-> device)",
}
DEFAULT_BATCH_SIZES = (1, 8, 64, 256)


# ---------------------------------------------------------------------- statistics (pure)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics.

    Same definition as ``numpy.percentile(values, q)`` (method "linear").
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation / mean (0 for fewer than two values or a zero mean)."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    if mean == 0:
        return 0.0
    return statistics.stdev(values) / abs(mean)


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far apart a set of window medians is."""
    if not values:
        raise ValueError("spread of no values")
    middle = statistics.median(values)
    if middle == 0:
        return 0.0 if max(values) == min(values) else math.inf
    return (max(values) - min(values)) / abs(middle)


def is_stable(window_medians: Sequence[float], *, windows: int, tolerance: float) -> bool:
    """Whether the last ``windows`` window medians agree within ``tolerance`` (relative spread)."""
    if windows < 1:
        raise ValueError("windows must be >= 1")
    if len(window_medians) < windows:
        return False
    return relative_spread(window_medians[-windows:]) <= tolerance


def throughput(batch_size: int, latency_ms: float) -> float:
    """Images per second when one batch of ``batch_size`` takes ``latency_ms``."""
    if latency_ms <= 0:
        return math.inf
    return batch_size * 1000.0 / latency_ms


def latency_stats(samples_ms: Sequence[float], batch_size: int) -> dict:
    """Summary of per-call latencies: mean, std, min/max, p50/p90/p99, CV, throughput at p50 and mean."""
    if not samples_ms:
        raise ValueError("no samples")
    mean = statistics.fmean(samples_ms)
    p50 = percentile(samples_ms, 50)
    return {
        "samples": len(samples_ms),
        "mean_ms": mean,
        "std_ms": statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0,
        "min_ms": min(samples_ms),
        "max_ms": max(samples_ms),
        "p50_ms": p50,
        "p90_ms": percentile(samples_ms, 90),
        "p99_ms": percentile(samples_ms, 99),
        "cv": coefficient_of_variation(samples_ms),
        "throughput_ips": throughput(batch_size, p50),
        "throughput_mean_ips": throughput(batch_size, mean),
    }


def auto_window_iters(iteration_seconds: float, target_seconds: float, *, low: int = 3, high: int = 1000) -> int:
    """Calls per window so that a window lasts about ``target_seconds`` (clamped to [low, high])."""
    if iteration_seconds <= 0:
        return high
    return max(low, min(high, int(round(target_seconds / iteration_seconds))))


# ---------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingConfig:
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    window_iters: int | None = None  # None: sized from the warm-up (target_window_seconds)
    target_window_seconds: float = 0.1
    min_windows: int = 3
    stable_windows: int = 3
    tolerance: float = 0.05
    max_windows: int = 100
    max_seconds: float = 10.0

    def validate(self) -> "TimingConfig":
        problems = []
        if self.warmup_iters < 0:
            problems.append("warm-up iterations must be >= 0")
        if self.window_iters is not None and self.window_iters < 1:
            problems.append("window iterations must be >= 1")
        if self.stable_windows < 1:
            problems.append("stable windows must be >= 1")
        if self.min_windows < self.stable_windows:
            problems.append("min windows must be >= stable windows")
        if self.max_windows < self.min_windows:
            problems.append("max windows must be >= min windows")
        if not self.tolerance > 0:
            problems.append("tolerance must be > 0")
        if not self.max_seconds > 0:
            problems.append("max seconds must be > 0")
        if problems:
            raise ToolchainError("invalid timing settings: " + "; ".join(problems))
        return self


@dataclass
class Measurement:
    """What :func:`measure` saw: the kept samples and how it got there."""

    samples_ms: list[float]
    window_medians: list[float]
    window_iters: int
    windows: int
    stable: bool
    seconds: float
    first_call_ms: float | None = None
    warmup_iters: int = 0
    stable_windows: int = 3

    def stats(self, batch_size: int) -> dict:
        return {**latency_stats(self.samples_ms, batch_size), "window_iters": self.window_iters,
                "windows": self.windows, "stable": self.stable, "window_spread": relative_spread(
                    self.window_medians[-self.stable_windows:]) if self.window_medians else None,
                "timed_seconds": self.seconds, "first_call_ms": self.first_call_ms,
                "warmup_iters": self.warmup_iters}


class HostTimer:
    """Wall clock around each call plus ``sync`` (waits for the device where there is one)."""

    kind = "host"

    def __init__(self, sync: Callable[[], None] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.sync = sync or (lambda: None)
        self.clock = clock

    def call(self, step: Callable[[], None]) -> float:
        start = self.clock()
        step()
        self.sync()
        return (self.clock() - start) * 1e3

    def window(self, step: Callable[[], None], iters: int) -> list[float]:
        return [self.call(step) for _ in range(iters)]


class CudaEventTimer:
    """CUDA events on the current stream around each call; one host synchronisation per window."""

    kind = "gpu"

    def __init__(self, device=None):
        import torch

        self.torch = torch
        self.device = device

    def call(self, step: Callable[[], None]) -> float:
        return self.window(step, 1)[0]

    def window(self, step: Callable[[], None], iters: int) -> list[float]:
        torch = self.torch
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in events:
            start.record()
            step()
            end.record()
        events[-1][1].synchronize()
        return [start.elapsed_time(end) for start, end in events]


def measure(step: Callable[[], None], timer, config: TimingConfig, *,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm up, then time windows of calls until stable or out of time (see the module docstring)."""
    first_call_ms = timer.call(step)  # compilation / autotuning / graph capture happen here
    started = clock()
    warmup_done, warmup_ms = 0, 0.0
    while warmup_done < config.warmup_iters or (clock() - started) < config.warmup_seconds:
        warmup_ms += timer.call(step)
        warmup_done += 1
        if clock() - started > config.max_seconds:
            break
    if config.window_iters is not None:
        iters = config.window_iters
    else:
        per_call = (warmup_ms / warmup_done / 1e3) if warmup_done else first_call_ms / 1e3
        iters = auto_window_iters(per_call, config.target_window_seconds)
    windows: list[list[float]] = []
    medians: list[float] = []
    stable = False
    timing_started = clock()
    while True:
        samples = timer.window(step, iters)
        windows.append(samples)
        medians.append(statistics.median(samples))
        if len(windows) >= config.min_windows and is_stable(medians, windows=config.stable_windows,
                                                            tolerance=config.tolerance):
            stable = True
            break
        if len(windows) >= config.max_windows or clock() - timing_started >= config.max_seconds:
            break
    kept = [value for window in windows[-config.stable_windows:] for value in window]
    return Measurement(samples_ms=kept, window_medians=medians, window_iters=iters, windows=len(windows),
                       stable=stable, seconds=clock() - timing_started, first_call_ms=first_call_ms,
                       warmup_iters=warmup_done, stable_windows=config.stable_windows)


# ---------------------------------------------------------------------- backends


class Backend:
    """A thing to time. Subclasses set ``name``, ``device`` ("cpu"/"cuda"), ``precision``.

    ``unavailable()`` says (cheaply, before any work) why it cannot run here, or None.
    ``prepare(batch)`` makes everything for that batch size (inputs on the device,
    outputs, graphs); ``run()`` is one inference on device-resident data;
    ``run_copy()`` (GPU backends) adds the pinned host<->device copies; ``sync()``
    waits for the device; ``close()`` frees everything.
    """

    name = "backend"
    device = "cpu"
    precision = "fp32"
    description = ""
    gpu_events = True  # GPU backends whose work is on the current stream (CUDA events see it)

    def unavailable(self) -> str | None:
        return None

    @property
    def max_batch(self) -> int | None:
        return None

    def prepare(self, batch_size: int) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def run_copy(self) -> None:
        # GPU backends keep pinned host buffers in ``self.inputs`` (_TorchInputs).
        self.inputs.copy_in()
        self.run()
        self.inputs.copy_out(self.output)

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def close(self) -> None:
        pass

    def metrics(self) -> list[tuple[str, Callable[[], None], object]]:
        """(metric, step, timer) triples this backend is timed with."""
        if self.device == "cpu":
            return [("host", self.run, HostTimer())]
        out = []
        if self.gpu_events:
            out.append(("gpu", self.run, CudaEventTimer()))
        out.append(("host", self.run, HostTimer(self.sync)))
        out.append(("host_copy", self.run_copy, HostTimer(self.sync)))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "device": self.device, "precision": self.precision,
                "description": self.description}



class _TorchInputs:
    """Random inputs for one batch size: on the device, and (GPU) pinned host copies of input and output."""

    def __init__(self, shape, *, device: str, dtype, channels_last: bool = False, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        host = torch.randn(*shape, generator=generator).to(dtype)
        self.device_input = host.to(device)
        if channels_last:
            self.device_input = self.device_input.contiguous(memory_format=torch.channels_last)
        self.host_input = host.pin_memory() if device == "cuda" else host
        self.host_output = None

    def copy_in(self) -> None:
        self.device_input.copy_(self.host_input, non_blocking=True)

    def copy_out(self, output) -> None:
        import torch

        if self.host_output is None or self.host_output.shape != output.shape or self.host_output.dtype != output.dtype:
            self.host_output = torch.empty(output.shape, dtype=output.dtype, pin_memory=True)
        self.host_output.copy_(output, non_blocking=True)


class EagerBackend(Backend):
    """Eager PyTorch: FP32 (CPU or GPU), FP16 with channels_last, optionally the fused LRN op."""

    def __init__(self, model_factory: Callable[[], object] | None, input_shape, *, device: str = "cpu", dtype: str = "fp32",
                 channels_last: bool = False, fused_lrn: bool = False, name: str | None = None):
        # A factory, not a model: each backend builds its copy only when it runs and drops it in close().
        self.model_factory = model_factory
        self.model = None
        self.input_shape = tuple(input_shape or ())
        self.device = device
        self.precision = dtype
        self.channels_last = channels_last
        self.fused_lrn = fused_lrn
        self.name = name or f"eager-{dtype}{'-fused-lrn' if fused_lrn else ''}"
        layout = "channels_last" if channels_last else "NCHW"
        self.description = (f"eager PyTorch {dtype.upper()} on {device}, {layout}"
                            + (", cudnn.benchmark" if device == "cuda" else "")
                            + (", LRN through the fused CUDA kernel (toolchain::fused_lrn)" if fused_lrn else ""))
        self._ready = False
        self.inputs: _TorchInputs | None = None
        self.output = None

    def unavailable(self) -> str | None:
        if self.model_factory is None:
            return "no model given (--checkpoint or --variant)"
        if self.device == "cuda" or self.fused_lrn or self.precision == "fp16":
            reason = cuda_unavailable()
            if reason:
                return reason
        if self.fused_lrn:
            from toolchain.plugin import find_library

            if find_library("kernels") is None:
                return "the fused LRN kernel library is not built (toolchain plugin build)"
        return None

    def _setup_model(self):
        import torch

        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        model = self.model_factory().eval().to(device=self.device, dtype=dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.fused_lrn:
            from toolchain.fused_lrn import enable_fused_lrn

            enable_fused_lrn(model)
        self.model = model
        self._dtype = dtype
        self._ready = True

    def _forward(self, x):
        return self.model(x)

    def prepare(self, batch_size: int) -> None:
        if not self._ready:
            self._setup_model()
        self.inputs = _TorchInputs((batch_size, *self.input_shape), device=self.device, dtype=self._dtype,
                                   channels_last=self.channels_last)

    def run(self) -> None:
        import torch

        with torch.inference_mode():
            self.output = self._forward(self.inputs.device_input)


    def close(self) -> None:
        self.inputs = self.output = None
        self.model = None
        self._ready = False
        if self.device == "cuda":
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


class CompileBackend(EagerBackend):
    """``torch.compile`` (static shapes: one compilation per batch size, in the untimed first call)."""

    def __init__(self, model_factory, input_shape, *, device: str, dtype: str, channels_last: bool = False,
                 mode: str = "default", enabled: bool = True, disabled_reason: str | None = None):
        super().__init__(model_factory, input_shape, device=device, dtype=dtype, channels_last=channels_last,
                         name=f"compile-{dtype}")
        self.mode = mode
        self.enabled = enabled
        self.disabled_reason = disabled_reason
        self.description = f"torch.compile(mode={mode!r}, dynamic=False) {dtype.upper()} on {device}"
        self._compiled = None

    def unavailable(self) -> str | None:
        if not self.enabled:
            return self.disabled_reason or "torch.compile disabled"
        return super().unavailable()

    def prepare(self, batch_size: int) -> None:
        import torch

        super().prepare(batch_size)
        if self._compiled is None:
            self._compiled = torch.compile(self.model, mode=self.mode, dynamic=False)

    def _forward(self, x):
        return self._compiled(x)

    def close(self) -> None:
        self._compiled = None
        super().close()


class CudaGraphBackend(EagerBackend):
    """Eager PyTorch captured into one CUDA graph per batch size and replayed."""

    def __init__(self, model_factory, input_shape, *, dtype: str = "fp16", channels_last: bool = True):
        super().__init__(model_factory, input_shape, device="cuda", dtype=dtype, channels_last=channels_last,
                         name=f"eager-{dtype}-cuda-graph")
        self.description = f"eager PyTorch {dtype.upper()} on cuda, channels_last, replayed from a CUDA graph"
        self.graph = None

    def prepare(self, batch_size: int) -> None:
        import torch

        self.graph = None
        super().prepare(batch_size)
        x = self.inputs.device_input
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cudnn.benchmark autotuning and allocator warm-up happen outside the capture
                self.model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            self.output = self.model(x)
        self.graph = graph

    def run(self) -> None:
        self.graph.replay()

    def close(self) -> None:
        self.graph = None
        super().close()


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: CPU provider (host memory), or CUDA provider (I/O binding to device memory).

    The CUDA provider runs on its own stream, so it gets host timings only.
    """

    def __init__(self, onnx_path, input_shape, *, provider: str = "cpu", threads: int | None = None):
        self.onnx_path = onnx_path
        self.input_shape = tuple(input_shape) if input_shape else None  # None: the file's (static) input dims
        self.provider = provider
        self.device = "cuda" if provider == "cuda" else "cpu"
        self.name = f"onnxruntime-{provider}"
        self.threads = threads
        self.gpu_events = False
        self.session = None
        self.description = f"ONNX Runtime {'CUDA' if provider == 'cuda' else 'CPU'} execution provider"

    def unavailable(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if self.provider == "cuda":
            reason = cuda_unavailable()
            if reason:
                return reason
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return ("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu); available: "
                        + ", ".join(ort.get_available_providers()))
        if self.onnx_path is None:
            return "no ONNX file given (--onnx)"
        return None

    def _open(self):
        import onnxruntime as ort

        from toolchain.export import load_onnx

        model = load_onnx(self.onnx_path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.provider == "cuda" else \
            ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
        except Exception as exc:  # onnxruntime's own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ToolchainError(f"ONNX Runtime cannot load {self.onnx_path}: {first}") from None
        self._input = self.session.get_inputs()[0]
        self._outputs = [o.name for o in self.session.get_outputs()]

    def prepare(self, batch_size: int) -> None:
        import numpy as np

        if self.session is None:
            self._open()
        dtype = np.float16 if self._input.type == "tensor(float16)" else np.float32
        dims = self.input_shape or tuple(self._input.shape[1:])
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise ToolchainError(f"{self.onnx_path} has symbolic input dims {dims}", hint="pass --image-size")
        shape = (batch_size, *dims)
        self.host_input = np.random.default_rng(0).standard_normal(shape).astype(dtype)
        static = self._input.shape[0]
        if isinstance(static, int) and static != batch_size:
            raise ToolchainError(f"{self.onnx_path} takes only batch {static}")
        if self.provider == "cuda":
            import torch

            self.device_input = torch.from_numpy(self.host_input).cuda()
            self.binding = self.session.io_binding()
            self.binding.bind_input(self._input.name, "cuda", 0, dtype, list(shape), self.device_input.data_ptr())
            for name in self._outputs:
                self.binding.bind_output(name, "cuda", 0)

    def run(self) -> None:
        if self.provider == "cuda":
            self.session.run_with_iobinding(self.binding)
            self.binding.synchronize_outputs()
        else:
            self.session.run(self._outputs, {self._input.name: self.host_input})

    def run_copy(self) -> None:
        # Numpy in, numpy out: ONNX Runtime does both copies (from pageable memory).
        self.session.run(self._outputs, {self._input.name: self.host_input})

    def close(self) -> None:
        self.session = None
        self.binding = self.device_input = None


class TensorRTBackend(Backend):
    """A TensorRT engine through :class:`toolchain.trt.runtime.TensorRTRunner` (``infer_torch``)."""

    def __init__(self, engine_path, *, lrn: str, cuda_graph: bool = False, plugin_library=None):
        self.engine_path = engine_path
        self.lrn = lrn
        self.cuda_graph = cuda_graph
        self.plugin_library = plugin_library
        self.device = "cuda"
        self.precision = "fp16"
        self.name = f"tensorrt-{lrn}{'-graph' if cuda_graph else ''}"
        self.description = (f"TensorRT engine, LRN {'through the FusedLRN plugin' if lrn == 'plugin' else 'as the built-in ILRNLayer'}"
                            + (", replayed from a CUDA graph" if cuda_graph else ""))
        self.runner = None
        self.inputs: _TorchInputs | None = None
        self.output = None

    def unavailable(self) -> str | None:
        # The most fundamental reason first: no GPU, then no TensorRT, then no engine.
        reason = cuda_unavailable()
        if reason:
            return reason
        from toolchain.trt import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            import importlib.util

            if importlib.util.find_spec("tensorrt_lean") is None:
                return why
        if self.engine_path is None:
            return f"no {'--engine' if self.lrn == 'plugin' else '--native-engine'} given"
        return None

    @property
    def max_batch(self) -> int | None:
        return self.runner.max_batch if self.runner is not None else None

    def activate(self) -> None:
        from toolchain.trt.runtime import TensorRTRunner

        if self.runner is None:
            options = {"plugin_library": self.plugin_library} if self.plugin_library else {}
            runner = TensorRTRunner(self.engine_path, cuda_graph=self.cuda_graph, **options)
            runner.activate()
            self.runner = runner
            spec = runner.io["inputs"][0]
            self._input_name = spec["name"]
            self._input_shape = tuple(spec["shape"][1:])
            self._input_dtype = spec["dtype"]
            self._output_name = runner.output_names[0]

    def prepare(self, batch_size: int) -> None:
        import torch

        self.activate()
        if any(int(d) < 0 for d in self._input_shape):
            raise ToolchainError(f"engine {self.engine_path} has a dynamic non-batch input dimension")
        self.inputs = _TorchInputs((batch_size, *self._input_shape), device="cuda",
                                   dtype=getattr(torch, self._input_dtype))

    def run(self) -> None:
        self.output = self.runner.infer_torch({self._input_name: self.inputs.device_input})[self._output_name]


    def close(self) -> None:
        self.inputs = self.output = None
        if self.runner is not None:
            self.runner.deactivate()
            self.runner = None


# ---------------------------------------------------------------------- the sweep


@dataclass
class BenchmarkResult:
    environment: dict
    config: dict
    batch_sizes: list[int]
    backends: list[dict] = field(default_factory=list)   # describe() of every backend that ran
    measurements: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)    # {"backend", "batch_size" or None, "reason"}
    errors: list[dict] = field(default_factory=list)     # {"backend", "batch_size", "error"}
    model: dict = field(default_factory=dict)
    environment_after: dict | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self, metric: str | None = None) -> list[dict]:
        return [m for m in self.measurements if metric is None or m["metric"] == metric]

    def metrics_present(self) -> list[str]:
        return [metric for metric in METRICS if any(m["metric"] == metric for m in self.measurements)]


def run_benchmark(backends: Sequence[Backend], batch_sizes: Sequence[int], config: TimingConfig, *,
                  environment: dict | None = None, model_info: dict | None = None,
                  log: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Time every available backend at every batch size; skips and errors are recorded, not raised."""
    from toolchain.environment import capture_environment, gpu_state

    config.validate()
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ToolchainError("batch sizes must be positive integers")
    log = log or (lambda message: None)
    started = time.perf_counter()
    result = BenchmarkResult(environment=environment or capture_environment(), config=asdict(config),
                             batch_sizes=[int(b) for b in batch_sizes], model=model_info or {})
    for backend in backends:
        reason = backend.unavailable()
        if reason:
            result.skipped.append({"backend": backend.name, "batch_size": None, "reason": reason})
            log(f"skip {backend.name}: {reason}")
            continue
        ran = _time_backend(backend, result, config, log)
        if ran:
            result.backends.append(backend.describe())
    result.environment_after = gpu_state() if result.environment.get("cuda_available") else None
    result.seconds = time.perf_counter() - started
    return result


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ToolchainError):
        return exc.one_line()
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def _time_backend(backend: Backend, result: "BenchmarkResult", config: TimingConfig, log) -> bool:
    """Time one backend at every batch size into ``result``; True if anything was measured.

    A ToolchainError before the first measurement means the backend cannot run here
    (skipped, with the reason); anything else, or later, is an error of that backend
    and batch size, recorded while the sweep goes on (one broken backend, e.g. a
    torch.compile without a working compiler, or an out-of-memory at the largest
    batch, must not lose the other results).
    """
    ran = False
    try:
        for batch in result.batch_sizes:
            try:
                backend.prepare(batch)
            except ToolchainError as exc:  # e.g. a missing library or an engine that cannot load
                if not ran:
                    result.skipped.append({"backend": backend.name, "batch_size": None, "reason": exc.one_line()})
                    log(f"skip {backend.name}: {exc.one_line()}")
                    return False
                result.errors.append({"backend": backend.name, "batch_size": batch, "error": exc.one_line()})
                continue
            except Exception as exc:
                result.errors.append({"backend": backend.name, "batch_size": batch, "error": _error_text(exc)})
                log(f"error {backend.name} batch {batch}: {_error_text(exc)}")
                continue
            limit = backend.max_batch
            if limit is not None and batch > limit:
                result.skipped.append({"backend": backend.name, "batch_size": batch,
                                       "reason": f"batch {batch} exceeds the engine's profile maximum {limit}"})
                continue
            for metric, step, timer in backend.metrics():
                log(f"time {backend.name} batch {batch} {metric}")
                try:
                    measured = measure(step, timer, config)
                except Exception as exc:
                    result.errors.append({"backend": backend.name, "batch_size": batch, "metric": metric,
                                          "error": _error_text(exc)})
                    log(f"error {backend.name} batch {batch} {metric}: {_error_text(exc)}")
                    break
                ran = True
                result.measurements.append({"backend": backend.name, "device": backend.device,
                                            "precision": backend.precision, "batch_size": batch,
                                            "metric": metric, **measured.stats(batch)})
    finally:
        try:
            backend.close()
        except Exception as exc:  # freeing failed: say so, keep the results
            result.errors.append({"backend": backend.name, "batch_size": None, "error": f"close: {_error_text(exc)}"})
    return ran


# ---------------------------------------------------------------------- backend selection


BACKEND_NAMES = ("eager-fp32", "eager-fp16", "eager-fp16-fused-lrn", "compile", "eager-fp16-cuda-graph",
                 "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt-plugin", "tensorrt-plugin-graph",
                 "tensorrt-native", "tensorrt-native-graph")


def parse_backend_names(text: str | None) -> list[str]:
    """Comma-separated backend names (or None for all), validated."""
    if text is None or not text.strip() or text.strip() == "all":
        return list(BACKEND_NAMES)
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise ToolchainError(f"unknown backend(s) {', '.join(unknown)}", hint=f"choose from {', '.join(BACKEND_NAMES)}")
    return names




def make_backends(*, model_factory: Callable[[], object] | None, input_shape, onnx=None, engine=None,
                  native_engine=None, plugin_library=None, names: Sequence[str] = BACKEND_NAMES,
                  device: str = "auto", include_compile: bool = False, compile_mode: str = "default",
                  ort_threads: int | None = None) -> list[Backend]:
    """The backends named in ``names``, in a fixed order; each eager backend builds its own model from the factory.

    ``device``: where eager FP32 runs ("auto": the GPU when there is one).
    ``include_compile``: torch.compile also on the CPU (slow to compile on few cores).
    """
    has_cuda = cuda_unavailable() is None
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device not in ("cpu", "cuda"):
        raise ToolchainError(f"unknown device {device!r}", hint="use auto, cpu or cuda")
    selected = set(names)
    backends: list[Backend] = []

    if "eager-fp32" in selected:
        backends.append(EagerBackend(model_factory, input_shape, device=device, dtype="fp32"))
    if "eager-fp16" in selected:
        backends.append(EagerBackend(model_factory, input_shape, device="cuda", dtype="fp16", channels_last=True))
    if "eager-fp16-fused-lrn" in selected:
        # The kernel works on contiguous NCHW, so this one stays NCHW (channels_last would add a copy per LRN).
        backends.append(EagerBackend(model_factory, input_shape, device="cuda", dtype="fp16", fused_lrn=True))
    if "compile" in selected:
        if device == "cuda":
            backends.append(CompileBackend(model_factory, input_shape, device="cuda", dtype="fp16", channels_last=True,
                                           mode=compile_mode))
        else:
            backends.append(CompileBackend(model_factory, input_shape, device="cpu", dtype="fp32", mode=compile_mode,
                                           enabled=include_compile,
                                           disabled_reason="torch.compile on the CPU is slow to compile on few cores;"
                                                           " pass --include-compile to time it"))
    if "eager-fp16-cuda-graph" in selected:
        backends.append(CudaGraphBackend(model_factory, input_shape))
    if "onnxruntime-cpu" in selected:
        backends.append(OnnxRuntimeBackend(onnx, input_shape, provider="cpu", threads=ort_threads))
    if "onnxruntime-cuda" in selected:
        backends.append(OnnxRuntimeBackend(onnx, input_shape, provider="cuda"))
    for lrn, path in (("plugin", engine), ("native", native_engine)):
        for graph in (False, True):
            name = f"tensorrt-{lrn}{'-graph' if graph else ''}"
            if name in selected:
                from toolchain.trt.runtime import plugin_library_for_engine  # native engines get no plugin

                backends.append(TensorRTBackend(path, lrn=lrn, cuda_graph=graph,
                                                plugin_library=plugin_library_for_engine(lrn, plugin_library)))
    return backends


def benchmark_model(*, checkpoint=None, variant: str | None = None, image_size: int | None = None,
                    num_classes: int | None = None, onnx=None) -> tuple[Callable[[], object] | None, dict]:
    """(model factory, model description) from a checkpoint, a variant, or an ONNX file's metadata."""
    import copy

    from toolchain.parity import load_reference

    onnx_meta = {}
    if onnx is not None:
        from toolchain.export import read_metadata

        onnx_meta = read_metadata(onnx)
    if checkpoint is None and variant is None and not onnx_meta.get("variant"):
        return None, {}
    ref = load_reference(checkpoint=checkpoint, variant=variant, image_size=image_size, num_classes=num_classes,
                         onnx_meta=onnx_meta if checkpoint is None and variant is None else {})
    meta = ref.meta
    base = ref.model.eval()
    info = {"variant": meta.get("variant"), "image_size": int(meta["image_size"]),
            "in_channels": int(meta["in_channels"]), "num_classes": int(meta["num_classes"]),
            "checkpoint": str(ref.path) if ref.path else None, "checkpoint_sha256": ref.sha256,
            "weights": meta.get("weights")}
    return (lambda: copy.deepcopy(base)), info


def benchmark_from_sources(*, checkpoint=None, variant=None, image_size=None, num_classes=None, onnx=None, engine=None,
                          native_engine=None, plugin_library=None, batch_sizes="1,8,64,256", backend_names="all",
                          device="auto", include_compile=False, compile_mode="default", config=None, threads=None,
                          out_dir="runs/benchmark", force=False, console=None):
    """``toolchain benchmark`` as a function (the pipeline calls it): returns (result, written paths).

    Refuses existing result files (without ``force``) before timing anything.
    """
    from pathlib import Path

    from rich.console import Console

    from toolchain.io import check_writable
    from toolchain.report import BENCHMARK_FILES, write_benchmark_report

    console = console or Console(stderr=True)
    sizes = parse_batch_sizes(batch_sizes) if isinstance(batch_sizes, str) else [int(b) for b in batch_sizes]
    names = parse_backend_names(backend_names) if isinstance(backend_names, str) or backend_names is None \
        else list(backend_names)
    for name in BENCHMARK_FILES.values():  # refuse before spending minutes timing
        check_writable(Path(out_dir) / name, force=force)
    if threads:
        import torch

        torch.set_num_threads(threads)
    factory, model_info = benchmark_model(checkpoint=checkpoint, variant=variant, image_size=image_size,
                                          num_classes=num_classes, onnx=onnx)
    input_shape = (model_info["in_channels"], model_info["image_size"], model_info["image_size"]) \
        if model_info else None
    backends = make_backends(model_factory=factory, input_shape=input_shape, onnx=onnx, engine=engine,
                             native_engine=native_engine, plugin_library=plugin_library, names=names, device=device,
                             include_compile=include_compile, compile_mode=compile_mode, ort_threads=threads)
    result = run_benchmark(backends, sizes, config or TimingConfig(), model_info=model_info,
                           log=lambda message: console.print(f"[dim]{message}[/]", highlight=False))
    paths = write_benchmark_report(result, out_dir, force=force)
    return result, paths
