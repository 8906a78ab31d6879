"""The benchmark harness: statistics, the timing loop, backend skipping, and a real tiny CPU run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run_cli
from toolchain import benchmark as bm
from toolchain.errors import ToolchainError

# ---------------------------------------------------------------------- statistics


@pytest.mark.parametrize("q", [0, 1, 10, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = np.random.default_rng(q).exponential(size=37).tolist()
    assert bm.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_known_values_and_errors():
    assert bm.percentile([4, 1, 3, 2], 50) == 2.5
    assert bm.percentile([4, 1, 3, 2], 0) == 1 and bm.percentile([4, 1, 3, 2], 100) == 4
    assert bm.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        bm.percentile([], 50)
    with pytest.raises(ValueError):
        bm.percentile([1, 2], 101)


def test_coefficient_of_variation():
    assert bm.coefficient_of_variation([10, 10, 10]) == 0.0
    assert bm.coefficient_of_variation([1, 2, 3]) == pytest.approx(0.5)  # sample std 1 / mean 2
    assert bm.coefficient_of_variation([5.0]) == 0.0


def test_relative_spread_and_stability_windows():
    assert bm.relative_spread([10, 11, 9]) == pytest.approx(0.2)
    assert bm.is_stable([50, 10.0, 10.2, 9.9], windows=3, tolerance=0.05)
    assert not bm.is_stable([10.0, 12.0, 10.0], windows=3, tolerance=0.05)
    assert not bm.is_stable([10.0, 10.0], windows=3, tolerance=0.05)  # not enough windows yet
    assert not bm.is_stable([10.0, 10.0, 10.0, 20.0], windows=3, tolerance=0.05)  # the last windows count


def test_throughput_and_latency_stats():
    assert bm.throughput(64, 32.0) == pytest.approx(2000.0)
    assert math.isinf(bm.throughput(1, 0.0))
    stats = bm.latency_stats([1.0, 2.0, 3.0, 4.0, 100.0], batch_size=8)
    assert stats["p50_ms"] == 3.0 and stats["min_ms"] == 1.0 and stats["max_ms"] == 100.0
    assert stats["p99_ms"] == pytest.approx(float(np.percentile([1, 2, 3, 4, 100], 99)))
    assert stats["throughput_ips"] == pytest.approx(8 * 1000 / 3.0)
    assert stats["mean_ms"] == pytest.approx(22.0)
    assert stats["cv"] == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)


def test_auto_window_iters_clamps():
    assert bm.auto_window_iters(0.001, 0.1) == 100
    assert bm.auto_window_iters(1.0, 0.1) == 3
    assert bm.auto_window_iters(1e-9, 0.1) == 1000


def test_timing_config_validation():
    bm.TimingConfig().validate()
    with pytest.raises(ToolchainError, match="min windows"):
        bm.TimingConfig(min_windows=2, stable_windows=3).validate()
    with pytest.raises(ToolchainError, match="tolerance"):
        bm.TimingConfig(tolerance=0).validate()


# ---------------------------------------------------------------------- the timing loop, with scripted timers


class ScriptedTimer:
    """Returns scripted per-window values; advances a fake clock by the scripted time."""

    kind = "fake"

    def __init__(self, windows, clock):
        self.windows = list(windows)
        self.clock = clock
        self.calls = 0
        self.window_sizes = []

    def call(self, step):
        step()
        self.calls += 1
        self.clock.now += 0.001
        return 1.0

    def window(self, step, iters):
        self.window_sizes.append(iters)
        value = self.windows.pop(0) if self.windows else 1.0
        for _ in range(iters):
            step()
        self.clock.now += value * iters / 1e3
        return [value] * iters


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_measure_stops_when_last_windows_agree():
    clock = FakeClock()
    timer = ScriptedTimer([20.0, 15.0, 10.0, 10.1, 9.95, 50.0], clock)
    config = bm.TimingConfig(warmup_iters=2, warmup_seconds=0, window_iters=4, min_windows=3, stable_windows=3,
                             tolerance=0.05, max_windows=20, max_seconds=100)
    steps = []
    m = bm.measure(lambda: steps.append(1), timer, config, clock=clock)
    assert m.stable and m.windows == 5  # windows 3-5 agree within 5%; window 6 is never timed
    assert m.window_medians == [20.0, 15.0, 10.0, 10.1, 9.95]
    assert sorted(set(m.samples_ms)) == [9.95, 10.0, 10.1] and len(m.samples_ms) == 12
    assert m.warmup_iters == 2 and m.first_call_ms == 1.0
    assert len(steps) == 1 + 2 + 5 * 4


def test_measure_gives_up_unstable_after_max_windows_or_time():
    clock = FakeClock()
    alternating = [10.0, 20.0] * 50
    config = bm.TimingConfig(warmup_iters=0, warmup_seconds=0, window_iters=2, min_windows=3, stable_windows=3,
                             tolerance=0.05, max_windows=7, max_seconds=1e6)
    m = bm.measure(lambda: None, ScriptedTimer(alternating, clock), config, clock=clock)
    assert not m.stable and m.windows == 7
    # Time budget: the windows cost 0.2 s and 0.4 s of fake time; after them 0.5 s is spent.
    clock = FakeClock()
    config = bm.TimingConfig(warmup_iters=0, warmup_seconds=0, window_iters=2, min_windows=3, stable_windows=3,
                             tolerance=0.05, max_windows=100, max_seconds=0.5)
    m = bm.measure(lambda: None, ScriptedTimer([100.0, 200.0] * 50, clock), config, clock=clock)
    assert not m.stable and m.windows == 2 and m.seconds == pytest.approx(0.6)


def test_measure_sizes_windows_from_the_warmup():
    clock = FakeClock()
    timer = ScriptedTimer([1.0] * 10, clock)
    config = bm.TimingConfig(warmup_iters=5, warmup_seconds=0, window_iters=None, target_window_seconds=0.05)
    m = bm.measure(lambda: None, timer, config, clock=clock)
    assert m.window_iters == 50  # 1 ms per warm-up call -> 50 calls per 50 ms window
    assert set(timer.window_sizes) == {50}


# ---------------------------------------------------------------------- run_benchmark with fake backends


class FakeBackend(bm.Backend):
    device = "cpu"

    def __init__(self, name, *, unavailable=None, fail_prepare=False, max_batch=None):
        self.name = name
        self._unavailable = unavailable
        self._fail = fail_prepare
        self._max = max_batch
        self.prepared, self.runs, self.closed = [], 0, False

    def unavailable(self):
        return self._unavailable

    @property
    def max_batch(self):
        return self._max

    def prepare(self, batch_size):
        if self._fail:
            raise ToolchainError("engine cannot load here")
        self.prepared.append(batch_size)

    def run(self):
        self.runs += 1

    def close(self):
        self.closed = True


TINY = bm.TimingConfig(warmup_iters=1, warmup_seconds=0, window_iters=2, min_windows=1, stable_windows=1,
                       max_seconds=0.2)


def test_run_benchmark_records_skips_with_reasons():
    good = FakeBackend("good", max_batch=4)
    missing = FakeBackend("missing", unavailable="no CUDA GPU")
    broken = FakeBackend("broken", fail_prepare=True)
    result = bm.run_benchmark([good, missing, broken], [1, 4, 8], TINY, environment={"cuda_available": False})
    assert {(m["backend"], m["batch_size"], m["metric"]) for m in result.measurements} == \
        {("good", 1, "host"), ("good", 4, "host")}
    reasons = {(s["backend"], s["batch_size"]): s["reason"] for s in result.skipped}
    assert reasons[("missing", None)] == "no CUDA GPU"
    assert "engine cannot load here" in reasons[("broken", None)]
    assert "exceeds" in reasons[("good", 8)]
    assert good.closed and broken.closed and not missing.prepared
    assert [b["name"] for b in result.backends] == ["good"]
    json.dumps(result.to_dict())  # JSON-able as written


class CrashingBackend(FakeBackend):
    def prepare(self, batch_size):
        self.batch = batch_size

    def run(self):
        if self.batch == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text")


def test_a_crashing_backend_is_an_error_and_the_sweep_goes_on():
    crashing, good = CrashingBackend("crashing"), FakeBackend("good")
    result = bm.run_benchmark([crashing, good], [1, 2], TINY, environment={"cuda_available": False})
    assert {(m["backend"], m["batch_size"]) for m in result.measurements} == \
        {("crashing", 1), ("good", 1), ("good", 2)}
    assert result.errors == [{"backend": "crashing", "batch_size": 2, "metric": "host",
                              "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}]
    assert crashing.closed


def test_parsers_reject_bad_input():
    assert bm.parse_batch_sizes("8,1,8") == [1, 8]
    with pytest.raises(ToolchainError):
        bm.parse_batch_sizes("1,x")
    with pytest.raises(ToolchainError):
        bm.parse_batch_sizes("0")
    assert bm.parse_backend_names("all") == list(bm.BACKEND_NAMES)
    with pytest.raises(ToolchainError, match="unknown backend"):
        bm.parse_backend_names("eager-fp32,warp-drive")


# ---------------------------------------------------------------------- a real tiny CPU run (CLI)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from toolchain.export import export_from_source

    path = tmp_path_factory.mktemp("bench") / "paper64.onnx"
    export_from_source(path, variant="paper", image_size=64, num_classes=10)
    return path


TINY_ARGS = ("--warmup", "1", "--warmup-seconds", "0", "--window", "2", "--min-windows", "1", "--stable-windows",
             "1", "--max-seconds", "0.3")


def test_cpu_benchmark_writes_json_markdown_plots_and_skips(tmp_path, tiny_onnx):
    out = tmp_path / "bench"
    result = run_cli("benchmark", "--variant", "paper", "--image-size", "64", "--num-classes", "10", "--onnx",
                     tiny_onnx, "--batch-sizes", "1,2", "--device", "cpu",
                     "--backends", "eager-fp32,onnxruntime-cpu,compile,tensorrt-plugin", *TINY_ARGS, "--out", out)
    assert result.code == 0, result.stderr
    data = json.loads((out / "benchmark.json").read_text())
    rows = {(m["backend"], m["batch_size"]): m for m in data["measurements"]}
    assert set(rows) == {("eager-fp32", 1), ("eager-fp32", 2), ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 2)}
    for (backend, batch), row in rows.items():
        assert row["metric"] == "host" and row["device"] == "cpu"
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["throughput_ips"] == pytest.approx(batch * 1000 / row["p50_ms"])
        assert row["samples"] >= 2
    skipped = {s["backend"]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == {"compile-fp32", "tensorrt-plugin"}
    assert "--include-compile" in skipped["compile-fp32"]
    assert skipped["tensorrt-plugin"]  # no GPU / no TensorRT / no engine, whichever comes first
    env = data["environment"]
    assert env["torch"] and env["python"] and env["onnxruntime"]
    assert data["model"]["image_size"] == 64 and data["model"]["variant"] == "paper"

    markdown = (out / "benchmark.md").read_text()
    assert "## Skipped" in markdown and "--include-compile" in markdown
    assert "| eager-fp32 | 1 |" in markdown and "| onnxruntime-cpu | 2 |" in markdown
    assert "![latency](latency.png)" in markdown
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "skipped compile-fp32" in result.stdout

    again = run_cli("benchmark", "--variant", "paper", "--image-size", "64", "--num-classes", "10",
                    "--backends", "eager-fp32", "--out", out)
    assert_one_line_error(again, "already exists", "--force")


def test_benchmark_cli_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("benchmark", "--out", tmp_path / "x"), "nothing to benchmark")
    assert_one_line_error(run_cli("benchmark", "--variant", "paper", "--backends", "eager-fp33", "--out",
                                  tmp_path / "y"), "unknown backend")
    assert_one_line_error(run_cli("benchmark", "--variant", "paper", "--batch-sizes", "1,a", "--out",
                                  tmp_path / "z"), "batch sizes")


# ---------------------------------------------------------------------- GPU


@pytest.mark.needs_cuda
def test_gpu_backends_report_gpu_and_host_times(tmp_path):
    factory, info = bm.benchmark_model(variant="paper", image_size=64, num_classes=10)
    backends = bm.make_backends(model_factory=factory, input_shape=(3, 64, 64),
                                names=["eager-fp32", "eager-fp16", "eager-fp16-cuda-graph"], device="cuda")
    result = bm.run_benchmark(backends, [1, 8], TINY, model_info=info)
    assert not result.errors, result.errors
    metrics = {(m["backend"], m["batch_size"], m["metric"]): m for m in result.measurements}
    for backend in ("eager-fp32", "eager-fp16", "eager-fp16-cuda-graph"):
        for batch in (1, 8):
            gpu = metrics[(backend, batch, "gpu")]
            copy = metrics[(backend, batch, "host_copy")]
            assert metrics[(backend, batch, "host")]["p50_ms"] > 0
            # Copies and host synchronisation only add work on top of the GPU time.
            assert gpu["p50_ms"] <= copy["p50_ms"] * 1.10
    assert result.environment["gpu_name"]


@pytest.mark.needs_tensorrt
def test_tensorrt_native_engine_with_and_without_cuda_graph(tmp_path):
    from toolchain.export import export_from_source
    from toolchain.trt.builder import build_engine

    onnx = export_from_source(tmp_path / "native.onnx", variant="paper", image_size=64, num_classes=10,
                              dtype="fp16", lrn="native").path
    engine = build_engine(onnx, tmp_path / "native.engine", lrn="native", max_batch=8)
    backends = bm.make_backends(model_factory=None, input_shape=None, native_engine=engine,
                                names=["tensorrt-native", "tensorrt-native-graph"])
    result = bm.run_benchmark(backends, [1, 8], TINY)
    assert not result.errors and not result.skipped, (result.errors, result.skipped)
    assert {m["backend"] for m in result.measurements} == {"tensorrt-native", "tensorrt-native-graph"}
    assert {m["metric"] for m in result.measurements} == {"gpu", "host", "host_copy"}


# ---------------------------------------------------------------------- reports


class FakeGpuBackend(FakeBackend):
    """Labelled as a GPU backend with all three metrics, timed on the host (runs anywhere)."""

    device = "cuda"
    precision = "fp16"

    def metrics(self):
        return [(metric, self.run, bm.HostTimer()) for metric in bm.METRICS]


def test_report_has_a_table_and_plot_panel_per_metric(tmp_path):
    from rich.console import Console

    from toolchain.report import benchmark_table, write_benchmark_report

    result = bm.run_benchmark([FakeGpuBackend("tensorrt-plugin"), FakeBackend("eager-fp32"),
                               FakeBackend("tensorrt-native", unavailable="TensorRT is not installed")],
                              [1, 8], TINY, environment={"cuda_available": False, "cpu": "Acme", "python": "3.x"})
    paths = write_benchmark_report(result, tmp_path / "r")
    markdown = paths["markdown"].read_text()
    for title in bm.METRIC_TITLES.values():
        assert f"## {title}" in markdown
    assert "- tensorrt-native: TensorRT is not installed" in markdown
    assert markdown.count("| tensorrt-plugin |") == 6 and markdown.count("| eager-fp32 |") == 2
    assert json.loads(paths["json"].read_text())["measurements"] == result.measurements
    console = Console(width=200, record=True)
    console.print(benchmark_table(result))
    text = console.export_text()
    assert "tensorrt-plugin" in text and "GPU p50" in text and "host+copy p50" in text
    import matplotlib.image

    wide = matplotlib.image.imread(paths["latency"])
    assert wide.shape[1] > wide.shape[0] * 2  # three panels side by side
    with pytest.raises(ToolchainError, match="already exists"):
        write_benchmark_report(result, tmp_path / "r")
    write_benchmark_report(result, tmp_path / "r", force=True)
