"""TensorRT: engine building, manifests and the runtime. Imports tensorrt lazily.

``builder`` builds an engine from the exported ONNX through the FusedLRN plugin,
``runtime`` runs one (:class:`~toolchain.trt.runtime.TensorRTRunner`; buffers, streams and
CUDA graphs through cuda-python or torch in ``backends``),
``manifest`` records and verifies what an engine was built from and with,
``compat`` holds the pure-Python checks (options, versions, shapes), ``device``
the CUDA queries and buffers, ``triton`` the Triton model repository.

Nothing here imports ``tensorrt`` at module import time: ``import_tensorrt()``
does it, and turns its absence into one :class:`MissingDependencyError` line.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

from toolchain.errors import MissingDependencyError, ToolchainError

#: How to get TensorRT; printed in every "TensorRT is missing" message.
INSTALL_HINT = ("pip install tensorrt (NVIDIA's wheels: TensorRT 10.x or 11.x for your CUDA major, "
                "plus cuda-python), on a machine with an NVIDIA GPU; see the README")

#: Environment variable that makes the runtime use the lean runtime package only.
LEAN_ENV = "TOOLCHAIN_TRT_LEAN"


def _try_import(name: str):
    try:
        return importlib.import_module(name), None
    except ImportError as exc:  # also catches a wheel whose libnvinfer.so cannot load
        return None, f"{name}: {exc}"
    except OSError as exc:
        return None, f"{name}: {exc}"


def import_tensorrt(*, lean_ok: bool = False):
    """Return the ``tensorrt`` module, or raise a one-line MissingDependencyError.

    ``lean_ok``: for running engines only, fall back to the lean runtime package
    ``tensorrt_lean`` (same runtime API, no builder or parser) when the full one
    is missing, or use it first when $TOOLCHAIN_TRT_LEAN=1.
    """
    names = ["tensorrt"]
    if lean_ok:
        names = ["tensorrt_lean", "tensorrt"] if os.environ.get(LEAN_ENV) == "1" else ["tensorrt", "tensorrt_lean"]
    reasons = []
    for name in names:
        module, reason = _try_import(name)
        if module is not None:
            return module
        reasons.append(reason)
    raise MissingDependencyError(f"TensorRT is not installed ({'; '.join(reasons)})", hint=INSTALL_HINT)


#: The one line for "only the lean runtime is here" (building needs the builder and the ONNX parser).
LEAN_ONLY_HINT = ("install a builder: the full TensorRT (pip install tensorrt for your CUDA major, on a GPU machine) "
                  "or TensorRT-RTX (pip install tensorrt-rtx, builds on the CPU); the lean runtime runs engines built "
                  "elsewhere with `toolchain build --version-compatible`")
#: How to get a builder on any machine, a CPU-only one included.
RTX_INSTALL_HINT = "pip install tensorrt-rtx (TensorRT-RTX builds on the CPU, no GPU needed)"
#: ``toolchain build --tensorrt`` choices: the full TensorRT or TensorRT-RTX; auto takes the full one when present.
BUILDER_CHOICES = ("auto", "full", "rtx")


def _full_builder():
    """(module, None) for a full ``tensorrt`` with a builder, else (None, why not)."""
    module, reason = _try_import("tensorrt")
    if module is None:
        return None, reason
    if not hasattr(module, "Builder"):
        return None, f"tensorrt {getattr(module, '__version__', '?')} has no builder (lean/dispatch runtime only)"
    return module, None


def import_tensorrt_builder(which: str = "auto"):
    """The module that builds engines: ``tensorrt`` (``which="full"``), ``tensorrt_rtx`` ("rtx"), or the
    full one when present, else TensorRT-RTX ("auto"); one line saying what is missing otherwise."""
    if which not in BUILDER_CHOICES:
        raise ToolchainError(f"unknown TensorRT builder {which!r}", hint=f"use one of {', '.join(BUILDER_CHOICES)}")
    reasons = []
    if which in ("auto", "full"):
        module, reason = _full_builder()
        if module is not None:
            return module
        reasons.append(reason)
        if which == "full":
            raise MissingDependencyError(f"the full TensorRT builder is not available ({reason})", hint=INSTALL_HINT)
    module, reason = _try_import("tensorrt_rtx")
    if module is not None:
        return module
    if which == "rtx":
        raise MissingDependencyError(f"TensorRT-RTX is not installed ({reason})", hint=RTX_INSTALL_HINT)
    reasons.append(reason)
    lean, _ = _try_import("tensorrt_lean")
    if lean is not None:
        raise MissingDependencyError(f"building an engine needs a TensorRT builder; only the lean runtime "
                                     f"(tensorrt_lean {getattr(lean, '__version__', '?')}) is installed, which has no "
                                     "builder or ONNX parser", hint=LEAN_ONLY_HINT)
    raise MissingDependencyError(f"no TensorRT builder is installed ({'; '.join(reasons)})",
                                 hint=f"{RTX_INSTALL_HINT}, or the full TensorRT on a GPU machine")


def builder_available(which: str = "auto") -> tuple[bool, str]:
    """(True, "TensorRT 10.16.1" / "TensorRT-RTX 1.7.1.116") or (False, why not) — never raises."""
    try:
        module = import_tensorrt_builder(which)
    except ToolchainError as exc:
        return False, exc.message
    from toolchain.trt.compat import flavour_of

    return True, flavour_of(module.__name__, module.__version__).label


def tensorrt_available() -> tuple[bool, str]:
    """(True, "TensorRT <version>") or (False, why not) for the *full* TensorRT — never raises."""
    module, reason = _full_builder()
    if module is None:
        if reason.startswith("tensorrt:"):
            return False, f"TensorRT is not installed ({reason}); {INSTALL_HINT}"
        return False, reason
    return True, f"TensorRT {getattr(module, '__version__', 'unknown')}"


#: The unversioned library TensorRT-RTX's ONNX parser dlopens when it imports a plugin node.
RTX_UNVERSIONED_LIBRARY = "libtensorrt_rtx.so"


def rtx_library_dir(trt) -> Path | None:
    """The folder of TensorRT-RTX's ``libtensorrt_onnxparser_rtx.so.N`` (the wheel's tensorrt_rtx_libs)."""
    import importlib.util

    spec = importlib.util.find_spec(f"{trt.__name__}_libs")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return None


def ensure_rtx_parser_library(libs: Path | None, *, ld_library_path: str | None = None) -> str:
    """Make sure TensorRT-RTX's parser can dlopen ``libtensorrt_rtx.so``, or refuse in one line.

    When the parser imports a plugin node it dlopens the *unversioned* library name, which the
    wheel does not ship; a failed lookup ends the process (std::terminate, no exception). The
    parser's RPATH is $ORIGIN, so a link beside it resolves the name: this creates it (the link
    points at the wheel's own ``libtensorrt_rtx.so.N``). Also accepted: the name already beside
    the parser, or in a folder of $LD_LIBRARY_PATH (read by the loader at process start).
    Returns how the name resolves: "present", "created" or "LD_LIBRARY_PATH".
    """
    for folder in filter(None, (ld_library_path if ld_library_path is not None
                                else os.environ.get("LD_LIBRARY_PATH", "")).split(os.pathsep)):
        if (Path(folder) / RTX_UNVERSIONED_LIBRARY).exists() and not (libs and Path(folder) == libs):
            return "LD_LIBRARY_PATH"
    if libs is None or not libs.is_dir():
        raise ToolchainError("cannot find TensorRT-RTX's library folder (tensorrt_rtx_libs), so its ONNX parser would "
                             f"abort the process when it imports a plugin node (it dlopens {RTX_UNVERSIONED_LIBRARY})",
                             hint="reinstall it: pip install --force-reinstall tensorrt-rtx")
    link = libs / RTX_UNVERSIONED_LIBRARY
    if link.exists():
        return "present"
    versioned = sorted(libs.glob(f"{RTX_UNVERSIONED_LIBRARY}.*"))
    if not versioned:
        raise ToolchainError(f"{libs} holds no {RTX_UNVERSIONED_LIBRARY}.N", hint="reinstall it: pip install "
                             "--force-reinstall tensorrt-rtx")
    temporary = libs / f".{RTX_UNVERSIONED_LIBRARY}.{os.getpid()}.tmp"
    try:
        if temporary.is_symlink():
            temporary.unlink()
        os.symlink(versioned[0].name, temporary)
        os.replace(temporary, link)  # atomic: a concurrent build sees the link whole or not at all
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ToolchainError(
            f"TensorRT-RTX's ONNX parser dlopens {RTX_UNVERSIONED_LIBRARY}, which {libs} lacks, and the link cannot be "
            f"created there ({exc.strerror or exc}); without it the parser aborts the process on a plugin node",
            hint=f"create it once as the folder's owner: ln -s {versioned[0].name} {link}") from None
    return "created"


def make_logger(trt, *, verbose: bool = False, log=None, quiet: bool = False):
    """A TensorRT ILogger that keeps the errors (for the one-line failure) and forwards warnings.

    ``quiet``: keep errors and warnings (``errors``, ``warnings``) without printing them, unless
    ``verbose``; the caller reports them (the builder: in its one-line error, or the manifest)."""
    emit = log or (lambda message: print(message, file=sys.stderr))
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []
            self.plugin_trace: list[str] = []  # the FusedLRN plugin's build-call lines (VERBOSE)
            self.weights_bytes: int | None = None  # the builder's "Total Weights Memory" (INFO)
            self.verbose = verbose

        def log(self, level, msg):  # noexcept on the C++ side: never raise here
            try:
                if level == severity.VERBOSE and " build call " in str(msg):
                    self.plugin_trace.append(str(msg))
                elif level == severity.INFO and str(msg).startswith("Total Weights Memory:"):
                    self.weights_bytes = int(str(msg).split(":")[1].split()[0])
                if level in (severity.INTERNAL_ERROR, severity.ERROR):
                    self.errors.append(" ".join(str(msg).split()))
                    if verbose or not quiet:
                        emit(f"[TensorRT] error: {msg}")
                elif level == severity.WARNING:
                    self.warnings.append(" ".join(str(msg).split()))
                    if verbose or not quiet:
                        emit(f"[TensorRT] warning: {msg}")
                elif verbose and level == severity.INFO:
                    emit(f"[TensorRT] {msg}")
            except Exception:
                pass

        def last_error(self) -> str:
            return self.errors[-1] if self.errors else "see the TensorRT log above"

    return _Logger()


#: TensorRT objects that failed to initialize; deleting one crashes the process.
_UNUSABLE: list = []


def create_checked(factory, logger, what: str):
    """``factory()`` (``trt.Runtime(logger)``, ``trt.Builder(logger)``), or a one-line error.

    When TensorRT cannot initialize CUDA (no GPU, or a driver too old for this TensorRT's
    CUDA major, e.g. a -cu13 wheel on a driver < 580) these constructors do not raise: they
    log an error and hand back an object whose first use crashes the process (seen with
    tensorrt_lean 11.4), and so does freeing it. An error logged during the call therefore means
    failure, and the object is kept, unused, until the process ends.
    """
    from toolchain.errors import ToolchainError

    before = len(logger.errors)
    created = factory()
    if created is None or len(logger.errors) > before:
        if created is not None:
            _UNUSABLE.append(created)  # freeing it crashes too: keep it for the process's lifetime
        raise ToolchainError(f"TensorRT could not create its {what}: {logger.last_error()}",
                             hint="does this TensorRT wheel's CUDA major match the driver (CUDA 13 needs "
                                  "driver >= 580)? see nvidia-smi")
    return created
