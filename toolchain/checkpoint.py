"""Checkpoints: safetensors weights with JSON metadata, written atomically.

``NAME.safetensors`` holds the weights and, in its header, the metadata as JSON
under the key ``toolchain``; the sidecar ``NAME.json`` repeats the metadata with
the weights file's sha256, which :func:`load_checkpoint` verifies. Pickled
PyTorch checkpoints (``.pt``/``.pth``) load only through ``weights_only=True``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

from toolchain import __version__
from toolchain.errors import ToolchainError
from toolchain.io import atomic_output, check_writable, require_file, sha256_file, write_json_atomic

METADATA_KEY = "toolchain"


@dataclass
class Checkpoint:
    model: object  # torch.nn.Module, in eval mode, on the CPU
    meta: dict
    sha256: str | None = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)


def library_versions() -> dict:
    import numpy
    import torch
    import torchvision

    return {"toolchain": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_checkpoint(path, model, meta: dict, *, force: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its JSON sidecar, both atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ToolchainError(f"checkpoint path {path} must end in .safetensors")
    check_writable(sidecar_path(path), force=force)
    meta = {**meta, "versions": meta.get("versions") or library_versions()}
    # safetensors refuses shared storage; clone so every tensor is standalone.
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    write_json_atomic(sidecar_path(path), {**meta, "weights_file": path.name, "sha256": sha256_file(path)},
                      force=True)
    return path


def _model_from_meta(meta: dict):
    from toolchain.models import build_model

    missing = [key for key in ("variant", "num_classes", "in_channels", "image_size") if key not in meta]
    if missing:
        raise ToolchainError(f"checkpoint metadata lacks {', '.join(missing)}",
                             hint="was it written by 'toolchain train'?")
    return build_model(meta["variant"], num_classes=int(meta["num_classes"]), in_channels=int(meta["in_channels"]),
                       image_size=int(meta["image_size"]))


def load_checkpoint(path) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (or a weights-only pickle)."""
    path = require_file(path, "checkpoint")
    if path.suffix in (".pt", ".pth"):
        return _load_pickle(path)
    if path.suffix != ".safetensors":
        raise ToolchainError(f"checkpoint {path} is neither .safetensors nor .pt/.pth")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ToolchainError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None
    if METADATA_KEY not in header:
        raise ToolchainError(f"checkpoint {path} has no toolchain metadata", hint="write it with 'toolchain train'")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError:
        raise ToolchainError(f"checkpoint {path} has unreadable metadata") from None
    digest = sha256_file(path)
    sidecar = sidecar_path(path)
    if sidecar.exists():
        try:
            recorded = json.loads(sidecar.read_text()).get("sha256")
        except json.JSONDecodeError:
            raise ToolchainError(f"checkpoint sidecar {sidecar} is not valid JSON") from None
        if recorded and recorded != digest:
            raise ToolchainError(f"checkpoint {path} does not match the sha256 in {sidecar.name}",
                                 hint="the file was changed or truncated; re-train or restore it")
    model = _model_from_meta(meta)
    _load_state(model, state, path)
    return Checkpoint(model=model.eval(), meta=meta, sha256=digest, path=path)


def _load_pickle(path: Path) -> Checkpoint:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ToolchainError(f"checkpoint {path} could not be loaded safely ({str(exc).splitlines()[0]})",
                             hint="only weights-only pickles load; convert it to safetensors") from None
    if not isinstance(obj, dict):
        raise ToolchainError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else None
    state = obj.get("state_dict", obj) if meta else obj
    if meta is None:
        raise ToolchainError(f"pickled checkpoint {path} has no 'meta' dict",
                             hint="save {'state_dict': ..., 'meta': {'variant': ..., ...}} or use safetensors")
    model = _model_from_meta(meta)
    _load_state(model, state, path)
    return Checkpoint(model=model.eval(), meta=meta, sha256=sha256_file(path), path=path)


def _load_state(model, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatched keys"
        raise ToolchainError(f"checkpoint {path} does not fit its variant ({first})") from None


def model_from_source(*, checkpoint=None, variant: str | None = None, weights: str | None = None,
                      image_size: int | None = None, num_classes: int | None = None,
                      in_channels: int | None = None, seed: int = 0) -> Checkpoint:
    """A checkpoint, or a variant with pretrained or seeded random weights."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    if variant is None:
        raise ToolchainError("no model given", hint="pass --checkpoint PATH or --variant NAME")
    import torch

    from toolchain.models import build_model, get_variant, variant_categories

    spec = get_variant(variant)
    weights = None if weights in (None, "", "none") else weights
    torch.manual_seed(seed)
    model = build_model(variant, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        weights=weights)
    classes_n = spec.num_classes if num_classes is None else num_classes
    categories = variant_categories(variant) if classes_n == spec.num_classes else None
    meta = {
        "variant": variant,
        "num_classes": classes_n,
        "in_channels": spec.in_channels if in_channels is None else in_channels,
        "image_size": spec.image_size if image_size is None else image_size,
        "mean": list(spec.mean) if (in_channels in (None, spec.in_channels)) else [0.5] * in_channels,
        "std": list(spec.std) if (in_channels in (None, spec.in_channels)) else [0.5] * in_channels,
        "classes": list(categories) if categories else [str(i) for i in range(classes_n)],
        "weights": weights or f"random(seed={seed})",
    }
    return Checkpoint(model=model.eval(), meta=meta, sha256=None, path=None)
