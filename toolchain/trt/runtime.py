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

CUDA graphs: each captured graph gets an execution context of its own (:class:`GraphCache`),
since a context's per-shape state changes on its next ``enqueueV3`` at another shape.

Lean runtime: when only ``tensorrt_lean`` is installed (or $TOOLCHAIN_TRT_LEAN=1) it is
used instead of ``tensorrt``. It deserializes only version-compatible engines
(``toolchain build --version-compatible``): those carry the dynamic plugin library
inside, so no plugin file is loaded, and host code is allowed only for engines whose
manifest records the version-compatible build.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from toolchain.errors import ToolchainError
from toolchain.runners import Runner
from toolchain.trt import compat, manifest as manifest_mod

#: Graphs kept per runner (an LRU): each pins its shapes' buffers.
MAX_GRAPHS = 8

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "int8": "int8",
                 "int32": "int32", "int64": "int64", "bool": "bool", "uint8": "uint8"}


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
    """Runs a TensorRT engine built by ``toolchain build`` (see the module docstring)."""

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

    # ------------------------------------------------------------------ lifecycle (Runner)

    def _activate(self) -> None:
        from toolchain.io import require_file
        from toolchain.trt import import_tensorrt, make_logger
        from toolchain.trt.device import device_info
        from toolchain.trt.plugins import load_plugin_library

        engine_path = require_file(self.engine_path, "TensorRT engine")
        manifest = None
        if self.verify_manifest:
            manifest = manifest_mod.read_manifest(engine_path)
        elif manifest_mod.manifest_path(engine_path).is_file():
            try:  # only to find the plugin library and the I/O; nothing is verified
                manifest = manifest_mod.read_manifest(engine_path)
            except ToolchainError:
                manifest = None
        trt = import_tensorrt(lean_ok=True)
        problem = lean_runtime_problem(trt.__name__, manifest, engine_path)
        if problem:
            raise ToolchainError(problem, hint="rebuild it with `toolchain build --version-compatible`, "
                                               "or install the full TensorRT (pip install tensorrt)")

        # Refuse an engine for another TensorRT or GPU *before* loading its plugin library:
        # loading runs the library's code.
        info = device_info(self.device_index)
        if manifest is not None and self.verify_manifest:
            report = compat.require_engine_compat(manifest, engine_path, tensorrt_version=trt.__version__,
                                                  compute_capability=info["compute_capability"], gpu_name=info["name"])
            self.compat_notes = report.notes
        plugin = self._plugin_to_load(manifest)
        if plugin is not None:
            expected = (manifest.get("plugin") or {}).get("sha256") if (manifest and self.verify_manifest) else None
            if self.verify_manifest and manifest and not manifest.get("plugin"):
                raise ToolchainError(f"engine {engine_path} was built without a plugin; refusing to load {plugin}",
                                     hint="pass the plugin library only with engines built with --lrn plugin")
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
        self._backend = _make_backend(self.device_index)
        self._runtime = trt.Runtime(self._logger)
        if host_code_allowed(manifest) and hasattr(self._runtime, "engine_host_code_allowed"):
            # Version-compatible engines carry the plugin library inside; run it only for those
            # whose (verified) manifest says they were built so.
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ToolchainError(f"TensorRT could not deserialize {engine_path}: {self._logger.last_error()}",
                                 hint="rebuild it with this TensorRT on this GPU")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ToolchainError(f"TensorRT could not create an execution context for {engine_path}: "
                                 f"{self._logger.last_error()}", hint="is the GPU out of memory?")
        self.io = engine_io(trt, self._engine)
        if manifest is not None:
            recorded = [s["name"] for s in manifest["io"]["inputs"] + manifest["io"]["outputs"]]
            actual_names = [s["name"] for s in self.io["inputs"] + self.io["outputs"]]
            if sorted(recorded) != sorted(actual_names):
                raise ToolchainError(f"engine {engine_path} has I/O {actual_names}, its manifest records {recorded}")
        self.manifest = manifest
        self._input_names = [s["name"] for s in self.io["inputs"]]
        self._output_names = [s["name"] for s in self.io["outputs"]]
        self._dtypes = {s["name"]: s["dtype"] for s in self.io["inputs"] + self.io["outputs"]}
        self._shapes: dict[str, tuple] = {}
        self._graphs = GraphCache(MAX_GRAPHS, self._release_graph)

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
        self._backend.synchronize()

    def _release_graph(self, graph) -> None:
        # The graph (and the context its entry held) may still run: wait before freeing either.
        self._synchronize()
        self._backend.destroy_graph(graph)

    def _deactivate(self) -> None:
        try:
            # Every stream this runner enqueued on must be done before its buffers, graphs
            # and contexts go: the backend's own and infer_torch's.
            self._synchronize()
            self._graphs.clear()
            self.__dict__.pop("_torch_state", None)
            self._backend.close()
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
        compat.check_input_shapes(self.io["inputs"], shapes)

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
        return self._backend.infer_numpy(self, arrays, shapes)

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
                tensor = tensor.to(getattr(torch, _TORCH_DTYPES[expected]))
            tensors[name] = tensor.contiguous()
        return _torch_infer(self, tensors, shapes)


# ---------------------------------------------------------------------- CUDA graph bookkeeping (pure)


class GraphCache:
    """Which execution context and CUDA graph serve which key (input shapes, dtypes, addresses).

    Each entry owns its own execution context: TensorRT updates a context's per-shape
    state only on the next ``enqueueV3``, so a graph captured on a context that has
    since run another shape would replay stale state (NVIDIA/TensorRT#3798). An LRU of
    ``capacity`` entries; ``destroy(graph)`` runs for every entry that leaves.
    """

    def __init__(self, capacity: int, destroy=lambda graph: None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._destroy = destroy
        self._entries: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def keys(self) -> list:
        return list(self._entries)

    def get(self, key) -> dict | None:
        """The entry for ``key`` (marked most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def add(self, key, entry: dict) -> dict:
        """Remember ``entry`` (keys "context" and "graph"); evict the least recently used beyond capacity."""
        if key in self._entries:
            raise ValueError(f"a graph for {key!r} exists already")
        context = entry.get("context")
        if context is None or any(other.get("context") is context for other in self._entries.values()):
            raise ValueError("every CUDA graph needs an execution context of its own")
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            _, old = self._entries.popitem(last=False)
            self._destroy(old.get("graph"))
        return entry

    def drop(self, predicate) -> int:
        """Destroy the entries whose key satisfies ``predicate``; return how many."""
        keys = [k for k in self._entries if predicate(k)]
        for key in keys:
            self._destroy(self._entries.pop(key).get("graph"))
        return len(keys)

    def clear(self) -> None:
        self.drop(lambda key: True)


def host_code_allowed(manifest: dict | None) -> bool:
    """Only an engine whose manifest records a version-compatible build may run host code
    (the plugin library serialized into it)."""
    return bool(manifest and (manifest.get("build") or {}).get("version_compatible"))


def lean_runtime_problem(package: str, manifest: dict | None, engine_path) -> str | None:
    """Why the lean runtime cannot run this engine (None when it can, or when ``package`` is the full one).

    The lean runtime deserializes only version-compatible engines; without a manifest
    TensorRT's own error has to do.
    """
    if package != "tensorrt_lean" or manifest is None or host_code_allowed(manifest):
        return None
    return (f"engine {engine_path} is not version-compatible, and only TensorRT's lean runtime (tensorrt_lean) is "
            "installed, which runs only version-compatible engines")


def plugin_library_for_engine(lrn: str, plugin_library):
    """The plugin library to hand the runner of an engine built with ``--lrn lrn``: only
    plugin engines get one; the runner refuses a library for a native-LRN engine."""
    if lrn not in ("plugin", "native"):
        raise ToolchainError(f"unknown LRN mode {lrn!r}", hint="use plugin or native")
    return plugin_library if lrn == "plugin" else None


def _run_capture(capture, enqueue):
    """``capture(body)`` records ``enqueue()``; an error ending the capture never hides the enqueue's."""
    failure = []

    def body():
        try:
            enqueue()
        except BaseException as exc:  # re-raised below, after the capture has ended
            failure.append(exc)

    try:
        result = capture(body)
    except BaseException:
        if failure:
            raise failure[0] from None
        raise
    if failure:
        raise failure[0]
    return result


# ---------------------------------------------------------------------- torch execution


def _torch_infer(runner: TensorRTRunner, tensors: dict, shapes: dict) -> dict:
    import torch

    device = torch.device("cuda", runner.device_index)
    state = runner.__dict__.setdefault("_torch_state", {})
    if "stream" not in state:
        state["stream"] = torch.cuda.Stream(device=device)
    stream = state["stream"]
    caller = torch.cuda.current_stream(device)
    out_shapes = runner._set_shapes(shapes)
    stream.wait_stream(caller)  # inputs written on the caller's stream must be ready
    with torch.cuda.device(device), torch.cuda.stream(stream):
        if runner.cuda_graph:
            key = ("torch", tuple((n, shapes[n], t.dtype, t.data_ptr()) for n, t in sorted(tensors.items())))
            entry = runner._graphs.get(key)
            if entry is None:
                context = runner._graph_context(shapes)
                outputs = {n: torch.empty(out_shapes[n], dtype=getattr(torch, _TORCH_DTYPES[runner._dtypes[n]]),
                                          device=device) for n in runner._output_names}
                _bind(runner, {**{n: t.data_ptr() for n, t in tensors.items()},
                               **{n: t.data_ptr() for n, t in outputs.items()}}, context)
                # Warm-up at this shape on the graph's own context; also computes this call's result.
                runner._enqueue(stream.cuda_stream, context)
                graph = torch.cuda.CUDAGraph()

                def capture(body):
                    with torch.cuda.graph(graph, stream=stream):
                        body()
                    return graph

                _run_capture(capture, lambda: runner._enqueue(stream.cuda_stream, context))
                # No reference to the inputs: a later call hits this graph only with tensors at the
                # same addresses, shapes and dtypes, which is exactly what the graph reads.
                entry = runner._graphs.add(key, {"graph": graph, "context": context, "outputs": outputs})
            else:
                entry["graph"].replay()
            # The graph writes into its own output buffers: hand out copies.
            result = {n: t.clone() for n, t in entry["outputs"].items()}
        else:
            result = {n: torch.empty(out_shapes[n], dtype=getattr(torch, _TORCH_DTYPES[runner._dtypes[n]]),
                                     device=device) for n in runner._output_names}
            _bind(runner, {**{n: t.data_ptr() for n, t in tensors.items()},
                           **{n: t.data_ptr() for n, t in result.items()}})
            runner._enqueue(stream.cuda_stream)
    for tensor in (*tensors.values(), *result.values()):
        tensor.record_stream(stream)  # the allocator must not reuse them before the stream is done
    caller.wait_stream(stream)
    return result


def _bind(runner: TensorRTRunner, addresses: dict[str, int], context=None) -> None:
    context = context or runner._context
    for name, address in addresses.items():
        if not context.set_tensor_address(name, address):
            raise ToolchainError(f"TensorRT refused the address of tensor {name!r}: {runner._logger.last_error()}")


# ---------------------------------------------------------------------- numpy backends


def cuda_python_driver_requirement(cuda_python_version: str | None) -> str | None:
    """The NVIDIA driver a cuda-python release needs (its CUDA major's minimum), or None if unknown."""
    from toolchain.trt.compat import parse_version

    try:
        major = parse_version(cuda_python_version)[0] if cuda_python_version else None
    except ToolchainError:
        return None
    return CUDA_PYTHON_DRIVERS.get(major)


#: cuda-python major -> minimum NVIDIA driver (Linux) of that CUDA major.
CUDA_PYTHON_DRIVERS = {12: "525.60.13", 13: "580.65.06"}


def choose_backend(cuda_python_error: str | None, cuda_python_version: str | None, torch_installed: bool) -> str:
    """"cuda-python" when it works, else "torch" when installed, else a one-line error naming the driver needed.

    ``cuda_python_error``: None when cuda-python set up the device, else why not ("not installed"
    or the CUDA error, e.g. cudaErrorInsufficientDriver from cuda-python 13 on a driver < 580).
    """
    from toolchain.errors import MissingDependencyError
    from toolchain.trt.device import CUDA_PYTHON_HINT

    if cuda_python_error is None:
        return "cuda-python"
    if torch_installed:
        return "torch"
    if cuda_python_version is None:
        raise MissingDependencyError("neither cuda-python nor torch is installed", hint=CUDA_PYTHON_HINT)
    needed = cuda_python_driver_requirement(cuda_python_version)
    need = f"; cuda-python {cuda_python_version} needs NVIDIA driver >= {needed}" if needed else ""
    raise MissingDependencyError(f"cuda-python cannot use the GPU ({cuda_python_error}){need}",
                                 hint="install the cuda-python of your driver's CUDA major "
                                      "(pip install 'alexnet-trt-toolchain[tensorrt-cu12]' for drivers < 580), or torch with CUDA")


def _cuda_python_version() -> str | None:
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _make_backend(device_index: int):
    """cuda-python when it can talk to the driver (no torch needed), else torch; sets the current device."""
    from toolchain.errors import MissingDependencyError
    from toolchain.trt.device import import_cudart

    error = None
    try:
        import_cudart()
        return _CudaPythonBackend(device_index)
    except MissingDependencyError:
        error = "not installed"
    except ToolchainError as exc:  # e.g. cudaErrorInsufficientDriver: cuda-python 13 on a driver < 580
        error = exc.one_line()
    try:
        import torch  # noqa: F401
        torch_installed = True
    except ImportError:
        torch_installed = False
    choose_backend(error, _cuda_python_version() if error != "not installed" else None, torch_installed)
    return _TorchBackend(device_index)


class _TorchBackend:
    """numpy inference through torch's CUDA tensors (used when cuda-python is missing or cannot run)."""

    def __init__(self, device_index: int):
        import torch

        # Deserializing allocates on the current device: make it cuda:N first.
        torch.cuda.set_device(device_index)

    def infer_numpy(self, runner, arrays, shapes):
        import torch

        device = torch.device("cuda", runner.device_index)
        tensors = {n: torch.from_numpy(a).to(device, non_blocking=False) for n, a in arrays.items()}
        out = _torch_infer(runner, tensors, shapes)
        torch.cuda.current_stream(device).synchronize()
        return {n: t.cpu().numpy() for n, t in out.items()}

    def destroy_graph(self, graph) -> None:
        del graph  # torch.cuda.CUDAGraph frees itself

    def synchronize(self) -> None:
        pass  # torch work runs on the runner's torch stream, which the runner synchronizes

    def close(self) -> None:
        pass


class _CudaPythonBackend:
    """numpy inference with device buffers, a stream and graphs from cuda-python."""

    def __init__(self, device_index: int):
        from toolchain.trt.device import CudaRT

        self.cuda = CudaRT()
        self.cuda.check(self.cuda.rt.cudaSetDevice(device_index), "cudaSetDevice")
        self.stream = self.cuda.stream_create()
        self.handle = int(self.stream)
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)

    def _buffer(self, runner, name: str, nbytes: int) -> int:
        pointer, capacity = self.buffers.get(name, (0, 0))
        if nbytes > capacity:
            if pointer:
                self.cuda.stream_synchronize(self.stream)
                self.cuda.free(pointer)
            # Graphs captured the old addresses: drop them all (buffers only grow, so this is rare).
            runner._graphs.drop(lambda key: key[0] == "numpy")
            pointer, capacity = self.cuda.malloc(nbytes), nbytes
            self.buffers[name] = (pointer, capacity)
        return pointer

    def infer_numpy(self, runner, arrays, shapes):
        import numpy as np

        out_shapes = runner._set_shapes(shapes)
        outputs = {n: np.empty(out_shapes[n], dtype=np.dtype(runner._dtypes[n])) for n in runner._output_names}
        addresses = {n: self._buffer(runner, n, a.nbytes) for n, a in {**arrays, **outputs}.items()}
        for name, array in arrays.items():
            self.cuda.htod_async(addresses[name], array, self.stream)
        key = ("numpy", tuple(sorted(shapes.items())))
        entry = runner._graphs.get(key) if runner.cuda_graph else None
        if entry is not None:
            self.cuda.graph_launch(entry["graph"], self.stream)
        elif runner.cuda_graph:
            context = runner._graph_context(shapes)
            _bind(runner, addresses, context)
            runner._enqueue(self.handle, context)  # the warm-up enqueue at this shape computes this call's result
            graph = self.cuda.capture(self.stream, lambda: runner._enqueue(self.handle, context))
            runner._graphs.add(key, {"graph": graph, "context": context})
        else:
            _bind(runner, addresses)
            runner._enqueue(self.handle)
        for name, array in outputs.items():
            self.cuda.dtoh_async(array, addresses[name], self.stream)
        self.cuda.stream_synchronize(self.stream)
        return outputs

    def destroy_graph(self, graph) -> None:
        if graph is None:
            return
        if hasattr(graph, "replay"):  # a torch graph from infer_torch on the same runner
            return
        self.cuda.graph_destroy(graph)

    def synchronize(self) -> None:
        self.cuda.stream_synchronize(self.stream)

    def close(self) -> None:
        self.cuda.stream_synchronize(self.stream)
        for pointer, _ in self.buffers.values():
            self.cuda.free(pointer)
        self.buffers.clear()
        self.cuda.stream_destroy(self.stream)
