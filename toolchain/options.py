"""Parsing shared by several commands and the Python API."""

from __future__ import annotations

from toolchain.errors import ToolchainError
from toolchain.validate import MAX_BATCH


def parse_batch_sizes(text) -> list[int]:
    """``"1,8,64"`` -> ``[1, 8, 64]``: positive, de-duplicated, ascending."""
    try:
        sizes = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ToolchainError(f"batch sizes {text!r} are not comma-separated integers", hint="e.g. 1,8,64,256") from None
    if not sizes or any(size < 1 for size in sizes):
        raise ToolchainError(f"batch sizes {text!r} must be positive", hint="e.g. 1,8,64,256")
    if max(sizes) > MAX_BATCH:
        raise ToolchainError(f"batch size {max(sizes)} is larger than the {MAX_BATCH} any command runs at",
                             hint="e.g. 1,8,64,256")
    return sorted(dict.fromkeys(sizes))


def batch_sizes_callback(ctx, param, value) -> list[int]:
    """Click option callback around :func:`parse_batch_sizes`."""
    return parse_batch_sizes(value)


# ---------------------------------------------------------------------- options several commands share


def model_source_options(command):
    """--checkpoint / --variant / --image-size / --num-classes / --in-channels: the eager model (the
    reference of parity, the eager rows of the benchmark); checked by :func:`check_model_source`."""
    import click

    from toolchain.validate import IMAGE_SIZE, IN_CHANNELS, NUM_CLASSES

    for option in reversed((
            click.option("--checkpoint", type=click.Path(dir_okay=False), help="The model (.safetensors)."),
            click.option("--variant", help="Or a variant with the weights the file records (paper, torchvision, "
                                           "torchvision-lrn, d2l; default: the file's metadata)."),
            click.option("--image-size", type=IMAGE_SIZE, help="With --variant: input side (default: the file's)."),
            click.option("--num-classes", type=NUM_CLASSES, help="With --variant: classes (default: the file's)."),
            click.option("--in-channels", type=IN_CHANNELS, help="With --variant: channels (default: the file's)."))):
        command = option(command)
    return command


def check_model_source(checkpoint, variant, image_size=None, num_classes=None, in_channels=None) -> None:
    """A checkpoint describes the model fully: --variant and the shape options go with --variant only."""
    extra = [flag for flag, value in (("--variant", variant), ("--image-size", image_size),
                                      ("--num-classes", num_classes), ("--in-channels", in_channels)) if value]
    if checkpoint and extra:
        raise ToolchainError(f"--checkpoint describes the model fully; {', '.join(extra)} cannot apply",
                             hint=f"drop {', '.join(extra)}")


def artifact_file_options(command):
    """The file of each backend (toolchain.backends.FILE_FLAGS) and the TensorRT plugin library."""
    import click

    for option in reversed((
            click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
                         help="FP32/FP16 ONNX file (onnxruntime, onnxruntime-cpu, onnxruntime-cuda)."),
            click.option("--onnx-int8", type=click.Path(dir_okay=False),
                         help="INT8 Q/DQ ONNX from `toolchain quantize --target onnxruntime` (onnxruntime-cpu-int8)."),
            click.option("--engine", type=click.Path(dir_okay=False),
                         help="TensorRT engine (tensorrt, tensorrt-plugin[-graph]), plugin or function LRN."),
            click.option("--native-engine", type=click.Path(dir_okay=False),
                         help="TensorRT engine built with --lrn native (tensorrt-native[-graph])."),
            click.option("--int8-engine", type=click.Path(dir_okay=False),
                         help="TensorRT engine from the `--target tensorrt` Q/DQ ONNX (tensorrt-int8)."),
            click.option("--plugin-library", type=click.Path(dir_okay=False),
                         help="The TensorRT plugin library (default: the one the engine's manifest records)."))):
        command = option(command)
    return command
