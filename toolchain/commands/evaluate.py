"""``toolchain evaluate``: top-1/top-5 of a checkpoint and its most confused pairs."""

from __future__ import annotations

import json

import click

from toolchain.validate import BATCH


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--dataset", default=None, help="Dataset spec (default: the one the checkpoint was trained on).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True)
@click.option("--batch-size", type=BATCH, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--fused-lrn", is_flag=True, help="Run LRN through the fused CUDA kernel (CUDA only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the JSON result to this file.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
def evaluate(checkpoint, dataset, split, batch_size, device, data_dir, fused_lrn, as_json, output, force):
    """Measure top-1/top-5 of CHECKPOINT on a dataset split (the validation split by default)."""
    from rich.console import Console
    from rich.table import Table

    from toolchain.evaluate import evaluate_checkpoint
    from toolchain.io import guard_output, write_json_atomic

    if output:
        guard_output(output, force=force, inputs={"CHECKPOINT": checkpoint, "--data-dir": data_dir}, what="--output")
    result = evaluate_checkpoint(checkpoint, dataset, split=split, batch_size=batch_size, device=device,
                                 data_dir=data_dir, fused_lrn=fused_lrn)
    if output:
        write_json_atomic(output, result, force=force)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(f"{result['dataset']} ({result['split']}, {result['samples']} images): "
                  f"top-1 [bold]{result['top1']:.4f}[/]  top-5 {result['top5']:.4f}"
                  + (f"  (recorded at training: {result['recorded_val_top1']:.4f})"
                     if result.get("recorded_val_top1") is not None else ""))
    if result["confused_pairs"]:
        table = Table(title="most confused pairs")
        for column in ("true", "predicted", "count"):
            table.add_column(column)
        for pair in result["confused_pairs"]:
            table.add_row(pair["true"], pair["predicted"], str(pair["count"]))
        console.print(table)
