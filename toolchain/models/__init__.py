"""The AlexNet model zoo: variant registry and the keyword-only builder."""

from __future__ import annotations

from toolchain.errors import ToolchainError
from toolchain.lrn_op import PAPER_LRN
from toolchain.models.alexnet import (
    FASHION_MNIST_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TUTORIAL_LRN,
    AlexNetD2L,
    AlexNetPaper,
    AlexNetTorchvision,
    VariantSpec,
    _imagenet_categories,
    d2l,
    paper,
    torchvision_alexnet,
    torchvision_lrn,
)
from toolchain.models.layers import LocalResponseNorm

VARIANTS: dict[str, VariantSpec] = {
    "paper": VariantSpec(
        name="paper",
        description="2012 paper: 96-256-384-384-256, LRN after conv1/conv2, grouped conv2/4/5",
        builder=paper, in_channels=3, num_classes=1000, image_size=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        expected_params=60_965_224, expected_gflop=1.449, lrn=(PAPER_LRN, PAPER_LRN),
    ),
    "torchvision": VariantSpec(
        name="torchvision",
        description="torchvision's layout: 64-192-384-256-256, adaptive 6x6 pool",
        builder=torchvision_alexnet, in_channels=3, num_classes=1000, image_size=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        expected_params=61_100_840, expected_gflop=1.428, pretrained=("IMAGENET1K_V1",),
    ),
    "torchvision-lrn": VariantSpec(
        name="torchvision-lrn",
        description="torchvision's layout with LocalResponseNorm(5) after pool1, pool2 and pool5",
        builder=torchvision_lrn, in_channels=3, num_classes=1000, image_size=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        expected_params=61_100_840, expected_gflop=1.428, lrn=(TUTORIAL_LRN,) * 3, pretrained=("IMAGENET1K_V1",),
    ),
    "d2l": VariantSpec(
        name="d2l",
        description="d2l.ai Fashion-MNIST network: 1x224x224 input, 10 classes, no LRN",
        builder=d2l, in_channels=1, num_classes=10, image_size=224,
        mean=(0.2860,), std=(0.3530,),
        expected_params=46_764_746, expected_gflop=1.876, categories=FASHION_MNIST_CLASSES, min_image_size=65,
    ),
}


def get_variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ToolchainError(f"unknown variant {name!r}", hint=f"choose one of {', '.join(VARIANTS)}") from None


def build_model(variant: str, *, num_classes: int | None = None, in_channels: int | None = None,
                image_size: int | None = None, dropout: float = 0.5, weights: str | None = None):
    """Build ``variant``; unspecified arguments take the variant's defaults."""
    from toolchain.validate import check_model_shape

    spec = get_variant(variant)
    check_model_shape(variant, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    return spec.builder(
        num_classes=spec.num_classes if num_classes is None else num_classes,
        in_channels=spec.in_channels if in_channels is None else in_channels,
        image_size=spec.image_size if image_size is None else image_size,
        dropout=dropout,
        weights=weights,
    )


def variant_categories(variant: str) -> tuple[str, ...] | None:
    spec = get_variant(variant)
    if spec.categories is not None:
        return spec.categories
    return _imagenet_categories() if spec.num_classes == 1000 else None


__all__ = [
    "VARIANTS", "VariantSpec", "get_variant", "build_model", "variant_categories", "LocalResponseNorm",
    "AlexNetPaper", "AlexNetTorchvision", "AlexNetD2L",
]
