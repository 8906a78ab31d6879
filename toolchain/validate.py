"""Numbers from the user, validated once, up front: click types for options, one checker for the API.

An impossible value is refused in one line naming the option (or the metadata key)
and its allowed range, before any work; it is never replaced by a default. The
click types here are what the commands declare; :func:`check_number` is the same
rule for the Python API and for values read from files (checkpoint and ONNX
metadata, see :func:`check_model_meta`).
"""

from __future__ import annotations

import math

import click

from toolchain.errors import ToolchainError

#: Largest input side: the fully connected layer of the paper and d2l variants grows with
#: the square of the side (512 px already gives a 1 GB fc6), and AlexNet is trained at 224.
MAX_IMAGE_SIZE = 512
#: Largest classifier: ImageNet-21k has 21,841 classes.
MAX_NUM_CLASSES = 100_000
#: Largest number of input channels (grey 1, RGB 3, multispectral a few more).
MAX_IN_CHANNELS = 64
#: Largest batch size any command runs at (the exporter's dynamic axis allows 2**20).
MAX_BATCH = 65_536


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, also refusing NaN and infinities (which compare False with any bound)."""

    def convert(self, value, param, ctx):
        number = click.FloatRange.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def count(min: int = 1, max: int | None = None) -> click.IntRange:  # noqa: A002 - click's own names
    return click.IntRange(min=min, max=max)


def real(min: float | None = None, max: float | None = None, *, min_open: bool = False,  # noqa: A002
         max_open: bool = False) -> FiniteFloatRange:
    return FiniteFloatRange(min=min, max=max, min_open=min_open, max_open=max_open)


IMAGE_SIZE = count(1, MAX_IMAGE_SIZE)
NUM_CLASSES = count(1, MAX_NUM_CLASSES)
IN_CHANNELS = count(1, MAX_IN_CHANNELS)
BATCH = count(1, MAX_BATCH)
FRACTION = real(0.0, 1.0)
TOLERANCE = real(0.0)


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'more than' if low_open else 'at least'} {low} and {'less than' if high_open else 'at most'} {high}"
    if low is not None:
        return f"{'more than' if low_open else 'at least'} {low}"
    return f"{'less than' if high_open else 'at most'} {high}"


def check_number(name: str, value, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False, hint: str | None = None):
    """``value`` as an int (``integer``) or float within the bounds, else a one-line error naming ``name``."""
    text = repr(value) if isinstance(value, str) else value
    if isinstance(value, bool) or value is None:
        number = None
    elif integer:
        try:
            number = int(value) if float(value) == int(float(value)) else None
        except (TypeError, ValueError, OverflowError):
            number = None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and not math.isfinite(number):
            number = None
    if number is None:
        raise ToolchainError(f"{name} must be {'an integer' if integer else 'a finite number'}, got {text}",
                             hint=hint or f"give a number {_range_text(low, high, low_open, high_open)}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        raise ToolchainError(f"{name} must be {_range_text(low, high, low_open, high_open)}, got {text}",
                             hint=hint)
    return number


def check_model_shape(variant: str, *, num_classes=None, in_channels=None, image_size=None,
                      where: str = "--") -> None:
    """The model-shape numbers every builder takes; ``where`` prefixes the names ("--" options, "metadata ")."""
    from toolchain.models import get_variant

    spec = get_variant(variant)
    if num_classes is not None:
        check_number(f"{where}num-classes" if where == "--" else f"{where}num_classes", num_classes, low=1,
                     high=MAX_NUM_CLASSES, integer=True)
    if in_channels is not None:
        check_number(f"{where}in-channels" if where == "--" else f"{where}in_channels", in_channels, low=1,
                     high=MAX_IN_CHANNELS, integer=True)
    if image_size is not None:
        name = f"{where}image-size" if where == "--" else f"{where}image_size"
        side = check_number(name, image_size, integer=True)
        if not spec.min_image_size <= side <= MAX_IMAGE_SIZE:
            raise ToolchainError(f"{name} {side} is too {'small' if side < spec.min_image_size else 'large'} for "
                                 f"the {variant} variant", hint=f"give {spec.min_image_size} to {MAX_IMAGE_SIZE} "
                                 "pixels (AlexNet's own is 224)")


def check_model_meta(meta: dict, *, source: str) -> dict:
    """A model description read from a file (checkpoint or ONNX metadata), checked and normalized.

    variant, num_classes, in_channels and image_size must be present and in range;
    mean and std, where present, one finite number per input channel (std > 0);
    classes, where present, one name per class. Returns a copy with ints and floats.
    """
    from toolchain.models import VARIANTS

    if not isinstance(meta, dict):
        raise ToolchainError(f"{source} metadata is not a JSON object",
                             hint="the file's metadata is damaged; re-train or re-export it")
    missing = [key for key in ("variant", "num_classes", "in_channels", "image_size") if key not in meta]
    if missing:
        raise ToolchainError(f"{source} metadata lacks {', '.join(missing)}",
                             hint="was it written by 'toolchain train' or 'toolchain export'?")
    out = dict(meta)
    if out["variant"] not in VARIANTS:
        raise ToolchainError(f"{source} metadata names an unknown variant {out['variant']!r}",
                             hint=f"variants: {', '.join(VARIANTS)}; re-train or re-export it")
    hint = "the file's metadata is damaged; re-train or re-export it"
    for key, low, high in (("num_classes", 1, MAX_NUM_CLASSES), ("in_channels", 1, MAX_IN_CHANNELS),
                           ("image_size", VARIANTS[out["variant"]].min_image_size, MAX_IMAGE_SIZE)):
        out[key] = check_number(f"{source} metadata {key}", out[key], low=low, high=high, integer=True, hint=hint)
    channels = out["in_channels"]
    for key in ("mean", "std"):
        if out.get(key) is None:
            continue
        values = out[key]
        if not isinstance(values, (list, tuple)) or len(values) != channels:
            raise ToolchainError(f"{source} metadata {key} must list {channels} number(s), one per input "
                                 f"channel, got {values!r}", hint=hint)
        out[key] = [check_number(f"{source} metadata {key}", v, low=0.0 if key == "std" else None,
                                 low_open=key == "std", hint=hint) for v in values]
    classes = out.get("classes")
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, (str, int)) for c in classes):
            raise ToolchainError(f"{source} metadata classes must be a list of names", hint=hint)
        if len(classes) != out["num_classes"]:
            raise ToolchainError(f"{source} metadata lists {len(classes)} class name(s) for "
                                 f"{out['num_classes']} classes", hint=hint)
        out["classes"] = [str(c) for c in classes]
    return out
