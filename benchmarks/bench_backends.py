"""Time every backend on the paper variant with the one harness (:mod:`toolchain.bench`).

The model is the paper's AlexNet (seeded random weights: timing does not depend on
them) at --image-size (224 by default). The FP32 ONNX for ONNX Runtime is exported
on the fly; with --build-engines (needs TensorRT, a GPU and the plugin library from
`toolchain plugin build`) the FP16 ONNX files are exported and both TensorRT engines
(FusedLRN plugin and native LRN) are built too, else pass existing ones with
--engine/--native-engine.

    python benchmarks/bench_backends.py [--image-size 224] [--batch-sizes 1,8,64,256] [--build-engines]

Every timed row carries a parity verdict against eager FP32 (exit code 4 when one fails).
Writes benchmarks/results/backends_<device>_<time>/ with benchmark.json (device,
versions, GPU clocks/temperature before and after), benchmark.md and the plots.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="paper")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument("--backends", default="all")
    parser.add_argument("--engine", default=None, help="TensorRT engine with the FusedLRN plugin")
    parser.add_argument("--native-engine", default=None, help="TensorRT engine with native LRN")
    parser.add_argument("--build-engines", action="store_true", help="export FP16 ONNX and build both engines")
    parser.add_argument("--include-compile", action="store_true", help="also torch.compile on the CPU")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out-root", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    from rich.console import Console

    from toolchain.bench.sources import benchmark_from_sources
    from toolchain.bench.timing import TimingConfig
    from toolchain.options import parse_batch_sizes
    from toolchain.environment import capture_environment, describe_device
    from toolchain.errors import ToolchainError
    from toolchain.export import export_from_source
    from toolchain.bench.report import benchmark_table, skipped_lines

    console = Console(stderr=True)
    env = capture_environment()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device = env.get("gpu_name") or env.get("cpu") or "cpu"
    out_dir = Path(args.out_root) / f"backends_{_slug(device)}_{args.variant}-{args.image_size}_{stamp}"
    sizes = parse_batch_sizes(args.batch_sizes)
    console.print(f"device: {describe_device(env)}; results in {out_dir}", highlight=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
            tmp = Path(tmp)
            source = dict(variant=args.variant, image_size=args.image_size, num_classes=args.num_classes)
            onnx = tmp / "model-fp32.onnx"
            export_from_source(onnx, **source)
            engine, native_engine = args.engine, args.native_engine
            if args.build_engines:
                from toolchain.trt.builder import build_engine

                fp16 = export_from_source(tmp / "model-fp16.onnx", dtype="fp16", **source).path
                engine = build_engine(fp16, tmp / "model-fp16.engine", max_batch=max(sizes))
                try:
                    native = export_from_source(tmp / "model-fp16-native.onnx", dtype="fp16", lrn="native",
                                                **source).path
                    native_engine = build_engine(native, tmp / "model-fp16-native.engine", lrn="native",
                                                 max_batch=max(sizes))
                except ToolchainError as exc:
                    console.print(f"native-LRN engine not built: {exc.one_line()}", highlight=False)
            config = TimingConfig(warmup_iters=args.warmup, max_seconds=args.max_seconds)
            result, paths = benchmark_from_sources(
                variant=args.variant, image_size=args.image_size, num_classes=args.num_classes, onnx=onnx,
                engine=engine, native_engine=native_engine, batch_sizes=sizes, backend_names=args.backends,
                include_compile=args.include_compile, config=config, out_dir=out_dir, console=console)
    except ToolchainError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    Console(width=150).print(benchmark_table(result))
    for line in skipped_lines(result.to_dict()):
        print(f"skipped {line}")
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    failed = result.parity_failures()
    for row in failed:
        print(f"parity FAILED: {row['backend']} at batch {row['batch_size']}", file=sys.stderr)
    return 4 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
