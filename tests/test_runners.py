"""Runners: activation, feeds, errors."""

import numpy as np
import pytest
import torch

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.export import export_model
from toolchain.backends import Context, Files, select
from toolchain.runners.onnxruntime import OnnxRuntimeRunner
from toolchain.runners.torch import TorchRunner

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
    (candidate,) = select(["onnxruntime"], Context(files=Files(onnx=path)))
    assert candidate.name == "onnxruntime" and candidate.precision == "fp32"
    with TorchRunner(model) as ref, candidate.make() as cand:
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


def test_registry_rejects_unknown_names_and_runners_bad_dtypes():
    with pytest.raises(ToolchainError, match="unknown backend 'tvm'"):
        select(["tvm"], Context())
    with pytest.raises(ToolchainError, match="unknown dtype"):
        TorchRunner(_tiny(), dtype="int8")


def test_tensorrt_backend_without_an_engine_file_is_one_line(tmp_path):
    with pytest.raises(ToolchainError, match="does not exist"):
        select(["tensorrt"], Context(files=Files(engine=tmp_path / "missing.engine")))


def test_cpu_runners_run_on_prepared_inputs_the_same_model(tmp_path):
    """The timing path (prepare/run) computes what infer computes, for eager and ONNX Runtime on the CPU."""
    from toolchain.runners.base import DeviceIO

    model = _tiny()
    path = export_model(model, META, output=tmp_path / "tiny.onnx").path
    with TorchRunner(model_factory=_tiny, input_shape=(2, 6, 6)) as eager, \
            OnnxRuntimeRunner(path, provider="cpu", threads=1) as ort:
        assert ort.input_shape == (2, 6, 6)  # read from the file's static dims
        for runner in (eager, ort):
            runner.prepare(3, seed=1)
            runner.h2d()
            runner.run()
            runner.d2h()
            x = runner.io.host_input.numpy()
            assert x.dtype == np.float32 and x.shape == (3, 2, 6, 6)
            want = runner.infer({"input": x})["logits"]
            np.testing.assert_allclose(np.asarray(runner.output), want, rtol=1e-5, atol=1e-6)
        assert eager.describe()["settings"]["torch_threads"] >= 1
        assert ort.describe()["settings"]["intra_op_threads"] == 1
    assert eager.model is None  # a factory-built model is dropped at deactivation
    assert DeviceIO((1, 2, 6, 6), device="cpu").nbytes == 72 * 4


def test_provider_check_names_a_silent_fallback():
    from toolchain.runners.onnxruntime import provider_check

    assert provider_check(["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None
    assert provider_check(["CUDAExecutionProvider", "CPUExecutionProvider"],
                          ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert "fell back to CPUExecutionProvider" in provider_check(["CUDAExecutionProvider", "CPUExecutionProvider"],
                                                                 ["CPUExecutionProvider"])


def test_tensorrt_profile_note():
    from toolchain.trt.runtime import profile_note

    profile = {"min": [1, 3, 8, 8], "opt": [8, 3, 8, 8], "max": [64, 3, 8, 8]}
    assert profile_note(8, profile) is None and profile_note(8, None) is None
    assert profile_note(64, profile) == "timed at batch 64 with the profile tuned for batch 8 (min 1, max 64)"
