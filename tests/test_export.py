"""Export to ONNX: one FusedLRN node per LRN, checker-clean, runs in ONNX Runtime like eager PyTorch."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.helpers import assert_one_line_error, run_cli, TINY_META, TinyLRNModel
from toolchain import lrn_op
from toolchain.checkpoint import model_from_source
from toolchain.errors import ToolchainError
from toolchain.artifacts import decode_metadata, load_onnx, read_onnx
from toolchain.export import export_from_source, export_model
from toolchain.models import VARIANTS
from toolchain.models.layers import LocalResponseNorm

SIZE = 65  # the smallest input every variant accepts (d2l needs 65)
EXPECTED_LRNS = {"paper": 2, "torchvision-lrn": 3, "torchvision": 0, "d2l": 0}


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _reference(variant, x, seed=0):
    model = model_from_source(variant=variant, image_size=SIZE, num_classes=10, seed=seed).model
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _lrn_nodes(model):
    return [n for n in model.graph.node if n.op_type == lrn_op.OP_TYPE and n.domain == lrn_op.DOMAIN]


@pytest.fixture(scope="module")
def exported():
    return {v: export_from_source(None, variant=v, image_size=SIZE, num_classes=10) for v in VARIANTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_runs_in_onnxruntime_like_torch(exported, variant):
    result = exported[variant]
    session = _session(result.model)  # no custom-op library registered
    channels = VARIANTS[variant].in_channels
    for batch in (1, 3):  # dynamic batch: one file, two batch sizes
        x = np.random.default_rng(batch).standard_normal((batch, channels, SIZE, SIZE)).astype(np.float32)
        got = session.run(["logits"], {"input": x})[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, _reference(variant, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_graph_holds_one_custom_node_per_lrn(exported, variant):
    model = exported[variant].model
    nodes = _lrn_nodes(model)
    assert len(nodes) == EXPECTED_LRNS[variant]
    assert not [n for n in model.graph.node if n.op_type == "LRN"]
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names)
    module = model_from_source(variant=variant, image_size=SIZE, num_classes=10).model
    params = [m.params for m in module.modules() if isinstance(m, LocalResponseNorm)]
    for node, p in zip(nodes, params):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"size": p.size, "alpha": pytest.approx(p.alpha), "beta": pytest.approx(p.beta),
                         "bias": pytest.approx(p.bias), "plugin_version": lrn_op.PLUGIN_VERSION.encode(),
                         "plugin_namespace": lrn_op.PLUGIN_NAMESPACE.encode()}
        types = {a.name: a.type for a in node.attribute}
        assert types["size"] == onnx.AttributeProto.INT and types["alpha"] == onnx.AttributeProto.FLOAT
    functions = [(f.domain, f.name) for f in model.functions]
    imports = {o.domain: o.version for o in model.opset_import}
    assert imports[""] == 18
    if nodes:
        assert functions == [(lrn_op.DOMAIN, lrn_op.OP_TYPE)]
        assert imports[lrn_op.DOMAIN] == lrn_op.DOMAIN_VERSION
    else:
        assert functions == []


def test_io_names_dynamic_batch_checker_and_metadata(exported):
    model = exported["paper"].model
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, SIZE, SIZE]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    meta = _metadata(model)
    assert meta["variant"] == "paper" and meta["image_size"] == SIZE and meta["in_channels"] == 3
    assert meta["num_classes"] == 10 and len(meta["classes"]) == 10
    assert meta["mean"] == pytest.approx(list(VARIANTS["paper"].mean))
    assert meta["dtype"] == "fp32" and meta["lrn"] == "plugin" and meta["checkpoint_sha256"] == ""
    assert meta["version"] and meta["lrn_count"] == 2 and meta["batch"] == "dynamic"
    raw = {p.key: p.value for p in model.metadata_props}
    assert json.loads(raw["toolchain.std"]) == pytest.approx(list(VARIANTS["paper"].std))
    # No local paths leak into the file: each node keeps only the PyTorch module it came from.
    assert {p.key for n in model.graph.node for p in n.metadata_props} == {"toolchain.module"}
    assert {p.value for n in model.graph.node for p in n.metadata_props} >= {"features.0", "classifier.7"}


def test_fp16_export_runs_in_onnxruntime_within_fp16_tolerance():
    result = export_from_source(None, variant="torchvision-lrn", image_size=SIZE, num_classes=10, dtype="fp16")
    model = result.model
    kinds = {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.node[0].op_type == "Cast" and model.graph.node[-1].op_type == "Cast"
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in _lrn_nodes(model):
        assert types[node.input[0]] == types[node.output[0]] == onnx.TensorProto.FLOAT16
    assert _metadata(model)["dtype"] == "fp16"
    x = np.random.default_rng(0).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    got = _session(model).run(None, {"input": x})[0]
    want = _reference("torchvision-lrn", x)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()


def test_fp16_io_and_static_batch():
    result = export_from_source(None, variant="paper", image_size=SIZE, num_classes=10, dtype="fp16", fp16_io=True,
                                static_batch=2)
    (inp,), (out,) = result.model.graph.input, result.model.graph.output
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [2, 3, SIZE, SIZE]
    assert _metadata(result.model)["batch"] == "2"
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float16)
    got = _session(result.model).run(None, {"input": x})[0]
    assert got.dtype == np.float16 and got.shape == (2, 10)
    want = _reference("paper", x.astype(np.float32))
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_native_lrn_export_matches_torch():
    result = export_from_source(None, variant="paper", image_size=SIZE, num_classes=10, lrn="native")
    model = result.model
    assert len([n for n in model.graph.node if n.op_type == "LRN" and n.domain == ""]) == 2
    assert not _lrn_nodes(model) and not model.functions
    assert _metadata(model)["lrn"] == "native"
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(_session(model).run(None, {"input": x})[0], _reference("paper", x),
                               rtol=1e-4, atol=1e-5)






def test_plain_torch_lrn_even_size_and_reuse():
    torch.manual_seed(0)
    model = TinyLRNModel().eval()
    result = export_model(model, TINY_META)
    nodes = _lrn_nodes(result.model)
    assert len(nodes) == 2 and len({n.name for n in nodes}) == 2
    assert all(n.name.startswith("FusedLRN_lrn") for n in nodes)
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 8)).astype(np.float32) * 4
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_session(result.model).run(None, {"input": x})[0], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ToolchainError, match="size 4 is even"):
        export_model(model, TINY_META, lrn="native")


def test_export_writes_atomically_and_refuses_overwrite(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "tiny.onnx"
    export_model(TinyLRNModel(), TINY_META, output=out)
    assert len(_lrn_nodes(load_onnx(out))) == 2
    before = out.read_bytes()
    with pytest.raises(ToolchainError, match="already exists"):
        export_model(TinyLRNModel(), TINY_META, output=out)
    assert out.read_bytes() == before
    export_model(TinyLRNModel(size=3), TINY_META, output=out, force=True)
    assert out.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # no temp files left


def test_cli_export_and_one_line_errors(tmp_path):
    out = tmp_path / "paper.onnx"
    result = run_cli("export", "--variant", "paper", "--image-size", "64", "--num-classes", "10", "-o", out)
    assert result.code == 0, result.stderr
    assert "2 FusedLRN" in result.stdout and out.exists()
    assert _metadata(out)["image_size"] == 64
    assert_one_line_error(run_cli("export", "--variant", "paper", "--image-size", "64", "-o", out),
                          "already exists", "--force")
    assert_one_line_error(run_cli("export", "--checkpoint", tmp_path / "missing.safetensors", "-o", tmp_path / "m.onnx"),
                          "does not exist")
    assert_one_line_error(run_cli("export", "-o", tmp_path / "x.onnx"), "--checkpoint")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_native_refusal_is_one_line(tmp_path, monkeypatch, capsys):
    # No shipped variant has an even LRN; route the CLI's model source to one that does.
    import toolchain.checkpoint as checkpoint
    from toolchain.checkpoint import Checkpoint
    from toolchain.cli import main

    monkeypatch.setattr(checkpoint, "model_from_source",
                        lambda **kwargs: Checkpoint(model=TinyLRNModel().eval(), meta=dict(TINY_META)))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--variant", "paper", "--lrn", "native", "-o", str(tmp_path / "n.onnx")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --lrn native cannot")
    assert "lrn: size 4 is even" in err[0]
    assert not (tmp_path / "n.onnx").exists()


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ToolchainError, match="not a readable ONNX model"):
        load_onnx(bad)
    assert_one_line_error(run_cli("parity", "--onnx", bad, "--variant", "paper", "--random", "2"),
                          "not a readable ONNX model")


def test_fp16_pass_converts_float_constants_and_keeps_fp32_io():
    from onnx import TensorProto, helper

    from toolchain.export import check_onnx, convert_to_fp16

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value_float=3.0), helper.make_node("Mul", ["x", "c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    convert_to_fp16(model)
    check_onnx(model)
    assert [n.op_type for n in model.graph.node] == ["Cast", "Constant", "Mul", "Cast"]
    constant = model.graph.node[1].attribute[0]
    assert constant.name == "value" and constant.t.data_type == TensorProto.FLOAT16
    assert model.graph.node[2].input[0] == "x_fp16"
    got = _session(model).run(None, {"x": np.array([1.0, 0.1], np.float32)})[0]
    assert got.dtype == np.float32 and got.tolist() == pytest.approx([3.0, 0.3], rel=1e-3)


def _metadata(model_or_path) -> dict:
    return read_onnx(model_or_path).metadata if isinstance(model_or_path, (str, Path)) else decode_metadata(model_or_path)
