"""Engine building and running.

CPU tests cover every decision the builder and runner make before TensorRT is
touched (options, typing per TensorRT major, profiles, LRN mode, ONNX inspection,
the plugin-took-the-nodes check, the manifest body, the CLI's errors without
TensorRT). Tests marked ``needs_tensorrt`` build real engines on a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, make_lrn_onnx, onnx_info, run_cli
from toolchain import lrn_op
from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.lrn_op import LRNParams
from toolchain.trt import compat, manifest as mf, tensorrt_available
from toolchain.trt.builder import check_outputs
from toolchain.trt.manifest import make_manifest
from toolchain.trt.network import check_plugin_took_nodes, find_plugin_layers
from toolchain.trt.onnx_graph import inspect_onnx
from toolchain.trt.plan import BuildPlan, plan_build
from toolchain.trt.compat import BuildOptions

HAVE_TRT = tensorrt_available()[0]






# ------------------------------------------------------------------ options


@pytest.mark.parametrize("kwargs,fragment", [
    ({"lrn": "fast"}, "--lrn must be one of plugin, native"),
    ({"min_batch": 0}, "--min-batch must be a positive integer"),
    ({"min_batch": 8, "max_batch": 4}, "--min-batch (8) is larger than --max-batch (4)"),
    ({"opt_batch": 32, "max_batch": 16}, "--opt-batch (32) is larger than --max-batch (16)"),
    ({"workspace_mib": 0}, "--workspace-mib must be a positive integer"),
])
def test_build_option_validation(kwargs, fragment):
    with pytest.raises(ToolchainError) as err:
        BuildOptions(**kwargs).validate()
    assert fragment in err.value.message


def test_all_option_problems_reported_together():
    with pytest.raises(ToolchainError) as err:
        BuildOptions(lrn="x", min_batch=-1, workspace_mib=-5).validate()
    assert err.value.message.count(";") == 2


# ------------------------------------------------------------------ typing per TensorRT major


@pytest.mark.parametrize("dtype,version,allow,expected", [
    ("fp16", "10.16.0.32", False, (True, False, "fp16")),   # 10: strongly typed FP16 export
    ("fp32", "10.16.0.32", False, (False, True, "fp16")),   # 10: FP32 export + FP16 builder flag
    ("fp32", "10.3.0", True, (False, True, "fp16")),
    ("fp16", "11.1.0.5", False, (True, False, "fp16")),     # 11: strongly typed only
    ("fp32", "11.4.0", True, (True, False, "fp32")),        # 11: FP32 only on purpose
])
def test_precision_plan(dtype, version, allow, expected):
    plan = compat.plan_precision(dtype, version, allow_fp32=allow)
    assert (plan.strongly_typed, plan.fp16_flag, plan.precision) == expected


def test_fp32_onnx_refused_under_tensorrt_11():
    with pytest.raises(ToolchainError) as err:
        compat.plan_precision("fp32", "11.1.0", allow_fp32=False)
    text = err.value.one_line()
    assert "strongly typed" in text and "--dtype fp16" in text and "--allow-fp32" in text


def test_unknown_dtype_or_version_refused():
    with pytest.raises(ToolchainError, match="unknown ONNX dtype"):
        compat.plan_precision("int8", "10.16.0")
    with pytest.raises(ToolchainError, match="not supported"):
        compat.plan_precision("fp16", "8.6.1")


# ------------------------------------------------------------------ LRN mode and profile


def test_lrn_mode_must_match_the_export():
    compat.check_lrn_mode("plugin", "plugin", 2, "FusedLRN")
    compat.check_lrn_mode("native", "native", 0, "FusedLRN")
    with pytest.raises(ToolchainError, match="has no FusedLRN nodes"):
        compat.check_lrn_mode("plugin", "native", 0, "FusedLRN")
    with pytest.raises(ToolchainError, match="has no FusedLRN nodes"):
        compat.check_lrn_mode("plugin", "plugin", 0, "FusedLRN")
    with pytest.raises(ToolchainError, match="--lrn native but the ONNX has 2 FusedLRN"):
        compat.check_lrn_mode("native", None, 2, "FusedLRN")
    with pytest.raises(ToolchainError, match="--lrn native"):
        compat.check_lrn_mode("native", "plugin", 0, "FusedLRN")


def test_profile_dynamic_batch_defaults_and_options():
    meta = {}
    p = compat.resolve_profile(["batch", 3, 64, 64], meta, BuildOptions())
    assert p.min == (1, 3, 64, 64) and p.opt == (compat.DEFAULT_MAX_BATCH, 3, 64, 64) and p.max[0] == compat.DEFAULT_MAX_BATCH
    p = compat.resolve_profile(["batch", 3, 64, 64], meta, BuildOptions(min_batch=2, opt_batch=8, max_batch=32))
    assert (p.min[0], p.opt[0], p.max[0]) == (2, 8, 32)
    p = compat.resolve_profile([None, 3, 64, 64], meta, BuildOptions(max_batch=16))
    assert (p.min[0], p.opt[0], p.max[0]) == (1, 16, 16)
    p = compat.resolve_profile(["batch", 3, 64, 64], meta, BuildOptions(opt_batch=512))
    assert p.max[0] == 512


def test_profile_static_batch_and_symbolic_image():
    p = compat.resolve_profile([4, 3, 64, 64], {}, BuildOptions())
    assert p.min == p.opt == p.max == (4, 3, 64, 64)
    with pytest.raises(ToolchainError, match="static batch of 4"):
        compat.resolve_profile([4, 3, 64, 64], {}, BuildOptions(max_batch=8))
    meta = {"image_size": 96, "in_channels": 1}
    p = compat.resolve_profile(["batch", "c", "h", "w"], meta, BuildOptions(max_batch=2))
    assert p.max == (2, 1, 96, 96)
    with pytest.raises(ToolchainError, match="axis 2 is dynamic"):
        compat.resolve_profile(["batch", 3, "h", 64], {}, BuildOptions())
    with pytest.raises(ToolchainError, match="rank 3"):
        compat.resolve_profile(["batch", 3, 64], {}, BuildOptions())


# ------------------------------------------------------------------ ONNX inspection and the plan


def test_inspect_onnx_reads_what_the_builder_needs(tmp_path):
    info = inspect_onnx(make_lrn_onnx(tmp_path / "m.onnx", with_function=True))
    assert info.dtype == "fp16" and info.dtype_source == "metadata" and info.lrn == "plugin"
    assert info.input_names == ["input"] and info.input_dims == ["batch", 16, 7, 7]
    assert info.fused_lrn_nodes == ["lrn1"] and info.nodes_without_namespace == []
    assert info.local_functions == ["toolchain:FusedLRN"]
    assert info.metadata["classes"] == ["a", "b"] and info.metadata["image_size"] == 7
    bare = inspect_onnx(make_lrn_onnx(tmp_path / "bare.onnx", dtype="fp32", namespace=False, metadata=False))
    assert bare.dtype is None and bare.dtype_source == "initializers"  # no initializers to guess from
    assert bare.nodes_without_namespace == ["lrn1"] and bare.lrn is None


def test_inspect_onnx_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 7)
    with pytest.raises(ToolchainError, match="not a readable ONNX model"):
        inspect_onnx(bad)
    with pytest.raises(ToolchainError, match="does not exist"):
        inspect_onnx(tmp_path / "absent.onnx")


def test_plan_build_combines_the_decisions(tmp_path):
    info = inspect_onnx(make_lrn_onnx(tmp_path / "m.onnx", namespace=False))
    plan = plan_build(info, BuildOptions(max_batch=4), "11.1.0")
    assert plan.precision.strongly_typed and plan.needs_plugin and plan.profile.max == (4, 16, 7, 7)
    assert any("plugin_namespace" in note for note in plan.notes)
    with pytest.raises(ToolchainError, match="metadata"):
        plan_build(inspect_onnx(make_lrn_onnx(tmp_path / "n.onnx", metadata=False)), BuildOptions(), "10.16.0")
    with pytest.raises(ToolchainError, match="expected 'input'"):
        plan_build(inspect_onnx(make_lrn_onnx(tmp_path / "x.onnx", input_name="x")), BuildOptions(), "10.16.0")
    fp32 = inspect_onnx(make_lrn_onnx(tmp_path / "f.onnx", dtype="fp32"))
    assert plan_build(fp32, BuildOptions(), "10.16.0").precision.fp16_flag
    with pytest.raises(ToolchainError, match="--allow-fp32"):
        plan_build(fp32, BuildOptions(), "11.1.0")


def test_existing_outputs_refused_before_building(tmp_path):
    engine = tmp_path / "m.engine"
    check_outputs(engine, force=False)
    mf.layers_path(engine).write_text("{}")
    with pytest.raises(ToolchainError, match="layers.json already exists"):
        check_outputs(engine, force=False)
    check_outputs(engine, force=True)


# ------------------------------------------------------------------ did the plugin take the nodes?


def test_plugin_must_take_every_fused_node():
    info = onnx_info()
    check_plugin_took_nodes(info, ["lrn1", "lrn2"], 0, "plugin")
    with pytest.raises(ToolchainError, match="did not find the plugin creator"):
        check_plugin_took_nodes(info, [], 0, "plugin")  # what a function import looks like
    with pytest.raises(ToolchainError, match="1 plugin layer"):
        check_plugin_took_nodes(info, ["lrn1"], 0, "plugin")
    with pytest.raises(ToolchainError, match="built-in LRN"):
        check_plugin_took_nodes(info, ["lrn1", "lrn2"], 1, "plugin")
    check_plugin_took_nodes(onnx_info(fused_lrn_nodes=[]), [], 2, "native")


def test_find_plugin_layers_in_inspector_json():
    info = {"Layers": [
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution"},
        {"Name": "lrn1", "LayerType": "PluginV3", "Inputs": [], "Outputs": []},
        {"Name": "lrn2", "LayerType": "PluginV3", "PluginType": "FusedLRN"},
        {"Name": "other_plugin", "LayerType": "PluginV3"},
    ], "Bindings": ["input", "logits"]}
    assert find_plugin_layers(json.dumps(info), node_names=["lrn1", "lrn2"]) == ["lrn1", "lrn2"]
    assert find_plugin_layers(info, node_names=[]) == ["lrn2"]
    assert find_plugin_layers(["lrn1", "lrn2"]) == []  # LAYER_NAMES_ONLY format carries no types


def test_manifest_body_is_valid_and_hashes_the_plugin(tmp_path):
    plugin = tmp_path / "libtoolchain_lrn_plugin.so"
    plugin.write_bytes(b"placeholder")
    info = onnx_info(metadata={"classes": ["x", "y"], "image_size": 64, "mean": [0.5]})
    plan = BuildPlan(options=BuildOptions(max_batch=8), precision=compat.plan_precision("fp16", "10.16.0"),
                     profile=compat.Profile((1, 3, 64, 64), (8, 3, 64, 64), (8, 3, 64, 64)), input_name="input",
                     needs_plugin=True)
    io = {"inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3, 64, 64],
                      "profile": plan.profile.to_dict()}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 2]}]}
    body = make_manifest(engine_path=tmp_path / "m.engine", engine_sha256="e" * 64, engine_bytes=10, info=info, plan=plan,
                         plugin_path=plugin, plugin_sha256=mf.sha256_file(plugin), tensorrt_version="10.16.0.32",
                         tensorrt_package="tensorrt", device={"name": "NVIDIA H100", "compute_capability": "9.0",
                                                              "cuda_runtime": "12.9", "nvidia_driver": "575.57.08"},
                         io=io, layers={"file": "m.engine.layers.json"}, parser={"plugin_override_flag": True},
                         build_seconds=12.345)
    path = mf.write_manifest(tmp_path / "m.engine", body)
    data = mf.read_manifest(path)
    assert data["plugin"]["sha256"] == mf.sha256_file(plugin) and data["plugin"]["creator"]["name"] == lrn_op.OP_TYPE
    assert data["model"] == {"classes": ["x", "y"], "image_size": 64, "mean": [0.5]}
    assert data["build"]["precision"] == "fp16" and data["build"]["strongly_typed"] is True
    assert data["build"]["profile"]["input"]["max"] == [8, 3, 64, 64] and data["build"]["max_batch"] == 8
    assert data["environment"]["gpu"]["compute_capability"] == "9.0" and data["environment"]["nvidia_driver"] == "575.57.08"


# ------------------------------------------------------------------ runtime helpers (no GPU)


def test_runtime_device_and_cast_rules():
    from toolchain.trt.runtime import cast_plan, parse_device

    assert parse_device("cuda") == 0 and parse_device("cuda:3") == 3 and parse_device(1) == 1
    with pytest.raises(ToolchainError, match="CUDA device"):
        parse_device("cpu")
    assert cast_plan("float32", "float16", "input") is True and cast_plan("float16", "float16", "input") is False
    with pytest.raises(ToolchainError, match="dtype int64"):
        cast_plan("int64", "float16", "input")


def test_runner_reads_profile_batches_from_the_manifest(tmp_path):
    from tests.helpers import fake_build_outputs
    from toolchain.trt.runtime import TensorRTRunner

    engine, _ = fake_build_outputs(tmp_path / "a", min_batch=1, max_batch=16)
    runner = TensorRTRunner(engine)
    assert runner.max_batch == 16 and runner.static_batch is None and not runner.is_active
    engine, _ = fake_build_outputs(tmp_path / "b", min_batch=4, opt_batch=4, max_batch=4)
    assert TensorRTRunner(engine).static_batch == 4


def test_runtime_and_builder_import_no_torch_or_tensorrt():
    code = ("import sys; import toolchain.trt.runtime, toolchain.trt.builder, toolchain.trt.triton;"
            "bad = [m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ without TensorRT


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_line_through_the_cli(tmp_path):
    from tests.helpers import hide_modules

    onnx_path = make_lrn_onnx(tmp_path / "x.onnx")
    result = run_cli("build", onnx_path, "-o", tmp_path / "x.engine",
                     env=hide_modules(tmp_path / "h", "tensorrt_lean", "tensorrt_rtx"))
    assert_one_line_error(result, "no TensorRT builder is installed", "pip install tensorrt-rtx")
    assert result.code == MissingDependencyError.exit_code
    assert not any(p.name.startswith("x.engine") for p in tmp_path.iterdir())  # nothing half-written


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_runner_error(tmp_path, monkeypatch):
    from tests.helpers import fake_build_outputs
    from toolchain.trt.runtime import TensorRTRunner

    monkeypatch.setitem(sys.modules, "tensorrt_lean", None)  # as on a machine without the lean runtime either
    engine, _ = fake_build_outputs(tmp_path)
    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
        with TensorRTRunner(engine):
            pass


def test_build_cli_user_errors_are_one_line(tmp_path):
    assert_one_line_error(run_cli("build", tmp_path / "absent.onnx"), "does not exist")
    onnx_path = make_lrn_onnx(tmp_path / "x.onnx")
    assert_one_line_error(run_cli("build", onnx_path, "--min-batch", "8", "--max-batch", "4"), "larger than")
    (tmp_path / "x.engine").write_bytes(b"old")
    assert_one_line_error(run_cli("build", onnx_path), "already exists", "--force")


# ------------------------------------------------------------------ with TensorRT and a GPU


@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory):
    from toolchain.plugin import build_plugins, find_library

    found = find_library("tensorrt")
    if found is not None:
        return found
    result = build_plugins(tmp_path_factory.mktemp("plugins"), cuda_archs="native")
    if not result["tensorrt"]:
        pytest.fail(f"TensorRT is installed but the plugin did not build: {result['tensorrt_skipped']}")
    from pathlib import Path

    return Path(result["tensorrt"])


def _torch_lrn(x: np.ndarray, p: LRNParams) -> np.ndarray:
    import torch

    t = torch.from_numpy(x.astype(np.float32))
    return torch.nn.functional.local_response_norm(t, p.size, p.alpha, p.beta, p.bias).numpy()


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
@pytest.mark.parametrize("params", [lrn_op.PAPER_LRN, LRNParams(4, 2e-3, 0.6, 1.5)], ids=["paper", "even"])
def test_plugin_only_engine_matches_torch(tmp_path, plugin_library, dtype, params):
    from toolchain.trt.builder import build_engine
    from toolchain.trt.runtime import TensorRTRunner

    onnx_path = make_lrn_onnx(tmp_path / "lrn.onnx", dtype=dtype, params=params, with_function=True)
    engine = build_engine(onnx_path, tmp_path / "lrn.engine", plugin_library=plugin_library, max_batch=4,
                          opt_batch=2, allow_fp32=True)
    manifest = mf.read_manifest(engine)
    assert manifest["layers"]["network_plugin_layers"] == ["lrn1"]  # the plugin, not the local function
    assert manifest["plugin"]["sha256"] == mf.sha256_file(plugin_library)
    rng = np.random.default_rng(0)
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    with TensorRTRunner(engine) as runner:
        for batch in (1, 3, 4):
            x = (rng.standard_normal((batch, 16, 7, 7)) * 20).astype(np_dtype)  # large enough for LRN to matter
            got = runner.infer({"input": x})["logits"].astype(np.float32)
            want = _torch_lrn(x, params)
            # TensorRT 10 may run the plugin in FP16 for an FP32 ONNX (FP16 builder flag)
            tol = 5e-3 if manifest["build"]["precision"] == "fp16" else 1e-5
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        with pytest.raises(ToolchainError, match="outside the optimization profile"):
            runner.infer({"input": np.zeros((5, 16, 7, 7), np_dtype)})


@pytest.mark.needs_tensorrt
def test_cuda_graphs_per_shape_equal_the_plain_runner(tmp_path, plugin_library):
    import torch

    from toolchain.trt.builder import build_engine
    from toolchain.trt.runtime import TensorRTRunner

    onnx_path = make_lrn_onnx(tmp_path / "lrn.onnx", dtype="fp16", with_function=True)
    engine = build_engine(onnx_path, tmp_path / "lrn.engine", plugin_library=plugin_library, max_batch=8, opt_batch=8)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 16, 7, 7)) * 20).astype(np.float16)
    xc = torch.from_numpy(x).cuda()
    with TensorRTRunner(engine, cuda_graph=True) as graphed, TensorRTRunner(engine) as plain:
        for batch in (8, 2, 8, 2):
            want = plain.infer({"input": x[:batch]})["logits"]
            np.testing.assert_array_equal(graphed.infer({"input": x[:batch]})["logits"], want)
            got = graphed.infer_torch({"input": xc[:batch]})["logits"]
            assert torch.equal(got, plain.infer_torch({"input": xc[:batch]})["logits"])
            np.testing.assert_array_equal(got.cpu().numpy(), want)
        contexts = [graphed._graphs.get(key)["context"] for key in graphed._graphs.keys()]
        assert len(contexts) >= 2 and len({id(c) for c in contexts}) == len(contexts)  # one context per graph
        assert all(c is not graphed._context for c in contexts)


_VC_RUN = """
import sys, numpy as np
from toolchain.trt.runtime import TensorRTRunner
x = (np.random.default_rng(0).standard_normal((2, 16, 7, 7)) * 20).astype(np.float16)
with TensorRTRunner(sys.argv[1]) as runner:
    np.save(sys.argv[2], runner.infer({"input": x})["logits"])
    print(runner._trt.__name__)
"""


@pytest.mark.needs_tensorrt
def test_version_compatible_engine_carries_its_plugin(tmp_path, plugin_library):
    from toolchain.plugin import LIBRARY_NAMES

    dynamic = plugin_library.parent / LIBRARY_NAMES["tensorrt_dynamic"]
    assert dynamic.is_file(), f"the dynamic plugin variant was not built beside {plugin_library}"
    onnx_path = make_lrn_onnx(tmp_path / "lrn.onnx", dtype="fp16", with_function=True)
    engine = tmp_path / "vc.engine"
    build = (f"from toolchain.trt.builder import build_engine; build_engine({str(onnx_path)!r}, {str(engine)!r}, "
             f"plugin_library={str(dynamic)!r}, max_batch=4, opt_batch=2, version_compatible=True)")
    proc = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = mf.read_manifest(engine)
    assert manifest["build"]["version_compatible"] and manifest["plugin"]["serialized_in_engine"]
    runs = [({}, "tensorrt")]
    import importlib.util

    if importlib.util.find_spec("tensorrt_lean") is not None:
        runs.append(({"TOOLCHAIN_TRT_LEAN": "1"}, "tensorrt_lean"))
    x = (np.random.default_rng(0).standard_normal((2, 16, 7, 7)) * 20).astype(np.float16)
    for env, package in runs:  # a fresh process each: the plugin comes from the engine, no file is loaded
        out = tmp_path / f"{package}.npy"
        proc = subprocess.run([sys.executable, "-c", _VC_RUN, str(engine), str(out)], capture_output=True, text=True,
                              env={**__import__("os").environ, **env})
        assert proc.returncode == 0 and proc.stdout.split()[-1] == package, proc.stderr
        np.testing.assert_allclose(np.load(out).astype(np.float32), _torch_lrn(x, LRNParams(5, 1e-4, 0.75, 1.0)),
                                   rtol=5e-3, atol=5e-3)


@pytest.mark.needs_tensorrt
def test_alexnet_engine_matches_eager_and_round_trips(tmp_path, plugin_library):
    import torch

    from toolchain.export import export_model
    from toolchain.models import VARIANTS, build_model
    from toolchain.trt.builder import build_engine
    from toolchain.trt.runtime import TensorRTRunner

    torch.manual_seed(0)
    spec = VARIANTS["paper"]
    model = build_model("paper", image_size=64, num_classes=10).eval()
    meta = {"variant": "paper", "num_classes": 10, "image_size": 64, "in_channels": 3, "mean": list(spec.mean),
            "std": list(spec.std), "classes": [f"c{i}" for i in range(10)]}
    trt_major = int(tensorrt_available()[1].split()[1].split(".")[0])
    dtype = "fp16" if trt_major >= 11 else "fp32"  # 10.x also covers the FP16 builder-flag path
    onnx_path = export_model(model, meta, output=tmp_path / "alexnet.onnx", dtype=dtype).path
    cache = tmp_path / "timing.cache"
    engine = build_engine(onnx_path, tmp_path / "alexnet.engine", plugin_library=plugin_library, max_batch=8,
                          opt_batch=8, timing_cache=cache)
    assert cache.is_file() and mf.layers_path(engine).is_file()
    manifest = mf.read_manifest(engine)
    assert manifest["build"]["precision"] == "fp16" and len(manifest["layers"]["network_plugin_layers"]) == 2
    assert manifest["io"]["inputs"][0]["profile"]["max"] == [8, 3, 64, 64]

    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    scale = float(np.abs(want).max())
    with TensorRTRunner(engine) as runner:
        got = runner.infer({"input": x.numpy()})["logits"]
    assert np.abs(got - want).max() <= 2e-2 * scale  # FP16 engine vs FP32 eager

    # torch tensors in and out, with and without CUDA graphs, agree with the numpy path
    xc = x.cuda()
    with TensorRTRunner(engine, cuda_graph=True) as graphed, TensorRTRunner(engine) as plain:
        for batch in (8, 2, 8):
            a = graphed.infer_torch({"input": xc[:batch]})["logits"]
            b = plain.infer_torch({"input": xc[:batch]})["logits"]
            assert a.is_cuda and torch.equal(a, b)
        np.testing.assert_allclose(a.cpu().numpy(), got, rtol=0, atol=1e-6 * scale)

    # a rebuilt-elsewhere or tampered engine is refused by name before deserialization
    tampered = tmp_path / "alexnet.engine"
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ToolchainError, match="alexnet.engine has sha256"):
        TensorRTRunner(engine).activate()
