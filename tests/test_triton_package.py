"""`toolchain package --triton`: a model repository from an engine's files and manifest.

The engine and plugin here are placeholder files (bytes, not a TensorRT plan or an
ELF library): packaging only copies, hashes and describes them, so this is the real
code path; whether Triton then serves the plan is for a GPU machine with Triton.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_one_line_error, fake_build_outputs, run_cli
from toolchain.errors import ToolchainError
from toolchain.io import sha256_file
from toolchain.trt import manifest as mf
from toolchain.trt.triton import batching_mode, package_triton, triton_config


def test_package_layout_and_contents(tmp_path):
    engine, plugin = fake_build_outputs(tmp_path / "build", max_batch=16)
    repo = tmp_path / "repo"
    result = package_triton(repo, engine)
    assert sorted(result["files"]) == ["README.md", "alexnet/1/model.plan", "alexnet/config.pbtxt",
                                       "alexnet/engine.manifest.json", "alexnet/labels.txt",
                                       "plugins/libtoolchain_lrn_plugin.so"]
    assert (repo / "alexnet/1/model.plan").read_bytes() == engine.read_bytes()
    assert sha256_file(repo / "plugins/libtoolchain_lrn_plugin.so") == sha256_file(plugin)
    assert (repo / "alexnet/labels.txt").read_text().split() == ["cat", "dog", "eel"]
    assert (repo / "alexnet/engine.manifest.json").read_text() == mf.manifest_path(engine).read_text()
    config = (repo / "alexnet/config.pbtxt").read_text()
    assert 'name: "alexnet"' in config and 'platform: "tensorrt_plan"' in config
    assert "max_batch_size: 16" in config and "dynamic_batching { }" in config
    assert 'name: "input"\n    data_type: TYPE_FP32\n    dims: [ 3, 64, 64 ]' in config
    assert 'name: "logits"\n    data_type: TYPE_FP32\n    dims: [ 3 ]\n    label_filename: "labels.txt"' in config
    assert "kind: KIND_GPU" in config
    readme = (repo / "README.md").read_text()
    assert f"LD_PRELOAD=$REPO/plugins/{plugin.name}" in readme and "tritonserver --model-repository=$REPO" in readme
    assert f'--backend-config=tensorrt,plugins="$REPO/plugins/{plugin.name}"' in readme
    assert "TensorRT 10.16.0.32" in readme and sha256_file(engine) in readme
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo")]  # no staging folder left


def test_config_without_triton_batching():
    engine_manifest = {"io": {
        "inputs": [{"name": "input", "dtype": "float16", "shape": [-1, 3, 64, 64],
                    "profile": {"min": [2, 3, 64, 64], "opt": [8, 3, 64, 64], "max": [8, 3, 64, 64]}}],
        "outputs": [{"name": "logits", "dtype": "float16", "shape": [-1, 10]}]}}
    # profile min 2: Triton's batching would send batch 1, so full dims with -1
    config = triton_config(engine_manifest)
    assert "max_batch_size: 0" in config and "dims: [ -1, 3, 64, 64 ]" in config and "TYPE_FP16" in config
    assert "dynamic_batching" not in config and "label_filename" not in config
    with pytest.raises(ToolchainError, match="min batch is 2"):
        triton_config(engine_manifest, max_batch=4)


def test_static_engine_and_max_batch_rules(tmp_path):
    engine, _ = fake_build_outputs(tmp_path / "s", min_batch=4, opt_batch=4, max_batch=4)
    manifest = mf.read_manifest(engine)
    assert batching_mode(manifest, None) == 0
    assert "dims: [ 4, 3, 64, 64 ]" in triton_config(manifest)
    engine, _ = fake_build_outputs(tmp_path / "d", max_batch=16)
    manifest = mf.read_manifest(engine)
    assert batching_mode(manifest, 8) == 8 and batching_mode(manifest, 0) == 0
    with pytest.raises(ToolchainError, match="exceeds the engine's profile max batch 16"):
        batching_mode(manifest, 32)
    with pytest.raises(ToolchainError, match="invalid Triton model name"):
        triton_config(manifest, model_name="bad name/x")


def test_package_refuses_tampered_files_and_existing_repo(tmp_path):
    engine, plugin = fake_build_outputs(tmp_path / "build")
    repo = tmp_path / "repo"
    package_triton(repo, engine)
    with pytest.raises(ToolchainError, match="already exists"):
        package_triton(repo, engine)
    before = (repo / "alexnet/config.pbtxt").read_text()
    package_triton(repo, engine, model_name="alexnet", max_batch=4, force=True)
    assert "max_batch_size: 4" in (repo / "alexnet/config.pbtxt").read_text() != before
    plugin.write_bytes(b"not the plugin the engine was built with")
    with pytest.raises(ToolchainError, match="libtoolchain_lrn_plugin.so has sha256"):
        package_triton(tmp_path / "repo2", engine)
    assert not (tmp_path / "repo2").exists()


def test_native_engine_package_has_no_plugin(tmp_path):
    engine, _ = fake_build_outputs(tmp_path / "build", plugin=False)
    result = package_triton(tmp_path / "repo", engine, model_name="alexnet_native")
    assert result["plugin"] is None and not (tmp_path / "repo/plugins").exists()
    assert "LD_PRELOAD" not in (tmp_path / "repo/README.md").read_text()
    assert (tmp_path / "repo/alexnet_native/1/model.plan").is_file()


def test_package_cli(tmp_path):
    engine, _ = fake_build_outputs(tmp_path / "build", max_batch=16)
    result = run_cli("package", "--triton", tmp_path / "repo", "--engine", engine, "--max-batch", "8")
    assert result.code == 0, result.stderr
    assert "max_batch_size 8" in result.stdout and "alexnet/1/model.plan" in result.stdout
    assert_one_line_error(run_cli("package", "--triton", tmp_path / "repo", "--engine", engine), "already exists")
    assert_one_line_error(run_cli("package", "--triton", tmp_path / "r2", "--engine", tmp_path / "none.engine"),
                          "does not exist")
    assert_one_line_error(run_cli("package", "--triton", tmp_path / "r3", "--engine", engine, "--max-batch", "64"),
                          "exceeds")
