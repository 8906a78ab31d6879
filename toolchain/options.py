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
