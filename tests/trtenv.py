"""Where the tests find TensorRT's headers and lean runtimes (never fetched at test time).

Headers: $TOOLCHAIN_TRT_HEADERS (folders holding NvInfer.h, os.pathsep-separated), else
``../shared/trt-headers/v*`` beside the checkout (present in CI, absent in a user's clone).

Lean runtimes (``libnvinfer_lean.so.N`` plus the ``tensorrt_lean`` bindings): the
``tensorrt_lean`` package of this environment (the ``test`` extra installs TensorRT 11's),
and each ``pip install --target`` folder in $TOOLCHAIN_TRT_LEAN_DIRS or ``.trt/lean-*``
(``.ci/run`` installs 10.16 and 11.1 there: one environment cannot hold two).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_HEADERS = ROOT.parent / "shared" / "trt-headers"
#: Where the device machine's copy of the working tree keeps shared/ (inside the checkout).
SHARED_HEADERS_INSIDE = ROOT / "shared" / "trt-headers"
LEAN_DIR = ROOT / ".trt"
#: What .ci/run installs into .trt/ (also the hint printed when one is missing).
CI_LEAN_VERSIONS = {10: "10.16.1.11", 11: "11.1.0.106"}


def headers_major(include: Path) -> int | None:
    text = (include / "NvInferVersion.h").read_text(errors="replace")
    match = re.search(r"#define (?:TRT_MAJOR_ENTERPRISE|NV_TENSORRT_MAJOR) (\d+)", text)
    return int(match.group(1)) if match else None


def header_dirs() -> dict[int, Path]:
    """TensorRT major -> include folder."""
    value = os.environ.get("TOOLCHAIN_TRT_HEADERS", "")
    candidates = [Path(p) for p in value.split(os.pathsep) if p]
    if not candidates:
        for shared in (SHARED_HEADERS, SHARED_HEADERS_INSIDE):
            if shared.is_dir():
                candidates = sorted(p for p in shared.iterdir() if p.is_dir())
                break
    found: dict[int, Path] = {}
    for path in candidates:
        if (path / "NvInfer.h").is_file():
            major = headers_major(path)
            if major is not None:
                found.setdefault(major, path)
    return found


def header_skip_reason(major: int | None = None) -> str:
    """What the user needs: TensorRT's include folder (the one holding NvInfer.h) for that major."""
    want = f"TensorRT {major}" if major else "TensorRT"
    return (f"needs {want}'s headers: set TOOLCHAIN_TRT_HEADERS to its include folder (the one holding NvInfer.h; "
            f"several separated by '{os.pathsep}')")


@dataclass(frozen=True)
class LeanRuntime:
    version: str
    libs: Path          # folder holding libnvinfer_lean.so.N
    python_path: Path | None  # folder to put on PYTHONPATH for `import tensorrt_lean` (None: this environment's)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def library(self) -> Path:
        return self.libs / f"libnvinfer_lean.so.{self.major}"


def _version_of(folder: Path) -> str | None:
    for info in sorted(folder.glob("tensorrt_lean*_libs-*.dist-info")):
        return info.name.split("-")[1].removesuffix(".dist")
    return None


def lean_runtimes() -> list[LeanRuntime]:
    """Every lean runtime the tests can use, newest last."""
    found: list[LeanRuntime] = []
    spec = importlib.util.find_spec("tensorrt_lean_libs")
    if spec and spec.submodule_search_locations:
        libs = Path(list(spec.submodule_search_locations)[0])
        from importlib.metadata import PackageNotFoundError, version

        ver = None
        for dist in ("tensorrt_lean_cu13_libs", "tensorrt_lean_cu12_libs", "tensorrt_lean_libs"):
            try:
                ver = version(dist)
                break
            except PackageNotFoundError:
                continue
        if ver and any(libs.glob("libnvinfer_lean.so.*")):
            found.append(LeanRuntime(ver, libs, None))
    value = os.environ.get("TOOLCHAIN_TRT_LEAN_DIRS", "")
    folders = [Path(p) for p in value.split(os.pathsep) if p]
    if not folders and LEAN_DIR.is_dir():
        folders = sorted(LEAN_DIR.glob("lean-*"))
    for folder in folders:
        libs = folder / "tensorrt_lean_libs"
        ver = _version_of(folder)
        if ver and libs.is_dir() and any(libs.glob("libnvinfer_lean.so.*")):
            found.append(LeanRuntime(ver, libs, folder))
    key = lambda r: tuple(int(x) for x in re.findall(r"\d+", r.version)[:4])  # noqa: E731
    return sorted({r.libs: r for r in found}.values(), key=key)


def lean_for(major: int, *, prefer: str | None = None) -> LeanRuntime | None:
    """A lean runtime of ``major``: the one whose version starts with ``prefer`` if present, else the oldest."""
    matching = [r for r in lean_runtimes() if r.major == major]
    if prefer:
        for r in matching:
            if r.version.startswith(prefer):
                return r
    return matching[0] if matching else None


def lean_skip_reason(major: int) -> str:
    version = CI_LEAN_VERSIONS.get(major, f"{major}.x")
    short = ".".join(version.split(".")[:2])
    return (f"no TensorRT {major} lean runtime: `pip install --target {LEAN_DIR}/lean-{short} "
            f"tensorrt-lean-cu13=={version}` (as .ci/run does), or set TOOLCHAIN_TRT_LEAN_DIRS")
