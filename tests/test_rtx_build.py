"""Real engines through our plugin, built by TensorRT-RTX's parser and builder on the CPU.

TensorRT-RTX builds ahead of time without a GPU, so these run in CI: the plugin library is
compiled with nvcc against TensorRT's headers (``tests/trtenv.py`` finds them), the models
are exported and quantized here, and every build goes through ``toolchain build`` in a
subprocess, as a user runs it (a parser abort would end that process, not the test run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import trtenv
from tests.helpers import assert_one_line_error, run_cli
from toolchain import lrn_op

pytestmark = [pytest.mark.needs_tensorrt_rtx, pytest.mark.needs_nvcc, pytest.mark.slow]

VARIANTS = {  # label -> (image size, classes): the digits-size model and paper AlexNet at 224
    "digits": (64, 10),
    "paper224": (224, 1000),
}
PRECISIONS = ("fp32", "fp16", "int8")
#: The plan is the weights plus the compiled kernels: at most this much beyond 5 % of the weights.
KERNEL_BYTES = 2_500_000


@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory) -> Path:
    """The dynamic-registration plugin, built from TensorRT 10 headers alone (what TensorRT-RTX loads)."""
    headers = trtenv.header_dirs().get(10)
    if headers is None:
        pytest.skip(trtenv.header_skip_reason(10))
    from toolchain.plugin import build_plugins

    result = build_plugins(tmp_path_factory.mktemp("plugin-build"), tensorrt_root=headers, cuda_archs="86-real")
    assert result["tensorrt_dynamic"] and result["tensorrt"] is None, result  # headers only: the dynamic one
    return Path(result["tensorrt_dynamic"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """{(variant, precision): ONNX path} with seeded random weights; INT8 is a calibrated Q/DQ of the FP32 one."""
    import numpy as np

    from toolchain.export import export_from_source
    from toolchain.quantize import quantize_model

    folder = tmp_path_factory.mktemp("rtx-models")
    out = {}
    for label, (size, classes) in VARIANTS.items():
        for dtype in ("fp32", "fp16"):
            out[label, dtype] = folder / f"{label}-{dtype}.onnx"
            export_from_source(out[label, dtype], variant="paper", image_size=size, num_classes=classes, dtype=dtype)
        images = np.random.default_rng(0).standard_normal((16, 3, size, size)).astype(np.float32)
        out[label, "int8"] = folder / f"{label}-int8.onnx"
        quantize_model(out[label, "fp32"], images, out[label, "int8"], target="tensorrt", calibration="random")
    return out


def weight_bytes(onnx_path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    return sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer)


def build(onnx_path: Path, engine: Path, plugin: Path | None, *args: str):
    result = run_cli("build", onnx_path, "-o", engine, *(("--plugin", plugin) if plugin else ()), "--tensorrt", "rtx",
                     *args)
    manifest = json.loads(Path(f"{engine}.manifest.json").read_text()) if result.code == 0 else None
    return result, manifest


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_exports_build_through_the_plugin(tmp_path, plugin_library, models, variant, precision):
    onnx_path = models[variant, precision]
    engine = tmp_path / f"{variant}-{precision}.engine"
    result, manifest = build(onnx_path, engine, plugin_library, "--min-batch", "1", "--max-batch", "256",
                             *(("--allow-fp32",) if precision == "fp32" else ()))
    assert result.code == 0, result.stderr
    assert manifest["environment"]["flavour"] == "tensorrt-rtx" and manifest["environment"]["tensorrt"].startswith("1.")
    assert manifest["build"]["precision"] == precision and manifest["build"]["strongly_typed"]
    layers = manifest["layers"]
    assert len(layers["network_plugin_layers"]) == 2 and layers["by_type"]["PLUGIN_V3"] == 2
    assert layers["network_lrn_layers"] == 0 and "LRN" not in layers["by_type"]
    io_types = {t for layer in layers["plugin_io"] for t in layer["inputs"] + layer["outputs"]}
    assert io_types == ({"HALF"} if precision == "fp16" else {"FLOAT"}), layers["plugin_io"]
    # The plan holds the weights at the export's precision (TensorRT's own count) plus compiled kernels.
    weights = weight_bytes(onnx_path)
    plan = manifest["engine"]["bytes"]
    assert engine.stat().st_size == plan
    assert abs(manifest["build"]["weights_bytes"] - weights) <= 0.01 * weights, (manifest["build"]["weights_bytes"], weights)
    assert weights <= plan <= 1.05 * weights + KERNEL_BYTES, (plan, weights)
    if variant == "paper224" or precision != "int8":
        assert plan <= 1.05 * weights, (plan, weights)  # the 5 %: kernels are small beside these weights
    assert manifest["onnx"]["sha256"] and manifest["plugin"]["sha256"] and manifest["engine"]["sha256"]
    assert manifest["plugin"]["registration"] == "dynamic" and not manifest["plugin"]["serialized_in_engine"]
    assert manifest["loaded"]["loaded"] is False and "no CUDA GPU" in manifest["loaded"]["reason"]
    assert manifest["build"]["targets"] == "portable"
    assert manifest["io"]["inputs"][0]["profile"]["min"][0] == 1 and manifest["io"]["inputs"][0]["profile"]["max"][0] == 256
    assert "not loaded here" in result.stdout and "2 FusedLRN layer(s)" in result.stdout


def test_the_real_builder_drives_the_plugin(tmp_path, plugin_library, models):
    """The plugin's trace: TensorRT-RTX called its build-time interface with the profile's shapes."""
    result, manifest = build(models["paper224", "fp16"], tmp_path / "p.engine", plugin_library,
                             "--min-batch", "2", "--max-batch", "64")
    assert result.code == 0, result.stderr
    calls = manifest["plugin"]["build_calls"]
    for method in ("supportsFormatCombination", "getOutputShapes", "configurePlugin"):
        assert calls["calls"].get(method, 0) >= 2, calls  # both nodes
    configured = calls["configure"]
    assert sorted(configured) == sorted(manifest["layers"]["network_plugin_layers"])
    channels = {96: 55, 256: 27}  # paper AlexNet at 224: LRN after conv1 (96x55x55) and conv2 (256x27x27)
    for node in configured.values():
        assert node["type"] == "HALF"
        c, hw = node["min"][1], node["min"][2]
        assert node["min"] == [2, c, hw, hw] and node["max"] == [64, c, hw, hw] and channels[c] == hw


def test_embed_plugin_grows_the_plan_by_the_library(tmp_path, plugin_library, models):
    onnx_path = models["digits", "fp16"]
    _, plain = build(onnx_path, tmp_path / "plain.engine", plugin_library)
    result, embedded = build(onnx_path, tmp_path / "embedded.engine", plugin_library, "--embed-plugin")
    assert result.code == 0, result.stderr
    grown = embedded["engine"]["bytes"] - plain["engine"]["bytes"]
    library = plugin_library.stat().st_size
    assert 0.9 * library <= grown <= 1.1 * library + 65536, (grown, library)
    assert embedded["plugin"]["serialized_in_engine"] and embedded["build"]["embed_plugin"]
    assert "serialized into the engine" in result.stdout


def test_function_and_native_builds_need_no_plugin(tmp_path, models):
    result, manifest = build(models["digits", "fp16"], tmp_path / "f.engine", None, "--lrn", "function")
    assert result.code == 0, result.stderr
    assert manifest["layers"]["network_plugin_layers"] == [] and manifest["plugin"] is None
    assert manifest["build"]["lrn"] == "function"


def test_targets_are_recorded_and_sm90_refused(tmp_path, plugin_library, models):
    result, manifest = build(models["digits", "fp16"], tmp_path / "t.engine", plugin_library,
                             "--compute-capability", "8.6", "--compute-capability", "sm_120")
    assert result.code == 0, result.stderr
    assert manifest["build"]["targets"] == ["SM86", "SM120"] and "SM86, SM120" in result.stdout
    refused = run_cli("build", models["digits", "fp16"], "-o", tmp_path / "h.engine", "--plugin", plugin_library,
                      "--compute-capability", "9.0")
    assert_one_line_error(refused, "has no target sm_90", "full TensorRT")
    assert not (tmp_path / "h.engine").exists()


def test_invalid_profile_is_one_line_naming_it(tmp_path, plugin_library, models):
    for args, fragment in ((("--min-batch", "8", "--max-batch", "4"), "--min-batch (8) is larger than --max-batch (4)"),
                           (("--opt-batch", "300", "--max-batch", "256"), "--opt-batch (300) is larger than --max-batch")):
        result = run_cli("build", models["digits", "fp16"], "-o", tmp_path / "x.engine", "--plugin", plugin_library,
                         *args)
        assert_one_line_error(result, fragment)
    assert sorted(tmp_path.iterdir()) == []


def test_refused_node_is_one_line_naming_it(tmp_path, plugin_library, models):
    import onnx

    model = onnx.load(str(models["digits", "fp16"]))
    node = [n for n in model.graph.node if n.op_type == lrn_op.OP_TYPE][1]
    next(a for a in node.attribute if a.name == "size").i = 0
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    result = run_cli("build", bad, "-o", tmp_path / "bad.engine", "--plugin", plugin_library)
    assert_one_line_error(result, f"refused node '{node.name}'", "size must be")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]  # nothing written
    check = run_cli("plugin", "check", "--library", plugin_library, "--onnx", bad, "--tensorrt", "rtx")
    assert check.code != 0 and node.name in check.stderr and len(check.stderr.strip().splitlines()) == 1


def test_flags_rtx_cannot_apply(tmp_path, plugin_library, models):
    result = run_cli("build", models["digits", "fp16"], "-o", tmp_path / "v.engine", "--plugin", plugin_library,
                     "--tensorrt", "rtx", "--version-compatible")
    assert_one_line_error(result, "cannot build version-compatible engines")
    result, manifest = build(models["digits", "fp16"], tmp_path / "c.engine", plugin_library,
                             "--timing-cache", tmp_path / "t.cache")
    assert result.code == 0 and "--timing-cache is a no-op" in result.stderr
    assert not (tmp_path / "t.cache").exists()
    result = run_cli("build", models["digits", "fp16"], "-o", tmp_path / "s.engine", "--tensorrt", "rtx",
                     "--plugin", tmp_path / "c.engine")  # not a plugin library at all
    assert_one_line_error(result, "refused")


def test_missing_unversioned_library_does_not_abort(tmp_path, plugin_library, models):
    """The wheel ships only libtensorrt_rtx.so.1; without the unversioned name the parser would abort."""
    import importlib.util

    libs = Path(list(importlib.util.find_spec("tensorrt_rtx_libs").submodule_search_locations)[0])
    link = libs / "libtensorrt_rtx.so"
    if not os.access(libs, os.W_OK):
        pytest.skip(f"{libs} is not writable here")
    link.unlink(missing_ok=True)
    result, manifest = build(models["digits", "fp16"], tmp_path / "a.engine", plugin_library)
    assert result.code == 0, result.stderr  # not -6 (SIGABRT)
    assert link.is_symlink() and link.exists()
    assert any("linked libtensorrt_rtx.so" in note for note in manifest["build"]["notes"])


def test_plugin_check_parses_and_builds_through_the_real_parser(plugin_library, models):
    result = run_cli("plugin", "check", "--library", plugin_library, "--onnx", models["digits", "int8"], "--json",
                     "--tensorrt", "rtx")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    parsed = next(c for name, c in checks.items() if "ONNX parser makes every FusedLRN node" in name)
    built = checks["builds a batch-1 engine through the library"]
    assert parsed["passed"] and "2 plugin layer(s)" in parsed["detail"] and built["passed"] and "int8" in built["detail"]
