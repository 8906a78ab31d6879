"""Timing: pure statistics, the timing settings, timers, and :func:`measure` (how long to time).

Metrics, per runner and batch size (latencies in milliseconds per batch):

``gpu``        CUDA-event time of one inference on device-resident data (events on the
               current stream around each call; calls queued back to back, one host
               synchronisation per window).
``host``       wall-clock time of one call including the wait for its completion, data
               already where the backend reads it. For CPU backends the only metric.
``host_copy``  GPU backends: wall-clock time of copying the FP32 input from pinned host
               memory to the device, the inference, and copying the output back into
               pinned memory, then synchronising: what a client sees. Its ``stages``
               split it with CUDA events into H2D, compute and D2H, plus the host time
               spent enqueueing the compute.

Throughput is measured, not derived from a latency: images per second over the wall
time of each window's back-to-back calls (``throughput_ips``).

How long to time: one untimed first call (compilation, autotuning, graph capture), a
warm-up (``warmup_iters`` calls and at least ``warmup_seconds``), then windows of
``window_iters`` calls (default: sized from the warm-up to ``target_window_seconds``,
at least ``min_window_iters``). Timing stops once the medians of the last
``stable_windows`` (>= 3) windows agree within ``tolerance``, or after ``max_windows``
windows or ``max_seconds`` (then the point is marked unstable).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from toolchain.errors import ToolchainError

METRICS = ("gpu", "host", "host_copy")
METRIC_TITLES = {
    "gpu": "GPU time (CUDA events, device-resident)",
    "host": "end-to-end host time (data already where the backend reads it)",
    "host_copy": "end-to-end host time with copies (FP32 input, pinned host memory <-> device)",
}
STAGES = ("h2d", "compute", "d2h", "enqueue")
MIN_STABLE_WINDOWS = 3


# ---------------------------------------------------------------------- statistics (pure)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation: same as ``numpy.percentile(values, q)``."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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


def throughput(images: int, seconds: float) -> float:
    """Images per second when ``images`` images took ``seconds`` of wall time."""
    if seconds <= 0:
        return math.inf
    return images / seconds


def latency_stats(samples_ms: Sequence[float]) -> dict:
    """Summary of per-call latencies: mean, std, min/max, p50/p90/p99, CV."""
    if not samples_ms:
        raise ValueError("no samples")
    return {
        "samples": len(samples_ms), "mean_ms": statistics.fmean(samples_ms),
        "std_ms": statistics.stdev(samples_ms) if len(samples_ms) > 1 else 0.0,
        "min_ms": min(samples_ms), "max_ms": max(samples_ms), "p50_ms": percentile(samples_ms, 50),
        "p90_ms": percentile(samples_ms, 90), "p99_ms": percentile(samples_ms, 99),
        "cv": coefficient_of_variation(samples_ms),
    }


def auto_window_iters(iteration_seconds: float, target_seconds: float, *, low: int = 3, high: int = 1000) -> int:
    """Calls per window so that a window lasts about ``target_seconds`` (clamped to [low, high])."""
    if iteration_seconds <= 0:
        return high
    return max(low, min(high, int(round(target_seconds / iteration_seconds))))


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TimingConfig:
    warmup_iters: int = 10
    warmup_seconds: float = 0.5
    window_iters: int | None = None  # None: sized from the warm-up (target_window_seconds)
    target_window_seconds: float = 0.1
    min_window_iters: int = 5
    min_windows: int = 3
    stable_windows: int = 3
    tolerance: float = 0.05
    max_windows: int = 100
    max_seconds: float = 10.0

    def validate(self) -> "TimingConfig":
        problems = []
        if self.warmup_iters < 0:
            problems.append("warm-up iterations must be >= 0")
        if self.min_window_iters < 1:
            problems.append("min window iterations must be >= 1")
        if self.window_iters is not None and self.window_iters < self.min_window_iters:
            problems.append(f"window iterations must be >= {self.min_window_iters} (samples per window)")
        if self.stable_windows < MIN_STABLE_WINDOWS:
            problems.append(f"stable windows must be >= {MIN_STABLE_WINDOWS} (fewer cannot show stability)")
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
    """What :func:`measure` saw: the kept samples (last ``stable_windows`` windows) and how it got there."""

    samples_ms: list[float]
    window_medians: list[float]
    window_iters: int
    windows: int
    stable: bool
    seconds: float
    window_wall_s: list[float] = field(default_factory=list)
    first_call_ms: float | None = None
    warmup_iters: int = 0
    stable_windows: int = 3
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    def stats(self, batch_size: int) -> dict:
        kept = self.window_wall_s[-self.stable_windows:]
        calls = self.window_iters * len(kept)
        out = {**latency_stats(self.samples_ms),
               "throughput_ips": throughput(batch_size * calls, sum(kept)) if kept else None,
               "window_iters": self.window_iters, "windows": self.windows, "stable": self.stable,
               "window_spread": relative_spread(self.window_medians[-self.stable_windows:])
               if self.window_medians else None,
               "window_medians_ms": list(self.window_medians), "samples_ms": list(self.samples_ms),
               "timed_seconds": self.seconds, "first_call_ms": self.first_call_ms,
               "warmup_iters": self.warmup_iters}
        if self.stages_ms:
            out["stages"] = {stage: {"p50_ms": percentile(values, 50), "mean_ms": statistics.fmean(values)}
                             for stage, values in self.stages_ms.items() if values}
        return out


# ---------------------------------------------------------------------- timers


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

    def __init__(self):
        import torch

        self.torch = torch

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


class CopyStagesTimer:
    """Host wall time of H2D + compute + D2H + synchronise per call, split into stages with CUDA events.

    ``runner`` has ``h2d``/``run``/``d2h``/``sync``; ``events`` False (work on another
    stream) keeps only the wall time and the enqueue time.
    """

    kind = "host_copy"

    def __init__(self, runner, *, events: bool = True, clock: Callable[[], float] = time.perf_counter):
        self.runner = runner
        self.events = events
        self.clock = clock
        self.stage_windows: list[dict[str, list[float]]] = []

    def step(self) -> None:
        self.runner.h2d()
        self.runner.run()
        self.runner.d2h()

    def call(self, step=None) -> float:
        start = self.clock()
        self.step()
        self.runner.sync()
        return (self.clock() - start) * 1e3

    def window(self, step, iters: int) -> list[float]:
        stages = {name: [] for name in STAGES}
        samples = []
        if self.events:
            import torch

            make = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        for _ in range(iters):
            start = self.clock()
            if self.events:
                marks = [make() for _ in range(4)]
                marks[0].record()
            self.runner.h2d()
            if self.events:
                marks[1].record()
            enqueue = self.clock()
            self.runner.run()
            stages["enqueue"].append((self.clock() - enqueue) * 1e3)
            if self.events:
                marks[2].record()
            self.runner.d2h()
            if self.events:
                marks[3].record()
            self.runner.sync()
            samples.append((self.clock() - start) * 1e3)
            if self.events:
                for name, (a, b) in zip(("h2d", "compute", "d2h"), zip(marks, marks[1:])):
                    stages[name].append(a.elapsed_time(b))
        self.stage_windows.append(stages)
        return samples


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
        iters = auto_window_iters(per_call, config.target_window_seconds, low=config.min_window_iters)
    windows: list[list[float]] = []
    walls: list[float] = []
    medians: list[float] = []
    stable = False
    timing_started = clock()
    if hasattr(timer, "stage_windows"):
        timer.stage_windows.clear()  # the warm-up's stages do not count
    while True:
        window_started = clock()
        samples = timer.window(step, iters)
        walls.append(clock() - window_started)
        windows.append(samples)
        medians.append(statistics.median(samples))
        if len(windows) >= config.min_windows and is_stable(medians, windows=config.stable_windows,
                                                            tolerance=config.tolerance):
            stable = True
            break
        # The budget never cuts below min_windows: fewer windows cannot show stability.
        if len(windows) >= config.min_windows and (len(windows) >= config.max_windows
                                                   or clock() - timing_started >= config.max_seconds):
            break
    kept = [value for window in windows[-config.stable_windows:] for value in window]
    stages: dict[str, list[float]] = {}
    for window in getattr(timer, "stage_windows", [])[-config.stable_windows:]:
        for name, values in window.items():
            stages.setdefault(name, []).extend(values)
    return Measurement(samples_ms=kept, window_medians=medians, window_iters=iters, windows=len(windows),
                       stable=stable, seconds=clock() - timing_started, window_wall_s=walls,
                       first_call_ms=first_call_ms, warmup_iters=warmup_done, stable_windows=config.stable_windows,
                       stages_ms={k: v for k, v in stages.items() if v})


def runner_metrics(runner) -> list[tuple[str, Callable[[], None], object]]:
    """(metric, step, timer) triples a runner is timed with: host only on the CPU, all three on a GPU."""
    if runner.timing_device == "cpu":
        return [("host", runner.run, HostTimer())]
    out = []
    if runner.gpu_events:
        out.append(("gpu", runner.run, CudaEventTimer()))
    out.append(("host", runner.run, HostTimer(runner.sync)))
    timer = CopyStagesTimer(runner, events=runner.gpu_events)
    out.append(("host_copy", timer.step, timer))
    return out
