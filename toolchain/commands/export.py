"""``toolchain export``: a checkpoint or variant to ONNX, LRN as the plugin's custom op."""

from __future__ import annotations

import json

import click

from toolchain.validate import BATCH, IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES


@click.command("export")
@click.option("--checkpoint", type=click.Path(dir_okay=False), help="Checkpoint to export (.safetensors).")
@click.option("--variant", help="Export a variant instead (paper, torchvision, torchvision-lrn, d2l).")
@click.option("--weights", default="none", show_default=True,
              help="With --variant: 'none' (seeded random) or a pretrained tag such as IMAGENET1K_V1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random weights.")
@click.option("--image-size", type=IMAGE_SIZE, help="With --variant: input height/width.")
@click.option("--num-classes", type=NUM_CLASSES, help="With --variant: number of classes.")
@click.option("--in-channels", type=IN_CHANNELS, help="With --variant: input channels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="ONNX file to write.")
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@click.option("--static-batch", type=BATCH, help="Fix the batch dimension to N (default: dynamic 'batch').")
@click.option("--dtype", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="fp16: FP16 weights and activations (for strongly typed TensorRT builds).")
@click.option("--fp16-io", is_flag=True, help="With --dtype fp16: FP16 graph input/output too (default FP32 + Cast).")
@click.option("--lrn", type=click.Choice(["plugin", "native"]), default="plugin", show_default=True,
              help="plugin: one toolchain.FusedLRN node per LRN (+ a standard-ops function); "
                   "native: ONNX LRN, refused where it differs from PyTorch.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary only.")
def export(checkpoint, variant, weights, seed, image_size, num_classes, in_channels, output, force, static_batch,
           dtype, fp16_io, lrn, as_json):
    """Export a checkpoint (or a variant) to ONNX opset 18 with a dynamic batch axis.

    Input 'input' (float32 NCHW), output 'logits'. The file passes the ONNX checker and
    runs in ONNX Runtime without any custom-op library.
    """
    from toolchain.errors import ToolchainError
    from toolchain.export import export_from_source

    if checkpoint is None and variant is None:
        raise ToolchainError("nothing to export", hint="pass --checkpoint PATH or --variant NAME")
    result = export_from_source(
        output, checkpoint=checkpoint, variant=variant, weights=None if checkpoint else weights,
        image_size=image_size, num_classes=num_classes, in_channels=in_channels, seed=seed,
        force=force, lrn=lrn, dtype=dtype, fp16_io=fp16_io, static_batch=static_batch)
    summary = {
        "output": str(result.path), "bytes": result.path.stat().st_size, "seconds": round(result.seconds, 2),
        "lrn_nodes": result.lrn_nodes, "nodes": len(result.model.graph.node),
        "metadata": {k.removeprefix("toolchain."): v for k, v in result.metadata.items() if k != "toolchain.classes"},
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console

    meta = summary["metadata"]
    Console().print(
        f"wrote [bold]{summary['output']}[/] ({summary['bytes'] / 1e6:.1f} MB, {summary['nodes']} nodes, "
        f"{len(result.lrn_nodes)} {'FusedLRN' if lrn == 'plugin' else 'LRN'} node(s)) in {summary['seconds']} s: "
        f"{meta['variant']} {meta['in_channels']}x{meta['image_size']}x{meta['image_size']} -> {meta['num_classes']} "
        f"classes, {dtype}, batch {meta['batch']}; checker and strict shape inference passed")
