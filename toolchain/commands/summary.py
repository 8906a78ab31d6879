"""``toolchain summary VARIANT``: per-layer shapes, parameters and FLOPs."""

from __future__ import annotations

import json

import click

from toolchain.validate import IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES


@click.command("summary")
@click.argument("variant")
@click.option("--image-size", type=IMAGE_SIZE, default=None, help="Input side (default: the variant's, 224).")
@click.option("--num-classes", type=NUM_CLASSES, default=None, help="Classifier outputs (default: the variant's).")
@click.option("--in-channels", type=IN_CHANNELS, default=None, help="Input channels (default: the variant's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the JSON summary to this file.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
def summary(variant, image_size, num_classes, in_channels, as_json, output, force):
    """Print each layer's output shape, parameters and FLOPs, with totals.

    FLOPs are 2 x multiply-adds of convolutions and linear layers per image.
    """
    from rich.console import Console
    from rich.table import Table

    from toolchain.io import guard_output, write_json_atomic
    from toolchain.models import build_model, get_variant
    from toolchain.models.summary import summarize

    spec = get_variant(variant)
    if output:
        guard_output(output, force=force, what="--output")
    model = build_model(variant, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    channels = in_channels or spec.in_channels
    side = image_size or spec.image_size
    result = summarize(model, (channels, side, side), variant).to_dict()
    if output:
        write_json_atomic(output, result, force=force)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"AlexNet '{variant}' — input {channels}x{side}x{side}")
    for column, justify in (("layer", "left"), ("type", "left"), ("output", "left"),
                            ("params", "right"), ("MFLOP", "right")):
        table.add_column(column, justify=justify)
    for row in result["layers"]:
        table.add_row(row["name"], row["kind"], "x".join(map(str, row["output_shape"])),
                      f"{row['params']:,}" if row["params"] else "", f"{row['flops'] / 1e6:,.1f}" if row["flops"] else "")
    table.add_section()
    table.add_row("total", "", "", f"{result['total_params']:,}", f"{result['total_flops'] / 1e6:,.1f}")
    console = Console()
    console.print(table)
    console.print(f"parameters: {result['total_params']:,}   FLOPs per image: {result['total_gflop']:.3f} GFLOP")
