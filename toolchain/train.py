"""Training with the paper's recipe.

SGD (momentum 0.9, weight decay 5e-4), learning rate 0.01 divided by 10 when
validation top-1 stops improving, dropout 0.5, random crops, flips where the
data allows, PCA colour noise for RGB data. On a GPU: AMP and cudnn.benchmark.

A run folder holds ``model.safetensors`` (+ ``model.json``: the best epoch by
validation top-1), ``last.safetensors`` and ``train_state.pt`` (optimizer and
scheduler state, for ``--resume``), and ``history.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.io import atomic_output, write_json_atomic


@dataclass
class TrainConfig:
    variant: str = "paper"
    dataset: str = "digits"
    out_dir: str = "runs/train"
    image_size: int | None = None
    in_channels: int | None = None
    epochs: int | None = None  # None: the dataset's default (see toolchain.data.DEFAULT_TRAINING)
    batch_size: int | None = None
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    lr_patience: int = 3
    min_lr: float = 1e-5
    val_fraction: float = 0.2
    hflip: bool | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int | None = None
    data_dir: str | None = None
    target_top1: float | None = None  # stop early once validation top-1 reaches it
    resume: bool = False
    force: bool = False
    progress: bool = True


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict
    history: list = field(default_factory=list)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ToolchainError("--device cuda was asked for but no CUDA GPU is available", hint="use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ToolchainError(f"unknown device {name!r}", hint="use auto, cpu or cuda[:N]") from None


def topk_correct(logits, labels, ks=(1, 5)) -> list[int]:
    import torch

    maxk = min(max(ks), logits.shape[1])
    predicted = logits.topk(maxk, dim=1).indices
    hits = predicted.eq(labels.unsqueeze(1))
    return [int(hits[:, : min(k, maxk)].any(dim=1).sum()) for k in ks] if len(labels) else [0 for _ in ks]


def run_epoch(model, loader, device, *, optimizer=None, scaler=None, amp=False, progress=None, task=None):
    """One pass over ``loader``; trains when an optimizer is given. Returns loss, top-1, top-5."""
    import torch

    training = optimizer is not None
    model.train(training)
    loss_fn = torch.nn.CrossEntropyLoss()
    total, loss_sum, correct1, correct5 = 0, 0.0, 0, 0
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")
    with torch.set_grad_enabled(training):
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                logits = model(images)
                loss = loss_fn(logits.float(), labels)
            if training:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            c1, c5 = topk_correct(logits.detach().float(), labels)
            total += len(labels)
            loss_sum += float(loss.detach()) * len(labels)
            correct1 += c1
            correct5 += c5
            if progress is not None:
                progress.advance(task)
    if total == 0:
        raise ToolchainError("the dataset split is empty")
    return {"loss": loss_sum / total, "top1": correct1 / total, "top5": correct5 / total, "samples": total}


def make_loader(dataset, *, batch_size: int, shuffle: bool, workers: int, device, seed: int = 0):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


def run_training(config: TrainConfig) -> TrainResult:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from toolchain.checkpoint import library_versions, load_checkpoint, save_checkpoint
    from toolchain.data import load_dataset
    from toolchain.models import build_model, get_variant

    from toolchain.data import DEFAULT_TRAINING, PAPER_TRAINING

    spec = get_variant(config.variant)
    defaults = DEFAULT_TRAINING.get(config.dataset.split(":", 1)[0], PAPER_TRAINING)
    config.epochs = defaults["epochs"] if config.epochs is None else config.epochs
    config.batch_size = defaults["batch_size"] if config.batch_size is None else config.batch_size
    if config.epochs < 1:
        raise ToolchainError(f"--epochs must be at least 1, got {config.epochs}")
    out_dir = Path(config.out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (config.force or config.resume):
        raise ToolchainError(f"run folder {out_dir} already exists and is not empty",
                             hint="pass --force to overwrite it, --resume to continue, or choose another --out")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    from toolchain.data import DEFAULT_IMAGE_SIZE

    image_size = config.image_size or max(DEFAULT_IMAGE_SIZE.get(config.dataset.split(":", 1)[0], 224),
                                          spec.min_image_size)
    bundle = load_dataset(config.dataset, image_size=image_size, in_channels=config.in_channels,
                          data_dir=config.data_dir, seed=config.seed, val_fraction=config.val_fraction,
                          hflip=config.hflip)
    num_classes = len(bundle.classes)
    model = build_model(config.variant, num_classes=num_classes, in_channels=bundle.in_channels,
                        image_size=bundle.image_size, dropout=config.dropout).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1,
                                                           patience=config.lr_patience, min_lr=config.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    history: list[dict] = []
    start_epoch, best_top1 = 0, -1.0

    last_path, state_path = out_dir / "last.safetensors", out_dir / "train_state.pt"
    if config.resume:
        if not last_path.exists() or not state_path.exists():
            raise ToolchainError(f"nothing to resume in {out_dir}", hint="start without --resume")
        resumed = load_checkpoint(last_path)
        model.load_state_dict(resumed.model.state_dict())
        state = torch.load(state_path, map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1 = int(state["epoch"]), float(state["best_top1"])
        history = json.loads((out_dir / "history.json").read_text()) if (out_dir / "history.json").exists() else []
        torch.set_rng_state(state["rng"])
    out_dir.mkdir(parents=True, exist_ok=True)

    workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
    train_loader = make_loader(bundle.train, batch_size=config.batch_size, shuffle=True, workers=workers,
                               device=device, seed=config.seed)
    val_loader = make_loader(bundle.val, batch_size=max(config.batch_size, 256), shuffle=False, workers=workers,
                             device=device)
    hyper = {k: v for k, v in asdict(config).items() if k not in ("out_dir", "force", "resume", "progress")}
    meta_base = {
        "variant": config.variant, "num_classes": num_classes, "in_channels": bundle.in_channels,
        "image_size": bundle.image_size, "mean": list(bundle.mean), "std": list(bundle.std),
        "classes": list(bundle.classes), "dataset": config.dataset,
        "split": {"seed": config.seed, "val_fraction": config.val_fraction}, "hyperparameters": hyper,
        "lrn": [p.attributes() for p in spec.lrn] if spec.name != "d2l" else [],
        "versions": library_versions(),
    }
    console = Console(stderr=True, quiet=not config.progress)
    console.print(f"training [bold]{config.variant}[/] on [bold]{config.dataset}[/] "
                  f"({len(bundle.train)} train / {len(bundle.val)} val, {bundle.image_size}px, {device})")
    started = time.perf_counter()
    best_metrics: dict = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not config.progress) as progress:
        for epoch in range(start_epoch, config.epochs):
            task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(train_loader) + len(val_loader))
            epoch_start = time.perf_counter()
            train_metrics = run_epoch(model, train_loader, device, optimizer=optimizer, scaler=scaler,
                                      amp=config.amp, progress=progress, task=task)
            val_metrics = run_epoch(model, val_loader, device, progress=progress, task=task)
            progress.remove_task(task)
            scheduler.step(val_metrics["top1"])
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train": train_metrics, "val": val_metrics, "seconds": time.perf_counter() - epoch_start}
            history.append(row)
            console.print(f"epoch {epoch + 1:3d}  train loss {train_metrics['loss']:.4f} "
                          f"top1 {train_metrics['top1']:.3f}  val loss {val_metrics['loss']:.4f} "
                          f"top1 {val_metrics['top1']:.3f} top5 {val_metrics['top5']:.3f}  "
                          f"lr {row['lr']:.0e}  {row['seconds']:.1f}s")
            metrics = {"epoch": epoch + 1, "val_top1": val_metrics["top1"], "val_top5": val_metrics["top5"],
                       "val_loss": val_metrics["loss"], "train_top1": train_metrics["top1"],
                       "train_loss": train_metrics["loss"]}
            cpu_model = model
            if val_metrics["top1"] > best_top1:
                best_top1, best_metrics = val_metrics["top1"], metrics
                save_checkpoint(out_dir / "model.safetensors", cpu_model, {**meta_base, "metrics": metrics},
                                force=True)
            save_checkpoint(last_path, cpu_model, {**meta_base, "metrics": metrics}, force=True)
            with atomic_output(state_path, force=True) as tmp:
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "scaler": scaler.state_dict(), "epoch": epoch + 1, "best_top1": best_top1,
                            "rng": torch.get_rng_state()}, tmp)
            write_json_atomic(out_dir / "history.json", history, force=True)
            if config.target_top1 is not None and val_metrics["top1"] >= config.target_top1:
                console.print(f"reached the target validation top-1 {config.target_top1:.3f}; stopping")
                break
    best_metrics = best_metrics or (history[-1] and {"val_top1": best_top1})
    best_metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    return TrainResult(checkpoint=out_dir / "model.safetensors", metrics=best_metrics, history=history)
