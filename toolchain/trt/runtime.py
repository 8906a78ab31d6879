"""Run a TensorRT engine: :class:`TensorRTRunner` (activate / infer / deactivate, a context manager).

Activation order matters, because engines and plugin libraries are executable code:

1. read the manifest beside the engine (``ENGINE.manifest.json``);
2. import tensorrt (or the lean runtime ``tensorrt_lean`` when only it is installed),
   so the plugin library binds to the libnvinfer already loaded; the lean runtime is
   refused at once for an engine whose manifest is not version-compatible;
3. check the TensorRT version and the GPU's compute capability against the manifest;
4. check the plugin library's sha256 against the manifest, *then* ``ctypes.CDLL`` it
   (its static initializer registers the FusedLRN creator); a version-compatible engine
   carries its plugin and none is loaded;
5. make cuda:N current, read the engine once, check its sha256 on those bytes,
   deserialize the same bytes.

``infer`` takes and returns numpy arrays (device memory through cuda-python, or
torch when cuda-python is missing or cannot reach the driver); ``infer_torch`` takes CUDA tensors and returns
CUDA tensors without host copies. Both run ``execute_async_v3`` on the runner's own
non-default stream. ``cuda_graph=True`` captures one CUDA graph per input shape
(after a warm-up enqueue at that shape, as TensorRT requires) and replays it.

CUDA graphs: each captured graph gets an execution context of its own
(:class:`~toolchain.trt.cuda_io.GraphCache`), since a context's per-shape state changes on
its next ``enqueueV3`` at another shape. How buffers, streams and graphs are made (cuda-python
or torch) lives in :mod:`toolchain.trt.cuda_io`.

Lean runtime: when only ``tensorrt_lean`` is installed (or $TOOLCHAIN_TRT_LEAN=1) it is
used instead of ``tensorrt``. It deserializes only version-compatible engines
(``toolchain build --version-compatible``): those carry the dynamic plugin library
inside, so no plugin file is loaded, and host code is allowed only for engines whose
manifest records the version-compatible build.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.runners.base import Runner
from toolchain.trt import compat, manifest as manifest_mod
from toolchain.trt.cuda_io import TORCH_DTYPES, MAX_GRAPHS, GraphCache, make_cuda_io, torch_infer


def engine_io(trt, engine) -> dict:
    """The engine's I/O as the manifest records it: name, numpy dtype name, shape (-1 dynamic), input profile 0."""
    io = {"inputs": [], "outputs": []}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        spec = {"name": name, "dtype": manifest_mod.numpy_dtype_name(engine.get_tensor_dtype(name).name),
                "shape": [int(d) for d in engine.get_tensor_shape(name)]}
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            spec["profile"] = {"min": [int(d) for d in lo], "opt": [int(d) for d in opt], "max": [int(d) for d in hi]}
            io["inputs"].append(spec)
        else:
            io["outputs"].append(spec)
    return io


def parse_device(device: str | int) -> int:
    """"cuda" -> 0, "cuda:1" -> 1, 2 -> 2; anything else is a one-line error."""
    if isinstance(device, int) and device >= 0:
        return device
    text = str(device).strip().lower()
    if text == "cuda":
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ToolchainError(f"TensorRT runs on a CUDA device, got device={device!r}", hint='use "cuda" or "cuda:N"')


def cast_plan(given: str, expected: str, name: str) -> bool:
    """Whether input ``name`` needs a cast from ``given`` to ``expected`` dtype; only float<->float is allowed."""
    if given == expected:
        return False
    floats = {"float16", "float32", "bfloat16", "float64"}
    if given in floats and expected in floats:
        return True
    raise ToolchainError(f"input {name!r} has dtype {given}, the engine expects {expected}")


class TensorRTRunner(Runner):
    """Runs a TensorRT engine built by ``toolchain build`` (see the module docstring).

    For parity, ``infer`` takes host arrays; for timing, ``run`` is ``infer_torch`` on the
    device-resident FP32 input (the cast to the engine's input dtype happens on the device,
    inside the compute step). Precision, LRN mode and profile come from the manifest.
    """

    device = "cuda"

    def __init__(self, engine_path, *, plugin_library=None, verify_manifest: bool = True, cuda_graph: bool = False,
                 device: str | int = "cuda", name: str | None = None):
        super().__init__()
        self.engine_path = Path(engine_path)
        self.plugin_library = Path(plugin_library) if plugin_library else None
        self.verify_manifest = verify_manifest
        self.cuda_graph = cuda_graph
        self.device_index = parse_device(device)
        self.name = name or f"tensorrt{'-graph' if cuda_graph else ''}"
        self.manifest: dict | None = None
        self.compat_notes: list[str] = []
        self.profile: dict | None = None
        self.description = "TensorRT engine" + (", replayed from a CUDA graph" if cuda_graph else "")

    # ------------------------------------------------------------------ lifecycle (Runner)

    def _activate(self) -> None:
        from toolchain.io import require_file
        from toolchain.trt import make_logger
        from toolchain.trt.device import device_info
        from toolchain.trt.plugins import load_dynamic_plugin_library, load_plugin_library

        engine_path = require_file(self.engine_path, "TensorRT engine")
        manifest = None
        if self.verify_manifest:
            manifest = manifest_mod.read_manifest(engine_path)
        elif manifest_mod.manifest_path(engine_path).is_file():
            try:  # only to find the plugin library and the I/O; nothing is verified
                manifest = manifest_mod.read_manifest(engine_path)
            except ToolchainError:
                manifest = None
        trt = import_runtime_for(manifest, engine_path)
        problem = lean_runtime_problem(trt.__name__, manifest, engine_path)
        if problem:
            raise ToolchainError(problem, hint="rebuild it with `toolchain build --version-compatible`, "
                                               "or install the full TensorRT (pip install tensorrt)")

        # Refuse an engine for another TensorRT or GPU *before* loading its plugin library:
        # loading runs the library's code.
        info = device_info(self.device_index)
        if manifest is not None and self.verify_manifest:
            report = compat.require_engine_compat(manifest, engine_path, tensorrt_version=trt.__version__,
                                                  compute_capability=info["compute_capability"], gpu_name=info["name"],
                                                  flavour=compat.flavour_of(trt.__name__, trt.__version__).name)
            self.compat_notes = report.notes
        plugin = self._plugin_to_load(manifest)
        if plugin is not None:
            expected = (manifest.get("plugin") or {}).get("sha256") if (manifest and self.verify_manifest) else None
            if self.verify_manifest and manifest and not manifest.get("plugin"):
                raise ToolchainError(f"engine {engine_path} was built without a plugin; refusing to load {plugin}",
                                     hint="pass the plugin library only with engines built with --lrn plugin")
            if ((manifest or {}).get("plugin") or {}).get("registration") == "dynamic":
                # TensorRT-RTX engines: the registry's loadLibrary, as at build time.
                load_dynamic_plugin_library(trt, plugin, expected_sha256=expected,
                                            why="this engine was built with a plugin that must be")
            else:
                load_plugin_library(plugin, expected_sha256=expected)

        data = engine_path.read_bytes()
        if manifest is not None and self.verify_manifest:
            import hashlib

            actual = hashlib.sha256(data).hexdigest()
            if actual != manifest["engine"]["sha256"]:
                raise ToolchainError(f"engine {engine_path} has sha256 {actual[:16]}…, the manifest records "
                                     f"{manifest['engine']['sha256'][:16]}…", hint="rebuild the engine or restore the original file")

        self._trt = trt
        self._logger = make_logger(trt)
        # Also makes cuda:N the current device (cuda-python or torch) before deserializing.
        self._cuda = make_cuda_io(self.device_index)
        try:
            self._load_engine(trt, engine_path, manifest, data)
        except BaseException:
            self._cuda.close()  # the stream and buffers of a runner that never became active
            self._context = self._engine = self._runtime = None
            raise

    def _load_engine(self, trt, engine_path: Path, manifest: dict | None, data: bytes) -> None:
        from toolchain.trt import create_checked

        self._runtime = create_checked(lambda: trt.Runtime(self._logger), self._logger, "runtime")
        if self.verify_manifest and host_code_allowed(manifest) and hasattr(self._runtime, "engine_host_code_allowed"):
            # Version-compatible engines carry the plugin library inside; run it only for those
            # whose verified manifest says they were built so.
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ToolchainError(f"TensorRT could not deserialize {engine_path}: {self._logger.last_error()}",
                                 hint="rebuild it with this TensorRT on this GPU")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ToolchainError(f"TensorRT could not create an execution context for {engine_path}: "
                                 f"{self._logger.last_error()}", hint="is the GPU out of memory?")
        self.engine_io = engine_io(trt, self._engine)
        if manifest is not None:
            recorded = [s["name"] for s in manifest["io"]["inputs"] + manifest["io"]["outputs"]]
            actual_names = [s["name"] for s in self.engine_io["inputs"] + self.engine_io["outputs"]]
            if sorted(recorded) != sorted(actual_names):
                raise ToolchainError(f"engine {engine_path} has I/O {actual_names}, its manifest records {recorded}")
        self.manifest = manifest
        self._describe_from(manifest)
        self._input_names = [s["name"] for s in self.engine_io["inputs"]]
        self._output_names = [s["name"] for s in self.engine_io["outputs"]]
        self._dtypes = {s["name"]: s["dtype"] for s in self.engine_io["inputs"] + self.engine_io["outputs"]}
        self._shapes: dict[str, tuple] = {}
        self._graphs = GraphCache(MAX_GRAPHS, self._release_graph)

    def _describe_from(self, manifest: dict | None) -> None:
        """Precision, LRN mode, input shape and profile: what the timing rows and parity record."""
        spec = self.engine_io["inputs"][0]
        self.profile = spec.get("profile")
        self.input_shape = tuple(int(d) for d in spec["shape"][1:])
        if any(d < 0 for d in self.input_shape):
            raise ToolchainError(f"engine {self.engine_path} has a dynamic non-batch input dimension "
                                 f"{list(spec['shape'])}", hint="build it with a fixed image size")
        build = (manifest or {}).get("build") or {}
        if build.get("precision") in ("fp32", "fp16", "int8"):
            self.precision = build["precision"]
        lrn = {"plugin": "through the FusedLRN plugin", "native": "as the built-in ILRNLayer",
               "function": "through the FusedLRN nodes' standard-op function"}.get(build.get("lrn"))
        self.description = (f"TensorRT engine ({self.precision.upper()})" + (f", LRN {lrn}" if lrn else "")
                            + (", replayed from a CUDA graph" if self.cuda_graph else ""))

    def _plugin_to_load(self, manifest: dict | None) -> Path | None:
        recorded = (manifest or {}).get("plugin")
        if recorded and recorded.get("serialized_in_engine") and host_code_allowed(manifest):
            # The engine carries its plugin; a second registration of the creator would clash.
            if self.plugin_library is not None:
                self.compat_notes.append(f"the engine carries its plugin library; {self.plugin_library} is not loaded")
            return None
        if self.plugin_library is not None:
            return self.plugin_library
        if manifest is not None and not recorded:
            return None  # built with --lrn native
        if recorded and Path(recorded["file"]).is_file():
            return Path(recorded["file"])
        from toolchain.plugin import find_library

        found = find_library("tensorrt")
        if found is None and recorded:
            from toolchain.trt.plugins import default_plugin_library

            return default_plugin_library()  # raises the one-line "not found" error
        return found

    def _synchronize(self) -> None:
        """Wait for every stream this runner enqueued on (its own and infer_torch's)."""
        torch_stream = self.__dict__.get("_torch_state", {}).get("stream")
        if torch_stream is not None:
            torch_stream.synchronize()
        self._cuda.synchronize()

    def _release_graph(self, graph) -> None:
        # The graph (and the context its entry held) may still run: wait before freeing either.
        self._synchronize()
        self._cuda.destroy_graph(graph)

    def _deactivate(self) -> None:
        try:
            # Every stream this runner enqueued on must be done before its buffers, graphs
            # and contexts go: the backend's own and infer_torch's.
            self._synchronize()
            self._graphs.clear()
            self.__dict__.pop("_torch_state", None)
            self._cuda.close()
        finally:
            self._context = None
            self._engine = None
            self._runtime = None

    # ------------------------------------------------------------------ queries

    def _profile_batches(self) -> tuple[int, int] | None:
        manifest = self.manifest
        if manifest is None:
            try:
                manifest = manifest_mod.read_manifest(self.engine_path)
            except ToolchainError:
                return None
        profile = manifest["io"]["inputs"][0].get("profile")
        return (profile["min"][0], profile["max"][0]) if profile else None

    @property
    def static_batch(self) -> int | None:
        """The batch the engine needs when its profile allows only one."""
        batches = self._profile_batches()
        return batches[0] if batches and batches[0] == batches[1] else None

    @property
    def max_batch(self) -> int | None:
        """The profile's largest batch (callers split bigger batches)."""
        batches = self._profile_batches()
        return batches[1] if batches else None

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    def _require_active(self):
        if not self.is_active:
            raise ToolchainError(f"runner {self.name} is not active", hint="use it in a `with` block or call activate()")

    def check_feed(self, shapes: dict[str, tuple]) -> None:
        """Names and shapes against the profile, one error for all problems."""
        compat.check_input_shapes(self.engine_io["inputs"], shapes)

    def _set_shapes(self, shapes: dict[str, tuple]) -> dict[str, tuple]:
        """Set input shapes on the context (only when changed); return every output's shape."""
        for name, shape in shapes.items():
            if self._shapes.get(name) != shape:
                if not self._context.set_input_shape(name, shape):
                    raise ToolchainError(f"TensorRT refused shape {shape} for input {name!r}: {self._logger.last_error()}")
                self._shapes[name] = shape
        return {name: tuple(int(d) for d in self._context.get_tensor_shape(name)) for name in self._output_names}

    def _enqueue(self, stream_handle: int, context=None) -> None:
        if not (context or self._context).execute_async_v3(stream_handle):
            raise ToolchainError(f"TensorRT inference failed: {self._logger.last_error()}")

    def _graph_context(self, shapes: dict[str, tuple]):
        """A new execution context fixed at ``shapes``, for one CUDA graph (TensorRT's guidance:
        a graph captured on a context is stale once that context has run another shape)."""
        context = self._engine.create_execution_context()
        if context is None:
            raise ToolchainError(f"TensorRT could not create an execution context for a CUDA graph: "
                                 f"{self._logger.last_error()}", hint="is the GPU out of memory? or run without CUDA graphs")
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise ToolchainError(f"TensorRT refused shape {shape} for input {name!r}: {self._logger.last_error()}")
        return context

    # ------------------------------------------------------------------ numpy

    def _infer(self, feed: dict) -> dict:
        """numpy in, numpy out (host copies on both sides)."""
        import numpy as np
        shapes = {name: tuple(int(d) for d in np.shape(array)) for name, array in feed.items()}
        self.check_feed(shapes)
        arrays = {}
        for name, array in feed.items():
            array = np.asarray(array)
            if cast_plan(array.dtype.name, self._dtypes[name], name):
                array = array.astype(self._dtypes[name])
            arrays[name] = np.ascontiguousarray(array)
        return self._cuda.infer_numpy(self, arrays, shapes)

    # ------------------------------------------------------------------ timing

    def _prepare(self, batch_size: int) -> None:
        self._timed_input, self._timed_output = self._input_names[0], self._output_names[0]

    def run(self) -> None:
        self.output = self.infer_torch({self._timed_input: self.io.device_input})[self._timed_output]

    def settings(self) -> dict:
        return {"cuda_graph": self.cuda_graph, "profile": self.profile,
                "plugin_library": str(self.plugin_library) if self.plugin_library else None}

    # ------------------------------------------------------------------ torch

    def infer_torch(self, feed: dict) -> dict:
        """CUDA tensors in, CUDA tensors out, ordered after/before the caller's current stream."""
        import torch

        self._require_active()
        shapes = {name: tuple(int(d) for d in tensor.shape) for name, tensor in feed.items()}
        self.check_feed(shapes)
        tensors = {}
        for name, tensor in feed.items():
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cuda" or \
                    (tensor.device.index or 0) != self.device_index:
                raise ToolchainError(f"infer_torch needs CUDA tensors on cuda:{self.device_index}; input {name!r} is "
                                     f"{getattr(tensor, 'device', type(tensor).__name__)}", hint="use infer() for numpy arrays")
            expected = self._dtypes[name]
            if cast_plan(str(tensor.dtype).removeprefix("torch."), expected, name):
                tensor = tensor.to(getattr(torch, TORCH_DTYPES[expected]))
            tensors[name] = tensor.contiguous()
        return torch_infer(self, tensors, shapes)


# ---------------------------------------------------------------------- decisions (pure)


def host_code_allowed(manifest: dict | None) -> bool:
    """Only an engine whose manifest records a version-compatible build, or a plugin library serialized
    into it (``--embed-plugin``), may run host code."""
    if not manifest:
        return False
    return bool((manifest.get("build") or {}).get("version_compatible")
                or (manifest.get("plugin") or {}).get("serialized_in_engine"))


def rtx_runtime_reason(engine_path) -> str | None:
    """For an engine TensorRT-RTX built: why it cannot run here ("" when it can); None for any other engine
    (or one without a readable manifest, which the runner then refuses with its own reason)."""
    try:
        manifest = manifest_mod.read_manifest(engine_path)
    except ToolchainError:
        return None
    flavour = compat.manifest_flavour(manifest)
    if not flavour.rtx:
        return None
    import importlib.util

    if importlib.util.find_spec("tensorrt_rtx") is None:
        return f"the engine was built by {flavour.label}, which is not installed (pip install tensorrt-rtx=={flavour.version})"
    from toolchain.trt.device import device_info

    try:
        cc = device_info(0)["compute_capability"]
    except ToolchainError as exc:
        return exc.one_line()
    problem = compat.rtx_gpu_problem(cc, (manifest.get("build") or {}).get("compute_capabilities") or [])
    return f"the {flavour.label} engine cannot load here: {problem}" if problem else ""


def import_runtime_for(manifest: dict | None, engine_path):
    """The TensorRT module that runs this engine: TensorRT-RTX for an engine it built (its manifest
    says so), else the full TensorRT or its lean runtime; one line when that one is missing."""
    from toolchain.trt import import_tensorrt, import_tensorrt_builder

    if manifest is not None and compat.manifest_flavour(manifest).rtx:
        built = compat.manifest_flavour(manifest).label
        try:
            return import_tensorrt_builder("rtx")
        except ToolchainError:
            raise MissingDependencyError(f"engine {engine_path} was built by {built}, which is not installed here",
                                         hint=f"pip install tensorrt-rtx=={compat.manifest_flavour(manifest).version} "
                                              "on a machine with an RTX-class GPU") from None
    return import_tensorrt(lean_ok=True)


def lean_runtime_problem(package: str, manifest: dict | None, engine_path) -> str | None:
    """Why the lean runtime cannot run this engine (None when it can, or when ``package`` is the full one).

    The lean runtime deserializes only version-compatible engines; without a manifest
    TensorRT's own error has to do.
    """
    if package != "tensorrt_lean" or manifest is None or host_code_allowed(manifest):
        return None
    return (f"engine {engine_path} is not version-compatible, and only TensorRT's lean runtime (tensorrt_lean) is "
            "installed, which runs only version-compatible engines")


def profile_note(batch_size: int, profile: dict | None) -> str | None:
    """Which optimisation profile shape a timed batch runs with (the engine has one profile)."""
    if not profile:
        return None
    lo, opt, hi = (int(profile[k][0]) for k in ("min", "opt", "max"))
    if batch_size == opt:
        return None
    return f"timed at batch {batch_size} with the profile tuned for batch {opt} (min {lo}, max {hi})"
