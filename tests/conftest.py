"""Markers that skip with a reason when a GPU, TensorRT or nvcc is missing."""

from __future__ import annotations

import os

import pytest


def _tensorrt_reason() -> str | None:
    from toolchain.environment import cuda_unavailable

    cuda = cuda_unavailable()
    if cuda:
        return cuda
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt from NVIDIA's index)"
    try:
        import tensorrt as trt

        trt.Builder(trt.Logger(trt.Logger.ERROR))
    except Exception as exc:  # the lean runtime alone has no builder
        return f"TensorRT's builder is unavailable: {exc}"
    return None


def _rtx_reason() -> str | None:
    import importlib.util

    if importlib.util.find_spec("tensorrt_rtx") is None:
        return "TensorRT-RTX is not installed (pip install tensorrt-rtx, or the project's [rtx] extra)"
    return None


def _nvcc_reason() -> str | None:
    from toolchain.plugin import build_tools_unavailable

    return build_tools_unavailable()


def pytest_collection_modifyitems(config, items):
    reasons = {}
    from toolchain.environment import cuda_unavailable

    checks = {"needs_cuda": cuda_unavailable, "needs_tensorrt": _tensorrt_reason, "needs_nvcc": _nvcc_reason,
              "needs_tensorrt_rtx": _rtx_reason}
    for item in items:
        for marker, check in checks.items():
            if marker in item.keywords:
                if marker not in reasons:
                    reasons[marker] = check()
                if reasons[marker]:
                    item.add_marker(pytest.mark.skip(reason=f"{marker}: {reasons[marker]}"))


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite the golden files under models/golden instead of comparing with them")


@pytest.fixture
def regen_golden(request) -> bool:
    return bool(request.config.getoption("--regen-golden")) or os.environ.get("TOOLCHAIN_REGEN_GOLDEN") == "1"
