"""Top-1/top-5 of a checkpoint on a dataset, and its most confused class pairs."""

from __future__ import annotations

from collections import Counter


def evaluate_checkpoint(checkpoint_path, dataset_spec: str | None = None, *, split: str = "val",
                        batch_size: int = 256, device: str = "auto", data_dir=None, fused_lrn: bool = False,
                        top_confusions: int = 5) -> dict:
    import torch

    from toolchain.checkpoint import load_checkpoint
    from toolchain.data import load_dataset
    from toolchain.errors import ToolchainError
    from toolchain.train import make_loader, resolve_device, topk_correct
    from toolchain.validate import check_number

    check_number("--batch-size", batch_size, low=1, integer=True)
    if split not in ("val", "train"):
        raise ToolchainError(f"unknown split {split!r}", hint="use val or train")
    device_t = resolve_device(device)
    if fused_lrn and device_t.type != "cuda":  # on the CPU it would silently measure PyTorch's own LRN
        raise ToolchainError("--fused-lrn runs LRN through the CUDA kernel, and the device is the CPU",
                             hint="pass --device cuda on a machine with a GPU, or leave --fused-lrn out")
    ckpt = load_checkpoint(checkpoint_path)
    meta = ckpt.meta
    spec = dataset_spec or meta.get("dataset")
    if not spec:
        raise ToolchainError("the checkpoint does not name its dataset", hint="pass --dataset")
    split_info = meta.get("split", {})
    bundle = load_dataset(spec, image_size=int(meta["image_size"]), in_channels=int(meta["in_channels"]),
                          data_dir=data_dir, seed=int(split_info.get("seed", 0)),
                          val_fraction=float(split_info.get("val_fraction", 0.2)),
                          mean=meta.get("mean"), std=meta.get("std"))
    if len(bundle.classes) != int(meta["num_classes"]):
        raise ToolchainError(f"dataset {spec} has {len(bundle.classes)} classes, the checkpoint "
                             f"{meta['num_classes']}", hint="evaluate on the dataset it was trained for")
    dataset = bundle.val if split == "val" else bundle.train
    if split == "train":  # measure on the unaugmented images
        dataset = type(bundle.val)(bundle.val.base, bundle.train.indices, bundle.val.transform)
    model = ckpt.model.to(device_t).eval()
    if fused_lrn:
        from toolchain.fused_lrn import enable_fused_lrn

        enable_fused_lrn(model)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, workers=0, device=device_t)
    total = correct1 = correct5 = 0
    confusions: Counter = Counter()
    with torch.no_grad():
        for images, labels in loader:
            logits = model(images.to(device_t)).float().cpu()
            c1, c5 = topk_correct(logits, labels)
            correct1, correct5, total = correct1 + c1, correct5 + c5, total + len(labels)
            for truth, pred in zip(labels.tolist(), logits.argmax(1).tolist()):
                if truth != pred:
                    confusions[(truth, pred)] += 1
    classes = bundle.classes
    return {
        "checkpoint": str(checkpoint_path), "dataset": spec, "split": split, "samples": total,
        "top1": correct1 / total, "top5": correct5 / total,
        "recorded_val_top1": meta.get("metrics", {}).get("val_top1"),
        "confused_pairs": [{"true": classes[t], "predicted": classes[p], "count": n}
                           for (t, p), n in confusions.most_common(top_confusions)],
    }
