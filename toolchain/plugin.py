"""Build, find and load the FusedLRN libraries (``plugins/``).

Three shared libraries come out of the CMake project in ``plugins/``:

``kernels``           ``libtoolchain_lrn_kernels.so``: the CUDA kernel behind a C ABI,
                      used by the PyTorch op ``toolchain::fused_lrn`` through ctypes.
``tensorrt``          ``libtoolchain_lrn_plugin.so``: the TensorRT plugin, registered on load
                      (``ctypes.CDLL``, ``polygraphy --plugins``, ``trtexec --staticPlugins``).
``tensorrt_dynamic``  ``libtoolchain_lrn_plugin_dynamic.so``: the same plugin for
                      ``IPluginRegistry.load_library`` / ``trtexec --dynamicPlugins`` and
                      version-compatible engines. Load one TensorRT variant per process.

This module imports neither torch nor TensorRT.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import toolchain
from toolchain.errors import MissingDependencyError, ToolchainError

#: Version of the C ABI in plugins/lrn/lrnCApi.cpp this module speaks.
ABI_VERSION = 1
#: File name of each library kind.
LIBRARY_NAMES = {
    "kernels": "libtoolchain_lrn_kernels.so",
    "tensorrt": "libtoolchain_lrn_plugin.so",
    "tensorrt_dynamic": "libtoolchain_lrn_plugin_dynamic.so",
}
#: Environment variable naming a folder (build or install prefix) to search first.
PLUGIN_DIR_ENV = "TOOLCHAIN_PLUGIN_DIR"
#: Default build folder, relative to the working directory or the repository.
DEFAULT_BUILD_DIR = Path("build") / "plugins"
#: Log of the last build, inside the build folder.
BUILD_LOG_NAME = "toolchain-build.log"
#: dtype codes of toolchain_lrn_forward.
DTYPE_CODES = {"float32": 0, "float16": 1}
#: Conformance harness executables (built next to the plugin libraries when TensorRT is found).
HARNESS_NAMES = {"conformance": "toolchain_lrn_conformance", "conformance_asan": "toolchain_lrn_conformance_asan"}
#: AddressSanitizer copies of the plugin libraries (-DTOOLCHAIN_LRN_CONFORMANCE_ASAN=ON).
ASAN_LIBRARY_NAMES = {"tensorrt": "libtoolchain_lrn_plugin_asan.so",
                      "tensorrt_dynamic": "libtoolchain_lrn_plugin_dynamic_asan.so"}
#: Which TensorRT library the static plugin links: libnvinfer, libnvinfer_lean, or whichever is found.
LIBRARY_KINDS = ("auto", "full", "lean")

_PACKAGE_DIR = Path(toolchain.__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent


def find_nvcc() -> Path | None:
    """nvcc from PATH, else $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin."""
    found = shutil.which("nvcc")
    if found:
        return Path(found)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidate = Path(root) / "bin" / "nvcc"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def build_tools_unavailable() -> str | None:
    """Why the plugin cannot be compiled here (no nvcc or no cmake), or None."""
    if find_nvcc() is None:
        return "nvcc (the CUDA toolkit) is not installed"
    if shutil.which("cmake") is None:
        return "cmake is not installed"
    return None


def default_source_dir() -> Path:
    """The CMake project: the installed copy ``toolchain/plugin_src``, else the repo's ``plugins/``."""
    for candidate in (_PACKAGE_DIR / "plugin_src", _REPO_DIR / "plugins"):
        if (candidate / "CMakeLists.txt").is_file() and (candidate / "lrn").is_dir():
            return candidate
    raise ToolchainError("the plugin sources (plugins/CMakeLists.txt) were not found",
                         hint="pass source_dir / run from a checkout of the repository")


def _search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get(PLUGIN_DIR_ENV)
    if env:
        dirs.append(Path(env))
    dirs.append(Path.cwd() / DEFAULT_BUILD_DIR)
    dirs.append(_REPO_DIR / DEFAULT_BUILD_DIR)
    unique = []
    for d in dirs:
        d = d.expanduser().resolve()
        if d not in unique:
            unique.append(d)
    return unique


def _candidates(folder: Path, name: str):
    # A build tree keeps the libraries in lrn/, an install prefix in lib/ or lib64/.
    for sub in ("", "lrn", "lib", "lib64"):
        yield folder / sub / name if sub else folder / name


def find_library(kind: str) -> Path | None:
    """Path of the ``kind`` library ("kernels", "tensorrt", "tensorrt_dynamic"), or None.

    Searches $TOOLCHAIN_PLUGIN_DIR, then ./build/plugins, then <repo>/build/plugins.
    """
    if kind not in LIBRARY_NAMES:
        raise ToolchainError(f"unknown plugin library kind {kind!r}", hint=f"use one of {', '.join(LIBRARY_NAMES)}")
    for folder in _search_dirs():
        for candidate in _candidates(folder, LIBRARY_NAMES[kind]):
            if candidate.is_file():
                return candidate
    return None


def require_library(kind: str) -> Path:
    """Like :func:`find_library` but raises MissingDependencyError with a hint."""
    path = find_library(kind)
    if path is None:
        where = ", ".join(str(d) for d in _search_dirs())
        hint = "run `toolchain plugin build`"
        if kind != "kernels":
            hint += " with TensorRT available (--tensorrt-root or pip install tensorrt)"
        raise MissingDependencyError(f"{LIBRARY_NAMES[kind]} not found in {where}", hint=f"{hint}, or set {PLUGIN_DIR_ENV}")
    return path


def _run(cmd: list[str], log, cwd: Path | None = None) -> int:
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    log.write(f"[exit {proc.returncode}]\n")
    log.flush()
    return proc.returncode


def build_plugins(build_dir: str | os.PathLike = DEFAULT_BUILD_DIR, *, source_dir: str | os.PathLike | None = None,
                  cuda_archs: str | None = None, tensorrt_root: str | os.PathLike | None = None,
                  library_kind: str = "auto", conformance_asan: bool = False,
                  force: bool = False, jobs: int | None = None) -> dict:
    """Configure and build ``plugins/`` with CMake; return what was built.

    ``cuda_archs`` is a CMake architecture list ("80;90", "native"); by default the
    project's ("80-real;90"). ``tensorrt_root`` holds ``include/`` and ``lib/`` (a
    TensorRT tarball, or headers beside the lean runtime's ``libnvinfer_lean``);
    ``library_kind`` picks what the static plugin links: ``full`` (libnvinfer), ``lean``
    (libnvinfer_lean, for lean/version-compatible deployments) or ``auto`` (full when
    found, else lean). ``conformance_asan`` also builds AddressSanitizer copies of the
    plugin and the conformance harness. ``force`` reconfigures from scratch and rebuilds
    everything (and allows a non-empty folder that is not yet a CMake build).
    The full output goes to ``<build_dir>/toolchain-build.log``.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        raise MissingDependencyError("cmake is not installed", hint="install CMake >= 3.24 (pip install cmake)")
    nvcc = find_nvcc()
    if nvcc is None:
        raise MissingDependencyError("nvcc (the CUDA toolkit) was not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin",
                                     hint="install the CUDA toolkit or set CUDA_HOME")
    source = Path(source_dir).resolve() if source_dir is not None else default_source_dir()
    if not (source / "CMakeLists.txt").is_file():
        raise ToolchainError(f"{source} has no CMakeLists.txt", hint="pass the plugins/ folder as source_dir")
    build = Path(build_dir).resolve()
    if build.exists() and not build.is_dir():
        raise ToolchainError(f"{build} exists and is not a directory")
    if build.is_dir() and any(build.iterdir()) and not (build / "CMakeCache.txt").exists() and not force:
        raise ToolchainError(f"{build} is not empty and is not a CMake build folder", hint="pass --force or another --build-dir")
    if tensorrt_root is not None and not Path(tensorrt_root).is_dir():
        raise ToolchainError(f"TensorRT root {tensorrt_root} is not a directory")
    if library_kind not in LIBRARY_KINDS:
        raise ToolchainError(f"unknown TensorRT library kind {library_kind!r}", hint=f"use one of {', '.join(LIBRARY_KINDS)}")
    build.mkdir(parents=True, exist_ok=True)

    configure = [cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}",
                 "-DCMAKE_BUILD_TYPE=Release", f"-DPython3_EXECUTABLE={sys.executable}"]
    if force:
        configure.append("--fresh")
    if cuda_archs:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_archs}")
    # Always passed, so a reconfigure without --tensorrt-root forgets an earlier root.
    configure.append(f"-DTensorRT_ROOT={Path(tensorrt_root).resolve() if tensorrt_root is not None else ''}")
    configure.append(f"-DTOOLCHAIN_TRT_LIBRARY_KIND={library_kind}")
    configure.append(f"-DTOOLCHAIN_LRN_CONFORMANCE_ASAN={'ON' if conformance_asan else 'OFF'}")
    jobs = jobs or max(1, min(os.cpu_count() or 1, 8))
    compile_cmd = [cmake, "--build", str(build), "--parallel", str(jobs)]
    if force:
        compile_cmd.append("--clean-first")

    log_path = build / BUILD_LOG_NAME
    with open(log_path, "w") as log:
        if _run(configure, log) != 0:
            reason = cmake_error(log_path.read_text(errors="replace"))
            raise ToolchainError(f"CMake configuration of {source} failed" + (f": {reason}" if reason else ""),
                                 hint=f"see {log_path}")
        if _run(compile_cmd, log) != 0:
            raise ToolchainError("building the plugin libraries failed", hint=f"see {log_path}")
    text = log_path.read_text(errors="replace")
    skipped = re.search(r"FusedLRN TensorRT plugin skipped: (.*)", text)
    found = None
    for found in re.finditer(r"FusedLRN TensorRT plugin: TensorRT (\d+) headers (.*), library (.*?) "
                             r"\((?:lean: (ON|OFF)|dynamic registration only)\)", text):
        pass  # the last configure of this log

    result = {"source_dir": str(source), "build_dir": str(build), "log": str(log_path),
              "cuda_archs": cuda_archs, "tensorrt_skipped": skipped.group(1).strip() if skipped and not found else None,
              "tensorrt_major": int(found.group(1)) if found else None,
              "tensorrt_include": found.group(2).strip() if found else None,
              "tensorrt_library": (found.group(3).strip() if found.group(4) else None) if found else None,
              "tensorrt_lean": (found.group(4) == "ON") if found and found.group(4) else None}
    names = {**LIBRARY_NAMES, **HARNESS_NAMES, **{f"{k}_asan": v for k, v in ASAN_LIBRARY_NAMES.items()}}
    for kind, name in names.items():
        path = next((p for p in _candidates(build, name) if p.is_file()), None)
        # A plugin left in the folder by an earlier configure that found TensorRT is not this build's.
        fresh = kind == "kernels" or (found and (conformance_asan or not kind.endswith("_asan")))
        result[kind] = str(path) if path and fresh else None
    if result["kernels"] is None:
        raise ToolchainError(f"the build finished but {LIBRARY_NAMES['kernels']} is missing", hint=f"see {log_path}")
    return result


def cmake_error(log_text: str) -> str | None:
    """The message of the first ``CMake Error`` in a configure log, joined into one line."""
    match = re.search(r"CMake Error[^\n]*:\n((?:[ \t]+[^\n]*\n?|\n)+)", log_text)
    if not match:
        return None
    text = " ".join(line.strip() for line in match.group(1).splitlines() if line.strip())
    return text.rstrip(".") or None


_kernel_lock = threading.Lock()
_kernel_libs: dict[Path, ctypes.CDLL] = {}


def load_kernel_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (once per path) the kernel library and declare its C ABI for ctypes."""
    lib_path = Path(path).resolve() if path is not None else require_library("kernels").resolve()
    with _kernel_lock:
        if lib_path in _kernel_libs:
            return _kernel_libs[lib_path]
        if not lib_path.is_file():
            raise MissingDependencyError(f"{lib_path} does not exist", hint="run `toolchain plugin build`")
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as exc:
            raise ToolchainError(f"cannot load {lib_path}: {exc}") from exc
        try:
            lib.toolchain_lrn_abi_version.argtypes = []
            lib.toolchain_lrn_abi_version.restype = ctypes.c_int
            lib.toolchain_lrn_forward.argtypes = [
                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_void_p,
            ]
            lib.toolchain_lrn_forward.restype = ctypes.c_int
            lib.toolchain_lrn_error_string.argtypes = [ctypes.c_int]
            lib.toolchain_lrn_error_string.restype = ctypes.c_char_p
        except AttributeError as exc:
            raise ToolchainError(f"{lib_path} is not the FusedLRN kernel library: {exc}") from exc
        version = lib.toolchain_lrn_abi_version()
        if version != ABI_VERSION:
            raise ToolchainError(f"{lib_path} has C ABI version {version}, this toolchain expects {ABI_VERSION}",
                                 hint="rebuild it with `toolchain plugin build --force`")
        _kernel_libs[lib_path] = lib
        return lib


def error_string(lib: ctypes.CDLL, code: int) -> str:
    text = lib.toolchain_lrn_error_string(int(code))
    return text.decode(errors="replace") if text else f"CUDA error {code}"


def library_info() -> list[dict]:
    """Each library kind with its path and sha256 (None where not found)."""
    from toolchain.io import sha256_file

    rows = []
    for kind, name in LIBRARY_NAMES.items():
        path = find_library(kind)
        rows.append({"kind": kind, "name": name, "path": str(path) if path else None,
                     "sha256": sha256_file(path) if path else None})
    return rows
