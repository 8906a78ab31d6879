"""TensorRT: :class:`TensorRTRunner` lives in :mod:`toolchain.trt.runtime`; this adds what timing needs.

:class:`TensorRTTimedRunner` wraps one ``TensorRTRunner``: ``infer`` is its numpy
path (parity), ``run`` its ``infer_torch`` on the device-resident FP32 input (the
cast to the engine's input dtype happens on the device, inside the compute step).
The plugin library is passed only to engines built with the FusedLRN plugin; a
native-LRN engine must not load it.
"""

from __future__ import annotations

from toolchain.errors import ToolchainError
from toolchain.runners.base import Runner


def __getattr__(name):
    if name == "TensorRTRunner":
        from toolchain.trt.runtime import TensorRTRunner

        return TensorRTRunner
    raise AttributeError(name)


def profile_note(batch_size: int, profile: dict | None) -> str | None:
    """Which optimisation profile shape a timed batch runs with (the engine has one profile)."""
    if not profile:
        return None
    lo, opt, hi = (int(profile[k][0]) for k in ("min", "opt", "max"))
    if batch_size == opt:
        return None
    return f"timed at batch {batch_size} with the profile tuned for batch {opt} (min {lo}, max {hi})"


class TensorRTTimedRunner(Runner):
    """A TensorRT engine (plugin or native LRN, optionally CUDA-graph replay) for parity and timing."""

    device = "cuda"

    def __init__(self, engine_path, *, lrn: str = "plugin", cuda_graph: bool = False, plugin_library=None,
                 name: str | None = None):
        super().__init__()
        self.engine_path = engine_path
        self.lrn = lrn
        self.cuda_graph = cuda_graph
        from toolchain.trt.runtime import plugin_library_for_engine

        self.plugin_library = plugin_library_for_engine(lrn, plugin_library)
        self.name = name or f"tensorrt-{lrn}{'-graph' if cuda_graph else ''}"
        self.precision = "fp16"
        lrn_text = "through the FusedLRN plugin" if lrn == "plugin" else "as the built-in ILRNLayer"
        self.description = f"TensorRT engine, LRN {lrn_text}" + (", replayed from a CUDA graph" if cuda_graph else "")
        self.inner = None

    def _activate(self) -> None:
        from toolchain.trt.runtime import TensorRTRunner

        options = {"plugin_library": self.plugin_library} if self.plugin_library else {}
        inner = TensorRTRunner(self.engine_path, cuda_graph=self.cuda_graph, name=self.name, **options)
        inner.activate()
        self.inner = inner
        spec = inner.io["inputs"][0]
        self._input_name = spec["name"]
        self._output_name = inner.output_names[0]
        self.profile = spec.get("profile")
        self.input_shape = tuple(int(d) for d in spec["shape"][1:])
        if any(d < 0 for d in self.input_shape):
            self._deactivate()
            raise ToolchainError(f"engine {self.engine_path} has a dynamic non-batch input dimension "
                                 f"{list(spec['shape'])}", hint="build it with a fixed image size")
        precision = ((inner.manifest or {}).get("build") or {}).get("precision")
        if precision in ("fp32", "fp16", "int8"):
            self.precision = precision

    def _deactivate(self) -> None:
        if self.inner is not None:
            self.inner.deactivate()
            self.inner = None

    @property
    def static_batch(self) -> int | None:
        return self.inner.static_batch if self.inner is not None else None

    @property
    def max_batch(self) -> int | None:
        return self.inner.max_batch if self.inner is not None else None

    def _infer(self, feed: dict) -> dict:
        return self.inner.infer(feed)

    def run(self) -> None:
        self.output = self.inner.infer_torch({self._input_name: self.io.device_input})[self._output_name]

    def settings(self) -> dict:
        return {"cuda_graph": self.cuda_graph, "profile": self.profile,
                "plugin_library": str(self.plugin_library) if self.plugin_library else None}
