"""CUDA without torch: device queries, device buffers, streams and graphs through cuda-python.

cuda-python's runtime bindings live at ``cuda.bindings.runtime`` (cuda-python >= 12.6,
and 13.x) and at ``cuda.cudart`` in older releases; every call returns a tuple whose
first element is a ``cudaError_t``. :func:`device_info` falls back to torch when
cuda-python is missing, so the builder needs only one of the two.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolchain.errors import MissingDependencyError, ToolchainError
from toolchain.trt.compat import format_cuda_version, parse_nvidia_driver_version

CUDA_PYTHON_HINT = "pip install cuda-python (matching your CUDA major), or install torch with CUDA"
_DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")


def import_cudart():
    """The cuda-python runtime module, or a one-line MissingDependencyError."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # older cuda-python
        return cudart
    except ImportError:
        raise MissingDependencyError("cuda-python is not installed", hint=CUDA_PYTHON_HINT) from None


class CudaRT:
    """Thin checked wrapper over the few cuda-python runtime calls the runner needs."""

    def __init__(self):
        self.rt = import_cudart()

    def check(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, name = self.rt.cudaGetErrorName(err)
            _, text = self.rt.cudaGetErrorString(err)
            raise ToolchainError(f"CUDA {what} failed: {_text(name)}: {_text(text)}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    # memory
    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.check(self.rt.cudaFree(ptr), "cudaFree")

    def htod_async(self, dst: int, host_array, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(dst, host_array.ctypes.data, host_array.nbytes, kind, stream), "host-to-device copy")

    def dtoh_async(self, host_array, src: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(host_array.ctypes.data, src, host_array.nbytes, kind, stream), "device-to-host copy")

    # streams
    def stream_create(self):
        return self.check(self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking), "cudaStreamCreate")

    def stream_synchronize(self, stream) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream) -> None:
        self.check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    # graphs
    def capture(self, stream, enqueue) -> object:
        """Capture what ``enqueue()`` puts on ``stream`` into an instantiated graph."""
        # Thread-local, as trtexec captures (samples/common/sampleDevice.h): in global mode a
        # cudaMalloc from any other thread of the process (torch, a data loader) during the
        # capture fails, or invalidates it.
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            # End the capture but report the enqueue's error, not the (consequent) capture error.
            result = self.rt.cudaStreamEndCapture(stream)
            graph = result[1] if isinstance(result, tuple) and len(result) > 1 else None
            if graph is not None and result[0] == self.rt.cudaError_t.cudaSuccess:
                self.rt.cudaGraphDestroy(graph)
            raise
        graph = self.check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            # (graph, flags) -> (err, exec) in every cuda-python from 11.4 to 13.x; cudaGraphInstantiate
            # took (graph, logBuffer, size) in cuda-python 11.
            return self.check(self.rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        finally:
            self.check(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def graph_launch(self, graph_exec, stream) -> None:
        self.check(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def graph_destroy(self, graph_exec) -> None:
        self.check(self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")

    # queries
    def device_properties(self, device: int = 0) -> dict:
        self.check(self.rt.cudaSetDevice(device), "cudaSetDevice")
        props = self.check(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        runtime = self.check(self.rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
        driver = self.check(self.rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
        return {"name": _text(props.name), "compute_capability": f"{props.major}.{props.minor}",
                "total_memory_bytes": int(props.totalGlobalMem),
                "cuda_runtime": format_cuda_version(int(runtime)), "cuda_driver": format_cuda_version(int(driver))}


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).split(b"\0", 1)[0].decode(errors="replace")
    return str(value)


def nvidia_driver_version() -> str | None:
    """The kernel driver's version ("575.57.08"), from /proc or NVML; None when neither answers."""
    try:
        found = parse_nvidia_driver_version(_DRIVER_VERSION_FILE.read_text())
        if found:
            return found
    except OSError:
        pass
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            return _text(pynvml.nvmlSystemGetDriverVersion())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML absent or without a driver: the version stays unknown
        return None


def device_info(device: int = 0) -> dict:
    """GPU name, compute capability, CUDA runtime/driver versions and the NVIDIA driver version.

    Uses cuda-python, else torch; raises MissingDependencyError when neither can
    see a GPU (building or running an engine needs one anyway).
    """
    info = None
    errors = []
    try:
        info = CudaRT().device_properties(device)
        info["source"] = "cuda-python"
    except ToolchainError as exc:
        errors.append(exc.one_line())
    if info is None:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(device)
                info = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                        "total_memory_bytes": int(props.total_memory), "cuda_runtime": torch.version.cuda,
                        "cuda_driver": None, "source": "torch"}
            else:
                errors.append("torch sees no CUDA GPU")
        except ImportError:
            errors.append("torch is not installed")
    if info is None:
        raise MissingDependencyError("no CUDA GPU could be queried (" + "; ".join(errors) + ")", hint=CUDA_PYTHON_HINT)
    info["nvidia_driver"] = nvidia_driver_version()
    info["device_index"] = device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        info["cuda_visible_devices"] = visible
    return info
