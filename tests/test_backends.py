"""The backend registry: every benchmark backend is reachable from `toolchain parity` with the same file
flags, and the decisions it owns (which file, which precision) are made once, the same for every consumer."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_one_line_error, fake_build_outputs, run_cli, run_main
from toolchain.backends import BACKEND_NAMES, GENERIC, REGISTRY, Context, Files, select

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Paper AlexNet at 64 px (seeded random weights): its FP32 export, the ONNX Runtime INT8 file
    calibrated from it, and placeholder engines with manifests (plugin FP16, native FP16, INT8, FP32)."""
    import numpy as np

    from toolchain.export import export_from_source
    from toolchain.quantize import quantize_model

    folder = tmp_path_factory.mktemp("backends")
    fp32 = export_from_source(folder / "fp32.onnx", variant="paper", image_size=64, num_classes=3).path
    images = np.random.default_rng(0).standard_normal((16, 3, 64, 64)).astype(np.float32)
    int8 = quantize_model(fp32, images, folder / "int8.onnx", target="onnxruntime", calibration="random").path
    engine, plugin = fake_build_outputs(folder / "plugin")
    native, _ = fake_build_outputs(folder / "native", plugin=False)
    int8_engine, _ = fake_build_outputs(folder / "int8", precision="int8", quant_target="tensorrt")
    fp32_engine, _ = fake_build_outputs(folder / "fp32", precision="fp32")
    return {"onnx": fp32, "onnx_int8": int8, "engine": engine, "native_engine": native, "int8_engine": int8_engine,
            "fp32_engine": fp32_engine, "plugin": plugin}


FLAGS = {"onnx": "--onnx", "onnx_int8": "--onnx-int8", "engine": "--engine", "native_engine": "--native-engine",
         "int8_engine": "--int8-engine"}


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_benchmark_backend_runs_in_parity_with_its_benchmark_flag(files, name):
    """`toolchain benchmark --help`'s names, each in `toolchain parity --backend NAME` with the flag the
    benchmark gives its file: a verdict, or one line saying why it cannot run here."""
    backend = REGISTRY[name]
    reads = backend.reads or "onnx"  # an eager backend: the export describes the model
    sizes = "4" if name == "compile" else "1,4"  # torch.compile compiles per shape: ~25 s each on 2 CPU cores
    # In this process (the CLI's own entry point): 13 interpreter starts would cost a minute of CI.
    result = run_main("parity", "--backend", name, FLAGS[reads], files[reads], "--random", "4", "--batch-sizes", sizes)
    if backend.unavailable(Context(model_factory=lambda: None, files=Files(**{reads: files[reads]}), include_compile=True)):
        assert_one_line_error(result, f"{name} cannot run here")
    else:
        assert result.code == 0, result.stderr
        assert "PASS" in result.stdout


def test_compile_entry_is_the_one_parity_would_run():
    (candidate,) = select(["compile"], Context(model_factory=lambda: None, device="cpu", include_compile=True))
    assert candidate.name == "compile-fp32" and candidate.precision == "fp32" and candidate.unavailable is None


def test_generic_and_named_onnxruntime_build_the_same_runner(files):
    generic, = select(["onnxruntime"], Context(files=Files(onnx=files["onnx"])))
    named, = select(["onnxruntime-cpu"], Context(files=Files(onnx=files["onnx"])))
    a, b = generic.make(), named.make()
    assert type(a) is type(b) and (a.path, a.providers, a.threads) == (b.path, b.providers, b.threads)
    assert generic.precision == named.precision == "fp32"
    assert GENERIC["onnxruntime"].family == REGISTRY["onnxruntime-cpu"].family


def test_precision_of_an_engine_is_its_manifests_everywhere(files):
    """An engine built with --allow-fp32 is held to FP32 tolerances by parity and by the benchmark alike."""
    for name in ("tensorrt", "tensorrt-plugin", "tensorrt-plugin-graph"):
        (candidate,) = select([name], Context(files=Files(engine=files["fp32_engine"])))
        assert candidate.precision == "fp32", name
    (candidate,) = select(["tensorrt-int8"], Context(files=Files(int8_engine=files["int8_engine"])))
    assert candidate.precision == "int8"


def test_a_precision_that_contradicts_the_file_is_refused_or_recorded(files, tmp_path):
    assert_one_line_error(run_main("parity", "--backend", "onnxruntime", "--onnx", files["onnx_int8"], "--precision",
                                  "fp16", "--random", "4", "--batch-sizes", "4"),
                          "--precision fp16 contradicts ONNX file", "computes in int8", "--allow-precision-mismatch")
    assert_one_line_error(run_main("parity", "--onnx", files["onnx"], "--precision", "int8", "--random", "4",
                                  "--batch-sizes", "4"), "--precision int8 contradicts", "computes in fp32")
    report = tmp_path / "r.json"
    allowed = run_main("parity", "--onnx", files["onnx"], "--precision", "int8", "--allow-precision-mismatch",
                      "--random", "4", "--batch-sizes", "4", "--report", report)
    assert allowed.code == 0, allowed.stderr
    data = json.loads(report.read_text())
    assert data["precision"] == "int8" and "--allow-precision-mismatch" in data["notes"][0]


def test_benchmark_refuses_the_fp32_model_as_the_int8_row(files, tmp_path):
    result = run_cli("benchmark", "--onnx-int8", files["onnx"], "--variant", "paper", "--image-size", "64",
                     "--num-classes", "3", "--backends", "onnxruntime-cpu-int8", "--out", tmp_path / "b")
    assert_one_line_error(result, "onnxruntime-cpu-int8 runs INT8 files", "computes in FP32")
    assert not (tmp_path / "b").exists()


def test_layerwise_on_the_int8_file_has_no_false_divergence(files, tmp_path):
    """The same precision and tolerances as plain parity: a file that passes does not diverge layer-wise."""
    plain = run_cli("parity", "--backend", "onnxruntime-cpu-int8", "--onnx-int8", files["onnx_int8"], "--random", "4",
                    "--batch-sizes", "4")
    assert plain.code == 0, plain.stderr
    report = tmp_path / "layers.json"
    layered = run_cli("parity", "--backend", "onnxruntime-cpu-int8", "--onnx-int8", files["onnx_int8"], "--layerwise",
                      "--random", "4", "--report", report)
    assert layered.code == 0, layered.stderr
    data = json.loads(report.read_text())
    assert data["precision"] == "int8" and data["first_divergent"] is None and len(data["layers"]) > 10
    assert data["tolerances"]["range_atol"] == 0.05  # plain parity's INT8 tolerances
