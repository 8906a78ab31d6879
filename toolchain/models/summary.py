"""Per-layer output shape, parameters and FLOPs of a model.

FLOPs count 2 x multiply-adds of convolutions and linear layers, biases, ReLU,
pooling and LRN left out (the convention of the published AlexNet numbers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: list[int]
    params: int
    flops: int


@dataclass
class ModelSummary:
    variant: str
    input_shape: list[int]
    layers: list[LayerRow]

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def total_flops(self) -> int:
        return sum(row.flops for row in self.layers)

    def to_dict(self) -> dict:
        return {
            "variant": self.variant,
            "input_shape": self.input_shape,
            "total_params": self.total_params,
            "total_flops": self.total_flops,
            "total_gflop": round(self.total_flops / 1e9, 3),
            "layers": [asdict(row) for row in self.layers],
        }


def _layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        macs_per_output = (module.in_channels // module.groups) * kh * kw
        return 2 * output.numel() // output.shape[0] * macs_per_output
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, ...], variant: str = "") -> ModelSummary:
    """Run one forward pass of zeros (batch 1) and record every leaf module."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name):
        def record(module, _inputs, output):
            rows.append(LayerRow(
                name=name,
                kind=type(module).__name__,
                output_shape=list(output.shape[1:]),
                params=sum(p.numel() for p in module.parameters(recurse=False)),
                flops=_layer_flops(module, output),
            ))
        return record

    for name, module in model.named_modules():
        if name and not list(module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return ModelSummary(variant=variant, input_shape=list(input_shape), layers=rows)
