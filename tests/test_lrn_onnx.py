"""The FusedLRN model-local function (standard ONNX ops) against PyTorch, and native LRN's limits."""

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from toolchain import lrn_op
from toolchain.lrn_op import PAPER_LRN, LRNParams
from toolchain.onnx_lrn import OPSET, make_lrn_function, native_lrn_problem, standalone_model

SHAPES = [(2, 7, 5, 4), (1, 1, 3, 3), (3, 5, 1, 1), (2, 6, 9), (1, 4, 2, 3, 2), (2, 16, 6, 6)]


def _session(model):
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _onnx_spec_lrn(x, p: LRNParams):
    """ONNX's LRN as its operator spec defines it (floor((size-1)/2) before, ceil after)."""
    before, after = (p.size - 1) // 2, math.ceil((p.size - 1) / 2)
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - before), min(channels - 1, c + after)
        square_sum = (x[:, lo:hi + 1] ** 2).sum(axis=1)
        out[:, c] = x[:, c] / (p.bias + p.alpha / p.size * square_sum) ** p.beta
    return out


@pytest.mark.parametrize("size", range(1, 10))
def test_function_body_matches_torch(size):
    rng = np.random.default_rng(size)
    for shape in SHAPES:
        params = LRNParams(size, alpha=float(rng.uniform(0, 2)), beta=float(rng.uniform(0.05, 1.5)),
                           bias=float(rng.uniform(0.3, 3)))
        session = _session(standalone_model(params, ["N", *shape[1:]]))
        for batch in (1, shape[0]):  # symbolic batch: one session, two batch sizes
            x = (rng.standard_normal((batch, *shape[1:])) * 3).astype(np.float32)
            got = session.run(None, {"X": x})[0]
            want = F.local_response_norm(torch.from_numpy(x), size, params.alpha, params.beta, params.bias).numpy()
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=f"{params} {shape}")


def test_function_body_paper_params_and_default_sizes():
    session = _session(standalone_model(PAPER_LRN, ["N", 96, 7, 7]))
    x = np.random.default_rng(0).standard_normal((2, 96, 7, 7)).astype(np.float32) * 10
    want = F.local_response_norm(torch.from_numpy(x), 5, PAPER_LRN.alpha, PAPER_LRN.beta, PAPER_LRN.bias).numpy()
    np.testing.assert_allclose(session.run(None, {"X": x})[0], want, rtol=1e-6, atol=1e-7)


def test_function_body_fp16_accumulates_in_fp32():
    # |x| = 300: x^2 overflows FP16 (max 65504); the body squares in FP32, so the output stays finite.
    params = LRNParams(5, alpha=1e-4, beta=0.75, bias=2.0)
    session = _session(standalone_model(params, ["N", 8, 4, 4], dtype="fp16"))
    x = np.full((2, 8, 4, 4), 300.0, dtype=np.float16)
    x[0, ::2] = -250.0
    got = session.run(None, {"X": x})[0]
    assert got.dtype == np.float16 and np.isfinite(got).all()
    want = F.local_response_norm(torch.from_numpy(x).float(), 5, 1e-4, 0.75, 2.0).numpy()
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3, atol=1e-3)
    # PyTorch in FP16 would overflow here: the reason for FP32 accumulation.
    assert not np.isfinite((torch.from_numpy(x) * torch.from_numpy(x)).numpy()).all()


def test_function_declares_op_names_and_attributes():
    function = make_lrn_function()
    assert (function.domain, function.name) == (lrn_op.DOMAIN, lrn_op.OP_TYPE)
    assert list(function.attribute) == [*lrn_op.FIELDS, *lrn_op.LOOKUP_ATTRIBUTES]
    assert {op.domain: op.version for op in function.opset_import} == {"": OPSET}
    assert all(node.domain == "" for node in function.node)  # standard ops only
    refs = {a.ref_attr_name for node in function.node for a in node.attribute if a.ref_attr_name}
    assert refs == set(lrn_op.FIELDS)


def test_custom_node_attributes_have_onnx_types():
    model = standalone_model(PAPER_LRN, [1, 4, 2, 2])
    node = model.graph.node[0]
    types = {a.name: onnx.AttributeProto.AttributeType.Name(a.type) for a in node.attribute}
    assert types == {**lrn_op.FIELDS, "plugin_version": "STRING", "plugin_namespace": "STRING"}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_version"] == lrn_op.PLUGIN_VERSION.encode()
    assert attrs["plugin_namespace"] == lrn_op.PLUGIN_NAMESPACE.encode()
    assert attrs["size"] == 5 and attrs["alpha"] == pytest.approx(PAPER_LRN.alpha)


@pytest.mark.parametrize("size", range(1, 10))
def test_native_refusal_is_exactly_where_onnx_differs(size):
    rng = np.random.default_rng(size)
    params = LRNParams(size, alpha=0.9, beta=0.7, bias=1.1)
    x = rng.standard_normal((2, 7, 3, 3)).astype(np.float32)
    torch_out = F.local_response_norm(torch.from_numpy(x), size, params.alpha, params.beta, params.bias).numpy()
    spec_out = _onnx_spec_lrn(x.astype(np.float64), params)
    same = np.allclose(spec_out, torch_out, rtol=1e-5, atol=1e-6)
    problem = native_lrn_problem(params)
    assert same == (size % 2 == 1)
    assert (problem is None) == same, problem
    if problem:
        assert "even" in problem and "floor((size-1)/2)" in problem


def test_native_refuses_what_tensorrt_cannot_take():
    assert "15" in native_lrn_problem(LRNParams(17, 1e-4, 0.75, 1.0))
    assert "beta" in native_lrn_problem(LRNParams(5, 1e-4, 0.001, 1.0))
    assert "bias" in native_lrn_problem(LRNParams(5, 1e-4, 0.75, 1e-7))
    assert native_lrn_problem(LRNParams(15, 1e-4, 0.75, 1.0)) is None
    assert native_lrn_problem(PAPER_LRN) is None


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_native_lrn_in_onnxruntime_matches_torch_for_odd_sizes(size):
    params = LRNParams(size, alpha=0.4, beta=0.6, bias=1.3)
    session = _session(standalone_model(params, ["N", 9, 4, 4], native=True))
    x = np.random.default_rng(1).standard_normal((2, 9, 4, 4)).astype(np.float32)
    want = F.local_response_norm(torch.from_numpy(x), size, 0.4, 0.6, 1.3).numpy()
    np.testing.assert_allclose(session.run(None, {"X": x})[0], want, rtol=1e-5, atol=1e-6)
