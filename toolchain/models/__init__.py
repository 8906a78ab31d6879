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
from toolchain.validate import MAX_IMAGE_SIZE, MAX_IN_CHANNELS, MAX_NUM_CLASSES, check_number

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


# ---------------------------------------------------------------------- shape and metadata checks


def check_model_shape(variant: str, *, num_classes=None, in_channels=None, image_size=None,
                      where: str = "--") -> None:
    """The model-shape numbers every builder takes; ``where`` prefixes the names ("--" options, "metadata ")."""
    spec = get_variant(variant)
    if num_classes is not None:
        check_number(f"{where}num-classes" if where == "--" else f"{where}num_classes", num_classes, low=1,
                     high=MAX_NUM_CLASSES, integer=True)
    if in_channels is not None:
        check_number(f"{where}in-channels" if where == "--" else f"{where}in_channels", in_channels, low=1,
                     high=MAX_IN_CHANNELS, integer=True)
    if image_size is not None:
        name = f"{where}image-size" if where == "--" else f"{where}image_size"
        side = check_number(name, image_size, integer=True)
        if not spec.min_image_size <= side <= MAX_IMAGE_SIZE:
            raise ToolchainError(f"{name} {side} is too {'small' if side < spec.min_image_size else 'large'} for "
                                 f"the {variant} variant", hint=f"give {spec.min_image_size} to {MAX_IMAGE_SIZE} "
                                 "pixels (AlexNet's own is 224)")


def check_model_meta(meta: dict, *, source: str) -> dict:
    """A model description read from a file (checkpoint or ONNX metadata), checked and normalized.

    variant, num_classes, in_channels and image_size must be present and in range;
    mean and std, where present, one finite number per input channel (std > 0);
    classes, where present, one name per class. Returns a copy with ints and floats.
    """
    if not isinstance(meta, dict):
        raise ToolchainError(f"{source} metadata is not a JSON object",
                             hint="the file's metadata is damaged; re-train or re-export it")
    missing = [key for key in ("variant", "num_classes", "in_channels", "image_size") if key not in meta]
    if missing:
        raise ToolchainError(f"{source} metadata lacks {', '.join(missing)}",
                             hint="was it written by 'toolchain train' or 'toolchain export'?")
    out = dict(meta)
    if out["variant"] not in VARIANTS:
        raise ToolchainError(f"{source} metadata names an unknown variant {out['variant']!r}",
                             hint=f"variants: {', '.join(VARIANTS)}; re-train or re-export it")
    hint = "the file's metadata is damaged; re-train or re-export it"
    for key, low, high in (("num_classes", 1, MAX_NUM_CLASSES), ("in_channels", 1, MAX_IN_CHANNELS),
                           ("image_size", VARIANTS[out["variant"]].min_image_size, MAX_IMAGE_SIZE)):
        out[key] = check_number(f"{source} metadata {key}", out[key], low=low, high=high, integer=True, hint=hint)
    channels = out["in_channels"]
    for key in ("mean", "std"):
        if out.get(key) is None:
            continue
        values = out[key]
        if not isinstance(values, (list, tuple)) or len(values) != channels:
            raise ToolchainError(f"{source} metadata {key} must list {channels} number(s), one per input "
                                 f"channel, got {values!r}", hint=hint)
        out[key] = [check_number(f"{source} metadata {key}", v, low=0.0 if key == "std" else None,
                                 low_open=key == "std", hint=hint) for v in values]
    classes = out.get("classes")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, (str, int)) for c in classes):
            raise ToolchainError(f"{source} metadata classes must be a list of names", hint=hint)
        if len(classes) != out["num_classes"]:
            raise ToolchainError(f"{source} metadata lists {len(classes)} class name(s) for "
                                 f"{out['num_classes']} classes", hint=hint)
        out["classes"] = [str(c) for c in classes]
    return out
