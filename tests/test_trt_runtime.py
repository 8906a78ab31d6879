"""The TensorRT runner's decisions, testable without a GPU: CUDA-graph bookkeeping, which plugin
library an engine gets, cuda-python vs torch, activation order, capture errors, timing caches,
the bytes the ONNX parser gets, the lean runtime. GPU tests are marked ``needs_tensorrt``."""

from __future__ import annotations

import importlib.util
import json
import types

import pytest

from tests.helpers import assert_one_line_error, fake_build_outputs, hide_modules, make_lrn_onnx, run_cli
from toolchain import lrn_op
from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.trt import compat, cuda_io as bk, runtime as rt

HAVE_LEAN = importlib.util.find_spec("tensorrt_lean") is not None
HAVE_FULL_TRT = importlib.util.find_spec("tensorrt") is not None


# ------------------------------------------------------------------ CUDA graphs: one context per graph


def test_graph_cache_gives_every_shape_its_own_context():
    made = []

    def new_context(shape):
        made.append(types.SimpleNamespace(shape=shape))
        return made[-1]

    cache = bk.GraphCache(8)
    seen = {}
    for batch in (8, 2, 8, 2, 8):  # the sequence that replayed stale state with one shared context
        key = ("numpy", (("input", (batch, 3)),))
        entry = cache.get(key)
        if entry is None:
            entry = cache.add(key, {"graph": f"graph{batch}", "context": new_context(batch)})
        seen.setdefault(batch, entry["context"])
        assert entry["context"] is seen[batch] and entry["context"].shape == batch
    assert len(made) == 2 and made[0] is not made[1]
    with pytest.raises(ValueError, match="context of its own"):
        cache.add(("numpy", "other"), {"graph": "g", "context": made[0]})
    with pytest.raises(ValueError, match="context of its own"):
        cache.add(("numpy", "none"), {"graph": "g"})


def test_graph_cache_is_an_lru_that_destroys_what_leaves():
    destroyed = []
    cache = bk.GraphCache(2, destroyed.append)
    for key in ("a", "b"):
        cache.add(key, {"graph": f"g-{key}", "context": object()})
    cache.get("a")  # now b is the least recently used
    cache.add("c", {"graph": "g-c", "context": object()})
    assert destroyed == ["g-b"] and cache.keys() == ["a", "c"]
    assert cache.drop(lambda key: key == "a") == 1 and destroyed == ["g-b", "g-a"]
    cache.clear()
    assert len(cache) == 0 and destroyed == ["g-b", "g-a", "g-c"]


# ------------------------------------------------------------------ which engines get the plugin library


def test_registry_passes_the_plugin_to_plugin_engines_only(tmp_path):
    from tests.helpers import fake_build_outputs
    from toolchain.backends import Context, Files, select

    plugin_engine, _ = fake_build_outputs(tmp_path / "p")
    native_engine, _ = fake_build_outputs(tmp_path / "n", plugin=False)
    names = ["tensorrt-plugin", "tensorrt-plugin-graph", "tensorrt-native", "tensorrt-native-graph"]
    candidates = select(names, Context(input_shape=(3, 64, 64), files=Files(
        engine=plugin_engine, native_engine=native_engine, plugin_library=tmp_path / "lib.so")))
    # Building a runner loads nothing (activate does): safe without TensorRT.
    libraries = {c.name: c.make().plugin_library for c in candidates}
    assert libraries == {"tensorrt-plugin": tmp_path / "lib.so", "tensorrt-plugin-graph": tmp_path / "lib.so",
                         "tensorrt-native": None, "tensorrt-native-graph": None}


# ------------------------------------------------------------------ cuda-python, torch, the driver


def test_cuda_python_driver_requirements():
    assert bk.cuda_python_driver_requirement("13.0.1") == "580.65.06"
    assert bk.cuda_python_driver_requirement("12.9.2") == "525.60.13"
    assert bk.cuda_python_driver_requirement("11.8.0") is None
    assert bk.cuda_python_driver_requirement("garbage") is None


def test_backend_choice_falls_back_to_torch_or_names_the_driver():
    assert bk.choose_cuda_io(None, "13.0.1", torch_installed=False) == "cuda-python"
    assert bk.choose_cuda_io("cudaErrorInsufficientDriver", "13.0.1", torch_installed=True) == "torch"
    with pytest.raises(MissingDependencyError) as info:
        bk.choose_cuda_io("CUDA cudaSetDevice failed: cudaErrorInsufficientDriver", "13.0.1", torch_installed=False)
    line = info.value.one_line()
    assert "driver >= 580.65.06" in line and "\n" not in line and "tensorrt-cu12" in line
    with pytest.raises(MissingDependencyError, match="neither cuda-python nor torch"):
        bk.choose_cuda_io("not installed", None, torch_installed=False)


def test_torch_backend_makes_cuda_n_current_before_deserializing(monkeypatch):
    torch = pytest.importorskip("torch")
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    bk.TorchCudaIO(3)
    assert calls == [3]


def test_deactivate_synchronizes_the_torch_stream_too():
    events = []
    runner = rt.TensorRTRunner("unused.engine")
    runner._torch_state = {"stream": types.SimpleNamespace(synchronize=lambda: events.append("torch stream"))}
    runner._cuda = types.SimpleNamespace(close=lambda: events.append("backend close"),
                                            synchronize=lambda: events.append("backend stream"),
                                            destroy_graph=lambda graph: events.append(f"destroy {graph}"))
    runner._graphs = bk.GraphCache(1, runner._release_graph)
    runner._graphs.add("a", {"graph": "ga", "context": object()})
    runner._graphs.add("b", {"graph": "gb", "context": object()})  # evicts "a": wait for it before freeing
    assert events == ["torch stream", "backend stream", "destroy ga"]
    events.clear()
    runner._deactivate()
    assert events == ["torch stream", "backend stream", "torch stream", "backend stream", "destroy gb", "backend close"]
    assert "_torch_state" not in runner.__dict__


def test_version_and_gpu_checks_run_before_the_plugin_library_is_loaded(tmp_path, monkeypatch):
    import toolchain.trt
    import toolchain.trt.device
    import toolchain.trt.plugins

    engine, plugin = fake_build_outputs(tmp_path, tensorrt="10.16.0.32", cc="9.0")
    loaded = []
    monkeypatch.setattr(toolchain.trt, "import_tensorrt",
                        lambda **kw: types.SimpleNamespace(__name__="tensorrt", __version__="10.12.0.36"))
    monkeypatch.setattr(toolchain.trt.device, "device_info", lambda index: {"compute_capability": "8.0", "name": "A100"})
    monkeypatch.setattr(toolchain.trt.plugins, "load_plugin_library", lambda *a, **kw: loaded.append(a))
    with pytest.raises(ToolchainError, match="built with TensorRT 10.16.0.32.*compute capability 9.0") as info:
        rt.TensorRTRunner(engine).activate()
    assert "cannot run here" in info.value.one_line()
    assert loaded == []  # the library's code never ran


# ------------------------------------------------------------------ capture errors


class _StubCudaRT:
    """The four cuda-python runtime calls CudaRT.capture makes, with a failing end of capture."""

    class cudaError_t:  # noqa: N801 (cuda-python's names)
        cudaSuccess = 0

    class cudaStreamCaptureMode:  # noqa: N801
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1

    modes: list = []

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: N802
        self.modes.append(mode)
        return (0,)

    def cudaStreamEndCapture(self, stream):  # noqa: N802
        return (901, None)  # cudaErrorStreamCaptureInvalidated, as after a failed enqueue

    def cudaGetErrorName(self, err):  # noqa: N802
        return (0, b"cudaErrorStreamCaptureInvalidated")

    def cudaGetErrorString(self, err):  # noqa: N802
        return (0, b"capture invalidated")


def test_a_failed_enqueue_is_not_hidden_by_the_end_of_capture():
    from toolchain.trt.device import CudaRT

    cuda = CudaRT.__new__(CudaRT)
    cuda.rt = _StubCudaRT()

    def enqueue():
        raise ToolchainError("TensorRT inference failed: plugin enqueue returned 1")

    with pytest.raises(ToolchainError, match="inference failed"):
        cuda.capture("stream", enqueue)
    with pytest.raises(ToolchainError, match="cudaStreamEndCapture"):  # a capture error alone is still reported
        cuda.capture("stream", lambda: None)
    # Thread-local, as trtexec: other threads' cudaMalloc must not break (or be broken by) the capture.
    assert cuda.rt.modes == [_StubCudaRT.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal] * 2


def test_torch_capture_reports_the_enqueue_error():
    def capture(body):  # like torch.cuda.graph's __exit__ raising after a failed enqueue
        body()
        raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    def enqueue():
        raise ToolchainError("TensorRT inference failed: plugin enqueue returned 1")

    with pytest.raises(ToolchainError, match="inference failed"):
        bk.run_capture(capture, enqueue)
    assert bk.run_capture(lambda body: (body(), "graph")[1], lambda: None) == "graph"


# ------------------------------------------------------------------ timing cache


class _StubConfig:
    """create/set_timing_cache as TensorRT answers them: None for bytes it cannot read."""

    def __init__(self):
        self.cache = None

    def create_timing_cache(self, data):
        if data and not data.startswith(b"GOOD"):
            return None
        return types.SimpleNamespace(data=bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache is None:  # what the pybind signature does with None
            raise TypeError("set_timing_cache(): incompatible function arguments")
        self.cache = cache
        return True


def test_corrupt_timing_cache_gives_a_fresh_cache_and_a_warning(tmp_path):
    from toolchain.trt.builder import set_timing_cache

    logs = []
    path = tmp_path / "timing.cache"
    path.write_bytes(b"\x00garbage")
    config = _StubConfig()
    assert set_timing_cache(config, path, logs.append) == "replaced"
    assert config.cache.data == b"" and len(logs) == 1 and "unreadable" in logs[0] and str(path) in logs[0]
    path.write_bytes(b"GOOD cache")
    assert set_timing_cache(config, path, logs.append) == "loaded" and config.cache.data == b"GOOD cache"
    assert set_timing_cache(_StubConfig(), tmp_path / "absent.cache", logs.append) == "new" and len(logs) == 1


# ------------------------------------------------------------------ the bytes the parser gets


def test_parser_gets_the_model_without_the_local_function(tmp_path):
    import onnx

    from toolchain.trt.onnx_graph import parser_model_bytes

    path = make_lrn_onnx(tmp_path / "m.onnx", with_function=True)
    on_disk = onnx.load(str(path))
    assert [f.name for f in on_disk.functions] == [lrn_op.OP_TYPE]
    parsed = onnx.ModelProto.FromString(parser_model_bytes(path))
    assert list(parsed.functions) == []
    node = parsed.graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_namespace"] == lrn_op.PLUGIN_NAMESPACE.encode()
    assert attrs["plugin_version"] == lrn_op.PLUGIN_VERSION.encode()
    # everything else is unchanged
    del on_disk.functions[:]
    assert parsed == on_disk
    assert [f.name for f in onnx.load(str(path)).functions] == [lrn_op.OP_TYPE]  # the file keeps it


def test_plugin_check_hint_points_at_the_nodes_and_the_library():
    from tests.helpers import onnx_info
    from toolchain.trt.network import check_plugin_took_nodes

    with pytest.raises(ToolchainError) as info:
        check_plugin_took_nodes(onnx_info(), [], 0, "plugin")
    line = info.value.one_line()
    assert "plugin_namespace" in line and "toolchain plugin build" in line and "ENABLE_PLUGIN_OVERRIDE" not in line


# ------------------------------------------------------------------ version-compatible engines, lean runtime


def test_host_code_only_for_version_compatible_manifests():
    assert rt.host_code_allowed({"build": {"version_compatible": True}})
    assert not rt.host_code_allowed({"build": {"version_compatible": False}})
    assert not rt.host_code_allowed({"build": {}}) and not rt.host_code_allowed(None)
    assert rt.lean_runtime_problem("tensorrt", {"build": {}}, "e.engine") is None
    assert rt.lean_runtime_problem("tensorrt_lean", {"build": {"version_compatible": True}}, "e.engine") is None
    assert "not version-compatible" in rt.lean_runtime_problem("tensorrt_lean", {"build": {}}, "e.engine")


def test_version_compatible_engines_run_on_later_tensorrt_of_the_same_major():
    manifest = {"environment": {"tensorrt": "10.13.0.35", "gpu": {"compute_capability": "9.0"}},
                "build": {"version_compatible": True}}
    check = lambda version: compat.check_engine_compat(manifest, tensorrt_version=version, compute_capability="9.0")
    assert check("10.16.0.32").ok and check("10.16.0.32").notes
    assert not check("10.12.0.36").ok and not check("11.4.0.106").ok
    manifest["build"]["version_compatible"] = False
    assert not check("10.16.0.32").ok


def test_a_version_compatible_engine_loads_no_plugin_file(tmp_path):
    engine, plugin = fake_build_outputs(tmp_path)
    manifest = json.loads((tmp_path / "model.engine.manifest.json").read_text())
    runner = rt.TensorRTRunner(engine, plugin_library=plugin)
    assert runner._plugin_to_load(manifest) == plugin
    manifest["plugin"]["serialized_in_engine"] = True
    manifest["build"]["version_compatible"] = True
    assert runner._plugin_to_load(manifest) is None and "not loaded" in runner.compat_notes[0]




@pytest.mark.skipif(not HAVE_LEAN or HAVE_FULL_TRT, reason="needs tensorrt_lean without the full tensorrt")
def test_lean_only_build_says_building_needs_full_tensorrt(tmp_path):
    onnx_path = make_lrn_onnx(tmp_path / "x.onnx")
    result = run_cli("build", onnx_path, "-o", tmp_path / "x.engine", "--version-compatible",
                     env=hide_modules(tmp_path.parent / f"{tmp_path.name}-hidden", "tensorrt_rtx"))
    assert_one_line_error(result, "building an engine needs a TensorRT builder", "tensorrt_lean 11.4")
    assert result.code == MissingDependencyError.exit_code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.onnx"]  # nothing half-written


@pytest.mark.skipif(not HAVE_LEAN or HAVE_FULL_TRT, reason="needs tensorrt_lean without the full tensorrt")
def test_lean_only_parity_refuses_an_engine_the_lean_runtime_cannot_run(tmp_path):
    engine, _ = fake_build_outputs(tmp_path / "e")
    report = tmp_path / "report.json"
    result = run_cli("parity", "--backend", "tensorrt", "--engine", engine, "--variant", "paper", "--image-size", "64",
                     "--num-classes", "3", "--random", "2", "--batch-sizes", "1", "--report", report)
    from toolchain.environment import cuda_unavailable

    if cuda_unavailable():  # the most fundamental reason first, as for every backend
        assert_one_line_error(result, "tensorrt cannot run here: no CUDA GPU")
    else:
        assert_one_line_error(result, "not version-compatible", "tensorrt_lean", "--version-compatible")
    assert not report.exists()


def test_runner_uses_the_lean_runtime_when_full_tensorrt_is_absent(tmp_path):
    if not HAVE_LEAN:
        pytest.skip("tensorrt_lean is not installed")
    import subprocess
    import sys

    code = "from toolchain.trt import import_tensorrt; print(import_tensorrt(lean_ok=True).__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, **hide_modules(tmp_path, "tensorrt")})
    assert proc.returncode == 0 and proc.stdout.strip() == "tensorrt_lean", proc.stderr


def test_triton_readme_commands_each_define_what_they_use(tmp_path):
    from toolchain.trt.triton import readme_text

    engine, plugin = fake_build_outputs(tmp_path)
    manifest = json.loads((tmp_path / "model.engine.manifest.json").read_text())
    text = readme_text(manifest, model_name="alexnet", plugin_name=plugin.name, max_batch_size=16)
    blocks = [b for b in text.split("```sh")[1:] if "tritonserver" in b.split("```")[0]]
    assert len(blocks) == 2
    for block in blocks:
        body = block.split("```")[0]
        assert "$REPO" not in body or "REPO=" in body, body


# ------------------------------------------------------------------ TensorRT objects that failed to initialize


class _ErrorLogger:
    def __init__(self):
        self.errors = []

    def last_error(self):
        return self.errors[-1] if self.errors else "see the TensorRT log above"


def test_an_error_logged_while_creating_a_tensorrt_object_is_a_one_line_failure():
    from toolchain.trt import create_checked

    logger = _ErrorLogger()
    assert create_checked(lambda: "runtime", logger, "runtime") == "runtime"

    def failing():  # what Runtime(logger) does when CUDA cannot initialize: log, then return an object
        logger.errors.append("createInferRuntime: CUDA initialization failure with error: 35")
        return object()

    with pytest.raises(ToolchainError, match="could not create its runtime: createInferRuntime.*error: 35") as info:
        create_checked(failing, logger, "runtime")
    assert "driver" in info.value.one_line()


@pytest.mark.skipif(not HAVE_LEAN, reason="needs tensorrt_lean")
def test_the_lean_runtime_without_a_usable_driver_fails_in_one_line_not_a_crash():
    import subprocess
    import sys

    from toolchain.environment import cuda_unavailable

    if cuda_unavailable() is None:
        pytest.skip("CUDA works here: Runtime(logger) succeeds")
    # In a child process: the unchecked object segfaults on first use (tensorrt_lean 11.4).
    code = ("import tensorrt_lean as trt\n"
            "from toolchain.trt import create_checked, make_logger\n"
            "from toolchain.errors import ToolchainError\n"
            "logger = make_logger(trt, log=lambda m: None)\n"
            "try:\n"
            "    create_checked(lambda: trt.Runtime(logger), logger, 'runtime').engine_host_code_allowed\n"
            "except ToolchainError as exc:\n"
            "    print(exc.one_line())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert "TensorRT could not create its runtime" in done.stdout and "CUDA" in done.stdout
