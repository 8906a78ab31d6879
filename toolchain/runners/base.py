"""The runner protocol (activate / infer / deactivate, plus the timing calls) and device I/O."""

from __future__ import annotations

from toolchain.artifacts import INPUT_NAME
from toolchain.errors import ToolchainError



class DeviceIO:
    """Inputs for timing one batch size: an FP32 pinned host copy and an FP32 device copy.

    Every backend's copy metric moves the same bytes (the FP32 input a client sends,
    from pinned memory); a backend that computes in FP16 casts on the device, inside
    its compute step. ``copy_out`` copies an output into a pinned host buffer.
    """

    def __init__(self, shape, *, device: str, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        host = torch.randn(*shape, generator=generator, dtype=torch.float32)
        self.device = device
        self.shape = tuple(int(d) for d in shape)
        self.on_cuda = str(device).startswith("cuda")
        self.host_input = host.pin_memory() if self.on_cuda else host
        self.device_input = host.to(device) if self.on_cuda else host
        self.host_output = None

    @property
    def nbytes(self) -> int:
        return self.host_input.numel() * self.host_input.element_size()

    def copy_in(self) -> None:
        if self.on_cuda:
            self.device_input.copy_(self.host_input, non_blocking=True)

    def copy_out(self, output) -> None:
        import torch

        if not self.on_cuda or output is None or not isinstance(output, torch.Tensor):
            return
        if self.host_output is None or self.host_output.shape != output.shape or \
                self.host_output.dtype != output.dtype:
            self.host_output = torch.empty(output.shape, dtype=output.dtype, pin_memory=True)
        self.host_output.copy_(output, non_blocking=True)


class Runner:
    """Base class: subclasses implement ``_activate``, ``_infer`` and ``_deactivate``; timing: ``_prepare``, ``run``.

    Class attributes describe the row a benchmark prints: ``device`` ("cpu"/"cuda"),
    ``precision`` ("fp32"/"fp16"), ``gpu_events`` (its work is ordered on the caller's
    current CUDA stream, so CUDA events around ``run()`` see it), ``description``.
    """

    name = "runner"
    device = "cpu"
    precision = "fp32"
    description = ""
    gpu_events = True

    def __init__(self):
        self.is_active = False
        self.io: DeviceIO | None = None
        self.output = None
        self.input_shape: tuple | None = None  # (C, H, W) for timing; subclasses set it

    # ------------------------------------------------------------------ lifecycle

    def activate(self) -> None:
        if not self.is_active:
            self._activate()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.io = self.output = None
            self._deactivate()
            self.is_active = False

    def infer(self, feed: dict) -> dict:
        """Host arrays in, host arrays out (parity)."""
        self._require_active()
        return self._infer(feed)

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()
        return False

    def _require_active(self) -> None:
        if not self.is_active:
            raise ToolchainError(f"runner {self.name} is not active", hint="use it in a 'with' block")

    # Optional: a fixed batch size the backend needs (None = any), and the largest it takes.
    @property
    def static_batch(self) -> int | None:
        return None

    @property
    def max_batch(self) -> int | None:
        return None

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, feed: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ timing (device-resident)

    @property
    def timing_device(self) -> str:
        return "cuda" if str(self.device).startswith("cuda") else "cpu"

    def prepare(self, batch_size: int, *, seed: int = 0) -> None:
        """Make the device-resident input for ``batch_size`` (and whatever ``run`` needs at that shape)."""
        self._require_active()
        if not self.input_shape:
            raise ToolchainError(f"runner {self.name} does not know its input shape")
        self.io = DeviceIO((int(batch_size), *self.input_shape), device=self.device, seed=seed)
        self.output = None
        self._prepare(int(batch_size))

    def _prepare(self, batch_size: int) -> None:
        pass

    def run(self) -> None:  # pragma: no cover - abstract
        """One inference on ``self.io.device_input``; leaves the result (on the device) in ``self.output``."""
        raise NotImplementedError

    def h2d(self) -> None:
        self.io.copy_in()

    def d2h(self) -> None:
        self.io.copy_out(self.output)

    def sync(self) -> None:
        if self.timing_device == "cuda":
            import torch

            torch.cuda.synchronize()

    def settings(self) -> dict:
        """Settings that change its speed (threads, layout, TF32, ...), recorded with the results."""
        return {}

    def describe(self) -> dict:
        return {"name": self.name, "device": self.timing_device, "precision": self.precision,
                "description": self.description, "settings": self.settings()}


# ---------------------------------------------------------------------- the run step of parity


def check_batch_sizes(batch_sizes, inputs: int, *, more: str = "more inputs") -> None:
    """A batch size larger than the inputs would be reported "at" a size never run: refuse it."""
    too_big = [b for b in batch_sizes if b > inputs]
    if too_big:
        raise ToolchainError(f"batch size {too_big[0]} is larger than the {inputs} input(s) compared",
                             hint=f"pass --batch-sizes up to {inputs}, or {more}")


def iter_batches(inputs, batch_size: int, labels=None, *, static_batch: int | None = None):
    """Yield (feed array, labels or None, valid rows) in order; pads the last batch to ``static_batch``."""
    import numpy as np

    n = len(inputs)
    for start in range(0, n, batch_size):
        chunk = inputs[start:start + batch_size]
        valid = len(chunk)
        if static_batch is not None and valid < static_batch:
            pad = np.zeros((static_batch - valid, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        yield chunk, (None if labels is None else labels[start:start + batch_size]), valid


def collect_outputs(runner, inputs, batch_size: int, *, input_name: str = INPUT_NAME) -> dict:
    """Run the (active) ``runner`` over ``inputs`` in batches of ``batch_size`` (padded to a static batch
    where it has one); {output name: array over all inputs}. What parity compares."""
    import numpy as np

    parts: dict[str, list] = {}
    for chunk, _, valid in iter_batches(inputs, int(batch_size), static_batch=runner.static_batch):
        for name, value in runner.infer({input_name: chunk}).items():
            parts.setdefault(name, []).append(np.asarray(value)[:valid])
    return {name: np.concatenate(values) for name, values in parts.items()}
