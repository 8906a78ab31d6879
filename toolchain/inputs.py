"""Loaders for parity and the benchmark: the eager reference model and the inputs both sides get.

The reference is what the compared file was made from: the same checkpoint (by sha256) or
the same variant rebuilt with the recorded weights, seed and shape. The inputs are the
validation split of the model's dataset where it is known, else seeded random images.
"""

from __future__ import annotations

from toolchain.errors import ToolchainError


def load_reference(*, checkpoint=None, variant: str | None = None, onnx_meta: dict | None = None,
                   image_size: int | None = None, num_classes: int | None = None, in_channels: int | None = None):
    """The eager model to compare against, as a Checkpoint (``.model``, ``.meta``, ``.sha256``).

    With ``onnx_meta`` (a file's metadata, :mod:`toolchain.artifacts`) the reference must
    be what the file was exported from: the same checkpoint (sha256), or the same
    variant rebuilt with the recorded weights, seed and shape.
    """
    from toolchain.checkpoint import load_checkpoint, model_from_source

    onnx_meta = onnx_meta or {}
    recorded_sha = onnx_meta.get("checkpoint_sha256") or None
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if recorded_sha and ckpt.sha256 != recorded_sha:
            raise ToolchainError(f"the ONNX file was exported from another checkpoint (sha256 {recorded_sha[:12]}..., "
                                 f"{checkpoint} has {ckpt.sha256[:12]}...)", hint="pass the checkpoint it came from")
        return ckpt
    if recorded_sha:
        raise ToolchainError("the ONNX file was exported from a checkpoint", hint="pass it with --checkpoint")
    recorded_variant = onnx_meta.get("variant")
    if variant and recorded_variant and variant != recorded_variant:
        raise ToolchainError(f"the ONNX file holds variant {recorded_variant!r}, not {variant!r}")
    variant = variant or recorded_variant
    if not variant:
        raise ToolchainError("no reference model", hint="pass --checkpoint PATH or --variant NAME")
    weights = onnx_meta.get("weights") or None
    if weights and weights.startswith("random"):
        weights = None
    return model_from_source(variant=variant, weights=weights,
                             image_size=image_size or onnx_meta.get("image_size"),
                             num_classes=num_classes or onnx_meta.get("num_classes"),
                             in_channels=in_channels or onnx_meta.get("in_channels"),
                             seed=int(onnx_meta.get("seed", 0)))


def random_inputs(count: int, meta: dict, *, seed: int = 0):
    """``count`` seeded standard-normal images shaped like the model's input (already normalized)."""
    import numpy as np

    if count < 1:
        raise ToolchainError(f"--random must be >= 1, got {count}")
    shape = (count, int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def dataset_inputs(spec: str, meta: dict, *, limit: int | None = None, data_dir=None):
    """The validation split of ``spec`` prepared as the model expects: (images, labels)."""
    import numpy as np

    from toolchain.data import load_dataset

    split = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    bundle = load_dataset(spec, image_size=int(meta["image_size"]), in_channels=int(meta["in_channels"]),
                          data_dir=data_dir, seed=int(split.get("seed", 0)),
                          val_fraction=float(split.get("val_fraction", 0.2)), mean=meta.get("mean"),
                          std=meta.get("std"))
    if int(meta.get("num_classes", len(bundle.classes))) != len(bundle.classes):
        raise ToolchainError(f"dataset {spec} has {len(bundle.classes)} classes, the model {meta['num_classes']}",
                             hint="compare on the dataset the model was trained for, or use --random N")
    if limit is not None:
        from toolchain.validate import check_number

        check_number("--limit", limit, low=1, integer=True)
    n = len(bundle.val) if limit is None else min(int(limit), len(bundle.val))
    if n < 1:
        raise ToolchainError(f"dataset {spec} has no validation images", hint="compare on --random N inputs")
    images, labels = [], []
    for i in range(n):
        image, label = bundle.val[i]
        images.append(np.asarray(image, dtype=np.float32))
        labels.append(int(label))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def choose_inputs(meta: dict, *, dataset: str | None = None, random_n: int | None = None, limit: int | None = None,
                  data_dir=None, seed: int = 0, minimum: int = 16):
    """(inputs, labels or None, source): ``dataset``'s (or the model's own) validation split, else
    ``random_n`` (default: ``minimum``) seeded inputs. ``dataset`` and ``random_n`` exclude each other."""
    if dataset and random_n:
        raise ToolchainError("--dataset and --random exclude each other")
    dataset = dataset or (None if random_n else meta.get("dataset"))
    if dataset:
        inputs, labels = dataset_inputs(dataset, meta, limit=limit, data_dir=data_dir)
        return inputs, labels, f"{dataset} validation split"
    count = random_n or minimum
    return random_inputs(count, meta, seed=seed), None, f"seeded random inputs (seed {seed})"
