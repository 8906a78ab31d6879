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

import importlib
import os
import sys

from toolchain.errors import MissingDependencyError

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
LEAN_ONLY_HINT = ("install the full TensorRT to build (pip install tensorrt for your CUDA major); the lean runtime "
                  "runs engines built elsewhere with `toolchain build --version-compatible`")


def import_tensorrt_builder():
    """The full ``tensorrt`` module with its builder, or one line saying what is missing
    (naming the lean runtime when only it is installed)."""
    module, reason = _try_import("tensorrt")
    if module is not None and hasattr(module, "Builder"):
        return module
    lean, _ = _try_import("tensorrt_lean")
    if lean is not None:
        raise MissingDependencyError(f"building an engine needs the full TensorRT; only the lean runtime "
                                     f"(tensorrt_lean {getattr(lean, '__version__', '?')}) is installed, which has no "
                                     "builder or ONNX parser", hint=LEAN_ONLY_HINT)
    if module is not None:
        raise MissingDependencyError(f"tensorrt {getattr(module, '__version__', '?')} has no builder (lean/dispatch "
                                     "runtime only)", hint=INSTALL_HINT)
    raise MissingDependencyError(f"TensorRT is not installed ({reason})", hint=INSTALL_HINT)


def tensorrt_available() -> tuple[bool, str]:
    """(True, "TensorRT <version>") or (False, why not) — never raises."""
    module, reason = _try_import("tensorrt")
    if module is None:
        return False, f"TensorRT is not installed ({reason}); {INSTALL_HINT}"
    version = getattr(module, "__version__", "unknown")
    if not hasattr(module, "Builder"):
        return False, f"tensorrt {version} has no builder (lean/dispatch runtime only)"
    return True, f"TensorRT {version}"


def make_logger(trt, *, verbose: bool = False, log=None):
    """A TensorRT ILogger that keeps the errors (for the one-line failure) and forwards warnings."""
    emit = log or (lambda message: print(message, file=sys.stderr))
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level, msg):  # noexcept on the C++ side: never raise here
            try:
                if level in (severity.INTERNAL_ERROR, severity.ERROR):
                    self.errors.append(" ".join(str(msg).split()))
                    emit(f"[TensorRT] error: {msg}")
                elif level == severity.WARNING:
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
