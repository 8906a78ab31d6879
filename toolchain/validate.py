"""Numbers from the user, validated once, up front: click types for options, one checker for the API.

An impossible value is refused in one line naming the option (or the metadata key)
and its allowed range, before any work; it is never replaced by a default. The
click types here are what the commands declare; :func:`check_number` is the same
rule for the Python API and for values read from files (checkpoint and ONNX
metadata, see :func:`toolchain.models.check_model_meta`).
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
