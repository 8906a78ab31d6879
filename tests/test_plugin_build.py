"""The FusedLRN libraries: names, CMake build, C ABI, kernel logic (on the host), plugin headers.

Nothing here needs a GPU. The CMake build compiles for one architecture (sm_80) to
keep CI time down. Tests against TensorRT headers use the folders tests/trtenv.py finds
($TOOLCHAIN_TRT_HEADERS, else ../shared/trt-headers) and skip, saying so, without them.
The plugin inside TensorRT's real registry: tests/test_plugin_conformance.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, repo_files

from toolchain import lrn_op
from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.plugin import LIBRARY_NAMES, build_plugins, default_source_dir, find_nvcc, load_kernel_library

PLUGIN_DIR = default_source_dir() / "lrn"
CUDA_ERROR_INVALID_VALUE = 1


def _trt_headers(major: int) -> Path:
    import trtenv

    path = trtenv.header_dirs().get(major)
    if path is None:
        pytest.skip(trtenv.header_skip_reason(major))
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
    #include <sys/mman.h>
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
            long chunk = item / p.columns;
            long col = item - chunk * p.columns, nn = col / p.hw;
            long off = nn * p.C * p.hw + (col - nn * p.hw);
            long b = chunk * p.chunkC, e = lmin(p.C, b + p.chunkC);
            if (global) lrnColumn<T, U>(x.data() + off, y.data() + off, b, e, p, GlobalRing{});
            else lrnColumn<T, U>(x.data() + off, y.data() + off, b, e, p, SmemRing{ring.data(), 1});
        }
        f = fopen(a[13], "wb");
        fwrite(y.data(), sizeof(T), total, f);
        fclose(f);
        printf("%ld\n", (long) (p.items / p.columns));
        return 0;
    }
    // One column of C channels (N = H = W = 1) in sparse, zero-filled memory: only the
    // pages around [first, first + count) are touched, so C can be INT32_MAX.
    int sparse(char** a)
    {
        long c = atol(a[2]), first = atol(a[7]), count = atol(a[8]);
        int size = atoi(a[3]), global = atoi(a[9]);
        size_t bytes = (size_t) c * sizeof(float);
        float* x = (float*) mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        float* y = (float*) mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (x == MAP_FAILED || y == MAP_FAILED) return 3;
        FILE* f = fopen(a[10], "rb");
        if (!f || fread(x + first, sizeof(float), count, f) != (size_t) count) return 2;
        fclose(f);
        LrnParams p = makeParams(1, c, 1, 1, size, atof(a[4]), atof(a[5]), atof(a[6]), 132);
        std::vector<float> ring(p.ring);
        // The chunk holding `first`, walked from the chunk's start as the kernel does.
        long b = first / p.chunkC * p.chunkC, e = lmin(p.C, b + p.chunkC);
        if (global) lrnColumn<float, 4>(x, y, b, e, p, GlobalRing{});
        else lrnColumn<float, 4>(x, y, b, e, p, SmemRing{ring.data(), 1});
        f = fopen(a[11], "wb");
        fwrite(y + first, sizeof(float), count, f);
        fclose(f);
        printf("%ld %ld\n", b, e);
        return 0;
    }
    int main(int, char** a) { int m = atoi(a[1]); return m == 2 ? sparse(a) : m == 1 ? run<__half, 8>(a) : run<float, 4>(a); }
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


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_kernel_walk_beta_zero_returns_x_on_host(host_harness, dtype):
    # beta = 0: y = x even where the window holds Inf/NaN or its sum overflows FP32
    # (PyTorch: pow(inf, 0) = pow(nan, 0) = 1), not 0 * log2(inf) = NaN.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 30, 2, 2)).astype(dtype)
    x[0, 5, 0, 0] = np.inf
    x[0, 12, 1, 1] = np.nan
    if dtype == np.float32:
        x[0, 20:24, 0, 1] = 3e38  # squares overflow the FP32 sum
    y, _ = _run_harness(host_harness, x, 5, 1.0, 0.0, 1.0, 132, False)
    ref = _reference(x, 5, 1.0, 0.0, 1.0)
    np.testing.assert_array_equal(ref, x.astype(np.float64))  # what PyTorch does
    np.testing.assert_array_equal(y, x)


def _run_sparse(harness, channels, size, alpha, beta, bias, first, values, global_ring):
    folder, exe = harness
    values.astype(np.float32).tofile(folder / "sparse-in.bin")
    out = subprocess.run([str(exe), "2", str(channels), str(size), repr(alpha), repr(beta), repr(bias), str(first),
                          str(values.size), str(int(global_ring)), str(folder / "sparse-in.bin"),
                          str(folder / "sparse-out.bin")], check=True, capture_output=True, text=True)
    begin, end = map(int, out.stdout.split())
    return np.fromfile(folder / "sparse-out.bin", dtype=np.float32), begin, end


@pytest.mark.needs_nvcc
@pytest.mark.parametrize("size,global_ring", [(5, False), (6, True), (1001, True)])
def test_kernel_walk_channel_indices_up_to_int32_max_on_host(host_harness, size, global_ring):
    # C = INT32_MAX channels: c + hi and c0 + unroll pass INT32_MAX near the end; with
    # 32-bit channel indices they wrapped negative. Only the last channels hold values.
    channels = 2**31 - 1
    count = 40
    first = channels - count
    values = np.random.default_rng(size).standard_normal(count).astype(np.float32) * 3
    alpha, beta, bias = 0.5, 0.75, 1.0
    y, begin, end = _run_sparse(host_harness, channels, size, alpha, beta, bias, first, values, global_ring)
    assert end == channels and begin <= first
    padded = np.zeros((1, count + 2 * min(size, 64), 1, 1), dtype=np.float32)
    offset = min(size, 64)
    padded[0, offset:offset + count, 0, 0] = values  # zeros before, the column's end after
    if size < channels:
        ref = _reference(padded[:, : offset + count], size, alpha, beta, bias)[0, offset:, 0, 0]
    else:
        x64 = values.astype(np.float64)  # the window is every channel: the sum of all squares
        ref = x64 / (bias + np.float32(np.float32(alpha) / np.float32(size)) * (x64 ** 2).sum()) ** beta
    np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)


# --- TensorRT headers (tests/trtenv.py: $TOOLCHAIN_TRT_HEADERS or ../shared/trt-headers) -----------

@pytest.mark.parametrize("major", [pytest.param(10, id="trt10"), pytest.param(11, id="trt11")])
def test_plugin_sources_compile_against_tensorrt_headers(major):
    headers = _trt_headers(major)
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler")
    result = subprocess.run(["bash", str(PLUGIN_DIR / "check_headers.sh"), str(headers), str(_cuda_include())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 6  # 3 sources x (static, dynamic registration)


# --- the shape rule getOutputShapes applies (lrnShape.h), on public types only -----------------------

# IExprBuilder/IDimensionExpr come only from TensorRT's builder, so the rule is checked here with
# Dims (values) and DimsExprs (the same expression pointers come back; they are never dereferenced).
_SHAPE_CHECK = textwrap.dedent(r"""
    #include "lrnShape.h"
    #include <NvInferRuntime.h>
    #include <cstdio>
    #include <stdexcept>
    #include <string>
    using namespace nvinfer1;
    using toolchain::lrn::outputDims;
    int failures = 0;
    void check(char const* name, bool ok, std::string const& detail = "")
    {
        failures += ok ? 0 : 1;
        std::printf("%s %s %s\n", ok ? "ok" : "FAIL", name, detail.c_str());
    }
    template <typename F>
    std::string refusal(F f)
    {
        try { f(); } catch (std::invalid_argument const& e) { return e.what(); }
        return "";
    }
    int main()
    {
        Dims in{};
        in.nbDims = 4;
        in.d[0] = -1, in.d[1] = 96, in.d[2] = 55, in.d[3] = 55;
        Dims const out = outputDims(&in, 1, 1);
        bool same = out.nbDims == 4;
        for (int i = 0; i < 4; ++i) same = same && out.d[i] == in.d[i];
        check("dims.equals_input", same);
        char tokens[4];
        DimsExprs ein{};
        ein.nbDims = 4;
        for (int i = 0; i < 4; ++i) ein.d[i] = reinterpret_cast<IDimensionExpr const*>(&tokens[i]);
        DimsExprs const eout = outputDims(&ein, 1, 1);
        same = eout.nbDims == 4;
        for (int i = 0; i < 4; ++i) same = same && eout.d[i] == ein.d[i];
        check("exprs.same_expressions", same);
        Dims in3 = in;
        in3.nbDims = 3;
        std::string const rank3 = refusal([&] { outputDims(&in3, 1, 1); });
        check("rejects_rank3", rank3.find("rank 3") != std::string::npos, rank3);
        in3.nbDims = 5;
        check("rejects_rank5", !refusal([&] { outputDims(&in3, 1, 1); }).empty());
        check("rejects_two_inputs", !refusal([&] { outputDims(&in, 2, 1); }).empty());
        check("rejects_two_outputs", !refusal([&] { outputDims(&in, 1, 2); }).empty());
        check("rejects_null", !refusal([&] { outputDims<Dims>(nullptr, 1, 1); }).empty());
        return failures == 0 ? 0 : 1;
    }
""")


@pytest.mark.parametrize("major", [pytest.param(10, id="trt10"), pytest.param(11, id="trt11")])
def test_plugin_shape_rule_on_public_types(major, tmp_path):
    headers = _trt_headers(major)
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "shape.cpp").write_text(_SHAPE_CHECK)
    exe = tmp_path / "shape"
    proc = subprocess.run([compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{PLUGIN_DIR}", "-isystem",
                           str(headers), "-isystem", str(_cuda_include()), str(tmp_path / "shape.cpp"), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("\nok ") + run.stdout.startswith("ok ") == 7, run.stdout
    # The plugin's getOutputShapes applies this rule (and nothing else decides the output shape).
    plugin = (PLUGIN_DIR / "lrnPlugin.cpp").read_text()
    assert "outputs[0] = outputDims(inputs, nbInputs, nbOutputs);" in plugin


# --- CMake: one TensorRT lookup, shared by the plugin and the example ---------------------------

LOOKUP = REPO / "plugins" / "cmake" / "toolchain_find_tensorrt.cmake"


def _cmake_files() -> list[Path]:
    return [p for p in repo_files() if p.name == "CMakeLists.txt" or p.suffix == ".cmake"]




def _cmake_code(path: Path) -> str:
    """The file without comments (a '#' outside a quoted string starts one)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        quoted = False
        for i, c in enumerate(line):
            if c == '"' and (i == 0 or line[i - 1] != "\\"):
                quoted = not quoted
            elif c == "#" and not quoted:
                line = line[:i]
                break
        lines.append(line)
    return "\n".join(lines)


def test_tensorrt_lookup_is_defined_in_one_cmake_file():
    # What a lookup is made of: the find calls, the version header, the library names, the root's folders.
    lookup = re.compile(r"find_(?:path|library)\s*\(\s*TensorRT_|NvInferVersion\.h|nvinfer(?:_lean)?\b|"
                        r"TensorRT_ROOT\}/|ENV\{TensorRT_ROOT\}")
    defining = sorted(str(p.relative_to(REPO)) for p in _cmake_files() if lookup.search(_cmake_code(p)))
    assert defining == ["plugins/cmake/toolchain_find_tensorrt.cmake"], defining
    include = re.compile(r"include\(\s*\"[^\"]*toolchain_find_tensorrt\.cmake\"\s*\)")
    for user in ("plugins/lrn/CMakeLists.txt", "examples/cpp/CMakeLists.txt"):
        assert include.search((REPO / user).read_text()), f"{user} does not include the shared lookup"
    # The status lines build_plugins parses are checked where they are printed: "skipped" by
    # kernel_build above, "library none" by the wheel test below, "(lean: ON)" by the conformance build.


def test_wheel_ships_the_lookup_and_its_plugin_sources_configure(tmp_path):
    """An installed copy: toolchain/plugin_src/cmake is in the wheel and the plugin project finds it."""
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("toolchain", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"],
                          cwd=src, capture_output=True, text=True)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = src / "dist" / proc.stdout.strip().splitlines()[-1]
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(installed)
    assert "toolchain/plugin_src/cmake/toolchain_find_tensorrt.cmake" in names
    assert "toolchain/plugin_src/lrn/lrnShape.h" in names
    found = subprocess.run([sys.executable, "-c", "from toolchain.plugin import default_source_dir as d; print(d())"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    source = Path(found.stdout.strip())
    assert source == installed / "toolchain" / "plugin_src"
    # Configure (no compile) the installed sources with headers alone: the included lookup runs.
    nvcc, cmake = find_nvcc(), shutil.which("cmake")
    headers = __import__("trtenv").header_dirs().get(10)
    if nvcc is None or cmake is None or headers is None:
        pytest.skip("needs nvcc, cmake and TensorRT 10 headers to configure the installed sources")
    root = tmp_path / "headers-only"
    root.mkdir()
    (root / "include").symlink_to(headers)
    configure = subprocess.run([cmake, "-S", str(source), "-B", str(tmp_path / "build"), f"-DCMAKE_CUDA_COMPILER={nvcc}",
                                "-DCMAKE_CUDA_ARCHITECTURES=80-real", f"-DTensorRT_ROOT={root}"],
                               capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout[-2000:] + configure.stderr[-2000:]
    assert (f"FusedLRN TensorRT plugin: TensorRT 10 headers {root}/include, library none (dynamic registration only)"
            in configure.stdout), configure.stdout
