"""How a :class:`~toolchain.trt.runtime.TensorRTRunner` executes: device buffers, streams and
CUDA graphs through cuda-python or torch, and which execution context serves which graph.

:class:`GraphCache` (pure) gives every captured CUDA graph an execution context of its own;
:func:`choose_cuda_io` (pure) picks cuda-python where it can reach the driver, else torch,
else fails naming the driver cuda-python needs.
"""

from __future__ import annotations

from collections import OrderedDict

from typing import TYPE_CHECKING

from toolchain.errors import ToolchainError

if TYPE_CHECKING:
    from toolchain.trt.runtime import TensorRTRunner

#: Graphs kept per runner (an LRU): each pins its shapes' buffers.
MAX_GRAPHS = 8
TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "int8": "int8",
                 "int32": "int32", "int64": "int64", "bool": "bool", "uint8": "uint8"}

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

def run_capture(capture, enqueue):
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


def torch_infer(runner: TensorRTRunner, tensors: dict, shapes: dict) -> dict:
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
                outputs = {n: torch.empty(out_shapes[n], dtype=getattr(torch, TORCH_DTYPES[runner._dtypes[n]]),
                                          device=device) for n in runner._output_names}
                bind(runner, {**{n: t.data_ptr() for n, t in tensors.items()},
                               **{n: t.data_ptr() for n, t in outputs.items()}}, context)
                # Warm-up at this shape on the graph's own context; also computes this call's result.
                runner._enqueue(stream.cuda_stream, context)
                graph = torch.cuda.CUDAGraph()

                def capture(body):
                    # Thread-local, as trtexec and CudaRT.capture: other threads' allocations stay legal.
                    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                        body()
                    return graph

                run_capture(capture, lambda: runner._enqueue(stream.cuda_stream, context))
                # No reference to the inputs: a later call hits this graph only with tensors at the
                # same addresses, shapes and dtypes, which is exactly what the graph reads.
                entry = runner._graphs.add(key, {"graph": graph, "context": context, "outputs": outputs})
            else:
                entry["graph"].replay()
            # The graph writes into its own output buffers: hand out copies.
            result = {n: t.clone() for n, t in entry["outputs"].items()}
        else:
            result = {n: torch.empty(out_shapes[n], dtype=getattr(torch, TORCH_DTYPES[runner._dtypes[n]]),
                                     device=device) for n in runner._output_names}
            bind(runner, {**{n: t.data_ptr() for n, t in tensors.items()},
                           **{n: t.data_ptr() for n, t in result.items()}})
            runner._enqueue(stream.cuda_stream)
    for tensor in (*tensors.values(), *result.values()):
        tensor.record_stream(stream)  # the allocator must not reuse them before the stream is done
    caller.wait_stream(stream)
    return result


def bind(runner: TensorRTRunner, addresses: dict[str, int], context=None) -> None:
    context = context or runner._context
    for name, address in addresses.items():
        if not context.set_tensor_address(name, address):
            raise ToolchainError(f"TensorRT refused the address of tensor {name!r}: {runner._logger.last_error()}")


# ---------------------------------------------------------------------- numpy through cuda-python or torch


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


def choose_cuda_io(cuda_python_error: str | None, cuda_python_version: str | None, torch_installed: bool) -> str:
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


def cuda_python_version() -> str | None:
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def make_cuda_io(device_index: int):
    """cuda-python when it can talk to the driver (no torch needed), else torch; sets the current device."""
    from toolchain.errors import MissingDependencyError
    from toolchain.trt.device import import_cudart

    error = None
    try:
        import_cudart()
        return CudaPythonIO(device_index)
    except MissingDependencyError:
        error = "not installed"
    except ToolchainError as exc:  # e.g. cudaErrorInsufficientDriver: cuda-python 13 on a driver < 580
        error = exc.one_line()
    try:
        import torch  # noqa: F401
        torch_installed = True
    except ImportError:
        torch_installed = False
    choose_cuda_io(error, cuda_python_version() if error != "not installed" else None, torch_installed)
    return TorchCudaIO(device_index)


class TorchCudaIO:
    """numpy inference through torch's CUDA tensors (used when cuda-python is missing or cannot run)."""

    def __init__(self, device_index: int):
        import torch

        # Deserializing allocates on the current device: make it cuda:N first.
        torch.cuda.set_device(device_index)

    def infer_numpy(self, runner, arrays, shapes):
        import torch

        device = torch.device("cuda", runner.device_index)
        tensors = {n: torch.from_numpy(a).to(device, non_blocking=False) for n, a in arrays.items()}
        out = torch_infer(runner, tensors, shapes)
        torch.cuda.current_stream(device).synchronize()
        return {n: t.cpu().numpy() for n, t in out.items()}

    def destroy_graph(self, graph) -> None:
        del graph  # torch.cuda.CUDAGraph frees itself

    def synchronize(self) -> None:
        pass  # torch work runs on the runner's torch stream, which the runner synchronizes

    def close(self) -> None:
        pass


class CudaPythonIO:
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

        # infer_torch may still run the main execution context on the torch stream; one
        # context must never run on two streams at once (its activation memory is shared).
        torch_stream = runner.__dict__.get("_torch_state", {}).get("stream")
        if torch_stream is not None:
            torch_stream.synchronize()
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
            bind(runner, addresses, context)
            runner._enqueue(self.handle, context)  # the warm-up enqueue at this shape computes this call's result
            try:
                graph = self.cuda.capture(self.stream, lambda: runner._enqueue(self.handle, context))
            except BaseException:
                # The warm-up may still run on ``context``, which goes with this frame: wait first.
                try:
                    self.cuda.stream_synchronize(self.stream)
                except ToolchainError:
                    pass  # the capture's error is the one to report
                raise
            runner._graphs.add(key, {"graph": graph, "context": context})
        else:
            bind(runner, addresses)
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
