"""What a measurement ran on: host, libraries, GPU (through torch and NVML), TensorRT.

:func:`capture_environment` never raises: every probe is guarded and a probe that
cannot answer leaves its field ``None`` (with the reason under ``"notes"``), because
a benchmark result must always say what it ran on, also where parts are missing.
:func:`gpu_state` is the NVML snapshot (clocks, temperature, power, throttle
reasons) taken before and after a benchmark, so thermal throttling shows up in the
result. NVML comes from the optional ``nvidia-ml-py`` package (``import pynvml``).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

from toolchain import __version__


def cuda_unavailable() -> str | None:
    """Why no CUDA GPU can be used here (no torch, or no device), or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


def cpu_model() -> str | None:
    """The CPU's marketing name ("AMD EPYC 7B13"), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(module_name: str) -> str | None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception:  # ImportError, or a broken native library raising OSError
        return None
    return str(getattr(module, "__version__", "unknown"))


def _git_commit() -> str | None:
    """The checkout's commit (read from .git, no subprocess), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = root / ref
            if ref_file.is_file():
                return ref_file.read_text().strip()
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
            return None
        return head
    except OSError:
        return None


def _torch_info(notes: list[str]) -> dict:
    info: dict = {"torch": None, "torch_cuda": None, "cudnn": None, "cuda_available": False, "gpus": []}
    try:
        import torch
    except ImportError as exc:
        notes.append(f"torch: {exc}")
        return info
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["threads"] = torch.get_num_threads()
    try:
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception as exc:
        notes.append(f"cudnn: {exc}")
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                info["gpus"].append({"index": index, "name": props.name,
                                     "compute_capability": f"{props.major}.{props.minor}",
                                     "total_memory_gib": round(props.total_memory / 2**30, 1),
                                     "multiprocessors": props.multi_processor_count})
    except Exception as exc:  # a driver/runtime mismatch raises here
        notes.append(f"torch.cuda: {exc}")
    return info


def _onnxruntime_info(notes: list[str]) -> dict:
    try:
        import onnxruntime as ort
    except Exception as exc:
        notes.append(f"onnxruntime: {exc}")
        return {"onnxruntime": None, "onnxruntime_providers": []}
    return {"onnxruntime": ort.__version__, "onnxruntime_providers": list(ort.get_available_providers())}


def _tensorrt_info(notes: list[str]) -> dict:
    from toolchain.trt import tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        notes.append(reason)
    # The lean runtime runs version-compatible engines where the full TensorRT is absent.
    return {"tensorrt": _version("tensorrt") if ok else None, "tensorrt_status": reason,
            "tensorrt_lean": _version("tensorrt_lean")}


def _nvml():
    """The initialised ``pynvml`` module, or raises (ImportError / NVMLError)."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)


def gpu_state(index: int = 0) -> dict | None:
    """NVML snapshot of GPU ``index``: clocks, temperature, power, utilisation, throttle reasons.

    None without NVML or a GPU. Cheap enough to call before and after each benchmark.
    """
    try:
        nvml = _nvml()
    except Exception:
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        state: dict = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        probes = {
            "name": lambda: _text(nvml.nvmlDeviceGetName(handle)),
            "temperature_c": lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            "sm_clock_mhz": lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "max_sm_clock_mhz": lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "max_mem_clock_mhz": lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "power_w": lambda: round(nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1),
            "power_limit_w": lambda: round(nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0, 1),
            "utilization_gpu_pct": lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "memory_used_mib": lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used // 2**20),
            "persistence_mode": lambda: bool(nvml.nvmlDeviceGetPersistenceMode(handle)),
            "clocks_throttle_reasons": lambda: hex(int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))),
        }
        for key, probe in probes.items():
            try:
                state[key] = probe()
            except Exception:  # not supported on this GPU/driver (e.g. MIG slices)
                state[key] = None
        return state
    except Exception:
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def capture_environment(*, gpu_index: int = 0) -> dict:
    """Host, library and GPU facts as a JSON-able dict; never raises."""
    notes: list[str] = []
    env: dict = {
        "captured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "toolchain": __version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": _version("numpy"),
        "onnx": _version("onnx"),
    }
    try:
        env["affinity_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        env["affinity_cpus"] = None
    env.update(_torch_info(notes))
    env.update(_onnxruntime_info(notes))
    try:
        env.update(_tensorrt_info(notes))
    except Exception as exc:
        notes.append(f"tensorrt probe: {exc}")
        env.update({"tensorrt": None, "tensorrt_status": str(exc)})
    try:
        from toolchain.trt.device import nvidia_driver_version

        env["nvidia_driver"] = nvidia_driver_version()
    except Exception as exc:
        env["nvidia_driver"] = None
        notes.append(f"driver: {exc}")
    env["gpu_name"] = env["gpus"][gpu_index]["name"] if len(env["gpus"]) > gpu_index else None
    env["nvml"] = gpu_state(gpu_index) if env["cuda_available"] else None
    if env["cuda_available"] and env["nvml"] is None:
        notes.append("NVML unavailable (pip install nvidia-ml-py): no clocks or temperature recorded")
    env["notes"] = notes
    return env


def describe_device(env: dict) -> str:
    """One line naming the machine: the GPU when there is one, else the CPU."""
    if env.get("gpu_name"):
        driver = f", driver {env['nvidia_driver']}" if env.get("nvidia_driver") else ""
        return f"{env['gpu_name']} (CUDA {env.get('torch_cuda')}{driver})"
    return f"CPU: {env.get('cpu') or 'unknown'} ({env.get('affinity_cpus') or env.get('cpu_count')} cores)"
