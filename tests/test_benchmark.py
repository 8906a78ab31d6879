"""The benchmark harness: statistics, the timing loop, skipping, parity per row, and a real tiny CPU run."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, candidate, fake_logits, FakeRunner, run_cli, TINY, TINY_ARGS
from toolchain import backends as registry, options
from toolchain.bench import harness, provenance, sources, speedup, timing
from toolchain.errors import ToolchainError

# ---------------------------------------------------------------------- statistics


@pytest.mark.parametrize("q", [0, 1, 10, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = np.random.default_rng(q).exponential(size=37).tolist()
    assert timing.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_known_values_and_errors():
    assert timing.percentile([4, 1, 3, 2], 50) == 2.5
    assert timing.percentile([4, 1, 3, 2], 0) == 1 and timing.percentile([4, 1, 3, 2], 100) == 4
    assert timing.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        timing.percentile([], 50)
    with pytest.raises(ValueError):
        timing.percentile([1, 2], 101)


def test_coefficient_of_variation():
    assert timing.coefficient_of_variation([10, 10, 10]) == 0.0
    assert timing.coefficient_of_variation([1, 2, 3]) == pytest.approx(0.5)  # sample std 1 / mean 2
    assert timing.coefficient_of_variation([5.0]) == 0.0


def test_relative_spread_and_stability_windows():
    assert timing.relative_spread([10, 11, 9]) == pytest.approx(0.2)
    assert timing.is_stable([50, 10.0, 10.2, 9.9], windows=3, tolerance=0.05)
    assert not timing.is_stable([10.0, 12.0, 10.0], windows=3, tolerance=0.05)
    assert not timing.is_stable([10.0, 10.0], windows=3, tolerance=0.05)  # not enough windows yet
    assert not timing.is_stable([10.0, 10.0, 10.0, 20.0], windows=3, tolerance=0.05)  # the last windows count


def test_throughput_and_latency_stats():
    assert timing.throughput(64, 0.032) == pytest.approx(2000.0)
    assert math.isinf(timing.throughput(1, 0.0))
    stats = timing.latency_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["p50_ms"] == 3.0 and stats["min_ms"] == 1.0 and stats["max_ms"] == 100.0
    assert stats["p99_ms"] == pytest.approx(float(np.percentile([1, 2, 3, 4, 100], 99)))
    assert stats["mean_ms"] == pytest.approx(22.0)
    assert stats["cv"] == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)


def test_auto_window_iters_clamps():
    assert timing.auto_window_iters(0.001, 0.1) == 100
    assert timing.auto_window_iters(1.0, 0.1) == 3
    assert timing.auto_window_iters(1e-9, 0.1) == 1000


def test_timing_config_validation():
    timing.TimingConfig().validate()
    with pytest.raises(ToolchainError, match="min windows"):
        timing.TimingConfig(min_windows=2, stable_windows=3).validate()
    with pytest.raises(ToolchainError, match="stable windows must be >= 3"):
        timing.TimingConfig(min_windows=2, stable_windows=2).validate()
    with pytest.raises(ToolchainError, match="window iterations must be >= 5"):
        timing.TimingConfig(window_iters=2).validate()
    with pytest.raises(ToolchainError, match="tolerance"):
        timing.TimingConfig(tolerance=0).validate()


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
    config = timing.TimingConfig(warmup_iters=2, warmup_seconds=0, window_iters=4, min_windows=3, stable_windows=3,
                             tolerance=0.05, max_windows=20, max_seconds=100)
    steps = []
    m = timing.measure(lambda: steps.append(1), timer, config, clock=clock)
    assert m.stable and m.windows == 5  # windows 3-5 agree within 5%; window 6 is never timed
    assert m.window_medians == [20.0, 15.0, 10.0, 10.1, 9.95]
    assert sorted(set(m.samples_ms)) == [9.95, 10.0, 10.1] and len(m.samples_ms) == 12
    assert m.warmup_iters == 2 and m.first_call_ms == 1.0
    assert len(steps) == 1 + 2 + 5 * 4
    stats = m.stats(batch_size=8)
    # Throughput from the windows' wall time (4 calls of ~10 ms each), not from batch / p50.
    walls = [10.0, 10.1, 9.95]
    assert stats["throughput_ips"] == pytest.approx(8 * 12 / (sum(walls) * 4 / 1e3))
    assert stats["window_medians_ms"] == m.window_medians and len(stats["samples_ms"]) == 12


def test_measure_gives_up_unstable_after_max_windows_or_time():
    clock = FakeClock()
    alternating = [10.0, 20.0] * 50
    config = timing.TimingConfig(warmup_iters=0, warmup_seconds=0, window_iters=2, min_window_iters=2, min_windows=3,
                             stable_windows=3, tolerance=0.05, max_windows=7, max_seconds=1e6)
    m = timing.measure(lambda: None, ScriptedTimer(alternating, clock), config, clock=clock)
    assert not m.stable and m.windows == 7
    # Time budget: the windows cost 0.2 s and 0.4 s of fake time; the budget of 0.5 s is spent after two,
    # but it never cuts below min_windows (3).
    clock = FakeClock()
    config = timing.TimingConfig(warmup_iters=0, warmup_seconds=0, window_iters=2, min_window_iters=2, min_windows=3,
                             stable_windows=3, tolerance=0.05, max_windows=100, max_seconds=0.5)
    m = timing.measure(lambda: None, ScriptedTimer([100.0, 200.0] * 50, clock), config, clock=clock)
    assert not m.stable and m.windows == 3 and m.seconds == pytest.approx(0.8)


def test_measure_sizes_windows_from_the_warmup():
    clock = FakeClock()
    timer = ScriptedTimer([1.0] * 10, clock)
    config = timing.TimingConfig(warmup_iters=5, warmup_seconds=0, window_iters=None, target_window_seconds=0.05)
    m = timing.measure(lambda: None, timer, config, clock=clock)
    assert m.window_iters == 50  # 1 ms per warm-up call -> 50 calls per 50 ms window
    assert set(timer.window_sizes) == {50}


# ---------------------------------------------------------------------- run_benchmark with fake runners








def _plan(n=8):
    inputs = np.random.default_rng(0).standard_normal((n, 1, 2, 2)).astype(np.float32)
    return harness.ParityPlan(inputs=inputs, labels=None, source="seeded", reference_outputs={"logits": fake_logits(inputs)},
                         reference={"name": "ref"}, min_samples=4)




def test_run_benchmark_skips_with_reasons_and_gives_every_row_a_parity_verdict():
    good, wrong = FakeRunner("good", max_batch=4), FakeRunner("wrong", shift=1e-3)
    broken = FakeRunner("broken", fail_activate=True)
    absent = FakeRunner("absent", fail_activate="missing")
    result = harness.run_benchmark([candidate(good), candidate(FakeRunner("missing"), unavailable="no CUDA GPU"),
                                    candidate(broken), candidate(absent), candidate(wrong)], [1, 4, 8], TINY,
                                   parity=_plan(), environment={"cuda_available": False})
    rows = {(m["backend"], m["batch_size"]): m for m in result.measurements}
    assert set(rows) == {("good", 1), ("good", 4), ("wrong", 1), ("wrong", 4), ("wrong", 8)}
    for (backend, batch), row in rows.items():
        verdict = row["parity"]
        assert verdict["batch_size"] == batch and verdict["samples"] == min(8, max(batch, 4))
        assert verdict["passed"] == (backend == "good")
        assert row["status"] == ("ok" if backend == "good" else "parity-failed")
        assert row["metric"] == "host" and row["windows"] >= 3 and len(row["samples_ms"]) == 9
        assert row["input_bytes"] == batch * 4 * 4  # FP32
    assert "allclose" in " ".join(rows[("wrong", 1)]["parity"]["failures"])
    assert not rows[("wrong", 1)]["parity"]["real_data"]  # seeded inputs: top-1 agreement not counted
    reasons = {(s["backend"], s["batch_size"]): s["reason"] for s in result.skipped}
    assert reasons[("missing", None)] == "no CUDA GPU"
    # A backend that fails to load is an error (the command fails); one that finds a dependency
    # missing while loading is skipped with that reason.
    assert ("broken", None) not in reasons
    assert [e["error"] for e in result.errors if e["backend"] == "broken"] == ["load: engine cannot load here"]
    assert reasons[("absent", None)] == "onnxruntime-gpu is not installed"
    assert "exceeds" in reasons[("good", 8)]
    assert good.closed and wrong.closed and good.prepared == [1, 4]
    assert [b["name"] for b in result.backends] == ["good", "wrong"]
    assert [(r["backend"], r["batch_size"]) for r in result.parity_failures()] == [("wrong", 1), ("wrong", 4),
                                                                                 ("wrong", 8)]
    assert result.config["settings"]["torch_threads"] >= 1
    json.dumps(result.to_dict())  # JSON-able as written


def test_a_crashing_runner_is_an_error_and_the_sweep_goes_on():
    crashing, good = FakeRunner("crashing", crash_at=2), FakeRunner("good")
    result = harness.run_benchmark([candidate(crashing), candidate(good)], [1, 2], TINY,
                              environment={"cuda_available": False})
    assert {(m["backend"], m["batch_size"]) for m in result.measurements} == \
        {("crashing", 1), ("good", 1), ("good", 2)}
    assert result.errors == [{"backend": "crashing", "batch_size": 2, "metric": "host",
                              "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"}]
    assert crashing.closed and all(m["parity"] is None for m in result.measurements)  # no plan, no verdict


def test_static_batch_is_timed_at_its_batch_and_mismatched_weights_are_marked():
    static = FakeRunner("static", static=2)
    result = harness.run_benchmark([candidate(static, mismatch="--onnx x was exported from checkpoint abc")], [1, 8],
                              TINY, parity=_plan(), environment={"cuda_available": False})
    assert [(m["batch_size"], m["status"]) for m in result.measurements] == [(2, "weights-mismatch")]
    assert result.measurements[0]["parity"]["weights"].startswith("--onnx x")
    assert "static batch 2" in result.skipped[0]["reason"]
    assert harness.batches_for([1, 8], None) == ([1, 8], None)
    assert harness.batches_for([2], 2) == ([2], None)


def test_weights_chain():
    ref = provenance.weights_identity({"checkpoint_sha256": "a" * 64, "variant": "paper"})
    assert provenance.weights_mismatch(ref, provenance.weights_identity({"checkpoint_sha256": "a" * 64}), "x") is None
    assert "exported from checkpoint bbbbbbbbbbbb..., the reference is aaaaaaaaaaaa..." in \
        provenance.weights_mismatch(ref, provenance.weights_identity({"checkpoint_sha256": "b" * 64}), "--onnx m.onnx")
    assert "not exported from a checkpoint" in provenance.weights_mismatch(ref, provenance.weights_identity({"variant": "paper"}),
                                                                   "x")
    variant = provenance.weights_identity({"variant": "paper", "seed": 0, "weights": "random"})
    assert provenance.weights_mismatch(variant, provenance.weights_identity({"variant": "paper", "seed": "0"}), "x") is None
    assert "seed 1" in provenance.weights_mismatch(variant, provenance.weights_identity({"variant": "paper", "seed": 1}), "x")
    assert "variant 'd2l'" in provenance.weights_mismatch(variant, {"variant": "d2l"}, "the engine")
    with pytest.raises(ToolchainError, match="--allow-mismatch"):
        provenance.check_weights(variant, {"--onnx m": {"variant": "d2l"}, "--engine e": None}, allow_mismatch=False)
    assert provenance.check_weights(variant, {"--onnx m": {"variant": "d2l"}}, allow_mismatch=True) == \
        {"--onnx m": "--onnx m holds variant 'd2l', the reference 'paper'"}


def test_parsers_reject_bad_input():
    assert options.parse_batch_sizes("8,1,8") == [1, 8]
    with pytest.raises(ToolchainError):
        options.parse_batch_sizes("1,x")
    with pytest.raises(ToolchainError):
        options.parse_batch_sizes("0")
    assert registry.parse_backend_names("all") == list(registry.BACKEND_NAMES)
    with pytest.raises(ToolchainError, match="unknown backend"):
        registry.parse_backend_names("eager-fp32,warp-drive")


# ---------------------------------------------------------------------- a real tiny CPU run (CLI)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from toolchain.export import export_from_source

    folder = tmp_path_factory.mktemp("bench")
    export_from_source(folder / "other.onnx", variant="paper", image_size=64, num_classes=10, seed=1)
    return export_from_source(folder / "paper64.onnx", variant="paper", image_size=64, num_classes=10).path


MODEL_ARGS = ("--variant", "paper", "--image-size", "64", "--num-classes", "10")


def test_cpu_benchmark_writes_json_markdown_plots_and_skips(tmp_path, tiny_onnx):
    out = tmp_path / "bench"
    result = run_cli("benchmark", *MODEL_ARGS, "--onnx", tiny_onnx, "--batch-sizes", "1,2", "--device", "cpu",
                     "--backends", "eager-fp32,onnxruntime-cpu,compile,tensorrt-plugin", *TINY_ARGS, "--out", out)
    assert result.code == 0, result.stderr
    data = json.loads((out / "benchmark.json").read_text())
    rows = {(m["backend"], m["batch_size"]): m for m in data["measurements"]}
    assert set(rows) == {("eager-fp32", 1), ("eager-fp32", 2), ("onnxruntime-cpu", 1), ("onnxruntime-cpu", 2)}
    for (backend, batch), row in rows.items():
        assert row["metric"] == "host" and row["device"] == "cpu"
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert 0 < row["throughput_ips"] < math.inf and row["windows"] >= 3 and row["samples"] >= 9
        assert row["parity"]["passed"] and row["status"] == "ok" and row["parity"]["samples"] == 4
        assert row["parity"]["metrics"]["max_abs_error"] < 1e-4
    assert data["parity"]["weights"]["checked"] == [f"--onnx {tiny_onnx}"]
    assert data["parity"]["reference"]["settings"]["layout"] == "NCHW"
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
    assert markdown.count("| pass |") == 4 and "top-1 agreement is not counted" in markdown
    assert "![latency](latency.png)" in markdown
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "skipped compile-fp32" in result.stdout and "pass" in result.stdout

    again = run_cli("benchmark", *MODEL_ARGS, "--backends", "eager-fp32", "--out", out)
    assert_one_line_error(again, "already exists", "--force")


def test_benchmark_refuses_an_onnx_from_other_weights_unless_allowed(tmp_path, tiny_onnx):
    other = tiny_onnx.parent / "other.onnx"
    refused = run_cli("benchmark", *MODEL_ARGS, "--onnx", other, "--backends", "onnxruntime-cpu", *TINY_ARGS,
                      "--out", tmp_path / "a")
    assert_one_line_error(refused, "holds seed 1, the reference 0", "--allow-mismatch")
    assert not (tmp_path / "a").exists()
    marked = run_cli("benchmark", *MODEL_ARGS, "--onnx", other, "--backends", "onnxruntime-cpu", "--batch-sizes",
                     "2", "--allow-mismatch", *TINY_ARGS, "--out", tmp_path / "b")
    assert marked.code == 0, marked.stderr  # marked, not a parity failure
    data = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    (row,) = data["measurements"]
    assert row["status"] == "weights-mismatch" and not row["parity"]["passed"]
    assert "Weights mismatch" in (tmp_path / "b" / "benchmark.md").read_text()


def test_benchmark_cli_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("benchmark", "--out", tmp_path / "x"), "nothing to benchmark")
    assert_one_line_error(run_cli("benchmark", "--variant", "paper", "--backends", "eager-fp33", "--out",
                                  tmp_path / "y"), "unknown backend")
    assert_one_line_error(run_cli("benchmark", "--variant", "paper", "--batch-sizes", "1,a", "--out",
                                  tmp_path / "z"), "batch sizes")
    assert_one_line_error(run_cli("benchmark", "--variant", "paper", "--stable-windows", "2", "--out",
                                  tmp_path / "w"), "stable windows must be >= 3")


# ---------------------------------------------------------------------- GPU


@pytest.mark.needs_cuda
def test_gpu_backends_report_gpu_and_host_times_with_parity(tmp_path):
    factory, info = sources.benchmark_model(variant="paper", image_size=64, num_classes=10)
    candidates = registry.select(["eager-fp32", "eager-fp16", "eager-fp16-cuda-graph"],
                                 registry.Context(model_factory=factory, input_shape=(3, 64, 64), device="cuda"))
    from toolchain.runners.torch import TorchRunner

    inputs, labels, source = sources.parity_inputs(info, 16)
    with TorchRunner(model_factory=factory, device="cuda", input_shape=(3, 64, 64)) as reference:
        plan = harness.make_parity_plan(reference, inputs, labels=labels, source=source, batch_size=8)
    result = harness.run_benchmark(candidates, [1, 8], TINY, parity=plan, model_info=info)
    assert not result.errors, result.errors
    metrics = {(m["backend"], m["batch_size"], m["metric"]): m for m in result.measurements}
    for backend in ("eager-fp32", "eager-fp16", "eager-fp16-cuda-graph"):
        for batch in (1, 8):
            gpu = metrics[(backend, batch, "gpu")]
            copy = metrics[(backend, batch, "host_copy")]
            assert metrics[(backend, batch, "host")]["p50_ms"] > 0
            assert gpu["parity"]["passed"], gpu["parity"]
            # Copies and host synchronisation only add work on top of the GPU time.
            assert gpu["p50_ms"] <= copy["p50_ms"] * 1.10
            assert set(copy["stages"]) == {"h2d", "compute", "d2h", "enqueue"}
    assert result.environment["gpu_name"]
    assert result.parity["reference"]["settings"]["tf32"] is False


@pytest.mark.needs_tensorrt
def test_tensorrt_native_engine_with_and_without_cuda_graph(tmp_path):
    from toolchain.export import export_from_source
    from toolchain.trt.builder import build_engine

    onnx = export_from_source(tmp_path / "native.onnx", variant="paper", image_size=64, num_classes=10,
                              dtype="fp16", lrn="native").path
    engine = build_engine(onnx, tmp_path / "native.engine", lrn="native", max_batch=8)
    result, _ = sources.benchmark_from_sources(variant="paper", image_size=64, num_classes=10, native_engine=engine,
                                          backend_names=["tensorrt-native", "tensorrt-native-graph"],
                                          batch_sizes=[1, 8], config=TINY, out_dir=tmp_path / "out",
                                          parity_samples=8)
    assert not result.errors and not result.skipped, (result.errors, result.skipped)
    assert {m["backend"] for m in result.measurements} == {"tensorrt-native", "tensorrt-native-graph"}
    assert {m["metric"] for m in result.measurements} == {"gpu", "host", "host_copy"}
    assert all(m["parity"]["passed"] for m in result.measurements), result.parity_failures()


# ---------------------------------------------------------------------- reports


def _row(backend, batch, metric, *, device="cuda", status="ok", stable=True, failures=()):
    verdict = {"passed": status == "ok", "status": "pass" if status == "ok" else "fail",
               "failures": list(failures)}
    return {"backend": backend, "device": device, "precision": "fp16", "batch_size": batch, "metric": metric,
            "status": status, "parity": verdict, "p50_ms": 1.0 * batch, "p90_ms": 1.2 * batch,
            "p99_ms": 1.5 * batch, "mean_ms": 1.1 * batch, "cv": 0.01, "throughput_ips": 900.0 / batch,
            "windows": 3, "window_iters": 5, "stable": stable,
            **({"stages": {"h2d": {"p50_ms": 0.1}, "compute": {"p50_ms": 0.5}, "d2h": {"p50_ms": 0.05},
                           "enqueue": {"p50_ms": 0.02}}} if metric == "host_copy" else {})}


def test_report_marks_failed_parity_and_has_a_table_and_plot_panel_per_metric(tmp_path):
    from rich.console import Console

    from toolchain.bench.report import benchmark_table, write_benchmark_report

    result = harness.BenchmarkResult(environment={"cuda_available": False, "cpu": "Acme", "python": "3.x"},
                                config=dataclasses.asdict(TINY), batch_sizes=[1, 8])
    for batch in (1, 8):
        for metric in timing.METRICS:
            result.measurements.append(_row("tensorrt-plugin", batch, metric, stable=batch == 1))
            result.measurements.append(_row("tensorrt-native", batch, metric, status="parity-failed",
                                            failures=["logits@batch1: allclose (3 of 10 elements)"]))
        result.measurements.append(_row("eager-fp32", batch, "host", device="cpu"))
    result.skipped.append({"backend": "onnxruntime-cuda", "batch_size": None, "reason": "no CUDA GPU"})
    result.skipped.append({"backend": "eager-fp16", "batch_size": None, "reason": "no CUDA GPU"})
    paths = write_benchmark_report(result, tmp_path / "r")
    markdown = paths["markdown"].read_text()
    for title in timing.METRIC_TITLES.values():
        assert f"## {title}" in markdown
    assert "- onnxruntime-cuda, eager-fp16: no CUDA GPU" in markdown  # each reason once
    assert markdown.count("| tensorrt-plugin |") == 6 + 2 and markdown.count("| eager-fp32 |") == 2  # + stages
    assert markdown.count("FAILED (allclose)") == 6 + 2  # every metric's row, and the failed-parity list
    assert "| tensorrt-plugin | 1 | 0.100 | 0.500 | 0.0500 | 0.0200 |" in markdown
    assert json.loads(paths["json"].read_text())["measurements"] == result.measurements
    console = Console(width=250, record=True)
    console.print(benchmark_table(result))
    text = console.export_text()
    assert "tensorrt-plugin" in text and "GPU p50" in text and "host+copy p50" in text
    assert "FAILED (allclose)" in text and "pass" in text
    import matplotlib.image

    wide = matplotlib.image.imread(paths["latency"])
    assert wide.shape[1] > wide.shape[0] * 2  # three panels side by side
    with pytest.raises(ToolchainError, match="already exists"):
        write_benchmark_report(result, tmp_path / "r")
    write_benchmark_report(result, tmp_path / "r", force=True)


# ---------------------------------------------------------------------- reduced precision vs FP32


def _rate_row(backend, precision, batch, rate, *, device="cpu", metric="host", status="ok"):
    return {"backend": backend, "precision": precision, "device": device, "batch_size": batch, "metric": metric,
            "throughput_ips": rate, "status": status}


def test_speedups_compare_each_reduced_row_with_its_family_fp32_row():
    rows = [_rate_row("onnxruntime-cpu", "fp32", 1, 100.0), _rate_row("onnxruntime-cpu", "fp32", 64, 400.0),
            _rate_row("onnxruntime-cpu-int8", "int8", 1, 250.0), _rate_row("onnxruntime-cpu-int8", "int8", 64, 300.0),
            _rate_row("onnxruntime-cpu-int8", "int8", 256, 900.0),            # no FP32 row at 256
            _rate_row("eager-fp32", "fp32", 1, 50.0, device="cuda", metric="gpu"),
            _rate_row("eager-fp16", "fp16", 1, 150.0, device="cuda", metric="gpu"),
            _rate_row("tensorrt-int8", "int8", 1, 5000.0, device="cuda", metric="gpu")]
    found = {(e["backend"], e["batch_size"]): e for e in speedup.speedups(rows)}
    assert set(found) == {("onnxruntime-cpu-int8", 1), ("onnxruntime-cpu-int8", 64), ("onnxruntime-cpu-int8", 256),
                          ("eager-fp16", 1), ("tensorrt-int8", 1)}  # FP32 rows are the baselines, not entries
    assert found[("onnxruntime-cpu-int8", 1)]["speedup"] == pytest.approx(2.5)
    assert found[("onnxruntime-cpu-int8", 64)]["speedup"] == pytest.approx(0.75)
    assert found[("onnxruntime-cpu-int8", 64)]["baseline"] == "onnxruntime-cpu"
    assert found[("onnxruntime-cpu-int8", 256)]["speedup"] is None and "at batch 256" in \
        found[("onnxruntime-cpu-int8", 256)]["reason"]
    assert found[("eager-fp16", 1)]["speedup"] == pytest.approx(3.0) and found[("eager-fp16", 1)]["baseline"] == \
        "eager-fp32"
    # Another family's FP32 row is never the baseline: no FP32 TensorRT engine here.
    assert found[("tensorrt-int8", 1)]["speedup"] is None and "no FP32 tensorrt row" in \
        found[("tensorrt-int8", 1)]["reason"]
    # An FP32 row on another device is not the baseline either.
    cpu_fp32 = [_rate_row("eager-fp32", "fp32", 1, 50.0), _rate_row("eager-fp16", "fp16", 1, 150.0, device="cuda")]
    assert speedup.speedups(cpu_fp32)[0]["speedup"] is None
    assert speedup.backend_family("onnxruntime-cpu-int8") == speedup.backend_family("onnxruntime-cpu") != \
        speedup.backend_family("onnxruntime-cuda")


def test_speedup_sentences_say_where_reduced_precision_is_slower():
    rows = [_rate_row("onnxruntime-cpu", "fp32", b, 100.0) for b in (1, 8, 64)]
    rows += [_rate_row("onnxruntime-cpu-int8", "int8", 1, 300.0), _rate_row("onnxruntime-cpu-int8", "int8", 8, 90.0),
             _rate_row("onnxruntime-cpu-int8", "int8", 64, 40.0)]
    (line,) = speedup.speedup_sentences(speedup.speedups(rows))
    assert "**slower than FP32 at batch 8, 64**" in line and "3.00x at batch 1" in line and "0.40x at batch 64" in line
    faster = speedup.speedup_sentences(speedup.speedups(rows[:3] + [_rate_row("onnxruntime-cpu-int8", "int8", b, 150.0)
                                                          for b in (1, 8, 64)]), failed={("onnxruntime-cpu-int8", 8)})
    assert "faster at every batch size" in faster[0] and "slower" not in faster[0]
    assert "1.50x at batch 8 (parity FAILED)" in faster[0]
    lonely = speedup.speedup_sentences(speedup.speedups([_rate_row("tensorrt-int8", "int8", 1, 10.0, device="cuda")]))
    assert lonely == ["tensorrt-int8 (INT8): no speed-up shown, no FP32 tensorrt row on cuda at batch 1."]


def test_report_shows_speedups_in_json_markdown_table_and_plot(tmp_path):
    from rich.console import Console

    from toolchain.bench.report import benchmark_table, write_benchmark_report

    result = harness.BenchmarkResult(environment={"cuda_available": False, "cpu": "Acme"}, config=dataclasses.asdict(TINY),
                                batch_sizes=[1, 64])
    for batch, fp32, int8 in ((1, 100.0, 250.0), (64, 400.0, 300.0)):
        for backend, precision, rate in (("onnxruntime-cpu", "fp32", fp32), ("onnxruntime-cpu-int8", "int8", int8)):
            row = _row(backend, batch, "host", device="cpu")
            result.measurements.append({**row, "precision": precision, "throughput_ips": rate})
    result.speedups = speedup.speedups(result.measurements)
    paths = write_benchmark_report(result, tmp_path / "r")
    data = json.loads(paths["json"].read_text())
    assert [(e["batch_size"], round(e["speedup"], 2)) for e in data["speedups"]] == [(1, 2.5), (64, 0.75)]
    markdown = paths["markdown"].read_text()
    assert "| vs FP32 |" in markdown and "| 2.50x |" in markdown and "| **0.75x** |" in markdown
    assert "## Reduced precision vs FP32" in markdown and "**slower than FP32 at batch 64**" in markdown
    console = Console(width=250, record=True)
    console.print(benchmark_table(result))
    text = console.export_text()
    assert "vs FP32" in text and "0.75x" in text
    assert paths["throughput"].read_bytes()[:4] == b"\x89PNG"
    # A report rebuilt from a JSON written before speed-ups existed still has them.
    del data["speedups"]
    from toolchain.bench.report import benchmark_markdown

    assert "| **0.75x** |" in benchmark_markdown(data)


def test_rows_refuse_a_file_they_are_not_named_for():
    from pathlib import Path

    from toolchain.artifacts import EngineArtifact, OnnxArtifact

    def onnx(**meta):
        return OnnxArtifact(Path("q.onnx"), meta)

    int8_row, fp32_row = registry.REGISTRY["onnxruntime-cpu-int8"], registry.REGISTRY["onnxruntime-cpu"]
    assert registry.file_problem(int8_row, onnx(precision="int8", quant_target="onnxruntime")) is None
    assert registry.file_problem(int8_row, onnx(precision="int8")) is None  # nothing says: time it
    assert registry.file_problem(int8_row, onnx(precision="int8", quant_target="tensorrt")) == (
        "--onnx-int8 q.onnx was quantized for tensorrt, not onnxruntime (toolchain quantize --target onnxruntime)")
    # The FP32 model as the INT8 row, and the INT8 file as the FP32 baseline: both refused.
    assert "onnxruntime-cpu-int8 runs INT8 files, but --onnx-int8 q.onnx computes in FP32" in \
        registry.file_problem(int8_row, onnx(dtype="fp32"))
    assert "goes to --onnx-int8" in registry.file_problem(fp32_row, onnx(precision="int8"))
    assert registry.file_problem(registry.GENERIC["onnxruntime"], onnx(precision="int8")) is None  # any file
    engine = EngineArtifact(Path("e.engine"), {"build": {"precision": "int8", "lrn": "plugin"},
                                               "model": {"quant_target": "onnxruntime"}})
    assert "--int8-engine e.engine was quantized for onnxruntime" in \
        registry.file_problem(registry.REGISTRY["tensorrt-int8"], engine)
    native = EngineArtifact(Path("n.engine"), {"build": {"precision": "fp16", "lrn": "plugin"}, "model": {}})
    assert "built with --lrn plugin" in registry.file_problem(registry.REGISTRY["tensorrt-native"], native)
    fp32_engine = EngineArtifact(Path("f.engine"), {"build": {"precision": "fp32", "lrn": "plugin"}, "model": {}})
    assert registry.file_problem(registry.REGISTRY["tensorrt-plugin"], fp32_engine) is None  # --allow-fp32 builds


