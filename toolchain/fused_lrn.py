"""The PyTorch op ``toolchain::fused_lrn``: LRN through the FusedLRN CUDA kernel.

``torch.ops.toolchain.fused_lrn(x, size, alpha, beta, bias)`` equals
``torch.nn.functional.local_response_norm(x, size, alpha, beta, bias)`` (PyTorch's
alpha convention). Contiguous-able FP32/FP16 CUDA tensors of rank >= 3 run the
kernel from ``libtoolchain_lrn_kernels.so`` (see :mod:`toolchain.plugin`) on the
current stream, with FP32 accumulation; anything else (CPU, bfloat16, float64)
runs PyTorch's implementation, in FP32 for types narrower than FP32 and cast back,
so FP16 inputs whose squares overflow FP16 stay finite there too.

Gradients are PyTorch's: backward recomputes the reference in FP32.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from toolchain.errors import ToolchainError

_lock = threading.Lock()
INT32_MAX = 2**31 - 1
_kernel_lib = None


def _check_params(size: int, alpha: float, beta: float, bias: float) -> None:
    # Same domain as toolchain.lrn_op.LRNParams and the kernel's argument checks.
    # The kernel takes size as a C int: check the range before ctypes narrows it
    # (2**32 + 5 would otherwise run as 5).
    if not 1 <= size <= INT32_MAX:
        raise ValueError(f"fused_lrn: size must be in [1, {INT32_MAX}], got {size}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"fused_lrn: alpha must be finite and >= 0, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"fused_lrn: beta must be finite, got {beta}")
    if not (math.isfinite(bias) and bias > 0):
        raise ValueError(f"fused_lrn: bias must be finite and > 0, got {bias}")


def _reference(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    compute = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return F.local_response_norm(compute, size, alpha, beta, bias).to(x.dtype)


def _kernel():
    global _kernel_lib
    if _kernel_lib is None:
        with _lock:
            if _kernel_lib is None:
                from toolchain.plugin import load_kernel_library

                _kernel_lib = load_kernel_library()
    return _kernel_lib


def _uses_kernel(x: torch.Tensor) -> bool:
    return x.is_cuda and x.dtype in (torch.float32, torch.float16) and x.dim() >= 3


def _cuda_forward(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    from toolchain.plugin import DTYPE_CODES, error_string

    x = x.contiguous()
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.numel() == 0:
        return y
    # LRN runs along dim 1; the trailing dims are independent pixels, so any rank >= 3
    # maps onto the kernel's NCHW as (N, C, prod(rest), 1).
    n, c = x.shape[0], x.shape[1]
    rest = x.numel() // (n * c)
    lib = _kernel()
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device).cuda_stream
        code = lib.toolchain_lrn_forward(
            x.data_ptr(), y.data_ptr(), DTYPE_CODES[str(x.dtype).removeprefix("torch.")],
            n, c, rest, 1, int(size), float(alpha), float(beta), float(bias), stream)
    if code != 0:
        raise RuntimeError(f"fused_lrn CUDA kernel failed: {error_string(lib, code)} (error {code})")
    return y


def _define_op() -> None:
    @torch.library.custom_op("toolchain::fused_lrn", mutates_args=())
    def fused_lrn(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
        _check_params(size, alpha, beta, bias)
        if _uses_kernel(x):
            return _cuda_forward(x, size, alpha, beta, bias)
        return _reference(x, size, alpha, beta, bias)

    @fused_lrn.register_fake
    def _(x, size, alpha, beta, bias):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def setup_context(ctx, inputs, output):
        x, size, alpha, beta, bias = inputs
        ctx.save_for_backward(x)
        ctx.params = (size, alpha, beta, bias)

    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xf = x.detach().float().requires_grad_(True)
            y = F.local_response_norm(xf, *ctx.params)
            (gx,) = torch.autograd.grad(y, xf, grad.float())
        return gx.to(x.dtype), None, None, None, None

    fused_lrn.register_autograd(backward, setup_context=setup_context)


def ensure_registered() -> None:
    """Define ``torch.ops.toolchain.fused_lrn`` if it is not yet (idempotent, thread-safe)."""
    with _lock:
        if not hasattr(torch.ops.toolchain, "fused_lrn"):
            _define_op()


def fused_lrn(x: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0) -> torch.Tensor:
    """Call the op (registering it first); the defaults are PyTorch's."""
    ensure_registered()
    return torch.ops.toolchain.fused_lrn(x, int(size), float(alpha), float(beta), float(bias))


def enable_fused_lrn(model: torch.nn.Module, enabled: bool = True) -> int:
    """Set ``fused`` on every :class:`toolchain.models.layers.LocalResponseNorm`; return how many.

    Registers the op. When the model already has CUDA parameters and ``enabled``,
    also loads the kernel library now, so a missing build fails here with a
    one-line MissingDependencyError rather than in the middle of a forward pass.
    """
    from toolchain.models.layers import LocalResponseNorm

    ensure_registered()
    count = 0
    for module in model.modules():
        if isinstance(module, LocalResponseNorm):
            module.fused = bool(enabled)
            count += 1
    if enabled and count and any(p.is_cuda for p in model.parameters()):
        _kernel()
    if enabled and count == 0:
        raise ToolchainError("the model has no toolchain LocalResponseNorm layers to fuse",
                             hint="build it with toolchain.models.build_model")
    return count


# Defining the op on import lets `import toolchain.fused_lrn` be all a caller needs.
ensure_registered()
