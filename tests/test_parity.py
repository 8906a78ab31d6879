"""Comparators and tolerances: every check runs, a perturbed output fails the named check."""

import json

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run_cli
from toolchain.errors import ToolchainError
from toolchain.parity import (
    DEFAULT_TOLERANCES,
    ParityError,
    Tolerances,
    compare_outputs,
    load_tolerances,
    run_parity,
)
from toolchain.runners.base import Runner, iter_batches

FP32 = DEFAULT_TOLERANCES["fp32"]


def _logits(n=50, k=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)).astype(np.float32) * 5
    labels = logits.argmax(1).copy()
    labels[: n // 5] = (labels[: n // 5] + 1) % k  # 80 % reference accuracy
    return logits, labels


def _failed(comparison):
    return {check.name for check in comparison.failed}


def test_identical_outputs_pass_every_check():
    ref, labels = _logits()
    comparison = compare_outputs(ref, ref.copy(), FP32, labels=labels)
    assert comparison.passed
    assert [c.name for c in comparison.checks] == ["finite", "allclose", "cosine", "top1_agreement",
                                                     "accuracy_drop"]
    m = comparison.metrics
    assert m["max_abs_error"] == 0 and m["cosine_min"] == pytest.approx(1.0) and m["top1_agreement"] == 1.0
    assert m["reference_top1"] == pytest.approx(0.8) and m["accuracy_drop"] == 0
    assert set(m["abs_error_quantiles"]) == {"p50", "p90", "p99"}


def test_small_perturbation_fails_only_allclose():
    ref, labels = _logits()
    cand = ref.copy()
    cand[3, 4] += 5e-4  # beyond atol=1e-4, far too small for anything else
    comparison = compare_outputs(ref, cand, FP32, labels=labels)
    assert _failed(comparison) == {"allclose"}
    assert comparison.metrics["max_abs_error"] == pytest.approx(5e-4, rel=1e-3)
    allclose = next(c for c in comparison.checks if c.name == "allclose")
    assert allclose.value == 1 and "1 of 500 elements" in allclose.detail


def test_rtol_widens_allclose():
    ref, _ = _logits()
    cand = ref * (1 + 1e-4)
    assert "allclose" in _failed(compare_outputs(ref, cand, FP32))
    assert compare_outputs(ref, cand, FP32.replace(rtol=2e-4)).passed


def test_flipped_predictions_fail_agreement_and_accuracy_and_all_checks_reported():
    ref, labels = _logits()
    cand = ref.copy()
    flip = np.flatnonzero(ref.argmax(1) == labels)[:3]  # three correct predictions become wrong
    cand[flip, labels[flip]] -= 100
    comparison = compare_outputs(ref, cand, FP32, labels=labels)
    assert _failed(comparison) == {"allclose", "cosine", "top1_agreement", "accuracy_drop"}
    assert len(comparison.checks) == 5  # finite still ran (and passed)
    assert comparison.metrics["top1_agreement"] == pytest.approx(47 / 50)
    assert comparison.metrics["accuracy_drop"] == pytest.approx(3 / 50)


def test_nan_and_inf_fail_finite():
    ref, labels = _logits()
    cand = ref.copy()
    cand[0, 0] = np.nan
    cand[1, 1] = np.inf
    comparison = compare_outputs(ref, cand, FP32, labels=labels)
    assert "finite" in _failed(comparison) and "allclose" in _failed(comparison)
    assert comparison.metrics["candidate_nan"] == 1 and comparison.metrics["candidate_inf"] == 1
    assert np.isfinite(comparison.metrics["max_abs_error"])  # computed over the finite elements


def test_shape_mismatch_is_a_failed_check():
    comparison = compare_outputs(np.zeros((2, 3)), np.zeros((2, 4)), FP32)
    assert _failed(comparison) == {"shape"}


class _ArrayRunner(Runner):
    """A runner over a numpy function (the comparators' harness, not a backend)."""

    def __init__(self, name, fn, static=None):
        super().__init__()
        self.name, self.fn, self.static, self.calls = name, fn, static, []

    @property
    def static_batch(self):
        return self.static

    def _infer(self, feed):
        self.calls.append(len(feed["input"]))
        return {"logits": self.fn(feed["input"])}


def _linear(x):
    return x.reshape(len(x), -1)[:, :10] * 3


def test_run_parity_at_each_batch_size_and_error_names_every_failure():
    inputs = np.random.default_rng(0).standard_normal((7, 1, 4, 4)).astype(np.float32)
    ref = _ArrayRunner("ref", _linear)
    good = _ArrayRunner("good", _linear)
    with ref, good:
        report = run_parity(ref, good, inputs, batch_sizes=(1, 3))
    assert report.passed and [c.batch_size for c in report.comparisons] == [1, 3]
    assert good.calls == [1] * 7 + [3, 3, 1]
    assert ref.calls == [3, 3, 1]  # the reference runs once, at the largest batch size
    report.raise_if_failed()

    def off_by_one_row(x):
        y = _linear(x)
        return y + (np.arange(len(y))[:, None] == 0) * 1e-3  # the first row of every batch is off

    bad = _ArrayRunner("bad", off_by_one_row)
    with ref, bad:
        report = run_parity(ref, bad, inputs, batch_sizes=(1, 3))
    assert not report.passed
    with pytest.raises(ParityError) as info:
        report.raise_if_failed()
    message = info.value.one_line()
    assert "logits@batch1: allclose" in message and "logits@batch3: allclose" in message
    data = report.to_dict()
    assert data["passed"] is False and len(data["failures"]) == 2
    json.dumps(data)  # the report is JSON-able


def test_static_batch_pads_the_last_batch():
    inputs = np.ones((5, 2), dtype=np.float32)
    chunks = list(iter_batches(inputs, 2, static_batch=2))
    assert [(len(c), valid) for c, _, valid in chunks] == [(2, 2), (2, 2), (2, 1)]
    assert (chunks[-1][0][1] == 0).all()
    ref, cand = _ArrayRunner("ref", lambda x: x * 2), _ArrayRunner("cand", lambda x: x * 2, static=2)
    with ref, cand:
        assert run_parity(ref, cand, inputs, batch_sizes=(2,)).passed
        with pytest.raises(ToolchainError, match="takes only batch 2"):
            run_parity(ref, cand, inputs, batch_sizes=(1,))


def test_tolerances_file_and_overrides(tmp_path):
    path = tmp_path / "tol.json"
    path.write_text(json.dumps({"atol": 0.5, "outputs": {"logits": {"rtol": 0.25}}}))
    tol = load_tolerances("fp32", file=path, min_cosine=0.9)["logits"]
    assert (tol.atol, tol.rtol, tol.min_cosine) == (0.5, 0.25, 0.9)
    assert tol.min_top1_agreement == FP32.min_top1_agreement
    assert load_tolerances("fp16")["logits"] == DEFAULT_TOLERANCES["fp16"]
    path.write_text(json.dumps({"atoll": 1}))
    with pytest.raises(ToolchainError, match="unknown tolerance field"):
        load_tolerances("fp32", file=path)
    with pytest.raises(ToolchainError, match="non-negative"):
        load_tolerances("fp32", atol=-1.0)
    with pytest.raises(ToolchainError, match="unknown precision"):
        load_tolerances("fp8")
    assert isinstance(FP32, Tolerances)


def test_cli_parity_onnxruntime_pass_and_fail(tmp_path):
    onnx_path = tmp_path / "paper.onnx"
    assert run_cli("export", "--variant", "paper", "--image-size", "64", "--num-classes", "10",
                   "-o", onnx_path).code == 0
    report = tmp_path / "report.json"
    ok = run_cli("parity", "--onnx", onnx_path, "--random", "6", "--batch-sizes", "1,4", "--report", report)
    assert ok.code == 0, ok.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and [c["batch_size"] for c in data["comparisons"]] == [1, 4]
    assert data["comparisons"][0]["metrics"]["max_abs_error"] < 1e-4
    # An impossible cosine bound fails that check, by name, with the parity exit code.
    bad = run_cli("parity", "--onnx", onnx_path, "--random", "3", "--batch-sizes", "2", "--min-cosine", "2")
    assert bad.code == 4
    assert_one_line_error(bad, "logits@batch2: cosine")
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--variant", "d2l", "--random", "2"),
                          "holds variant 'paper'")
    assert_one_line_error(run_cli("parity", "--onnx", tmp_path / "nope.onnx", "--random", "2"), "does not exist")


def test_cli_accuracy_parity_on_a_trained_checkpoint(tmp_path):
    """Checkpoint -> ONNX -> parity on its own validation split: labels, accuracy checks, sha256 pairing."""
    import torch

    from toolchain.checkpoint import load_checkpoint, save_checkpoint
    from toolchain.evaluate import evaluate_checkpoint
    from toolchain.train import TrainConfig, run_training

    trained = run_training(TrainConfig(variant="paper", dataset="synthetic", epochs=1, out_dir=str(tmp_path / "run"),
                                       progress=False, device="cpu"))
    onnx_path = tmp_path / "model.onnx"
    exported = run_cli("export", "--checkpoint", trained.checkpoint, "-o", onnx_path)
    assert exported.code == 0, exported.stderr
    report = tmp_path / "report.json"
    ok = run_cli("parity", "--onnx", onnx_path, "--checkpoint", trained.checkpoint, "--batch-sizes", "1,16",
                 "--report", report)
    assert ok.code == 0, ok.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["inputs"]["labels"] and "synthetic validation split" in data["inputs"]["source"]
    for comparison in data["comparisons"]:
        checks = {c["name"]: c["passed"] for c in comparison["checks"]}
        assert checks == {"finite": True, "allclose": True, "cosine": True, "top1_agreement": True,
                          "accuracy_drop": True}
        metrics = comparison["metrics"]
        # The reference's top-1 is the checkpoint's own validation top-1 (same split, same preprocessing).
        assert metrics["reference_top1"] == pytest.approx(evaluate_checkpoint(trained.checkpoint, device="cpu")["top1"])
        assert metrics["candidate_top1"] == metrics["reference_top1"] and metrics["top1_agreement"] == 1.0
    # The file remembers its checkpoint: a variant, or another checkpoint, is refused as the reference.
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--random", "2"), "exported from a checkpoint",
                          "--checkpoint")
    ckpt = load_checkpoint(trained.checkpoint)
    with torch.no_grad():
        next(ckpt.model.parameters()).add_(1e-3)
    other = save_checkpoint(tmp_path / "other.safetensors", ckpt.model, ckpt.meta)
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--checkpoint", other, "--random", "2"),
                          "exported from another checkpoint")
    # The benchmark: every timed row carries its verdict on the checkpoint's validation split; an ONNX file
    # exported from other weights is refused in one line before anything is timed.
    timing = ("--batch-sizes", "4", "--backends", "eager-fp32,onnxruntime-cpu", "--device", "cpu", "--warmup", "0",
              "--warmup-seconds", "0", "--window", "5", "--max-seconds", "0.1", "--parity-samples", "8")
    bench = run_cli("benchmark", "--checkpoint", trained.checkpoint, "--onnx", onnx_path, *timing,
                    "--out", tmp_path / "bench")
    assert bench.code == 0, bench.stderr
    rows = json.loads((tmp_path / "bench" / "benchmark.json").read_text())["measurements"]
    assert {r["backend"] for r in rows} == {"eager-fp32", "onnxruntime-cpu"}
    assert all(r["parity"]["passed"] and r["parity"]["real_data"] and "reference_top1" in r["parity"]["metrics"]
               for r in rows)
    assert_one_line_error(run_cli("benchmark", "--checkpoint", other, "--onnx", onnx_path, *timing,
                                  "--out", tmp_path / "bench2"), "was exported from checkpoint", "--allow-mismatch")
    # --backend tensorrt without an engine is a usage error, not a crash.
    assert_one_line_error(run_cli("parity", "--backend", "tensorrt", "--checkpoint", trained.checkpoint),
                          "--engine")


def test_fp16_atol_scales_with_the_logits_range_and_top1_counts_only_on_real_data():
    small = np.array([[0.1, -0.15], [0.05, 0.0]])  # range 0.25: FP16 allows 5e-3 * 0.25 beyond rtol
    fp16 = DEFAULT_TOLERANCES["fp16"].replace(rtol=0.0)
    assert fp16.atol == 0 and fp16.range_atol == 5e-3
    assert compare_outputs(small, small + 1.2e-3, fp16).passed
    assert "allclose" in _failed(compare_outputs(small, small + 1.3e-3, fp16))
    big = small * 1000  # the same relative error passes at any scale
    assert compare_outputs(big, big + 1.2, fp16).passed
    assert "allclose" in _failed(compare_outputs(big, big + 1.2, FP32))  # FP32 stays absolute
    ref, labels = _logits()
    flipped = ref.copy()
    top = ref[0].argmax()
    flipped[0, top] = np.sort(ref[0])[-2] - 1e-3  # the runner-up wins by a hair
    loose = FP32.replace(atol=1e3, min_cosine=0)
    assert compare_outputs(ref, flipped, loose).passed  # seeded inputs: agreement measured, not checked
    assert compare_outputs(ref, flipped, loose).metrics["top1_agreement"] == pytest.approx(49 / 50)
    assert "top1_agreement" in _failed(compare_outputs(ref, flipped, loose, labels=labels))


@pytest.fixture(scope="module")
def layer_onnx(tmp_path_factory):
    import onnx
    from onnx import numpy_helper

    from toolchain.export import NODE_MODULE_KEY, export_from_source

    folder = tmp_path_factory.mktemp("layerwise")
    clean = export_from_source(folder / "clean.onnx", variant="paper", image_size=64, num_classes=10).path
    model = onnx.load(str(clean))
    conv = next(n for n in model.graph.node if n.op_type == "Conv"
                and any(p.key == NODE_MODULE_KEY and p.value == "features.4" for p in n.metadata_props))
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
    array = numpy_helper.to_array(weight).copy()
    array[0] += 0.5  # one corrupted output channel of one convolution
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(folder / "corrupt.onnx"))
    return clean, folder / "corrupt.onnx"


def test_layerwise_clean_export_has_no_divergent_layer(tmp_path, layer_onnx):
    clean, _ = layer_onnx
    report = tmp_path / "clean.json"
    result = run_cli("parity", "--onnx", clean, "--layerwise", "--random", "2", "--report", report)
    assert result.code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["first_divergent"] is None and data["passed"]
    modules = [layer["module"] for layer in data["layers"]]
    assert modules[:3] == ["features.0", "features.1", "features.2"] and modules[-1] == "classifier.7"
    assert all(layer["error_over_range"] < 1e-4 and layer["cosine_min"] > 0.99999 for layer in data["layers"])
    assert data["tolerances"]["atol"] == 1e-4  # plain parity's FP32 tolerances
    assert "no divergent layer" in result.stdout


def test_layerwise_names_the_corrupted_convolution_and_exits_non_zero(tmp_path, layer_onnx):
    _, corrupt = layer_onnx
    report = tmp_path / "corrupt.json"
    result = run_cli("parity", "--onnx", corrupt, "--layerwise", "--random", "2", "--report", report)
    assert_one_line_error(result, "first divergent layer: features.4")
    assert result.code == 4
    data = json.loads(report.read_text())
    assert data["first_divergent"] == "features.4"
    passed = {layer["module"]: layer["passed"] for layer in data["layers"]}
    assert all(passed[m] for m in ("features.0", "features.1", "features.2", "features.3"))
    assert_one_line_error(run_cli("parity", "--backend", "tensorrt", "--engine", corrupt, "--layerwise"),
                          "--layerwise covers the ONNX Runtime backends, not tensorrt")


def test_parity_reaches_the_benchmark_runners(tmp_path, layer_onnx):
    clean, _ = layer_onnx
    ok = run_cli("parity", "--backend", "onnxruntime-cpu", "--onnx", clean, "--random", "3", "--batch-sizes", "1,3")
    assert ok.code == 0, ok.stderr
    assert "onnxruntime-cpu" in ok.stdout and "PASS" in ok.stdout
    eager = run_cli("parity", "--backend", "eager-fp32", "--onnx", clean, "--random", "2", "--batch-sizes", "2")
    assert eager.code == 0, eager.stderr
    from toolchain.environment import cuda_unavailable

    if cuda_unavailable():
        assert_one_line_error(run_cli("parity", "--backend", "eager-fp16-cuda-graph", "--onnx", clean, "--random",
                                      "2"), "eager-fp16-cuda-graph cannot run here")
