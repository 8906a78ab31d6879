"""Loading the FusedLRN TensorRT plugin library: hash first, then ``ctypes.CDLL``.

The library registers its creator with TensorRT's global plugin registry when it
is loaded (``REGISTER_TENSORRT_PLUGIN``), so ``tensorrt`` must be imported first:
the library then binds to the libnvinfer the Python bindings already loaded,
instead of whichever one the dynamic linker would find.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

from toolchain import lrn_op
from toolchain.errors import ToolchainError
from toolchain.io import require_file, sha256_file

_lock = threading.Lock()
#: resolved path -> (sha256, handle): a library is loaded once per process.
_loaded: dict[Path, tuple[str, ctypes.CDLL]] = {}


def default_plugin_library(kind: str = "tensorrt") -> Path:
    """The built ``libtoolchain_lrn_plugin.so`` (``kind="tensorrt_dynamic"``: the dynamic-registration
    variant; see ``toolchain plugin build``), or a one-line error."""
    from toolchain.plugin import require_library

    return require_library(kind)


def load_dynamic_plugin_library(trt, path: str | os.PathLike, *, expected_sha256: str | None = None,
                                why: str = "a plugin serialized into an engine must be") -> str:
    """Register a dynamic-registration library (``getCreators``) with TensorRT's plugin registry
    (``trt``: the full TensorRT, its lean runtime or TensorRT-RTX); return its sha256, checked against
    ``expected_sha256`` before the library's code runs. ``why`` says, in the refusal of a library
    without ``getCreators``, why the dynamic variant is needed. The static variant must not be
    loaded in the same process: the creator would exist twice."""
    path = require_file(path, "plugin library").resolve()
    with _lock:
        digest = sha256_file(path)
        _check_expected(path, digest, expected_sha256)
        if path in _loaded:
            return digest
        if _loaded:
            raise ToolchainError(f"another plugin library ({next(iter(_loaded))}) is already loaded in this process; "
                                 f"cannot also register {path}", hint="use one plugin library per process")
        handle = trt.get_plugin_registry().load_library(str(path))
        if handle is None:
            static = " (a static-registration library, exporting no getCreators)" if "dynamic" not in path.name else ""
            raise ToolchainError(f"TensorRT's plugin registry ({trt.__name__} {getattr(trt, '__version__', '?')}) "
                                 f"refused {path}{static}; {why} loaded with IPluginRegistry.loadLibrary",
                                 hint="give the dynamic variant libtoolchain_lrn_plugin_dynamic.so built with headers "
                                      "this TensorRT accepts (`toolchain plugin build --force`)")
        _loaded[path] = (digest, handle)
        return digest


def _check_expected(path: Path, digest: str, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and digest != expected_sha256:
        raise ToolchainError(f"plugin library {path} has sha256 {digest[:16]}…, the engine manifest records "
                             f"{expected_sha256[:16]}…", hint="use the plugin library the engine was built with, or "
                                                              "rebuild the engine")


def load_plugin_library(path: str | os.PathLike, *, expected_sha256: str | None = None) -> str:
    """Load the plugin library once per process; return its sha256.

    With ``expected_sha256`` the file's hash is checked *before* the library is
    loaded: loading runs its static initializers, i.e. arbitrary code.
    """
    path = require_file(path, "plugin library").resolve()
    with _lock:
        digest = sha256_file(path)
        _check_expected(path, digest, expected_sha256)
        if path in _loaded:
            if _loaded[path][0] != digest:
                raise ToolchainError(f"plugin library {path} changed on disk after it was loaded in this process",
                                     hint="restart the process")
            return digest
        others = [p for p in _loaded if p != path]
        if others:
            # A second copy would try to register the same creator again.
            raise ToolchainError(f"another plugin library ({others[0]}) is already loaded in this process; "
                                 f"cannot also load {path}", hint="use one plugin library per process")
        try:
            handle = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_NOW", 2) | getattr(ctypes, "RTLD_GLOBAL", 0))
        except OSError as exc:
            raise ToolchainError(f"cannot load plugin library {path}: {exc}",
                                 hint="was it built against this TensorRT and CUDA? rebuild with `toolchain plugin build --force`") from None
        _loaded[path] = (digest, handle)
        return digest


def creator_key() -> dict:
    return {"name": lrn_op.OP_TYPE, "version": lrn_op.PLUGIN_VERSION, "namespace": lrn_op.PLUGIN_NAMESPACE}


def require_creator(trt, library: Path | str | None = None) -> None:
    """Check that the FusedLRN creator is in TensorRT's plugin registry (after loading the library)."""
    registry = trt.get_plugin_registry()
    key = creator_key()
    creator = registry.get_creator(key["name"], key["version"], key["namespace"])
    if creator is None:
        where = f" after loading {library}" if library else ""
        raise ToolchainError(f"no TensorRT plugin creator {key['name']} version {key['version']} namespace "
                             f"{key['namespace']!r} is registered{where}",
                             hint="load a plugin library built for this TensorRT (`toolchain plugin build --force`)")


@contextlib.contextmanager
def captured_stderr():
    """Capture what native code writes to fd 2 (the plugin logs there when TensorRT has no logger)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box = {"text": ""}
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode(errors="replace")


#: How the plugin reports on stderr when TensorRT gives it no logger (TensorRT-RTX, the Python registry).
PLUGIN_STDERR_LINE = re.compile(r"^\[FusedLRN\] (?P<text>.*)$", re.MULTILINE)
#: The node a plugin message names: "FusedLRN::createPlugin('node'): reason" or "FusedLRN 'node': reason".
PLUGIN_NODE = re.compile(r"(?:createPlugin\('|FusedLRN ')(?P<node>[^']*)'\)?:\s*(?P<reason>.*)")


def plugin_refusals(stderr_text: str) -> list[tuple[str, str]]:
    """(node, reason) for every refusal the plugin wrote to stderr (pure; tested)."""
    found = []
    for line in PLUGIN_STDERR_LINE.finditer(stderr_text):
        match = PLUGIN_NODE.search(line["text"])
        if match:
            found.append((match["node"], match["reason"].strip()))
    return found


def split_plugin_output(stderr_text: str) -> tuple[list[tuple[str, str]], str]:
    """The plugin's refusals, and the rest of what native code wrote to stderr (to pass on)."""
    rest = PLUGIN_STDERR_LINE.sub("", stderr_text)
    return plugin_refusals(stderr_text), "\n".join(line for line in rest.splitlines() if line.strip())
