"""``toolchain train``: the paper's recipe on a dataset, writing a run folder."""

from __future__ import annotations

import json

import click

from toolchain.validate import BATCH, FRACTION, IMAGE_SIZE, IN_CHANNELS, count, real


@click.command("train")
@click.option("--variant", default="paper", show_default=True, help="paper, torchvision, torchvision-lrn or d2l.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, synthetic, fashion-mnist, cifar10 or imagefolder:PATH.")
@click.option("--out", "out_dir", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Run folder for checkpoints and history.")
@click.option("--image-size", type=IMAGE_SIZE, default=None, help="Input side (default: 64 for digits/synthetic, else 224).")
@click.option("--in-channels", type=IN_CHANNELS, default=None, help="Model input channels (default: the dataset's).")
@click.option("--epochs", type=count(1), default=None, help="Epochs (default: 12 for digits, 4 synthetic, else 90).")
@click.option("--batch-size", type=BATCH, default=None,
              help="Batch size per process (default: 32 for digits/synthetic, else 128).")
@click.option("--lr", type=real(0.0, min_open=True), default=0.01, show_default=True, help="Initial SGD learning rate.")
@click.option("--momentum", type=real(0.0, 1.0, max_open=True), default=0.9, show_default=True)
@click.option("--weight-decay", type=real(0.0), default=5e-4, show_default=True)
@click.option("--dropout", type=real(0.0, 1.0, max_open=True), default=0.5, show_default=True)
@click.option("--lr-patience", type=count(0), default=3, show_default=True,
              help="Epochs without a better validation top-1 before the learning rate is divided by 10.")
@click.option("--val-fraction", type=real(0.0, 1.0, min_open=True, max_open=True), default=0.2, show_default=True)
@click.option("--hflip/--no-hflip", default=None, help="Random horizontal flips (default: on where the data is "
              "mirror-symmetric; off for digits).")
@click.option("--target-top1", type=FRACTION, default=None, help="Stop once validation top-1 reaches this.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on GPU.")
@click.option("--workers", type=count(0), default=None, help="DataLoader workers (default: 0 on CPU, 4 on GPU).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where downloaded datasets live.")
@click.option("--lr-scaling", type=click.Choice(["linear", "none"]), default="linear", show_default=True,
              help="Under torchrun: multiply --lr by the number of processes (linear: --lr is for one process's "
              "--batch-size) or keep it (none).")
@click.option("--dist-timeout", type=real(0.0, min_open=True), default=600.0, show_default=True,
              help="Under torchrun: seconds to wait for the other processes before stopping with an error.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch (any number of "
              "processes).")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(variant, dataset, out_dir, image_size, in_channels, epochs, batch_size, lr, momentum, weight_decay,
          dropout, lr_patience, val_fraction, hflip, target_top1, seed, device, amp, workers, data_dir, lr_scaling,
          dist_timeout, resume, force, quiet):
    """Train a variant from scratch with the paper's recipe (SGD, LR drops on plateau, augmentation).

    Launched by torchrun (e.g. torchrun --nproc-per-node 2 -m toolchain train ...), every process trains a
    DistributedDataParallel replica on its share of the data and only rank 0 writes --out.
    """
    from toolchain.train import TrainConfig, run_training

    result = run_training(TrainConfig(
        variant=variant, dataset=dataset, out_dir=out_dir, image_size=image_size, in_channels=in_channels,
        epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
        dropout=dropout, lr_patience=lr_patience, val_fraction=val_fraction, hflip=hflip, target_top1=target_top1,
        seed=seed, device=device, amp=amp, workers=workers, data_dir=data_dir, resume=resume, force=force,
        progress=not quiet, lr_scaling=lr_scaling, dist_timeout=dist_timeout))
    if result.rank == 0:  # one result, not one per process
        click.echo(json.dumps({"checkpoint": str(result.checkpoint), **result.metrics}, indent=2))
