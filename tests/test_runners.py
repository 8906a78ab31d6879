"""Runners: activation, feeds, errors."""

import numpy as np
import pytest
import torch

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.export import export_model
from toolchain.runners import OnnxRuntimeRunner, TorchRunner, make_runner

META = {"variant": "tiny", "num_classes": 3, "in_channels": 2, "image_size": 6, "mean": [0.0, 0.0],
        "std": [1.0, 1.0]}


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.LocalResponseNorm(3), torch.nn.Flatten(),
                               torch.nn.Linear(64, 3)).eval()


def test_torch_and_onnxruntime_runners_agree(tmp_path):
    model = _tiny()
    path = export_model(model, META, output=tmp_path / "tiny.onnx").path
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    with TorchRunner(model) as ref, make_runner("onnxruntime", path=path) as cand:
        assert ref.is_active and cand.is_active and cand.static_batch is None
        got, want = cand.infer({"input": x}), ref.infer({"input": x})
    assert not ref.is_active and not cand.is_active
    assert set(got) == set(want) == {"logits"} and got["logits"].shape == (4, 3)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-6)
    with cand, pytest.raises(ToolchainError, match="no input 'images'"):
        cand.infer({"images": x})


def test_inactive_runner_refuses():
    with pytest.raises(ToolchainError, match="not active"):
        TorchRunner(_tiny()).infer({"input": np.zeros((1, 2, 6, 6), np.float32)})


def test_onnxruntime_runner_errors(tmp_path):
    with pytest.raises(ToolchainError, match="does not exist"):
        OnnxRuntimeRunner(tmp_path / "missing.onnx").activate()
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ToolchainError, match="not a readable ONNX model"):
        OnnxRuntimeRunner(corrupt).activate()
    path = export_model(_tiny(), META, output=tmp_path / "tiny.onnx").path
    with pytest.raises(MissingDependencyError, match="lacks NoSuchExecutionProvider"):
        OnnxRuntimeRunner(path, providers=["NoSuchExecutionProvider"]).activate()


def test_make_runner_routes_and_rejects():
    assert isinstance(make_runner("torch", model=_tiny()), TorchRunner)
    with pytest.raises(ToolchainError, match="unknown backend"):
        make_runner("tvm")
    with pytest.raises(ToolchainError, match="unknown dtype"):
        TorchRunner(_tiny(), dtype="int8")


def test_tensorrt_backend_without_tensorrt_is_a_missing_dependency(tmp_path):
    pytest.importorskip("toolchain.trt.runtime", reason="the TensorRT runtime module is not written yet")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(ToolchainError):  # MissingDependencyError, or a missing engine file
        with make_runner("tensorrt", engine_path=tmp_path / "missing.engine"):
            pass
