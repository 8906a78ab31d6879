"""The FusedLRN libraries: names, CMake build, C ABI, kernel logic (on the host), plugin headers.

Nothing here needs a GPU. The CMake build compiles for one architecture (sm_80) to
keep CI time down. Tests against TensorRT headers run only when TOOLCHAIN_TRT_HEADERS
names a folder holding NvInfer.h (they never fetch anything).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from toolchain import lrn_op
from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.plugin import LIBRARY_NAMES, build_plugins, default_source_dir, find_nvcc, load_kernel_library

PLUGIN_DIR = default_source_dir() / "lrn"
CUDA_ERROR_INVALID_VALUE = 1


def _trt_headers() -> Path:
    value = os.environ.get("TOOLCHAIN_TRT_HEADERS")
    if not value:
        pytest.skip("TOOLCHAIN_TRT_HEADERS is not set (a TensorRT include folder for the header checks)")
    path = Path(value)
    if not (path / "NvInfer.h").is_file():
        pytest.skip(f"TOOLCHAIN_TRT_HEADERS={value} holds no NvInfer.h")
    return path


def _cuda_include() -> Path:
    nvcc = find_nvcc()
    candidates = [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"]
    if nvcc is not None:
        candidates.append(nvcc.resolve().parent.parent / "include")
    for c in candidates:
        if (c / "cuda_runtime_api.h").is_file():
            return c
    pytest.skip("cuda_runtime_api.h not found (set CUDA_HOME)")


# --- names -------------------------------------------------------------------------------

def test_op_names_match_python():
    text = (PLUGIN_DIR / "lrnOpNames.h").read_text()
    names = dict(re.findall(r'constexpr\s+char\s+const\s*\*\s*(kLRN_\w+)\s*\{\s*"([^"]*)"\s*\}', text))
    assert names["kLRN_PLUGIN_NAME"] == lrn_op.OP_TYPE
    assert names["kLRN_PLUGIN_VERSION"] == lrn_op.PLUGIN_VERSION
    assert names["kLRN_PLUGIN_NAMESPACE"] == lrn_op.PLUGIN_NAMESPACE
    fields = {v for k, v in names.items() if k.startswith("kLRN_FIELD_")}
    assert fields == set(lrn_op.FIELDS)
    # The plugin reports these names; the creator declares the same fields.
    plugin = (PLUGIN_DIR / "lrnPlugin.cpp").read_text()
    for key in ("kLRN_FIELD_SIZE", "kLRN_FIELD_ALPHA", "kLRN_FIELD_BETA", "kLRN_FIELD_BIAS"):
        assert plugin.count(key) >= 3, key  # declared, serialized, parsed


# --- errors without tools ----------------------------------------------------------------

def test_build_without_cmake_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="cmake"):
        build_plugins(tmp_path / "b")


def test_build_without_nvcc_is_one_line_error(monkeypatch, tmp_path):
    import toolchain.plugin as plugin

    monkeypatch.setattr(plugin, "find_nvcc", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/cmake" if name == "cmake" else None)
    with pytest.raises(MissingDependencyError, match="nvcc"):
        build_plugins(tmp_path / "b")


def test_build_refuses_foreign_folder(tmp_path):
    if shutil.which("cmake") is None or find_nvcc() is None:
        pytest.skip("needs cmake and nvcc to get past the tool checks")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ToolchainError, match="not a CMake build folder"):
        build_plugins(tmp_path)


# --- CMake build of the kernel library ----------------------------------------------------

@pytest.fixture(scope="module")
def kernel_build(tmp_path_factory):
    if shutil.which("cmake") is None or find_nvcc() is None:
        pytest.skip("needs cmake and nvcc")
    return build_plugins(tmp_path_factory.mktemp("plugins-build"), cuda_archs="80")


@pytest.mark.needs_nvcc
def test_kernel_library_builds_and_exports_c_abi(kernel_build):
    lib_path = Path(kernel_build["kernels"])
    assert lib_path.name == LIBRARY_NAMES["kernels"] and lib_path.is_file()
    if shutil.which("nm"):
        out = subprocess.run(["nm", "-D", "--defined-only", str(lib_path)], capture_output=True, text=True,
                             check=True).stdout
        exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
        assert {"toolchain_lrn_forward", "toolchain_lrn_error_string", "toolchain_lrn_abi_version"} <= exported
        # The static CUDA runtime stays private.
        assert not any(name.startswith("cuda") for name in exported)
    # Without TensorRT on this machine the plugin is skipped, with a reason.
    if kernel_build["tensorrt"] is None:
        assert kernel_build["tensorrt_skipped"]


@pytest.mark.needs_nvcc
def test_c_abi_validates_arguments_without_gpu(kernel_build):
    lib = load_kernel_library(kernel_build["kernels"])
    assert lib.toolchain_lrn_abi_version() == 1
    fwd = lib.toolchain_lrn_forward
    good = dict(x=16, y=1 << 20, dtype=0, n=1, c=8, h=2, w=2, size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def call(**over):
        a = {**good, **over}
        return fwd(a["x"], a["y"], a["dtype"], a["n"], a["c"], a["h"], a["w"], a["size"], a["alpha"], a["beta"],
                   a["bias"], None)

    # Rejected before touching the GPU (pointers are never dereferenced on the host).
    assert call(size=0) == CUDA_ERROR_INVALID_VALUE
    assert call(bias=0.0) == CUDA_ERROR_INVALID_VALUE
    assert call(alpha=-1.0) == CUDA_ERROR_INVALID_VALUE
    assert call(alpha=float("nan")) == CUDA_ERROR_INVALID_VALUE
    assert call(dtype=2) == CUDA_ERROR_INVALID_VALUE
    assert call(c=-1) == CUDA_ERROR_INVALID_VALUE
    assert call(x=0) == CUDA_ERROR_INVALID_VALUE
    assert call(y=16) == CUDA_ERROR_INVALID_VALUE  # in-place / overlapping
    assert call(n=0) == 0  # empty tensor: nothing to do
    assert b"invalid argument" in lib.toolchain_lrn_error_string(CUDA_ERROR_INVALID_VALUE)


# --- the kernel's per-column walk, compiled for the host ------------------------------------

# Includes lrnKernel.cu and runs its __host__ __device__ column walk for every
# (chunk, column) work item the launcher would create, so ring buffer, chunk halos,
# exact re-summation and the FP16 path are checked against torch without a GPU.
_HARNESS = textwrap.dedent(r"""
    #include "lrnKernel.cu"
    #include <cstdio>
    #include <cstdlib>
    #include <vector>
    using namespace toolchain::lrn;
    template <typename T, int U>
    int run(char** a)
    {
        long n = atol(a[2]), c = atol(a[3]), h = atol(a[4]), w = atol(a[5]);
        int sm = atoi(a[10]), global = atoi(a[11]);
        long total = n * c * h * w;
        std::vector<T> x(total), y(total);
        FILE* f = fopen(a[12], "rb");
        if (!f || fread(x.data(), sizeof(T), total, f) != (size_t) total) return 2;
        fclose(f);
        LrnParams p = makeParams(n, c, h, w, atoi(a[6]), atof(a[7]), atof(a[8]), atof(a[9]), sm);
        std::vector<float> ring(p.ring);
        for (long item = 0; item < p.items; ++item)
        {
            int chunk = item / p.columns;
            long col = item - (long) chunk * p.columns, nn = col / p.hw;
            long off = nn * p.C * p.hw + (col - nn * p.hw);
            int b = chunk * p.chunkC, e = imin(p.C, b + p.chunkC);
            if (global) lrnColumn<T, U>(x.data() + off, y.data() + off, b, e, p, GlobalRing{});
            else lrnColumn<T, U>(x.data() + off, y.data() + off, b, e, p, SmemRing{ring.data(), 1});
        }
        f = fopen(a[13], "wb");
        fwrite(y.data(), sizeof(T), total, f);
        fclose(f);
        printf("%ld\n", (long) (p.items / p.columns));
        return 0;
    }
    int main(int, char** a) { return atoi(a[1]) == 1 ? run<__half, 8>(a) : run<float, 4>(a); }
""")


@pytest.fixture(scope="module")
def host_harness(tmp_path_factory):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("needs nvcc")
    folder = tmp_path_factory.mktemp("lrn-harness")
    (folder / "harness.cu").write_text(_HARNESS)
    exe = folder / "harness"
    subprocess.run([str(nvcc), "-std=c++17", "-O2", "-arch=sm_80", f"-I{PLUGIN_DIR}", str(folder / "harness.cu"),
                    "-o", str(exe)], check=True, capture_output=True)
    return folder, exe


def _reference(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    return F.local_response_norm(torch.from_numpy(x.astype(np.float64)), size, alpha, beta, bias).numpy()


def _run_harness(harness, x, size, alpha, beta, bias, sm, global_ring):
    folder, exe = harness
    x.tofile(folder / "in.bin")
    dtype = 1 if x.dtype == np.float16 else 0
    out = subprocess.run([str(exe), str(dtype), *map(str, x.shape), str(size), repr(alpha), repr(beta), repr(bias),
                          str(sm), str(int(global_ring)), str(folder / "in.bin"), str(folder / "out.bin")],
                         check=True, capture_output=True, text=True)
    chunks = int(out.stdout.strip())
    return np.fromfile(folder / "out.bin", dtype=x.dtype).reshape(x.shape), chunks


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 9, 15])
@pytest.mark.parametrize("shape", [(1, 7, 3, 5), (2, 13, 1, 1), (3, 96, 4, 5), (2, 4, 3, 3)])
@pytest.mark.parametrize("sm,global_ring", [(132, False), (1, False), (132, True)])
def test_kernel_walk_matches_torch_on_host(host_harness, size, shape, sm, global_ring):
    rng = np.random.default_rng(size * 1000 + sum(shape))
    alpha, beta, bias = (1e-2 if size < 10 else 0.5), 0.75, 2.0
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    y, chunks = _run_harness(host_harness, x, size, alpha, beta, bias, sm, global_ring)
    if sm == 132 and shape[1] >= 2 * max(8, size):
        assert chunks > 1  # small shapes take the channel-split path
    np.testing.assert_allclose(y, _reference(x, size, alpha, beta, bias), rtol=2e-6, atol=1e-7)


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("size", [2, 5, 9])
def test_kernel_walk_fp16_large_values_on_host(host_harness, size):
    rng = np.random.default_rng(size)
    x = (rng.uniform(-1000, 1000, (2, 40, 3, 3))).astype(np.float16)  # squares overflow FP16
    y, _ = _run_harness(host_harness, x, size, 5e-4, 0.75, 2.0, 132, False)
    ref = _reference(x, size, 5e-4, 0.75, 2.0)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=2e-3, atol=1e-3)


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("size", [3, 5, 15])
def test_kernel_walk_survives_cancellation_on_host(host_harness, size):
    # Spikes 1e6 times larger than their neighbours: a plain sliding sum loses the
    # small remainder once a spike leaves the window.
    rng = np.random.default_rng(size)
    x = (rng.standard_normal((1, 300, 2, 2)) * 1e-2).astype(np.float32)
    x[:, ::37] *= 1e6
    y, _ = _run_harness(host_harness, x, size, 1.0, 0.75, 1e-3, 132, False)
    np.testing.assert_allclose(y, _reference(x, size, 1.0, 0.75, 1e-3), rtol=1e-5)


@pytest.mark.needs_nvcc
def test_kernel_walk_window_wider_than_channels_on_host(host_harness):
    x = np.random.default_rng(0).standard_normal((1, 50, 2, 2)).astype(np.float32)
    for size, global_ring in ((400, True), (64, False), (51, False)):
        y, _ = _run_harness(host_harness, x, size, 0.5, 0.75, 1.0, 1, global_ring)
        np.testing.assert_allclose(y, _reference(x, size, 0.5, 0.75, 1.0), rtol=2e-6, atol=1e-7)


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("size", [2, 5])
def test_kernel_walk_non_finite_stays_in_its_window_on_host(host_harness, size):
    # NaN/Inf reach exactly the outputs whose window holds them (as in torch), and the
    # sliding sum recovers right after they leave (no Inf - Inf = NaN, no NaN hidden as 0).
    x = np.random.default_rng(size).standard_normal((1, 40, 2, 2)).astype(np.float32)
    x[0, 10, 0, 0] = np.nan
    x[0, 25, 1, 1] = np.inf
    x[0, 26, 1, 0] = -np.inf
    y, _ = _run_harness(host_harness, x, size, 0.5, 0.75, 1.0, 132, False)
    ref = _reference(x, size, 0.5, 0.75, 1.0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)


@pytest.mark.needs_nvcc
def test_kernel_walk_huge_size_on_host(host_harness):
    # size near INT32_MAX: the window is every channel; channel indices must not overflow.
    size, alpha, beta, bias = 2**31 - 1, 1e9, 0.75, 1.0
    x = np.random.default_rng(1).standard_normal((2, 12, 2, 3)).astype(np.float32)
    y, _ = _run_harness(host_harness, x, size, alpha, beta, bias, 1, False)
    x64 = x.astype(np.float64)
    s = (x64 ** 2).sum(axis=1, keepdims=True)
    ref = x64 / (bias + np.float32(np.float32(alpha) / np.float32(size)) * s) ** beta
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)


# --- TensorRT headers (only with TOOLCHAIN_TRT_HEADERS) --------------------------------------

def test_plugin_sources_compile_against_tensorrt_headers():
    headers = _trt_headers()
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler")
    result = subprocess.run(["bash", str(PLUGIN_DIR / "check_headers.sh"), str(headers), str(_cuda_include())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 4  # 2 sources x (static, dynamic registration)


_STUB_NVINFER = "void* getPluginRegistry(void) { return 0; }\nvoid* getLogger(void) { return 0; }\n"

# Drives the dynamic-registration library through TensorRT's interfaces on the host.
_SMOKE = textwrap.dedent(r"""
    #include <NvInferRuntime.h>
    #include <cstdio>
    #include <cstring>
    #include <dlfcn.h>
    #include <string>
    using namespace nvinfer1;
    #define CHECK(c) do { if (!(c)) { std::printf("FAILED line %d: %s\n", __LINE__, #c); return 1; } } while (0)
    struct Logger : ILogger { int errors = 0;
      void log(Severity s, char const*) noexcept override { if (s <= Severity::kERROR) ++errors; } };
    struct Finder : ILoggerFinder { Logger* l; ILogger* findLogger() override { return l; } };
    int main(int, char** argv)
    {
        void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        CHECK(lib != nullptr);
        auto getCreators = reinterpret_cast<IPluginCreatorInterface* const* (*)(int32_t&)>(dlsym(lib, "getCreators"));
        auto setFinder = reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(lib, "setLoggerFinder"));
        CHECK(getCreators && setFinder);
        Logger logger; Finder finder; finder.l = &logger; setFinder(&finder);
        int32_t n = 0; auto creators = getCreators(n);
        CHECK(n == 1);
        auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
        std::printf("%s %s %s\n", creator->getPluginName(), creator->getPluginVersion(), creator->getPluginNamespace());
        CHECK(creator->getFieldNames()->nbFields == 4);
        int32_t size = 5; float alpha = 5e-4F, beta = 0.75F, bias = 2.F;
        PluginField fields[] = {{"size", &size, PluginFieldType::kINT32, 1}, {"alpha", &alpha, PluginFieldType::kFLOAT32, 1},
            {"beta", &beta, PluginFieldType::kFLOAT32, 1}, {"bias", &bias, PluginFieldType::kFLOAT32, 1}};
        PluginFieldCollection fc{4, fields};
        IPluginV3* plugin = creator->createPlugin("lrn1", &fc, TensorRTPhase::kBUILD);
        CHECK(plugin != nullptr);
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        CHECK(build && rt && build->getNbOutputs() == 1);
        DataType in = DataType::kHALF, out = DataType::kFLOAT;
        CHECK(build->getOutputDataTypes(&out, 1, &in, 1) == 0 && out == DataType::kHALF);
        DynamicPluginTensorDesc io[2]{};
        for (auto& d : io) { d.desc.dims.nbDims = 4; d.desc.format = TensorFormat::kLINEAR; d.desc.type = DataType::kHALF; }
        CHECK(build->supportsFormatCombination(0, io, 1, 1) && build->supportsFormatCombination(1, io, 1, 1));
        io[1].desc.type = DataType::kFLOAT;
        CHECK(!build->supportsFormatCombination(1, io, 1, 1));
        io[0].desc.type = DataType::kINT8;
        CHECK(!build->supportsFormatCombination(0, io, 1, 1));
        io[0].desc.type = DataType::kFLOAT; io[0].desc.dims.nbDims = 3;
        CHECK(!build->supportsFormatCombination(0, io, 1, 1));
        io[0].desc.dims.nbDims = 2; io[1].desc.dims.nbDims = 2;
        int before = logger.errors;
        CHECK(build->configurePlugin(&io[0], 1, &io[1], 1) != 0 && logger.errors == before + 1);
        auto const* ser = rt->getFieldsToSerialize();
        CHECK(ser && ser->nbFields == 4);
        IPluginV3* restored = creator->createPlugin("lrn1", ser, TensorRTPhase::kRUNTIME);
        CHECK(restored != nullptr);
        auto* rt2 = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        auto const* ser2 = rt2->getFieldsToSerialize();
        for (int i = 0; i < 4; ++i)
            CHECK(!std::strcmp(ser->fields[i].name, ser2->fields[i].name) && !std::memcmp(ser->fields[i].data, ser2->fields[i].data, 4));
        float zero = 0.F;
        PluginField bad[] = {{"size", &size, PluginFieldType::kINT32, 1}, {"bias", &zero, PluginFieldType::kFLOAT32, 1}};
        PluginFieldCollection badFc{2, bad};
        CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);
        PluginFieldCollection empty{0, nullptr};
        CHECK(creator->createPlugin("nosize", &empty, TensorRTPhase::kBUILD) == nullptr);
        delete restored; delete plugin;
        std::printf("OK\n");
        return 0;
    }
""")


@pytest.mark.needs_nvcc
def test_plugin_cmake_with_fake_tensorrt_root(tmp_path):
    """Headers only: plugin skipped. Headers + a stub libnvinfer: both plugin variants build and work on the host."""
    headers = _trt_headers()
    version = re.search(r"#define (?:TRT_MAJOR_ENTERPRISE|NV_TENSORRT_MAJOR) (\d+)",
                        (headers / "NvInferVersion.h").read_text()).group(1)
    root = tmp_path / "trt"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(headers)
    result = build_plugins(tmp_path / "b1", cuda_archs="80", tensorrt_root=root)
    assert result["tensorrt"] is None and "libnvinfer" in result["tensorrt_skipped"]

    (tmp_path / "stub.c").write_text(_STUB_NVINFER)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(root / "lib" / f"libnvinfer.so.{version}"),
                    f"-Wl,-soname,libnvinfer.so.{version}", str(tmp_path / "stub.c")], check=True)
    result = build_plugins(tmp_path / "b2", cuda_archs="80", tensorrt_root=root)
    assert result["tensorrt"] and result["tensorrt_dynamic"], result
    out = subprocess.run(["nm", "-D", "--defined-only", result["tensorrt_dynamic"]], capture_output=True, text=True).stdout
    assert " getCreators" in out and " setLoggerFinder" in out
    # The load-time registrar copes with a missing registry (the stub returns null).
    ctypes.CDLL(result["tensorrt"])

    (tmp_path / "smoke.cpp").write_text(_SMOKE)
    exe = tmp_path / "smoke"
    subprocess.run([os.environ.get("CXX", "g++"), "-std=c++17", "-isystem", str(headers), "-isystem",
                    str(_cuda_include()), str(tmp_path / "smoke.cpp"), "-ldl", "-o", str(exe)], check=True)
    run = subprocess.run([str(exe), result["tensorrt_dynamic"]], capture_output=True, text=True)
    assert run.returncode == 0 and "OK" in run.stdout, run.stdout + run.stderr
    assert f"{lrn_op.OP_TYPE} {lrn_op.PLUGIN_VERSION} {lrn_op.PLUGIN_NAMESPACE}" in run.stdout
