"""Engine manifests and the pure compatibility checks (no TensorRT, no GPU needed)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import fake_build_outputs

from toolchain.errors import ToolchainError
from toolchain.io import sha256_file
from toolchain.trt import compat, manifest as mf




def test_manifest_round_trip_and_paths(tmp_path):
    engine, plugin = fake_build_outputs(tmp_path)
    assert mf.manifest_path(engine).name == "model.engine.manifest.json"
    assert mf.layers_path(engine).name == "model.engine.layers.json"
    data = mf.read_manifest(engine)
    assert data == mf.read_manifest(mf.manifest_path(engine))  # engine path or manifest path
    assert data["format"] == mf.FORMAT and data["format_version"] == mf.FORMAT_VERSION
    assert data["engine"]["sha256"] == sha256_file(engine)
    mf.verify_artifacts(data, engine, plugin)  # untouched files pass


def test_manifest_refuses_overwrite_without_force(tmp_path):
    fake_build_outputs(tmp_path)
    with pytest.raises(ToolchainError, match="already exists"):
        fake_build_outputs(tmp_path)
    fake_build_outputs(tmp_path, force=True)


def test_tampered_engine_and_plugin_are_named(tmp_path):
    engine, plugin = fake_build_outputs(tmp_path)
    data = mf.read_manifest(engine)
    engine.write_bytes(engine.read_bytes() + b"x")
    with pytest.raises(ToolchainError) as err:
        mf.verify_artifacts(data, engine, plugin)
    assert str(engine) in err.value.one_line() and "plugin" not in err.value.message
    plugin.write_bytes(b"evil")
    with pytest.raises(ToolchainError) as err:
        mf.verify_artifacts(data, engine, plugin)
    # every mismatch is reported, not just the first
    assert str(engine) in err.value.message and str(plugin) in err.value.message
    with pytest.raises(ToolchainError, match="plugin library .* has sha256"):
        mf.verify_artifacts(data, None, plugin)


def test_plugin_for_an_engine_built_without_one_is_refused(tmp_path):
    engine, _ = fake_build_outputs(tmp_path, plugin=False)
    other = tmp_path / "other.so"
    other.write_bytes(b"x")
    with pytest.raises(ToolchainError, match="built without a plugin"):
        mf.verify_artifacts(mf.read_manifest(engine), engine, other)


def test_broken_manifests_give_one_line_errors(tmp_path):
    engine, _ = fake_build_outputs(tmp_path)
    path = mf.manifest_path(engine)
    data = json.loads(path.read_text())
    with pytest.raises(ToolchainError, match="does not exist"):
        mf.read_manifest(tmp_path / "nothing.engine")
    path.write_text("{not json")
    with pytest.raises(ToolchainError, match="not valid JSON"):
        mf.read_manifest(engine)
    del data["engine"]["sha256"], data["io"]["inputs"][0]["dtype"]
    path.write_text(json.dumps(data))
    with pytest.raises(ToolchainError) as err:
        mf.read_manifest(engine)
    assert "engine.sha256" in err.value.message and "io.inputs[input].dtype" in err.value.message
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ToolchainError, match="format version 99"):
        mf.read_manifest(engine)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ToolchainError, match="not a toolchain engine manifest"):
        mf.read_manifest(engine)


def test_numpy_dtype_names():
    assert mf.numpy_dtype_name("HALF") == "float16" and mf.numpy_dtype_name("FLOAT") == "float32"
    with pytest.raises(ToolchainError, match="not supported"):
        mf.numpy_dtype_name("NOPE")


# ------------------------------------------------------------------ versions and compatibility


@pytest.mark.parametrize("text,expected", [("10.16.0.32", (10, 16, 0, 32)), ("11.4.0", (11, 4, 0)),
                                           ("10.9.0rc1", (10, 9, 0)), ("12.9+cu", (12, 9))])
def test_parse_version(text, expected):
    assert compat.parse_version(text) == expected


def test_unsupported_tensorrt_major():
    assert compat.tensorrt_major("10.0.1") == 10 and compat.tensorrt_major("11.1.0") == 11
    for version in ("8.6.1", "12.0.0"):
        with pytest.raises(ToolchainError, match="not supported"):
            compat.tensorrt_major(version)


def test_small_formatters():
    assert compat.format_cuda_version(12090) == "12.9" and compat.format_cuda_version(13000) == "13.0"
    assert compat.format_cuda_version(0) is None
    text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  575.57.08  Sat May 24 07:21:04 UTC 2025\nGCC version: gcc"
    assert compat.parse_nvidia_driver_version(text) == "575.57.08"
    text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build"
    assert compat.parse_nvidia_driver_version(text) == "580.65.06"
    assert compat.parse_nvidia_driver_version("nothing here") is None
    assert [compat.compute_capability_str(v) for v in ((9, 0), "8.6", "sm_90", 120)] == ["9.0", "8.6", "9.0", "12.0"]


def _manifest(trt="10.16.0.32", cc="9.0", gpu="NVIDIA H100 80GB HBM3"):
    return {"environment": {"tensorrt": trt, "gpu": {"name": gpu, "compute_capability": cc}}}


def test_engine_compat_same_machine_passes():
    report = compat.check_engine_compat(_manifest(), tensorrt_version="10.16.0.32", compute_capability=(9, 0),
                                        gpu_name="NVIDIA H100 80GB HBM3")
    assert report.ok and not report.notes


def test_engine_compat_reports_every_problem():
    report = compat.check_engine_compat(_manifest(), tensorrt_version="11.1.0.5", compute_capability="8.9",
                                        gpu_name="NVIDIA L4")
    assert len(report.problems) == 2
    assert "TensorRT 10.16.0.32" in report.problems[0] and "11.1.0.5" in report.problems[0]
    assert "compute capability 9.0" in report.problems[1] and "8.9" in report.problems[1]
    with pytest.raises(ToolchainError) as err:
        compat.require_engine_compat(_manifest(), "x.engine", tensorrt_version="11.1.0.5", compute_capability="8.9")
    assert "x.engine cannot run here" in err.value.message and "rebuild" in err.value.hint


def test_engine_compat_patch_level_matters_build_number_is_a_note():
    assert not compat.check_engine_compat(_manifest(), tensorrt_version="10.16.1.2", compute_capability="9.0").ok
    report = compat.check_engine_compat(_manifest(), tensorrt_version="10.16.0.99", compute_capability="9.0",
                                        gpu_name="NVIDIA H200")
    assert report.ok and any("build number" in n for n in report.notes) and any("H200" in n for n in report.notes)


def test_engine_compat_missing_records():
    report = compat.check_engine_compat({"environment": {}}, tensorrt_version="10.16.0", compute_capability="9.0")
    assert len(report.problems) == 2


INPUTS = [{"name": "input", "dtype": "float32", "shape": [-1, 3, 64, 64],
           "profile": {"min": [1, 3, 64, 64], "opt": [8, 3, 64, 64], "max": [16, 3, 64, 64]}}]


def test_input_shapes_inside_profile_pass():
    compat.check_input_shapes(INPUTS, {"input": (1, 3, 64, 64)})
    compat.check_input_shapes(INPUTS, {"input": (16, 3, 64, 64)})


@pytest.mark.parametrize("feed,fragments", [
    ({"input": (17, 3, 64, 64)}, ["outside the optimization profile", "min (1, 3, 64, 64)", "max (16, 3, 64, 64)"]),
    ({"input": (2, 3, 65, 64)}, ["outside the optimization profile"]),
    ({"input": (2, 3, 64)}, ["rank 3", "expects rank 4"]),
    ({"image": (2, 3, 64, 64)}, ["unknown input 'image'", "'input' is missing"]),
    ({}, ["'input' is missing"]),
])
def test_input_shape_errors_name_the_problem(feed, fragments):
    with pytest.raises(ToolchainError) as err:
        compat.check_input_shapes(INPUTS, feed)
    for fragment in fragments:
        assert fragment in err.value.message
    assert "--max-batch" in err.value.hint


def test_static_input_without_profile():
    static = [{"name": "input", "dtype": "float32", "shape": [4, 3, 64, 64]}]
    compat.check_input_shapes(static, {"input": (4, 3, 64, 64)})
    with pytest.raises(ToolchainError, match="expects"):
        compat.check_input_shapes(static, {"input": (2, 3, 64, 64)})
