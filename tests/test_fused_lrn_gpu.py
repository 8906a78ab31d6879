"""``toolchain::fused_lrn``: the CUDA kernel against PyTorch's LRN, and the CPU fallback.

GPU tests need the kernel library: it is built once per session into a temporary
folder for the local GPU (``native`` architecture) unless $TOOLCHAIN_PLUGIN_DIR or
./build/plugins already has one.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import toolchain.fused_lrn as fused
from toolchain.plugin import build_plugins, find_library, load_kernel_library

SIZES = [1, 2, 3, 4, 5, 7, 9, 15]


def _lrn(x, size, alpha, beta, bias):
    return torch.ops.toolchain.fused_lrn(x, size, alpha, beta, bias)


# --- CPU: the fallback is PyTorch's implementation ---------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_cpu_fallback_equals_torch(size):
    fused.ensure_registered()
    x = torch.randn(2, 13, 5, 7, generator=torch.Generator().manual_seed(size))
    for alpha, beta, bias in ((1e-4, 0.75, 1.0), (5e-4, 0.75, 2.0), (0.3, 0.5, 0.5)):
        torch.testing.assert_close(_lrn(x, size, alpha, beta, bias), F.local_response_norm(x, size, alpha, beta, bias),
                                   rtol=0, atol=0)


def test_cpu_fallback_fp16_runs_in_fp32_and_stays_finite():
    x = torch.empty(1, 8, 3, 3).uniform_(-1000, 1000, generator=torch.Generator().manual_seed(0))
    y = _lrn(x.half(), 5, 5e-4, 0.75, 2.0)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y, F.local_response_norm(x.half().float(), 5, 5e-4, 0.75, 2.0).half())


def test_invalid_parameters_raise():
    x = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match="size"):
        fused.fused_lrn(x, 0)
    with pytest.raises(ValueError, match="bias"):
        fused.fused_lrn(x, 3, bias=0.0)
    # Checked before ctypes narrows size to a C int (2**32 + 5 would run as 5).
    with pytest.raises(ValueError, match="size"):
        fused.fused_lrn(x, 2**32 + 5)
    with pytest.raises(ValueError, match="size"):
        fused._check_params(2**31, 1e-4, 0.75, 1.0)
    fused._check_params(2**31 - 1, 1e-4, 0.75, 1.0)


def test_lrn_params_refuse_sizes_the_parser_would_narrow():
    from toolchain.lrn_op import LRNParams

    assert LRNParams(size=2**31 - 1).size == 2**31 - 1
    with pytest.raises(ValueError, match="size"):
        LRNParams(size=2**32 + 5)


def test_ensure_registered_is_idempotent_and_op_checks():
    fused.ensure_registered()
    fused.ensure_registered()
    torch.library.opcheck(torch.ops.toolchain.fused_lrn.default, (torch.randn(2, 5, 3, 3, requires_grad=True), 3,
                                                                  1e-2, 0.75, 1.0))


def test_enable_fused_lrn_counts_modules():
    from toolchain.models import build_model

    model = build_model("paper", image_size=224)
    assert fused.enable_fused_lrn(model) == 2
    assert all(m.fused for m in model.modules() if hasattr(m, "fused"))
    x = torch.randn(1, 3, 224, 224)
    model.eval()
    with torch.no_grad():
        y = model(x)  # CPU input: the reference path, whatever `fused` says
    assert torch.isfinite(y).all()


# --- CUDA: the kernel ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel_library(tmp_path_factory):
    path = find_library("kernels")
    if path is None:
        path = build_plugins(tmp_path_factory.mktemp("plugins-build"), cuda_archs="native")["kernels"]
    lib = load_kernel_library(path)
    fused._kernel_lib = lib  # the op uses exactly this build
    fused.ensure_registered()
    return lib


def _close(y, ref, dtype):
    if dtype == torch.float32:
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(y.float(), ref, rtol=2e-3, atol=1e-3)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("shape", [(1, 96, 55, 55), (8, 256, 27, 27), (3, 13, 7, 9), (4, 37, 1, 1), (2, 5, 3, 3),
                                   (8, 1, 4, 4)])
def test_kernel_matches_torch(kernel_library, dtype, size, shape):
    g = torch.Generator(device="cuda").manual_seed(size)
    x = (torch.randn(shape, device="cuda", generator=g) * 3).to(dtype)
    for alpha, beta, bias in ((1e-4, 0.75, 1.0), (5e-4, 0.75, 2.0), (0.5, 0.5, 0.25), (2.0, 1.5, 3.0)):
        y = _lrn(x, size, alpha, beta, bias)
        assert y.dtype == dtype and y.shape == x.shape
        ref = F.local_response_norm(x.double(), size, alpha, beta, bias).float()
        _close(y, ref, dtype)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("size", [2, 5, 9])
def test_kernel_fp16_large_magnitudes_stay_finite(kernel_library, size):
    g = torch.Generator(device="cuda").manual_seed(size)
    x = torch.empty(8, 96, 13, 13, device="cuda").uniform_(-1000, 1000, generator=g).half()
    y = _lrn(x, size, 5e-4, 0.75, 2.0)
    assert torch.isfinite(y).all()
    _close(y, F.local_response_norm(x.double(), size, 5e-4, 0.75, 2.0).float(), torch.float16)
    # PyTorch's own FP16 path squares in FP16: inf in the denominator, outputs collapse to 0.
    torch_fp16 = F.local_response_norm(x, size, 5e-4, 0.75, 2.0).float()
    assert (torch_fp16 - F.local_response_norm(x.double(), size, 5e-4, 0.75, 2.0).float()).abs().max() > 1


@pytest.mark.needs_cuda
def test_kernel_non_contiguous_other_ranks_and_streams(kernel_library):
    x = torch.randn(4, 9, 6, 5, device="cuda")
    nc = x.transpose(2, 3)  # non-contiguous input is made contiguous
    torch.testing.assert_close(_lrn(nc, 5, 1e-2, 0.75, 1.0), F.local_response_norm(nc, 5, 1e-2, 0.75, 1.0),
                               rtol=1e-5, atol=1e-6)
    for shape in ((3, 10, 17), (2, 10, 3, 4, 5)):
        t = torch.randn(shape, device="cuda")
        torch.testing.assert_close(_lrn(t, 3, 1e-2, 0.75, 1.0), F.local_response_norm(t, 3, 1e-2, 0.75, 1.0),
                                   rtol=1e-5, atol=1e-6)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = _lrn(x, 5, 1e-2, 0.75, 1.0)
    s.synchronize()
    torch.testing.assert_close(y, F.local_response_norm(x, 5, 1e-2, 0.75, 1.0), rtol=1e-5, atol=1e-6)
    assert _lrn(torch.empty(0, 4, 3, 3, device="cuda"), 3, 1e-4, 0.75, 1.0).shape == (0, 4, 3, 3)


@pytest.mark.needs_cuda
def test_kernel_gradient_and_bfloat16_fallback(kernel_library):
    x = torch.randn(2, 8, 4, 4, device="cuda", requires_grad=True)
    _lrn(x, 5, 0.1, 0.75, 1.0).sum().backward()
    g = x.grad.clone()
    x.grad = None
    F.local_response_norm(x, 5, 0.1, 0.75, 1.0).sum().backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-5, atol=1e-6)
    xb = torch.randn(2, 8, 4, 4, device="cuda", dtype=torch.bfloat16)
    y = _lrn(xb, 5, 0.1, 0.75, 1.0)
    assert y.dtype == torch.bfloat16


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_alexnet_logits_with_and_without_fused_lrn(kernel_library, dtype):
    from toolchain.models import build_model

    torch.manual_seed(0)
    model = build_model("paper", image_size=224).to(device="cuda", dtype=dtype).eval()
    x = torch.randn(4, 3, 224, 224, device="cuda", dtype=dtype)
    with torch.no_grad():
        reference = model(x).float()
        assert fused.enable_fused_lrn(model) == 2
        logits = model(x).float()
    assert torch.isfinite(logits).all()
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(logits, reference, rtol=tol, atol=tol)
