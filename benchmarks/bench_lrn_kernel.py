"""Benchmark the FusedLRN CUDA kernel against PyTorch's ``F.local_response_norm``.

Shapes: the 2012 paper's LRN1 (96x55x55) and LRN2 (256x27x27) at batch 1, 8, 64, 256,
in FP32 and FP16 with the paper's parameters (size 5, alpha 5e-4 in PyTorch's
convention, beta 0.75, k 2).

Timing: CUDA events around one call, after warm-up, many repetitions; medians with
p10/p90. Before each timed call the L2 cache is flushed (a write over a buffer larger
than L2) and the GPU is kept busy with a short sleep kernel, so the host has queued
the timed work before the GPU reaches it and launch overhead does not show up as
GPU time. Bandwidth = (bytes read + bytes written) / time; the reference is a
device-to-device copy of a same-size buffer (``y.copy_(x)``) timed the same way in
the same run.

Targets: at batch 256 the kernel reaches >= 80% of copy bandwidth, and in FP16 it
is >= 6x faster than PyTorch (which runs about eight kernels).

    python benchmarks/bench_lrn_kernel.py [--reps 200] [--batches 1,8,64,256] [--library PATH]

Writes benchmarks/results/lrn_kernel_<gpu>_<time>.json and .md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPES = {"LRN1": (96, 55, 55), "LRN2": (256, 27, 27)}
PARAMS = dict(size=5, alpha=5e-4, beta=0.75, bias=2.0)  # the paper's LRN, PyTorch convention
TARGET_COPY_FRACTION = 0.80  # at batch 256
TARGET_FP16_SPEEDUP = 6.0


def _driver_info() -> dict:
    info = {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["driver"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0:
            info["driver_cuda_api"] = f"{version.value // 1000}.{(version.value % 1000) // 10}"
    except OSError:
        pass
    return info


class Timer:
    """Times one GPU operation per repetition with events, hiding host launch overhead."""

    def __init__(self, torch, l2_bytes: int):
        self.torch = torch
        # Twice L2 (at least 64 MiB) so a write over it evicts the previous iteration's data.
        self.flush = torch.empty(max(2 * l2_bytes, 64 << 20), dtype=torch.uint8, device="cuda")
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn, reps: int, warmup: int) -> np.ndarray:
        torch = self.torch
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = np.empty(reps)
        for i in range(reps):
            self.flush.zero_()
            torch.cuda._sleep(200_000)  # ~0.1 ms: the host queues fn before the GPU gets there
            self.start.record()
            fn()
            self.end.record()
            self.end.synchronize()
            times[i] = self.start.elapsed_time(self.end) * 1e-3  # seconds
        return times


def _stats(times: np.ndarray) -> dict:
    p10, p50, p90 = np.percentile(times, [10, 50, 90])
    return {"median_us": p50 * 1e6, "p10_us": p10 * 1e6, "p90_us": p90 * 1e6}


def run(args) -> dict:
    import torch
    import torch.nn.functional as F

    from toolchain.errors import ToolchainError
    from toolchain.plugin import DTYPE_CODES, error_string, load_kernel_library

    if not torch.cuda.is_available():
        raise SystemExit("bench_lrn_kernel: no CUDA GPU is available (torch.cuda.is_available() is False); "
                         "run it on a machine with an NVIDIA GPU")
    try:
        lib = load_kernel_library(args.library)
    except ToolchainError as exc:
        raise SystemExit(f"bench_lrn_kernel: {exc.one_line()}") from None

    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 << 20)
    timer = Timer(torch, l2_bytes)
    stream = torch.cuda.current_stream()

    def kernel_fn(x, y):
        n, c, h, w = x.shape
        code_dtype = DTYPE_CODES[str(x.dtype).removeprefix("torch.")]

        def call():
            code = lib.toolchain_lrn_forward(x.data_ptr(), y.data_ptr(), code_dtype, n, c, h, w, PARAMS["size"],
                                             PARAMS["alpha"], PARAMS["beta"], PARAMS["bias"], stream.cuda_stream)
            if code != 0:
                raise RuntimeError(f"toolchain_lrn_forward failed: {error_string(lib, code)}")
        return call

    rows = []
    for dtype in (torch.float32, torch.float16):
        for name, (c, h, w) in SHAPES.items():
            for batch in args.batches:
                x = torch.randn(batch, c, h, w, device=device).to(dtype)
                y = torch.empty_like(x)
                copy_dst = torch.empty_like(x)
                nbytes = 2 * x.numel() * x.element_size()  # read x + write y

                kernel = kernel_fn(x, y)
                kernel()
                torch.cuda.synchronize()
                ref = F.local_response_norm(x.float(), PARAMS["size"], PARAMS["alpha"], PARAMS["beta"], PARAMS["bias"])
                max_rel_err = float(((y.float() - ref).abs() / (ref.abs() + 1e-3)).max())

                t_kernel = timer(kernel, args.reps, args.warmup)
                t_torch = timer(lambda x=x: F.local_response_norm(x, PARAMS["size"], PARAMS["alpha"], PARAMS["beta"],
                                                                  PARAMS["bias"]), args.reps, args.warmup)
                t_copy = timer(lambda x=x, dst=copy_dst: dst.copy_(x), args.reps, args.warmup)

                k, t, cp = _stats(t_kernel), _stats(t_torch), _stats(t_copy)
                kernel_gbs = nbytes / (k["median_us"] * 1e-6) / 1e9
                copy_gbs = nbytes / (cp["median_us"] * 1e-6) / 1e9
                rows.append({
                    "dtype": str(dtype).removeprefix("torch."), "layer": name, "batch": batch,
                    "shape": [batch, c, h, w], "bytes_moved": nbytes,
                    "kernel": k, "torch": t, "copy": cp,
                    "kernel_gbs": kernel_gbs, "copy_gbs": copy_gbs,
                    "fraction_of_copy": kernel_gbs / copy_gbs,
                    "speedup_vs_torch": t["median_us"] / k["median_us"],
                    "max_rel_err_vs_fp32_torch": max_rel_err,
                })
                del x, y, copy_dst, ref
                torch.cuda.empty_cache()

    at_256 = [r for r in rows if r["batch"] == max(args.batches)]
    targets = {
        "batch": max(args.batches),
        "copy_fraction_target": TARGET_COPY_FRACTION,
        "copy_fraction_min": min(r["fraction_of_copy"] for r in at_256),
        "fp16_speedup_target": TARGET_FP16_SPEEDUP,
        "fp16_speedup_min": min(r["speedup_vs_torch"] for r in at_256 if r["dtype"] == "float16"),
    }
    targets["copy_fraction_met"] = targets["copy_fraction_min"] >= TARGET_COPY_FRACTION
    targets["fp16_speedup_met"] = targets["fp16_speedup_min"] >= TARGET_FP16_SPEEDUP

    return {
        "benchmark": "lrn_kernel",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device),
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "cuda_runtime_torch": torch.version.cuda,
        "torch": torch.__version__,
        "python": platform.python_version(),
        **_driver_info(),
        "params": PARAMS,
        "reps": args.reps,
        "warmup": args.warmup,
        "kernel_library": str(Path(lib._name).resolve()),
        "rows": rows,
        "targets": targets,
    }


def _markdown(result: dict) -> str:
    lines = [
        f"# FusedLRN kernel vs PyTorch — {result['device']}",
        "",
        f"{result['timestamp']} · driver {result.get('driver', '?')} · CUDA (torch) {result['cuda_runtime_torch']} · "
        f"torch {result['torch']} · size={result['params']['size']} alpha={result['params']['alpha']} "
        f"beta={result['params']['beta']} k={result['params']['bias']} · {result['reps']} reps, medians [p10–p90]",
        "",
        "| dtype | layer | batch | kernel µs | torch µs | copy µs | kernel GB/s | copy GB/s | % of copy | speedup |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        k, t, c = r["kernel"], r["torch"], r["copy"]
        lines.append(
            f"| {r['dtype']} | {r['layer']} | {r['batch']} | {k['median_us']:.1f} [{k['p10_us']:.1f}–{k['p90_us']:.1f}] | "
            f"{t['median_us']:.1f} [{t['p10_us']:.1f}–{t['p90_us']:.1f}] | {c['median_us']:.1f} | "
            f"{r['kernel_gbs']:.0f} | {r['copy_gbs']:.0f} | {100 * r['fraction_of_copy']:.0f}% | "
            f"{r['speedup_vs_torch']:.1f}x |")
    tg = result["targets"]
    lines += [
        "",
        f"Targets at batch {tg['batch']}: kernel >= {100 * tg['copy_fraction_target']:.0f}% of copy bandwidth "
        f"(worst {100 * tg['copy_fraction_min']:.0f}%: {'met' if tg['copy_fraction_met'] else 'NOT met'}); "
        f"FP16 >= {tg['fp16_speedup_target']:.0f}x faster than PyTorch "
        f"(worst {tg['fp16_speedup_min']:.1f}x: {'met' if tg['fp16_speedup_met'] else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"FusedLRN vs F.local_response_norm — {result['device']} (medians, µs)")
    for col in ("dtype", "layer", "batch", "kernel", "p10–p90", "torch", "copy", "kernel GB/s", "copy GB/s",
                "% copy", "speedup", "max rel err"):
        table.add_column(col, justify="left" if col in ("dtype", "layer") else "right")
    for r in result["rows"]:
        k = r["kernel"]
        table.add_row(r["dtype"], r["layer"], str(r["batch"]), f"{k['median_us']:.1f}",
                      f"{k['p10_us']:.1f}–{k['p90_us']:.1f}", f"{r['torch']['median_us']:.1f}",
                      f"{r['copy']['median_us']:.1f}", f"{r['kernel_gbs']:.0f}", f"{r['copy_gbs']:.0f}",
                      f"{100 * r['fraction_of_copy']:.0f}%", f"{r['speedup_vs_torch']:.1f}x",
                      f"{r['max_rel_err_vs_fp32_torch']:.1e}")
    console = Console()
    console.print(table)
    tg = result["targets"]
    console.print(
        f"batch {tg['batch']}: worst {100 * tg['copy_fraction_min']:.0f}% of copy bandwidth "
        f"(target {100 * tg['copy_fraction_target']:.0f}%: {'met' if tg['copy_fraction_met'] else 'NOT met'}); "
        f"worst FP16 speedup {tg['fp16_speedup_min']:.1f}x "
        f"(target {tg['fp16_speedup_target']:.0f}x: {'met' if tg['fp16_speedup_met'] else 'NOT met'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="timed repetitions per measurement")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", default="1,8,64,256", help="comma-separated batch sizes")
    parser.add_argument("--library", default=None, help="libtoolchain_lrn_kernels.so (default: toolchain.plugin search)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if not args.batches or min(args.batches) < 1 or args.reps < 1:
        parser.error("--batches and --reps must be positive")

    result = run(args)
    _print_table(result)

    from toolchain.io import write_json_atomic, write_text_atomic

    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["device"]).strip("-").lower()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = args.out_dir / f"lrn_kernel_{slug}_{stamp}"
    write_json_atomic(base.with_suffix(".json"), result)
    write_text_atomic(base.with_suffix(".md"), _markdown(result))
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.md')}")
    tg = result["targets"]
    return 1 if args.strict and not (tg["copy_fraction_met"] and tg["fp16_speedup_met"]) else 0


if __name__ == "__main__":
    sys.exit(main())
