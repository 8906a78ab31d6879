"""AlexNet variants: the 2012 paper, torchvision's (with or without LRN), and d2l's.

Each variant is a module class plus a keyword-only builder. Every builder takes
``num_classes``, ``in_channels`` and ``image_size``.

How the classifier adapts to the input size:

* ``paper`` and ``d2l`` flatten the last feature map, as the originals do, so
  the first fully connected layer has ``256 * s * s`` inputs where ``s`` is the
  final feature-map side (6 for the paper at 224, 5 for d2l at 224; 1 for the
  paper at 64). Smaller inputs therefore also shrink fc6.
* ``torchvision`` and ``torchvision-lrn`` keep torchvision's
  ``AdaptiveAvgPool2d((6, 6))``, so fc6 always has 9216 inputs and torchvision's
  ImageNet weights load at any input size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from toolchain.errors import ToolchainError
from toolchain.lrn_op import PAPER_LRN, LRNParams
from toolchain.models.layers import LocalResponseNorm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: LocalResponseNorm(5) with PyTorch's defaults, as in common PyTorch tutorials.
TUTORIAL_LRN = LRNParams(size=5, alpha=1e-4, beta=0.75, bias=1.0)


def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_feature_size(variant: str, image_size: int, side: int) -> int:
    if side < 1:
        raise ToolchainError(
            f"input size {image_size} is too small for the {variant} variant",
            hint="use an input size of at least 63 (65 for d2l)",
        )
    return side


class AlexNetPaper(nn.Module):
    """The 2012 network (Krizhevsky, Sutskever, Hinton).

    conv1 has padding 2 so that a 224 input gives 55x55 (as a 227 input does
    without padding). conv2, conv4 and conv5 use ``groups=2``, reproducing the
    two-GPU split; LRN follows the ReLU of conv1 and conv2 with the paper's
    n=5, k=2, alpha=1e-4, beta=0.75, where the paper's alpha multiplies the plain
    sum of squares: in PyTorch's convention (alpha divided by n) that is
    alpha=5e-4, which is what the LRN modules hold (see ``toolchain.lrn_op``).
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 dropout: float = 0.5, lrn: LRNParams = PAPER_LRN):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            LocalResponseNorm.from_params(lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            LocalResponseNorm.from_params(lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        side = _conv_out(image_size, 11, 4, 2)
        side = _conv_out(_conv_out(side, 3, 2), 3, 2)  # pool1, pool2
        side = _check_feature_size("paper", image_size, _conv_out(side, 3, 2))  # pool5
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(p=dropout),
            nn.Linear(256 * side * side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetTorchvision(nn.Module):
    """torchvision's AlexNet (64/192/384/256/256, "One weird trick" layout).

    With ``lrn`` set, LocalResponseNorm follows the first, second and last
    max-pool, as in common tutorials. State-dict keys then differ from
    torchvision's by the inserted indices; :func:`load_torchvision_weights`
    maps them.
    """

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                 dropout: float = 0.5, lrn: LRNParams | None = None):
        super().__init__()

        def maybe_lrn() -> list[nn.Module]:
            return [LocalResponseNorm.from_params(lrn)] if lrn is not None else []

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *maybe_lrn(),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *maybe_lrn(),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *maybe_lrn(),
        )
        side = _conv_out(image_size, 11, 4, 2)
        side = _conv_out(_conv_out(side, 3, 2), 3, 2)
        _check_feature_size("torchvision", image_size, _conv_out(side, 3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNetD2L(nn.Module):
    """The Fashion-MNIST AlexNet of *Dive into Deep Learning* (section 8.1)."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 224,
                 dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        side = _conv_out(image_size, 11, 4, 1)
        side = _conv_out(_conv_out(side, 3, 2), 3, 2)
        side = _check_feature_size("d2l", image_size, _conv_out(side, 3, 2))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * side * side, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions and small-normal linear layers, zero biases.

    The paper's N(0, 0.01) with unit biases is known to stall when training from
    scratch without its 90-epoch schedule; He initialisation keeps activations at
    unit scale through the ReLUs, so the network learns within a few epochs.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class VariantSpec:
    """Metadata of one variant at its native size with its default head."""

    name: str
    description: str
    builder: Callable[..., nn.Module]
    in_channels: int
    num_classes: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    expected_params: int | None = None
    expected_gflop: float | None = None
    categories: tuple[str, ...] | None = None
    lrn: tuple[LRNParams, ...] = field(default_factory=tuple)
    pretrained: tuple[str, ...] = ()
    min_image_size: int = 63


def _imagenet_categories() -> tuple[str, ...] | None:
    try:
        from torchvision.models import AlexNet_Weights
    except ImportError:  # pragma: no cover - torchvision is a core dependency
        return None
    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def paper(*, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, dropout: float = 0.5,
          weights: str | None = None) -> AlexNetPaper:
    _no_pretrained("paper", weights)
    return AlexNetPaper(num_classes=num_classes, in_channels=in_channels, image_size=image_size, dropout=dropout)


def torchvision_alexnet(*, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                        dropout: float = 0.5, weights: str | None = None) -> AlexNetTorchvision:
    model = AlexNetTorchvision(num_classes=num_classes, in_channels=in_channels, image_size=image_size, dropout=dropout)
    if weights:
        load_torchvision_weights(model, weights)
    return model


def torchvision_lrn(*, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
                    dropout: float = 0.5, weights: str | None = None) -> AlexNetTorchvision:
    model = AlexNetTorchvision(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                               dropout=dropout, lrn=TUTORIAL_LRN)
    if weights:
        load_torchvision_weights(model, weights)
    return model


def d2l(*, num_classes: int = 10, in_channels: int = 1, image_size: int = 224, dropout: float = 0.5,
        weights: str | None = None) -> AlexNetD2L:
    _no_pretrained("d2l", weights)
    return AlexNetD2L(num_classes=num_classes, in_channels=in_channels, image_size=image_size, dropout=dropout)


def _no_pretrained(variant: str, weights: str | None) -> None:
    if weights:
        raise ToolchainError(f"the {variant} variant has no published weights",
                             hint="train it with 'toolchain train' and pass --checkpoint")


def load_torchvision_weights(model: AlexNetTorchvision, weights: str = "IMAGENET1K_V1") -> None:
    """Download torchvision's ImageNet weights and copy them in layer order.

    Copying by order of the parameterised layers (not by key) lets the same
    weights load into the LRN variant, whose Sequential indices are shifted.
    """
    import socket

    from torchvision.models import AlexNet_Weights

    try:
        weight_enum = AlexNet_Weights[weights.upper()] if weights.upper() != "DEFAULT" else AlexNet_Weights.DEFAULT
    except KeyError:
        raise ToolchainError(f"unknown torchvision weights {weights!r}",
                             hint=f"choose one of {', '.join(w.name for w in AlexNet_Weights)}") from None
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        state = weight_enum.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:
        from toolchain.errors import MissingDependencyError

        raise MissingDependencyError(
            f"could not download torchvision's AlexNet weights from {weight_enum.url} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})",
            hint="connect to the network, or put the file in $TORCH_HOME/hub/checkpoints, or use --weights none",
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    copy_in_layer_order(model, state)


def copy_in_layer_order(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model`` matching parameterised layers by order and shape."""
    targets = [(name, tensor) for name, tensor in model.state_dict().items()]
    sources = list(state.items())
    if len(targets) != len(sources):
        raise ToolchainError(f"weights have {len(sources)} tensors, the model {len(targets)}",
                             hint="use weights of the same variant")
    new_state = {}
    for (target_name, target), (source_name, source) in zip(targets, sources):
        if target.shape != source.shape:
            raise ToolchainError(
                f"weight {source_name} has shape {tuple(source.shape)}, model layer {target_name} needs "
                f"{tuple(target.shape)}", hint="weights must match num_classes and in_channels")
        new_state[target_name] = source
    model.load_state_dict(new_state)
