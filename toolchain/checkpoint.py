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
from toolchain.io import atomic_outputs, check_writable, json_text, require_file, sha256_file

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
    """Write ``path`` (.safetensors) and its JSON sidecar as one set: both appear, or neither changes."""
    import hashlib

    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ToolchainError(f"checkpoint path {path} must end in .safetensors")
    check_writable(sidecar_path(path), force=force)
    meta = {**meta, "versions": meta.get("versions") or library_versions()}
    # safetensors refuses shared storage; clone so every tensor is standalone.
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    # Serialized in memory and written by Python: a full disk is an OSError (one line), and the
    # file gets a normal mode (safetensors' save_file creates it 0600).
    data = save(state, metadata={METADATA_KEY: json.dumps(meta)})
    sidecar = {**meta, "weights_file": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    with atomic_outputs({"weights": path, "sidecar": sidecar_path(path)}, force=force) as tmp:
        tmp["weights"].write_bytes(data)
        tmp["sidecar"].write_text(json_text(sidecar), encoding="utf-8")
    return path


def _model_from_meta(meta: dict, source: str = "checkpoint"):
    from toolchain.models import build_model, check_model_meta

    meta = check_model_meta(meta, source=source)
    return build_model(meta["variant"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                       image_size=meta["image_size"]), meta


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
    model, meta = _model_from_meta(meta, f"checkpoint {path}")
    _load_state(model, state, path, meta)
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
    model, meta = _model_from_meta(meta, f"checkpoint {path}")
    _load_state(model, state, path, meta)
    return Checkpoint(model=model.eval(), meta=meta, sha256=sha256_file(path), path=path)


def state_mismatch(expected: dict, found: dict) -> str | None:
    """How a state dict ``found`` (name -> tensor) fails the model's ``expected`` one, in a few words, or None."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [f"{name} is {list(found[name].shape)}, the model needs {list(expected[name].shape)}"
              for name in expected if name in found and tuple(found[name].shape) != tuple(expected[name].shape)]
    parts = []
    if shapes:
        parts.append(shapes[0] + (f" (and {len(shapes) - 1} more tensor(s) of another shape)" if len(shapes) > 1
                                  else ""))
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[0]}")
    return "; ".join(parts) or None


def _load_state(model, state: dict, path: Path, meta: dict) -> None:
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise ToolchainError(f"checkpoint {path}'s weights do not fit the model its metadata describes "
                             f"(variant {meta['variant']}, {meta['num_classes']} classes, {meta['in_channels']} "
                             f"channel(s), {meta['image_size']} px): {problem}",
                             hint="the metadata names another variant or shape than the weights were trained as; "
                                  "restore the original checkpoint or re-train it")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # dtypes or anything state_mismatch does not cover
        first = str(exc).splitlines()[-1].strip() if str(exc) else "mismatched tensors"
        raise ToolchainError(f"checkpoint {path}'s weights do not load into variant {meta['variant']}: {first}",
                             hint="restore the original checkpoint or re-train it") from None


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
