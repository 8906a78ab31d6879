"""INT8 quantization: the Q/DQ file's contract, calibration data, INT8 parity, bad input, build decisions.

One small trained checkpoint (synthetic data, 1 epoch, 64 px) and its FP32 export
and INT8 file are shared by the module. The digits acceptance run (train 12 epochs
-> quantize -> parity within 1 point) is the README's INT8 example; it takes minutes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, run_cli
from toolchain import lrn_op
from toolchain.errors import ToolchainError
from toolchain.trt import compat

SAMPLES = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from toolchain.export import export_model
    from toolchain.checkpoint import load_checkpoint
    from toolchain.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp("int8")
    result = run_training(TrainConfig(variant="paper", dataset="synthetic", epochs=1, out_dir=str(root / "run"),
                                      progress=False, device="cpu"))
    ckpt = load_checkpoint(result.checkpoint)
    fp32 = export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=root / "model.onnx").path
    return {"root": root, "checkpoint": result.checkpoint, "ckpt": ckpt, "fp32": fp32}


@pytest.fixture(scope="module")
def quantized(trained):
    from toolchain.quantize import quantize_checkpoint

    out = trained["root"] / "model.int8.onnx"
    result = quantize_checkpoint(trained["checkpoint"], out, onnx_path=trained["fp32"], samples=SAMPLES)
    return {**trained, "int8": out, "result": result}


@pytest.fixture(scope="module")
def quantized_ort(quantized):
    """The same checkpoint quantized for ONNX Runtime (--target onnxruntime)."""
    from toolchain.quantize import quantize_checkpoint

    out = quantized["root"] / "model.int8-ort.onnx"
    result = quantize_checkpoint(quantized["checkpoint"], out, onnx_path=quantized["fp32"], samples=SAMPLES,
                                 target="onnxruntime")
    return {**quantized, "int8_ort": out, "result_ort": result}


def _inits(model):
    from onnx import numpy_helper

    return {init.name: init for init in model.graph.initializer}, \
        {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


@pytest.mark.slow
def test_quantized_file_meets_the_int8_contract(quantized):
    import onnx
    import onnxruntime
    from onnx import TensorProto

    model = onnx.load(str(quantized["int8"]))
    source = onnx.load(str(quantized["fp32"]))
    onnx.checker.check_model(model, full_check=True)
    protos, arrays = _inits(model)
    producer = {out: node for node in model.graph.node for out in node.output}

    # Every Conv and Gemm of the source is still there, fed by DequantizeLinear on data and weights.
    weighted = [n.name for n in source.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(weighted) == 8
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        weighted.remove(node.name)
        data_dq, weight_dq = (producer[name] for name in node.input[:2])
        assert data_dq.op_type == weight_dq.op_type == "DequantizeLinear", node.name
        weight = protos[weight_dq.input[0]]
        assert weight.data_type == TensorProto.INT8
        # per output channel: one scale per row of the weight (axis 0 for Conv and Gemm with transB=1)
        assert arrays[weight_dq.input[1]].shape == (weight.dims[0],) and weight.dims[0] > 1
        assert next(a.i for a in weight_dq.attribute if a.name == "axis") == 0
        # the activation feeding the data DQ comes from a QuantizeLinear with a per-tensor scale
        assert producer[data_dq.input[0]].op_type == "QuantizeLinear" and arrays[data_dq.input[1]].shape == ()
    assert weighted == []
    # Symmetric INT8 everywhere: every Q/DQ has an INT8 zero point of 0.
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) >= 16
    for node in qdq:
        assert protos[node.input[2]].data_type == TensorProto.INT8 and not arrays[node.input[2]].any(), node.name
    # Biases stay float (TensorRT's parser refuses INT32 bias DQ); the logits are not quantized.
    assert not any(p.data_type == TensorProto.INT32 for p in protos.values())
    assert producer["logits"].op_type == "Gemm"

    # Both FusedLRN nodes kept, with the source's attributes, and the local function too.
    def lrn_nodes(m):
        return {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                for n in m.graph.node if n.op_type == lrn_op.OP_TYPE and n.domain == lrn_op.DOMAIN}

    assert len(lrn_nodes(model)) == 2 and lrn_nodes(model) == lrn_nodes(source)
    assert [(f.domain, f.name) for f in model.functions] == [(lrn_op.DOMAIN, lrn_op.OP_TYPE)]

    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["toolchain.checkpoint_sha256"] == quantized["ckpt"].sha256
    assert meta["toolchain.precision"] == "int8" and meta["toolchain.quant_method"] == "minmax"
    assert meta["toolchain.quant_samples"] == str(SAMPLES) and meta["toolchain.quant_target"] == "tensorrt"
    assert meta["toolchain.quant_library"] == "onnxruntime.quantization.quantize_static"
    assert meta["toolchain.quant_library_version"] == f"onnxruntime {onnxruntime.__version__}"
    assert meta["toolchain.quant_calibration"].startswith("synthetic training split")
    assert quantized["result"].summary.ok


@pytest.mark.slow
def test_quantized_file_runs_in_onnx_runtime_and_passes_int8_parity(quantized):
    from toolchain.inputs import dataset_inputs
    from toolchain.parity import load_tolerances, run_parity
    from toolchain.runners.onnxruntime import OnnxRuntimeRunner
    from toolchain.runners.torch import TorchRunner

    ckpt = quantized["ckpt"]
    images, labels = dataset_inputs("synthetic", ckpt.meta)
    tolerances = load_tolerances("int8")
    with TorchRunner(ckpt.model) as reference, OnnxRuntimeRunner(quantized["int8"]) as candidate, \
            OnnxRuntimeRunner(quantized["fp32"]) as fp32_candidate:
        report = run_parity(reference, candidate, images, batch_sizes=[1, 32], labels=labels,
                            tolerances=tolerances, precision="int8")
        fp32 = run_parity(reference, fp32_candidate, images, batch_sizes=[32], labels=labels, precision="fp32")
    assert report.passed, report.failures()
    for comparison in report.comparisons:
        m = comparison.metrics
        assert m["top1_agreement"] >= 0.99 and m["reference_top1"] - m["candidate_top1"] <= 0.01
        assert m["max_abs_error"] <= 0.05 * m["reference_range"]
        assert m["max_abs_error"] > 1e-4  # really quantized: FP32 ONNX Runtime is within 1e-4
    assert fp32.passed and fp32.comparisons[0].metrics["max_abs_error"] < 1e-4


@pytest.mark.slow
def test_a_coarser_quantization_fails_int8_parity(quantized, tmp_path):
    """The INT8 checks bite: the same file with every activation step 64x coarser fails them."""
    import onnx
    from onnx import numpy_helper

    from toolchain.inputs import dataset_inputs
    from toolchain.parity import load_tolerances, run_parity
    from toolchain.runners.onnxruntime import OnnxRuntimeRunner
    from toolchain.runners.torch import TorchRunner

    model = onnx.load(str(quantized["int8"]))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name.endswith("_scale") and array.ndim == 0 and not init.name.startswith("input"):
            init.CopyFrom(numpy_helper.from_array(array * 64, init.name))
    coarse = tmp_path / "coarse.onnx"
    onnx.save(model, str(coarse))
    ckpt = quantized["ckpt"]
    images, labels = dataset_inputs("synthetic", ckpt.meta, limit=64)
    with TorchRunner(ckpt.model) as reference, OnnxRuntimeRunner(coarse) as candidate:
        report = run_parity(reference, candidate, images, batch_sizes=[32], labels=labels,
                            tolerances=load_tolerances("int8"), precision="int8")
    assert not report.passed
    assert {c.name for c in report.comparisons[0].failed} >= {"allclose"}


@pytest.mark.slow
def test_onnxruntime_target_quantizes_outputs_and_biases_and_is_refused_by_the_builder(quantized_ort):
    """--target onnxruntime: the placement ONNX Runtime's CPU kernels fuse (QLinearConv); TensorRT cannot parse it."""
    import onnx

    from toolchain.inputs import dataset_inputs
    from toolchain.parity import load_tolerances, run_parity
    from toolchain.runners.onnxruntime import OnnxRuntimeRunner
    from toolchain.runners.torch import TorchRunner
    from toolchain.trt.onnx_graph import inspect_onnx
    from toolchain.trt.plan import plan_build
    from toolchain.trt.compat import BuildOptions

    quantized = quantized_ort
    out, result = quantized["int8_ort"], quantized["result_ort"]
    assert result.summary.ok and len(result.summary.quantized_ops) == 8 and len(result.summary.fused_lrn) == 2
    assert result.summary.int32_bias_dq == 8 and result.metadata["toolchain.quant_target"] == "onnxruntime"
    model = onnx.load(str(out))
    consumers = {name: node for node in model.graph.node for name in node.input}
    for node in model.graph.node:
        if node.op_type == "Conv":  # quantized outputs, as QLinearConv needs
            assert consumers[node.output[0]].op_type == "QuantizeLinear", node.name
    ckpt = quantized["ckpt"]
    images, labels = dataset_inputs("synthetic", ckpt.meta)
    with TorchRunner(ckpt.model) as reference, OnnxRuntimeRunner(out) as candidate:
        report = run_parity(reference, candidate, images, batch_sizes=[32], labels=labels,
                            tolerances=load_tolerances("int8"), precision="int8")
    assert report.passed, report.failures()
    with pytest.raises(ToolchainError, match="--target tensorrt"):
        plan_build(inspect_onnx(out), BuildOptions(), "10.16.0")


def test_quantize_options_per_target():
    from toolchain.quantize import quantize_options

    trt = quantize_options("tensorrt")
    assert trt["ActivationSymmetric"] and trt["WeightSymmetric"] and trt["QuantizeBias"] is False
    assert trt["OpTypesToExcludeOutputQuantization"] == ["Conv", "Gemm"]
    ort = quantize_options("onnxruntime")
    assert ort == {"ActivationSymmetric": True, "WeightSymmetric": True}  # quantize_static's own placement
    with pytest.raises(ToolchainError, match="unknown quantization target"):
        quantize_options("tpu")


def test_cli_outputs_pair_with_targets_in_order():
    from toolchain.quantize import pair_outputs

    assert pair_outputs(["a.onnx"], []) == {"tensorrt": "a.onnx"}
    assert pair_outputs(["a.onnx", "b.onnx"], ["onnxruntime", "tensorrt"]) == {"onnxruntime": "a.onnx",
                                                                               "tensorrt": "b.onnx"}
    with pytest.raises(ToolchainError, match="2 output file"):
        pair_outputs(["a.onnx", "b.onnx"], [])
    with pytest.raises(ToolchainError, match="given twice"):
        pair_outputs(["a.onnx", "b.onnx"], ["tensorrt", "tensorrt"])
    with pytest.raises(ToolchainError, match="no output file"):
        pair_outputs([], ["tensorrt"])


def test_onnxruntime_target_names_the_optimizers_its_runner_leaves_out():
    from toolchain.quantize import ORT_DISABLED_OPTIMIZERS, runtime_metadata
    from toolchain.runners.onnxruntime import disabled_optimizers

    assert runtime_metadata("tensorrt") == {}
    meta = runtime_metadata("onnxruntime")
    assert disabled_optimizers(meta, "cpu") == list(ORT_DISABLED_OPTIMIZERS)
    assert "NchwcTransformer" in ORT_DISABLED_OPTIMIZERS and "QDQPropagationTransformer" in ORT_DISABLED_OPTIMIZERS
    assert disabled_optimizers(meta, "cuda") == []  # measured for the CPU provider only
    assert disabled_optimizers({}, "cpu") == [] and disabled_optimizers({"ort_disabled_optimizers": " A, ,B"},
                                                                        "cpu") == ["A", "B"]


@pytest.mark.slow
def test_both_targets_come_from_one_calibration(quantized, tmp_path):
    """One calibration, two placements: the same activation ranges, each file for its own runtime."""
    import onnx

    from toolchain.quantize import quantize_checkpoint_targets
    from toolchain.runners.onnxruntime import OnnxRuntimeRunner

    outputs = {"tensorrt": tmp_path / "trt.onnx", "onnxruntime": tmp_path / "ort.onnx"}
    results = quantize_checkpoint_targets(quantized["checkpoint"], outputs, onnx_path=quantized["fp32"],
                                          samples=SAMPLES)
    meta = {t: {p.key: p.value for p in onnx.load(str(path)).metadata_props} for t, path in outputs.items()}
    assert meta["tensorrt"]["toolchain.quant_target"] == "tensorrt"
    assert meta["onnxruntime"]["toolchain.quant_target"] == "onnxruntime"
    assert meta["tensorrt"]["toolchain.quant_ranges_sha256"] == meta["onnxruntime"]["toolchain.quant_ranges_sha256"]
    assert "toolchain.ort_disabled_optimizers" not in meta["tensorrt"]
    assert meta["onnxruntime"]["toolchain.ort_disabled_optimizers"]
    assert results["tensorrt"].summary.int32_bias_dq == 0 and results["onnxruntime"].summary.int32_bias_dq == 8

    # The same ranges as a calibration of its own: the shared file equals the single-target one.
    from onnx import numpy_helper

    def scales(path):
        return {i.name: numpy_helper.to_array(i).tolist() for i in onnx.load(str(path)).graph.initializer
                if i.name.endswith("_scale")}

    assert scales(outputs["tensorrt"]) == scales(quantized["int8"])
    with OnnxRuntimeRunner(outputs["onnxruntime"]) as runner:
        assert runner.settings()["disabled_optimizers"] == meta["onnxruntime"][
            "toolchain.ort_disabled_optimizers"].split(",")
    with OnnxRuntimeRunner(outputs["tensorrt"]) as runner:
        assert "disabled_optimizers" not in runner.settings()

    # One -o per --target from the CLI; one output for two targets is refused before any work.
    out = tmp_path / "cli"
    result = run_cli("quantize", "--checkpoint", quantized["checkpoint"], "--onnx", quantized["fp32"], "--samples",
                     str(SAMPLES), "--target", "tensorrt", "-o", out / "a.onnx", "--target", "onnxruntime",
                     "-o", out / "b.onnx", "--json")
    assert result.code == 0, result.stderr
    summaries = json.loads(result.stdout)
    assert [s["metadata"]["quant_target"] for s in summaries] == ["tensorrt", "onnxruntime"]
    assert len({s["metadata"]["quant_ranges_sha256"] for s in summaries}) == 1
    assert_one_line_error(run_cli("quantize", "--checkpoint", quantized["checkpoint"], "--target", "tensorrt",
                                  "--target", "onnxruntime", "-o", out / "c.onnx"), "1 output file(s) for 2")
    same = run_cli("quantize", "--checkpoint", quantized["checkpoint"], "--target", "tensorrt", "-o", out / "d.onnx",
                   "--target", "onnxruntime", "-o", out / "d.onnx")
    assert_one_line_error(same, "the same file")
    assert not (out / "c.onnx").exists() and not (out / "d.onnx").exists()


@pytest.mark.slow
def test_parity_cli_defaults_to_int8_tolerances_for_a_quantized_file(quantized):
    report = quantized["root"] / "parity-int8.json"
    result = run_cli("parity", "--onnx", quantized["int8"], "--checkpoint", quantized["checkpoint"],
                     "--batch-sizes", "32", "--report", report)
    assert result.code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["precision"] == "int8" and data["passed"]
    assert data["tolerances"]["logits"]["range_atol"] == 0.05
    assert "reference top-1" in result.stdout and "candidate top-1" in result.stdout


@pytest.mark.slow
def test_calibration_uses_training_images_only(quantized):
    from toolchain.data import load_dataset
    from toolchain.quantize import calibration_inputs

    meta = quantized["ckpt"].meta
    images, description = calibration_inputs(meta, samples=20, seed=3)
    assert images.shape == (20, int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    assert "training split" in description and images.dtype == np.float32
    again, _ = calibration_inputs(meta, samples=20, seed=3)
    np.testing.assert_array_equal(images, again)  # seeded, and evaluation preprocessing (no random crops)
    split = meta["split"]
    bundle = load_dataset("synthetic", image_size=int(meta["image_size"]), in_channels=int(meta["in_channels"]),
                          seed=split["seed"], val_fraction=split["val_fraction"], mean=meta["mean"], std=meta["std"])
    val = {np.asarray(bundle.val[i][0]).tobytes() for i in range(len(bundle.val))}
    train_images = bundle.train.base.images[bundle.train.indices]
    from toolchain.data import eval_transform

    tf = eval_transform(bundle.image_size, bundle.mean, bundle.std, channels=bundle.in_channels)
    train = {np.asarray(tf(image)).tobytes() for image in train_images}
    for image in images:
        assert image.tobytes() in train and image.tobytes() not in val


@pytest.mark.slow
def test_check_qdq_names_each_broken_property(quantized):
    import onnx
    from onnx import numpy_helper

    from toolchain.quantize import check_qdq

    model = onnx.load(str(quantized["int8"]))
    assert check_qdq(model).ok
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    zero = next(i for i in broken.graph.initializer if i.name.endswith("_zero_point"))
    zero.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(zero) + 3, zero.name))
    conv = next(n for n in broken.graph.node if n.op_type == "Conv")
    data_dq = next(n for n in broken.graph.node if conv.input[0] in n.output)
    quant = next(n for n in broken.graph.node if data_dq.input[0] in n.output)
    conv.input[0] = quant.input[0]  # the Conv now reads the float tensor
    del broken.functions[:]
    problems = " | ".join(check_qdq(broken, expected_lrn={"FusedLRN_x": {}}).problems)
    assert "zero point is not 0" in problems
    assert f"Conv {conv.name}: data not from DequantizeLinear" in problems
    assert "function toolchain.FusedLRN is gone" in problems and "FusedLRN nodes" in problems


@pytest.mark.slow
def test_bad_input_is_one_line_and_writes_nothing(quantized, tmp_path):
    import onnx

    from toolchain.checkpoint import save_checkpoint
    from toolchain.export import convert_to_fp16

    out = tmp_path / "q.onnx"
    # too few calibration samples, and more than the training split holds
    assert_one_line_error(run_cli("quantize", "--checkpoint", quantized["checkpoint"], "-o", out, "--samples", "4"),
                          "too few calibration images")
    assert_one_line_error(run_cli("quantize", "--checkpoint", quantized["checkpoint"], "-o", out,
                                  "--samples", "100000"), "has only 480 training images")
    # an FP16 ONNX as input
    fp16 = onnx.load(str(quantized["fp32"]))
    convert_to_fp16(fp16)
    onnx.helper.set_model_props(fp16, {**{p.key: p.value for p in fp16.metadata_props}, "toolchain.dtype": "fp16"})
    onnx.save(fp16, str(tmp_path / "fp16.onnx"))
    assert_one_line_error(run_cli("quantize", "--checkpoint", quantized["checkpoint"], "--onnx", tmp_path / "fp16.onnx",
                                  "-o", out), "is FP16")
    # a checkpoint whose dataset cannot be loaded
    ckpt = quantized["ckpt"]
    lost = save_checkpoint(tmp_path / "lost.safetensors", ckpt.model,
                           {**ckpt.meta, "dataset": f"imagefolder:{tmp_path / 'gone'}"})
    assert_one_line_error(run_cli("quantize", "--checkpoint", lost, "-o", out),
                          "cannot load calibration dataset", "--calibration")
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))
    # an existing output is kept unless --force; an already quantized file is refused as input
    from toolchain.quantize import quantize_checkpoint

    with pytest.raises(ToolchainError, match="already exists"):
        quantize_checkpoint(quantized["checkpoint"], quantized["int8"])
    with pytest.raises(ToolchainError, match="already quantized"):
        quantize_checkpoint(quantized["checkpoint"], out, onnx_path=quantized["int8"])
    with pytest.raises(ToolchainError, match="unknown calibration method"):
        quantize_checkpoint(quantized["checkpoint"], out, method="magic")


# ------------------------------------------------------------------ TensorRT decisions (CPU)


def test_int8_precision_plan_per_tensorrt_major():
    ten = compat.plan_precision("fp32", "10.16.0.32", quantized=True)
    assert (ten.precision, ten.strongly_typed, ten.int8_flag, ten.fp16_flag) == ("int8", False, True, True)
    eleven = compat.plan_precision("fp32", "11.4.0", quantized=True)
    assert (eleven.precision, eleven.strongly_typed, eleven.int8_flag, eleven.fp16_flag) == ("int8", True, False,
                                                                                               False)
    # no --allow-fp32 needed: the quantized layers are the point; the rest stays FP32 under 11
    assert "FP32" in eleven.reason
    half = compat.plan_precision("fp16", "10.16.0", quantized=True)
    assert half.strongly_typed and not half.int8_flag and half.precision == "int8"
    assert not compat.plan_precision("fp32", "10.16.0").int8_flag


@pytest.mark.slow
def test_builder_detects_qdq_and_records_int8(quantized, tmp_path):
    import onnx

    from toolchain.trt.onnx_graph import inspect_onnx
    from toolchain.trt.plan import plan_build
    from toolchain.trt.compat import BuildOptions

    info = inspect_onnx(quantized["int8"])
    assert info.qdq_nodes >= 16 and info.dtype == "fp32" and len(info.fused_lrn_nodes) == 2
    assert info.metadata["precision"] == "int8"
    plan = plan_build(info, BuildOptions(max_batch=8), "10.16.0")
    assert plan.precision.precision == "int8" and plan.precision.int8_flag and plan.needs_plugin
    assert plan_build(info, BuildOptions(max_batch=8), "11.4.0").precision.strongly_typed
    assert inspect_onnx(quantized["fp32"]).qdq_nodes == 0
    # metadata that says INT8 without any Q/DQ is refused
    model = onnx.load(str(quantized["fp32"]))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "toolchain.precision": "int8"})
    onnx.save(model, str(tmp_path / "liar.onnx"))
    with pytest.raises(ToolchainError, match="no QuantizeLinear/DequantizeLinear"):
        plan_build(inspect_onnx(tmp_path / "liar.onnx"), BuildOptions(), "10.16.0")


def test_precision_comes_from_the_file():
    from pathlib import Path

    from toolchain.artifacts import EngineArtifact, OnnxArtifact

    assert OnnxArtifact(Path("q.onnx"), {"dtype": "fp32", "precision": "int8"}).precision == "int8"
    assert OnnxArtifact(Path("h.onnx"), {"dtype": "fp16"}).precision == "fp16"
    assert OnnxArtifact(Path("x.onnx"), {}).precision == "fp32"
    assert EngineArtifact(Path("e"), {"build": {"precision": "int8"}}).precision == "int8"
    # An engine built with --allow-fp32 computes in FP32: FP32 tolerances, in parity and benchmark alike.
    assert EngineArtifact(Path("e"), {"build": {"precision": "fp32"}}).precision == "fp32"


@pytest.mark.needs_tensorrt
def test_int8_engine_builds_and_passes_int8_parity(quantized, tmp_path):
    from toolchain.inputs import dataset_inputs
    from toolchain.parity import load_tolerances, run_parity
    from toolchain.plugin import find_library
    from toolchain.runners.torch import TorchRunner
    from toolchain.trt import manifest as mf
    from toolchain.trt.builder import build_engine
    from toolchain.trt.runtime import TensorRTRunner

    plugin = find_library("tensorrt")
    if plugin is None:
        pytest.skip("the TensorRT plugin library is not built (toolchain plugin build)")
    engine = build_engine(quantized["int8"], tmp_path / "int8.engine", plugin_library=plugin, max_batch=32)
    manifest = mf.read_manifest(engine)
    assert manifest["build"]["precision"] == "int8" and manifest["build"]["qdq_nodes"] >= 16
    assert len(manifest["layers"]["network_plugin_layers"]) == 2
    ckpt = quantized["ckpt"]
    images, labels = dataset_inputs("synthetic", ckpt.meta)
    with TorchRunner(ckpt.model) as reference, TensorRTRunner(engine, plugin_library=plugin) as candidate:
        report = run_parity(reference, candidate, images, batch_sizes=[1, 32], labels=labels,
                            tolerances=load_tolerances("int8"), precision="int8")
    assert report.passed, report.failures()


def test_cpu_benchmark_times_the_int8_row_beside_fp32_with_its_verdict(quantized_ort, tmp_path):
    from tests.helpers import TINY_ARGS

    quantized = {**quantized_ort, "int8": quantized_ort["int8_ort"]}
    out = tmp_path / "bench"
    result = run_cli("benchmark", "--checkpoint", quantized["checkpoint"], "--onnx", quantized["fp32"],
                     "--onnx-int8", quantized["int8"], "--backends", "onnxruntime-cpu,onnxruntime-cpu-int8,tensorrt-int8",
                     "--batch-sizes", "4", *TINY_ARGS, "--out", out)
    assert result.code == 0, result.stderr
    data = json.loads((out / "benchmark.json").read_text())
    rows = {m["backend"]: m for m in data["measurements"]}
    assert set(rows) == {"onnxruntime-cpu", "onnxruntime-cpu-int8"}
    assert rows["onnxruntime-cpu"]["parity"]["precision"] == "fp32"
    int8 = rows["onnxruntime-cpu-int8"]
    assert int8["precision"] == "int8" and int8["parity"]["precision"] == "int8"
    assert int8["parity"]["passed"] and int8["status"] == "ok"
    assert f"--onnx-int8 {quantized['int8']}" in data["parity"]["weights"]["checked"]
    skipped = {s["backend"]: s["reason"] for s in data["skipped"]}
    assert skipped["tensorrt-int8"]  # no GPU / TensorRT / --int8-engine here
    assert "| onnxruntime-cpu-int8 | 4 |" in (out / "benchmark.md").read_text()
    (gain,) = data["speedups"]
    assert gain["baseline"] == "onnxruntime-cpu" and gain["speedup"] == pytest.approx(
        int8["throughput_ips"] / rows["onnxruntime-cpu"]["throughput_ips"])


def test_cpu_benchmark_refuses_the_tensorrt_file_in_the_onnx_runtime_int8_row(quantized, tmp_path):
    """The default target's placement runs slower than FP32 in ONNX Runtime: the row refuses it, in one line."""
    from tests.helpers import TINY_ARGS

    refused = run_cli("benchmark", "--checkpoint", quantized["checkpoint"], "--onnx-int8", quantized["int8"],
                      "--backends", "onnxruntime-cpu-int8", "--batch-sizes", "4", *TINY_ARGS, "--out", tmp_path / "b")
    assert_one_line_error(refused, "was quantized for tensorrt, not onnxruntime",
                          "--target onnxruntime")
    assert not (tmp_path / "b").exists()
