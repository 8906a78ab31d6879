"""Data-parallel training on torchrun: launch detection, the process group, and the decisions around it.

``torchrun`` starts one process per GPU (or CPU worker) with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment. :func:`launch_from_env`
reads them; :func:`start` initialises ``torch.distributed`` from ``env://``
(gloo on CPU, NCCL on CUDA with one GPU per local rank) with a timeout, so a
rank that died or hangs makes the others fail instead of waiting forever.

The decisions (which backend, global batch, learning-rate scaling, how epoch
sums become metrics) are pure functions, tested without a process group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping

from toolchain.errors import ToolchainError

LR_RULES = ("linear", "none")
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Launch(rank=0, world_size=1, local_rank=0)


def launch_from_env(env: Mapping[str, str] | None = None) -> Launch:
    """``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as torchrun sets them; one process when absent."""
    env = os.environ if env is None else env
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    present = [name for name in names if env.get(name, "") != ""]
    if not present:
        return SINGLE
    if "WORLD_SIZE" not in present or "RANK" not in present:
        raise ToolchainError(f"only {', '.join(present)} of RANK, WORLD_SIZE and LOCAL_RANK are set",
                             hint="launch data-parallel training with torchrun, or unset them for one process")
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK") or rank)
    except ValueError:
        raise ToolchainError("RANK, WORLD_SIZE and LOCAL_RANK must be integers",
                             hint="launch data-parallel training with torchrun") from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ToolchainError(f"RANK {rank} does not fit WORLD_SIZE {world_size}",
                             hint="launch data-parallel training with torchrun")
    return Launch(rank=rank, world_size=world_size, local_rank=local_rank)


def backend_for(device_type: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device_type == "cuda" else "gloo"


def lr_factor(rule: str, global_batch: int, reference_batch: int) -> float:
    """Learning-rate multiplier when the global batch is ``global_batch`` instead of ``reference_batch``.

    ``linear``: scale with the batch (Goyal et al. 2017, "Accurate, Large
    Minibatch SGD"); ``none``: keep the learning rate.
    """
    if rule not in LR_RULES:
        raise ToolchainError(f"unknown learning-rate rule {rule!r}", hint=f"choose one of {', '.join(LR_RULES)}")
    if global_batch < 1 or reference_batch < 1:
        raise ToolchainError("batch sizes must be positive")
    return global_batch / reference_batch if rule == "linear" else 1.0


def batch_plan(per_rank: int, world_size: int, *, lr: float, rule: str) -> dict:
    """What ``model.json`` records about the batch and the learning rate of a run.

    ``--lr`` is the rate for one process's batch; the run uses it scaled by
    ``rule`` to the global batch (``per_rank * world_size``).
    """
    if per_rank < 1:
        raise ToolchainError(f"--batch-size must be at least 1, got {per_rank}")
    global_batch = per_rank * world_size
    factor = lr_factor(rule, global_batch, per_rank)
    return {"batch_size_per_rank": per_rank, "global_batch_size": global_batch,
            "lr_rule": rule, "lr_reference_batch": per_rank, "lr_factor": factor, "base_lr": lr, "lr": lr * factor}


def metrics_from_sums(loss_sum: float, correct1: float, correct5: float, total: float) -> dict:
    """Mean loss, top-1 and top-5 from sums over (possibly several ranks') samples."""
    if total <= 0:
        raise ToolchainError("the dataset split is empty")
    total = int(round(total))
    return {"loss": loss_sum / total, "top1": int(round(correct1)) / total, "top5": int(round(correct5)) / total,
            "samples": total}


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Every ``world_size``-th index from ``rank``: disjoint shards covering all ``n`` samples once.

    Evaluation uses this instead of DistributedSampler, which pads the shards
    with repeated samples and would count them twice.
    """
    return list(range(rank, n, world_size))


def state_digest(module) -> str:
    """sha256 over a module's parameters and buffers (names and bytes), to compare replicas."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Group:
    """This process's membership of a data-parallel run (or a stand-in for one process)."""

    def __init__(self, launch: Launch, backend: str | None = None):
        self.launch = launch
        self.backend = backend

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.launch.rank == 0

    @property
    def distributed(self) -> bool:
        return self.launch.distributed

    def all_sum(self, values: list[float], device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        with collective("summing metrics"):
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def from_main(self, make: Callable[[], object]):
        """Run ``make`` on rank 0 and hand its result, or its ToolchainError, to every rank."""
        if not self.distributed:
            return make()
        import torch.distributed as dist

        payload: list = [None]
        if self.is_main:
            try:
                payload[0] = ("ok", make())
            except ToolchainError as exc:
                payload[0] = ("error", (exc.message, exc.hint))
        with collective("sharing rank 0's state"):
            dist.broadcast_object_list(payload, src=0)
        kind, value = payload[0]
        if kind == "error":
            raise ToolchainError(value[0], hint=value[1])
        return value

    def gather(self, value) -> list:
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        with collective("comparing replicas"):
            dist.all_gather_object(out, value)
        return out


def start(launch: Launch, device_type: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Group:
    """Join the process group of a torchrun launch (nothing to do for one process)."""
    if not launch.distributed:
        return Group(launch)
    import torch.distributed as dist

    if timeout_s <= 0:
        raise ToolchainError(f"--dist-timeout must be positive, got {timeout_s}")
    backend = backend_for(device_type)
    if not dist.is_available() or (backend == "gloo" and not dist.is_gloo_available()) or (
            backend == "nccl" and not dist.is_nccl_available()):
        raise ToolchainError(f"this PyTorch build has no {backend} backend for torch.distributed",
                             hint="install a PyTorch build with distributed support")
    if backend == "nccl":
        # NCCL's watchdog tears the process down once a collective outlives the timeout (torchrun's
        # default too; set here for other launchers), so a lost peer never leaves a GPU rank hanging.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    with collective("joining the process group"):
        dist.init_process_group(backend=backend, init_method="env://", rank=launch.rank,
                                world_size=launch.world_size, timeout=timedelta(seconds=timeout_s))
    return Group(launch, backend)


@contextlib.contextmanager
def sigterm_as_error():
    """Raise on SIGTERM, which torchrun sends to the other workers when one fails.

    The exception unwinds through the atomic writers, so no temporary file is
    left behind, and the worker ends with one line instead of vanishing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def handler(signum, frame):
        raise ToolchainError("data-parallel training stopped: torchrun ended this worker (SIGTERM) because another "
                             "worker failed", hint="see the failing rank's error above, then rerun with --resume")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(group: Group) -> None:
    import torch.distributed as dist

    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


# Words in the RuntimeErrors that gloo, NCCL and c10d raise when a peer is gone or a collective timed out.
_PEER_FAILURE_MARKERS = ("gloo", "nccl", "c10d", "connection closed", "connection reset", "timed out", "timeout",
                         "broken pipe", "processgroup", "watchdog")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the process group broke (rather than a bug or e.g. out-of-memory on this rank)."""
    import torch

    if isinstance(exc, torch.distributed.DistError):
        return True
    if not isinstance(exc, RuntimeError) or isinstance(exc, torch.OutOfMemoryError):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _PEER_FAILURE_MARKERS)


@contextlib.contextmanager
def collective(what: str):
    """Turn a failed or timed-out collective into a one-line error; other errors pass unchanged."""
    try:
        yield
    except RuntimeError as exc:
        if not is_peer_failure(exc):
            raise
        raise lost_peers(what, exc) from None


def lost_peers(what: str, exc: BaseException) -> ToolchainError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = re.sub(r"^\[[^\]]*\]\s*", "", first)  # gloo prefixes its source location
    first = first if len(first) <= 120 else first[:117] + "..."
    return ToolchainError(f"data-parallel training stopped while {what}: another rank failed, hung past "
                          f"--dist-timeout, or could not be reached ({first})",
                          hint="see the failing rank's error above, then rerun with --resume")
