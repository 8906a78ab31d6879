"""Training with the paper's recipe.

SGD (momentum 0.9, weight decay 5e-4), learning rate 0.01 divided by 10 when
validation top-1 stops improving, dropout 0.5, random crops, flips where the
data allows, PCA colour noise for RGB data. On a GPU: AMP and cudnn.benchmark.

A run folder holds ``model.safetensors`` (+ ``model.json``: the best epoch by
validation top-1), ``last.safetensors`` and ``train_state.pt`` (optimizer and
scheduler state and the model's weights, for ``--resume``), and ``history.json``.

Under ``torchrun`` (see :mod:`toolchain.distributed`) every process trains a
DistributedDataParallel replica on its shard of the data; validation metrics
are summed over all ranks, so every rank takes the same learning-rate and
early-stop decisions, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import contextlib
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
    lr_scaling: str = "linear"  # how --lr follows the global batch on several processes (toolchain.distributed)
    dist_timeout: float = 600.0  # seconds a collective may wait for the other ranks


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict
    history: list = field(default_factory=list)
    model: object = None  # the trained torch.nn.Module (unwrapped from DDP)
    rank: int = 0
    world_size: int = 1


def resolve_device(name: str):
    import torch

    from toolchain.environment import cuda_unavailable

    if name == "auto":
        return torch.device("cuda" if cuda_unavailable() is None else "cpu")
    if name.startswith("cuda") and cuda_unavailable():
        raise ToolchainError("--device cuda was asked for but no CUDA GPU is available", hint="use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ToolchainError(f"unknown device {name!r}", hint="use auto, cpu or cuda[:N]") from None


def rank_device(device, local_rank: int, world_size: int, gpu_count: int):
    """One GPU per local rank under torchrun; CPU processes share the CPU."""
    import torch

    if world_size <= 1 or device.type != "cuda":
        return device
    if device.index is not None and device.index != local_rank:
        raise ToolchainError(f"--device {device} conflicts with torchrun's LOCAL_RANK {local_rank}",
                             hint="pass --device cuda (each process takes the GPU of its local rank)")
    if local_rank >= gpu_count:
        raise ToolchainError(f"LOCAL_RANK {local_rank} has no GPU: this node has {gpu_count}",
                             hint="pass --nproc-per-node at most the number of GPUs")
    return torch.device("cuda", local_rank)


def topk_correct(logits, labels, ks=(1, 5)) -> list[int]:

    maxk = min(max(ks), logits.shape[1])
    predicted = logits.topk(maxk, dim=1).indices
    hits = predicted.eq(labels.unsqueeze(1))
    return [int(hits[:, : min(k, maxk)].any(dim=1).sum()) for k in ks] if len(labels) else [0 for _ in ks]


def run_epoch(model, loader, device, *, optimizer=None, scaler=None, amp=False, progress=None, task=None,
              group=None):
    """One pass over ``loader``; trains when an optimizer is given. Returns loss, top-1, top-5.

    With a data-parallel ``group`` the sums are added over all ranks, so every
    rank returns the metrics of the whole split.
    """
    import torch

    from toolchain.distributed import metrics_from_sums

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
    if group is not None and group.distributed:
        loss_sum, correct1, correct5, total = group.all_sum([loss_sum, correct1, correct5, total], device)
    return metrics_from_sums(loss_sum, correct1, correct5, total)


def make_loader(dataset, *, batch_size: int, shuffle: bool, workers: int, device, seed: int = 0, sampler=None):
    import torch
    from torch.utils.data import DataLoader

    if sampler is not None:  # the sampler shuffles (DistributedSampler: seeded per epoch)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """Augmentation/dropout seed of one rank: replicas must not draw the same crops and masks."""
    return seed + 1_000_003 * (rank + 1) + 7_919 * epoch


def check_train_config(config: TrainConfig) -> None:
    """Every number of ``config`` in range, and the variant and dataset known, before anything is written."""
    from toolchain.data import check_dataset_spec
    from toolchain.models import check_model_shape
    from toolchain.validate import check_number

    check_model_shape(config.variant, in_channels=config.in_channels, image_size=config.image_size)
    check_dataset_spec(config.dataset)
    for name, value, rule in (
            ("--epochs", config.epochs, {"low": 1, "integer": True}),
            ("--batch-size", config.batch_size, {"low": 1, "integer": True}),
            ("--lr", config.lr, {"low": 0.0, "low_open": True}),
            ("--momentum", config.momentum, {"low": 0.0, "high": 1.0, "high_open": True}),
            ("--weight-decay", config.weight_decay, {"low": 0.0}),
            ("--dropout", config.dropout, {"low": 0.0, "high": 1.0, "high_open": True}),
            ("--lr-patience", config.lr_patience, {"low": 0, "integer": True}),
            ("min_lr", config.min_lr, {"low": 0.0}),
            ("--val-fraction", config.val_fraction, {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True}),
            ("--target-top1", config.target_top1, {"low": 0.0, "high": 1.0}),
            ("--workers", config.workers, {"low": 0, "integer": True}),
            ("--dist-timeout", config.dist_timeout, {"low": 0.0, "low_open": True})):
        if value is not None:
            check_number(name, value, **rule)


def _check_run_folder(out_dir: Path, config: TrainConfig) -> None:
    from toolchain.data import dataset_inputs_paths
    from toolchain.io import guard_output

    if config.resume and not out_dir.is_dir():
        raise ToolchainError(f"nothing to resume in {out_dir}", hint="start without --resume")
    guard_output(out_dir, folder=True, force=config.force or config.resume, what="--out",
                 inputs=dataset_inputs_paths(config.dataset, config.data_dir))


def _load_resume_state(out_dir: Path) -> dict:
    """Everything --resume needs, read on rank 0 (train_state.pt is the one commit point of an epoch)."""
    import torch

    from toolchain.checkpoint import load_checkpoint

    last_path, state_path = out_dir / "last.safetensors", out_dir / "train_state.pt"
    if not state_path.exists():
        raise ToolchainError(f"nothing to resume in {out_dir}", hint="start without --resume")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise ToolchainError(f"{state_path} could not be loaded ({str(exc).splitlines()[0][:120]})",
                             hint="start the run again without --resume") from None
    if "model" not in state:  # written before the weights were part of the state
        if not last_path.exists():
            raise ToolchainError(f"nothing to resume in {out_dir}", hint="start without --resume")
        resumed = load_checkpoint(last_path)
        if int(resumed.meta.get("metrics", {}).get("epoch", state["epoch"])) != int(state["epoch"]):
            raise ToolchainError(f"{last_path.name} and {state_path.name} in {out_dir} are from different epochs",
                                 hint="start the run again without --resume")
        state["model"] = resumed.model.state_dict()
    history_path = out_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    state["history"] = [row for row in history if int(row["epoch"]) <= int(state["epoch"])]
    return state


def run_training(config: TrainConfig) -> TrainResult:
    from toolchain.distributed import launch_from_env, sigterm_as_error, start, stop

    check_train_config(config)
    launch = launch_from_env()
    device = resolve_device(config.device)
    if launch.distributed:
        import torch

        device = rank_device(device, launch.local_rank, launch.world_size,
                             torch.cuda.device_count() if device.type == "cuda" else 0)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    with sigterm_as_error() if launch.distributed else contextlib.nullcontext():
        group = start(launch, device.type, timeout_s=config.dist_timeout)
        try:
            return _train(config, group, device)
        finally:
            stop(group)


def _train(config: TrainConfig, group, device) -> TrainResult:
    from toolchain.data import DEFAULT_TRAINING, PAPER_TRAINING
    from toolchain.distributed import batch_plan
    from toolchain.models import get_variant

    spec = get_variant(config.variant)
    defaults = DEFAULT_TRAINING.get(config.dataset.split(":", 1)[0], PAPER_TRAINING)
    config.epochs = defaults["epochs"] if config.epochs is None else config.epochs
    config.batch_size = defaults["batch_size"] if config.batch_size is None else config.batch_size
    plan = batch_plan(config.batch_size, group.world_size, lr=config.lr, rule=config.lr_scaling)
    out_dir = Path(config.out_dir)
    group.from_main(lambda: _check_run_folder(out_dir, config))
    from toolchain.io import missing_top, remove_created

    top = missing_top(out_dir)
    try:
        return _train_into(config, group, device, spec, plan, out_dir)
    except BaseException:
        if group.is_main:  # a run that failed before its first checkpoint leaves no empty folder behind
            remove_created(top, out_dir / "history.json")
        raise


def _train_into(config: TrainConfig, group, device, spec, plan, out_dir: Path) -> TrainResult:
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from toolchain.checkpoint import library_versions, save_checkpoint
    from toolchain.data import DEFAULT_IMAGE_SIZE, load_dataset
    from toolchain.distributed import collective, lr_factor, shard_indices, state_digest
    from toolchain.models import build_model

    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    image_size = config.image_size or max(DEFAULT_IMAGE_SIZE.get(config.dataset.split(":", 1)[0], 224),
                                          spec.min_image_size)
    bundle = load_dataset(config.dataset, image_size=image_size, in_channels=config.in_channels,
                          data_dir=config.data_dir, seed=config.seed, val_fraction=config.val_fraction,
                          hflip=config.hflip)
    num_classes = len(bundle.classes)
    model = build_model(config.variant, num_classes=num_classes, in_channels=bundle.in_channels,
                        image_size=bundle.image_size, dropout=config.dropout).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=plan["lr"], momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1,
                                                           patience=config.lr_patience,
                                                           min_lr=config.min_lr * plan["lr_factor"])
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    history: list[dict] = []
    start_epoch, best_top1 = 0, -1.0

    state_path = out_dir / "train_state.pt"
    if config.resume:
        # Rank 0's state, whatever the world size it was written with.
        state = group.from_main(lambda: _load_resume_state(out_dir))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1 = int(state["epoch"]), float(state["best_top1"])
        history = state["history"]
        rescale = lr_factor(config.lr_scaling, plan["global_batch_size"],
                            int(state.get("global_batch_size", plan["global_batch_size"])))
        if rescale != 1.0:  # the global batch changed with the world size: follow the rule
            for param_group in optimizer.param_groups:
                param_group["lr"] *= rescale
            scheduler.min_lrs = [lr * rescale for lr in scheduler.min_lrs]
        if not group.distributed:
            torch.set_rng_state(state["rng"])
    if group.distributed:
        torch.manual_seed(rank_seed(config.seed, group.rank, start_epoch))
    if group.is_main:
        from toolchain.io import make_parent

        make_parent(out_dir / "history.json")  # the folder, with a one-line error if it cannot be made

    workers = config.workers if config.workers is not None else (4 if device.type == "cuda" else 0)
    train_sampler = None
    val_set = bundle.val
    if group.distributed:
        from torch.utils.data import Subset
        from torch.utils.data.distributed import DistributedSampler

        train_sampler = DistributedSampler(bundle.train, num_replicas=group.world_size, rank=group.rank,
                                           shuffle=True, seed=config.seed)
        val_set = Subset(bundle.val, shard_indices(len(bundle.val), group.rank, group.world_size))
        with collective("starting DistributedDataParallel"):
            trained = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        trained = model
    train_loader = make_loader(bundle.train, batch_size=config.batch_size, shuffle=True, workers=workers,
                               device=device, seed=config.seed, sampler=train_sampler)
    val_loader = make_loader(val_set, batch_size=max(config.batch_size, 256), shuffle=False, workers=workers,
                             device=device)
    hyper = {k: v for k, v in asdict(config).items() if k not in ("out_dir", "force", "resume", "progress")}
    meta_base = {
        "variant": config.variant, "num_classes": num_classes, "in_channels": bundle.in_channels,
        "image_size": bundle.image_size, "mean": list(bundle.mean), "std": list(bundle.std),
        "classes": list(bundle.classes), "dataset": config.dataset,
        "split": {"seed": config.seed, "val_fraction": config.val_fraction}, "hyperparameters": hyper,
        "lrn": [p.attributes() for p in spec.lrn] if spec.name != "d2l" else [],
        "world_size": group.world_size, "backend": group.backend, **plan,
        "versions": library_versions(),
    }
    console = Console(stderr=True, quiet=not (config.progress and group.is_main))
    ranks = f", {group.world_size} processes ({group.backend})" if group.distributed else ""
    console.print(f"training [bold]{config.variant}[/] on [bold]{config.dataset}[/] "
                  f"({len(bundle.train)} train / {len(bundle.val)} val, {bundle.image_size}px, {device}{ranks})")
    started = time.perf_counter()
    best_metrics: dict = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    show_progress = config.progress and group.is_main
    with Progress(*columns, console=console, transient=True, disable=not show_progress) as progress:
        for epoch in range(start_epoch, config.epochs):
            if train_sampler is not None:
                train_sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
            task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=len(train_loader) + len(val_loader))
            epoch_start = time.perf_counter()
            with collective(f"training epoch {epoch + 1}") if group.distributed else contextlib.nullcontext():
                train_metrics = run_epoch(trained, train_loader, device, optimizer=optimizer, scaler=scaler,
                                          amp=config.amp, progress=progress, task=task, group=group)
            # The unwrapped model: evaluation needs no gradient synchronisation.
            val_metrics = run_epoch(model, val_loader, device, progress=progress, task=task, group=group)
            progress.remove_task(task)
            scheduler.step(val_metrics["top1"])
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "train": train_metrics, "val": val_metrics, "seconds": time.perf_counter() - epoch_start}
            if group.distributed:  # the DDP invariant: every replica holds the same weights
                row["replicas_identical"] = len(set(group.gather(state_digest(model)))) == 1
                if not row["replicas_identical"]:
                    console.print("[yellow]warning: the replicas' weights differ; rank 0's are saved[/]")
            history.append(row)
            console.print(f"epoch {epoch + 1:3d}  train loss {train_metrics['loss']:.4f} "
                          f"top1 {train_metrics['top1']:.3f}  val loss {val_metrics['loss']:.4f} "
                          f"top1 {val_metrics['top1']:.3f} top5 {val_metrics['top5']:.3f}  "
                          f"lr {row['lr']:.0e}  {row['seconds']:.1f}s")
            metrics = {"epoch": epoch + 1, "val_top1": val_metrics["top1"], "val_top5": val_metrics["top5"],
                       "val_loss": val_metrics["loss"], "train_top1": train_metrics["top1"],
                       "train_loss": train_metrics["loss"]}
            improved = val_metrics["top1"] > best_top1
            if improved:
                best_top1, best_metrics = val_metrics["top1"], metrics
            if group.is_main:
                if improved:
                    save_checkpoint(out_dir / "model.safetensors", model, {**meta_base, "metrics": metrics},
                                    force=True)
                save_checkpoint(out_dir / "last.safetensors", model, {**meta_base, "metrics": metrics}, force=True)
                write_json_atomic(out_dir / "history.json", history, force=True)
                # Written last: a run interrupted before this rename resumes from the previous epoch.
                with atomic_output(state_path, force=True) as tmp, open(tmp, "wb") as handle:
                    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "scaler": scaler.state_dict(), "epoch": epoch + 1, "best_top1": best_top1,
                                "rng": torch.get_rng_state(), "world_size": group.world_size,
                                "global_batch_size": plan["global_batch_size"]}, handle)  # a file object: a full disk is an OSError
            if config.target_top1 is not None and val_metrics["top1"] >= config.target_top1:
                console.print(f"reached the target validation top-1 {config.target_top1:.3f}; stopping")
                break
    best_metrics = best_metrics or (history[-1] and {"val_top1": best_top1})
    best_metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    return TrainResult(checkpoint=out_dir / "model.safetensors", metrics=best_metrics, history=history,
                       model=model, rank=group.rank, world_size=group.world_size)
