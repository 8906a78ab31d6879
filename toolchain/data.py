"""Datasets and the paper's augmentation, built on torchvision.

Specs: ``digits`` (scikit-learn's bundled 8x8 handwritten digits, offline: the
embedded default), ``synthetic`` (seeded class patterns, for smoke tests),
``fashion-mnist`` and ``cifar10`` (downloaded by torchvision; their official
test split serves as validation), and ``imagefolder:PATH`` (torchvision's
ImageFolder layout; ``PATH/train`` + ``PATH/val`` when present, otherwise a
seeded split of ``PATH``).

Training transform (the paper's recipe, scaled to the input size): resize to
``image_size * 256/224``, random ``image_size`` crop, horizontal flip where the
data is mirror-symmetric, PCA colour noise (std 0.1) for RGB data, normalize.
Evaluation: the same resize and a centre crop.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from toolchain.errors import MissingDependencyError, ToolchainError

DATASETS = ("digits", "synthetic", "fashion-mnist", "cifar10", "imagefolder:PATH")
#: Default input side per dataset: small for the offline demos, 224 otherwise.
DEFAULT_IMAGE_SIZE = {"digits": 64, "synthetic": 64}
#: Training defaults per dataset: the small in-memory sets need smaller batches
#: (more SGD steps per epoch) than the paper's 128 to learn in a few epochs.
DEFAULT_TRAINING = {"digits": {"batch_size": 32, "epochs": 12}, "synthetic": {"batch_size": 32, "epochs": 4}}
PAPER_TRAINING = {"batch_size": 128, "epochs": 90}
# ImageNet RGB statistics used by the paper's colour noise (eigenvalues of the
# pixel covariance and their eigenvectors, as columns).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


def default_data_dir() -> Path:
    return Path(os.environ.get("TOOLCHAIN_DATA", Path.home() / ".cache" / "toolchain" / "datasets"))


class PCAColorNoise(torch.nn.Module):
    """AlexNet's colour augmentation: add sum_i a_i * lambda_i * p_i to every pixel, a_i ~ N(0, std)."""

    def __init__(self, eigval=IMAGENET_EIGVAL, eigvec=IMAGENET_EIGVEC, std: float = 0.1):
        super().__init__()
        self.register_buffer("eigval", torch.as_tensor(eigval, dtype=torch.float32))
        self.register_buffer("eigvec", torch.as_tensor(eigvec, dtype=torch.float32))
        self.std = std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.std <= 0 or image.shape[-3] != 3:
            return image
        alpha = torch.randn(3) * self.std
        shift = self.eigvec @ (alpha * self.eigval)
        return image + shift.view(3, 1, 1).to(image.dtype)


class ToChannels(torch.nn.Module):
    """Convert grey to RGB (repeat) or RGB to grey (luma) so data fits the model."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        have = image.shape[-3]
        if have == self.channels:
            return image
        if have == 1:
            return image.expand(self.channels, *image.shape[-2:]).clone()
        if have == 3 and self.channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
            return (image * weights).sum(dim=-3, keepdim=True)
        raise ToolchainError(f"cannot convert {have}-channel images to {self.channels} channels")


def resize_size(image_size: int) -> int:
    return round(image_size * 256 / 224)


def train_transform(image_size: int, mean, std, *, channels: int, hflip: bool, color_noise: PCAColorNoise | None):
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), ToChannels(channels),
             v2.Resize(resize_size(image_size), antialias=True), v2.RandomCrop(image_size)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if color_noise is not None and channels == 3:
        steps.append(color_noise)
    steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def eval_transform(image_size: int, mean, std, *, channels: int):
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), ToChannels(channels),
                       v2.Resize(resize_size(image_size), antialias=True), v2.CenterCrop(image_size),
                       v2.Normalize(list(mean), list(std))])


class TensorImages(Dataset):
    """Images held in memory as a float tensor [N, C, H, W] in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


class Transformed(Dataset):
    """A view of ``base`` restricted to ``indices`` with its own transform."""

    def __init__(self, base, indices, transform):
        self.base, self.indices, self.transform = base, list(indices), transform
        self.targets = [self._label(i) for i in self.indices]

    def _label(self, i):
        targets = getattr(self.base, "targets", None)
        if targets is not None:
            return int(targets[i])
        return int(self.base.labels[i]) if hasattr(self.base, "labels") else int(self.base[i][1])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        image, label = self.base[self.indices[index]]
        return self.transform(image), label


@dataclass
class DatasetBundle:
    name: str
    train: Dataset
    val: Dataset
    classes: list[str]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    info: dict = field(default_factory=dict)


def _split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if not 0 < val_fraction < 1:
        raise ToolchainError(f"validation fraction {val_fraction} must be between 0 and 1")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def _digits() -> tuple[TensorImages, list[str]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return TensorImages(images, torch.tensor(digits.target)), [str(c) for c in digits.target_names]


def _synthetic(seed: int, channels: int, classes: int = 10, per_class: int = 60, side: int = 16):
    """Each class is a fixed random low-resolution pattern; samples add noise and a shift."""
    gen = torch.Generator().manual_seed(1234)
    templates = torch.rand(classes, channels, 4, 4, generator=gen)
    templates = torch.nn.functional.interpolate(templates, size=(side, side), mode="bilinear", align_corners=False)
    gen = torch.Generator().manual_seed(seed + 1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = templates[labels] + 0.15 * torch.randn(len(labels), channels, side, side, generator=gen)
    shifts = torch.randint(-1, 2, (len(labels), 2), generator=gen)
    images = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2)) for img, s in zip(images, shifts)])
    return TensorImages(images.clamp(0, 1), labels), [f"class{i}" for i in range(classes)]


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def _pca(images: torch.Tensor) -> PCAColorNoise | None:
    if images.shape[1] != 3:
        return None
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    pixels = pixels[torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:200_000]]
    eigval, eigvec = torch.linalg.eigh(torch.cov(pixels.T))
    return PCAColorNoise(eigval.flip(0), eigvec.flip(1))


DATASET_NAMES = ("digits", "synthetic", "fashion-mnist", "cifar10", "imagefolder")


def check_dataset_spec(spec: str) -> None:
    """Refuse an unknown dataset or a missing ImageFolder path (no loading, no download)."""
    name = str(spec).split(":", 1)[0]
    if name not in DATASET_NAMES:
        raise ToolchainError(f"unknown dataset {spec!r}", hint=f"choose one of {', '.join(DATASETS)}")
    if name == "imagefolder":
        root = str(spec).split(":", 1)[1] if ":" in str(spec) else ""
        if not root:
            raise ToolchainError("imagefolder needs a path", hint="use --dataset imagefolder:PATH")
        if not Path(root).is_dir():
            raise ToolchainError(f"ImageFolder path {root} does not exist or is not a directory",
                                 hint="give a folder with one subfolder of images per class")


def dataset_inputs_paths(spec: str | None, data_dir=None) -> list[tuple[str, Path]]:
    """The files a dataset is read from, as (option, path): outputs must not overwrite them."""
    out = []
    if spec and str(spec).startswith("imagefolder:") and str(spec).split(":", 1)[1]:
        out.append(("--dataset", Path(str(spec).split(":", 1)[1])))
    if data_dir:
        out.append(("--data-dir", Path(data_dir)))
    return out


def _download(what: str, make, data_dir: Path):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    existed = data_dir.exists()
    try:
        return make()
    except (OSError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _remove_empty_tree(data_dir, existed)
        raise MissingDependencyError(
            f"could not download {what} into {data_dir} ({detail})",
            hint=f"connect to the network, or place the files under {data_dir} (--data-dir), "
                 "or use --dataset digits, which needs no download",
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _remove_empty_tree(folder: Path, existed: bool) -> None:
    """Undo the empty folders a failed download created (files, if any, are kept)."""
    if existed or not folder.is_dir():
        return
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def load_dataset(spec: str, *, image_size: int | None = None, in_channels: int | None = None, data_dir=None,
                 seed: int = 0, val_fraction: float = 0.2, hflip: bool | None = None, download: bool = True,
                 mean=None, std=None) -> DatasetBundle:
    """Resolve a dataset spec into train and validation datasets with the paper's transforms.

    ``in_channels`` converts the images (grey <-> RGB) to what a model expects;
    ``mean``/``std`` override the dataset statistics (e.g. from a checkpoint).
    """
    name = spec.split(":", 1)[0]
    image_size = image_size or DEFAULT_IMAGE_SIZE.get(name, 224)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    color_noise = None
    train_split = val_split = None

    if name == "digits":
        base, classes = _digits()
        stats = _stats(base.images)
        default_hflip = False  # digits are not mirror-symmetric
        train_split, val_split = _split(len(base), val_fraction, seed)
    elif name == "synthetic":
        base, classes = _synthetic(seed, in_channels or 3)
        stats = _stats(base.images)
        color_noise = _pca(base.images)
        default_hflip = False
        train_split, val_split = _split(len(base), val_fraction, seed)
    elif name in ("fashion-mnist", "cifar10"):
        from torchvision import datasets

        cls = datasets.FashionMNIST if name == "fashion-mnist" else datasets.CIFAR10
        pretty = "Fashion-MNIST" if name == "fashion-mnist" else "CIFAR-10"
        train_base = _download(pretty, lambda: cls(str(data_dir), train=True, download=download), data_dir)
        val_base = _download(pretty, lambda: cls(str(data_dir), train=False, download=download), data_dir)
        classes = list(train_base.classes)
        if name == "fashion-mnist":
            stats = ((0.2860,), (0.3530,))
        else:
            pixels = torch.as_tensor(train_base.data[:10000]).permute(0, 3, 1, 2).float() / 255
            stats = _stats(pixels)
            color_noise = _pca(pixels)
        default_hflip = True
    elif name == "imagefolder":
        from torchvision import datasets

        from toolchain.models.alexnet import IMAGENET_MEAN, IMAGENET_STD

        check_dataset_spec(spec)
        root = Path(spec.split(":", 1)[1])
        try:
            if (root / "train").is_dir() and (root / "val").is_dir():
                train_base = datasets.ImageFolder(str(root / "train"))
                val_base = datasets.ImageFolder(str(root / "val"))
            else:
                train_base = val_base = datasets.ImageFolder(str(root))
                train_split, val_split = _split(len(train_base), val_fraction, seed)
        except (FileNotFoundError, OSError) as exc:
            raise ToolchainError(f"ImageFolder {root} has no usable images ({str(exc).splitlines()[0]})") from None
        classes = list(train_base.classes)
        stats = (IMAGENET_MEAN, IMAGENET_STD)
        color_noise = PCAColorNoise()
        default_hflip = True
    else:
        raise ToolchainError(f"unknown dataset {spec!r}", hint=f"choose one of {', '.join(DATASETS)}")

    native_channels = len(stats[0])
    channels = in_channels or native_channels
    mean, std = tuple(mean or ()), tuple(std or ())
    if not mean or not std:
        mean, std = stats
        if channels != native_channels:  # statistics follow the channel conversion
            mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    if len(mean) != channels or len(std) != channels:
        raise ToolchainError(f"normalization has {len(mean)} channels, the model {channels}")
    hflip = default_hflip if hflip is None else hflip
    train_tf = train_transform(image_size, mean, std, channels=channels, hflip=hflip, color_noise=color_noise)
    eval_tf = eval_transform(image_size, mean, std, channels=channels)
    if train_split is not None:
        train = Transformed(base if name in ("digits", "synthetic") else train_base, train_split, train_tf)
        val = Transformed(base if name in ("digits", "synthetic") else val_base, val_split, eval_tf)
    else:
        train = Transformed(train_base, range(len(train_base)), train_tf)
        val = Transformed(val_base, range(len(val_base)), eval_tf)
    return DatasetBundle(name=spec, train=train, val=val, classes=classes, in_channels=channels,
                         image_size=image_size, mean=mean, std=std, hflip=hflip,
                         info={"seed": seed, "val_fraction": val_fraction, "train_size": len(train),
                               "val_size": len(val)})
