"""Environment capture: what a benchmark ran on, never raising."""

from __future__ import annotations

import json
import platform

import pytest

from toolchain import environment


def test_capture_environment_reports_this_machine():
    import onnxruntime
    import torch

    env = environment.capture_environment()
    json.dumps(env)  # goes into benchmark.json as is
    assert env["python"] == platform.python_version()
    assert env["torch"] == torch.__version__
    assert env["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert env["cuda_available"] == torch.cuda.is_available()
    assert env["cpu_count"] and env["cpu_count"] >= 1
    if not torch.cuda.is_available():
        assert env["gpu_name"] is None and env["gpus"] == [] and env["nvml"] is None
        assert environment.describe_device(env).startswith("CPU: ")
    if env["tensorrt"] is None:
        assert env["tensorrt_status"] and env["tensorrt_status"] in env["notes"]


def test_capture_environment_survives_failing_probes(monkeypatch):
    import toolchain.trt as trt_pkg

    def broken():
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(trt_pkg, "tensorrt_available", broken)
    env = environment.capture_environment()
    assert env["tensorrt"] is None
    assert any("probe exploded" in note for note in env["notes"])


def test_cpu_model_reads_proc_cpuinfo(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: Acme\nmodel name\t: Acme Quantum 9000\n")
    real_path = environment.Path

    def fake_path(arg, *rest):
        return real_path(fake) if str(arg) == "/proc/cpuinfo" else real_path(arg, *rest)

    monkeypatch.setattr(environment, "Path", fake_path)
    assert environment.cpu_model() == "Acme Quantum 9000"


def test_gpu_state_without_nvml_is_none(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    assert environment.gpu_state() is None


def test_describe_device_prefers_the_gpu():
    env = {"gpu_name": "NVIDIA H100 80GB HBM3", "torch_cuda": "13.0", "nvidia_driver": "580.65",
           "cpu": "AMD EPYC", "affinity_cpus": 16}
    assert environment.describe_device(env) == "NVIDIA H100 80GB HBM3 (CUDA 13.0, driver 580.65)"


@pytest.mark.needs_cuda
def test_capture_environment_names_the_gpu():
    import torch

    env = environment.capture_environment()
    assert env["gpu_name"] == torch.cuda.get_device_name(0)
    assert env["gpus"][0]["compute_capability"] == "{}.{}".format(*torch.cuda.get_device_capability(0))
