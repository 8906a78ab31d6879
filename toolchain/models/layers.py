"""Layers shared by the AlexNet variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolchain.lrn_op import LRNParams


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` that can run the fused CUDA kernel.

    Same parameters and state dict as PyTorch's module (alpha in PyTorch's
    convention, divided by ``size``). With ``fused = True`` (set by
    :func:`toolchain.fused_lrn.enable_fused_lrn`) CUDA inputs go through the
    ``toolchain::fused_lrn`` op; everything else runs PyTorch's reference.
    The ONNX exporter recognises this module and writes one custom node for it.
    """

    fused: bool = False

    @classmethod
    def from_params(cls, params: LRNParams) -> "LocalResponseNorm":
        return cls(params.size, alpha=params.alpha, beta=params.beta, k=params.bias)

    @property
    def params(self) -> LRNParams:
        return LRNParams(size=self.size, alpha=self.alpha, beta=self.beta, bias=self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and x.is_cuda:
            return torch.ops.toolchain.fused_lrn(x, self.size, self.alpha, self.beta, self.k)
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
