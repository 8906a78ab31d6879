"""ONNX Runtime CPU: INT8 (--target onnxruntime) against FP32, repeated, with parity verdicts.

From a checkpoint (the README's digits model: `toolchain train --dataset digits --image-size 64`):
export FP32, quantize once for both targets, then, at each batch size, time these rows
back to back in each of --repeats rounds (rotating order, so load from other processes
hits every row alike) with the benchmark harness (:mod:`toolchain.bench`; warm-up,
windows until stable, p50/p90/p99, images/s, parity against eager FP32 on the
validation split):

    onnxruntime-cpu                          the FP32 export, ONNX Runtime's default graph optimizations
    onnxruntime-cpu-int8                     the --target onnxruntime file, as toolchain runs it
    onnxruntime-cpu-int8-ort-defaults        the same file with every ONNX Runtime optimizer on
    onnxruntime-cpu-int8-tensorrt-placement  the --target tensorrt file (what the INT8 row used to time)

The last two explain the choices (--no-diagnostics leaves them out). Each round's
benchmark.json/benchmark.md/plots and a summary (summary.json, summary.md: medians over
the rounds of images/s and of each round's speed-up over FP32, with device and versions)
go to benchmarks/results/int8_cpu_<device>_<time>/.

    python benchmarks/bench_int8_cpu.py --checkpoint runs/digits/model.safetensors [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL = 1.5  # issue 21: INT8 >= 1.5x FP32 images/s at every batch size


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "unknown"


def summarize(rounds: list[dict], baseline: str = "onnxruntime-cpu") -> list[dict]:
    """Per (backend, batch): median images/s over the rounds and the median of each round's speed-up."""
    rates: dict[tuple, list[float]] = {}
    ratios: dict[tuple, list[float]] = {}
    verdicts: dict[tuple, set] = {}
    for data in rounds:
        base = {m["batch_size"]: m["throughput_ips"] for m in data["measurements"] if m["backend"] == baseline}
        for m in data["measurements"]:
            key = (m["backend"], m["batch_size"])
            rates.setdefault(key, []).append(m["throughput_ips"])
            verdicts.setdefault(key, set()).add("pass" if (m.get("parity") or {}).get("passed") else "FAIL")
            if m["backend"] != baseline and base.get(m["batch_size"]):
                ratios.setdefault(key, []).append(m["throughput_ips"] / base[m["batch_size"]])
    return [{"backend": b, "batch_size": n, "images_per_s_median": statistics.median(v), "images_per_s": v,
             "speedup_median": statistics.median(ratios[(b, n)]) if (b, n) in ratios else None,
             "speedups": ratios.get((b, n), []), "parity": "pass" if verdicts[(b, n)] == {"pass"} else "FAIL"}
            for (b, n), v in rates.items()]


def summary_markdown(rows: list[dict], env: dict, args, goal_row: str = "onnxruntime-cpu-int8") -> str:
    from toolchain.bench.report import environment_markdown, fmt_rate

    lines = ["# ONNX Runtime CPU INT8 vs FP32", "",
             f"Checkpoint `{args.checkpoint}`, {args.repeats} round(s), ONNX Runtime intra-op threads "
             f"{args.threads or 'default'}, batch sizes {args.batch_sizes}. Medians over the rounds; a speed-up "
             "is each round's images/s over that round's FP32 row, then the median.", "",
             environment_markdown(env), "",
             "| backend | batch | images/s (median) | speed-up over FP32 (median) | per round | parity |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['batch_size']} | {fmt_rate(r['images_per_s_median'])} | "
                     + (f"{r['speedup_median']:.2f}x" if r["speedup_median"] is not None else "-") + " | "
                     + ", ".join(f"{x:.2f}x" for x in r["speedups"]) + f" | {r['parity']} |")
    goal = [r for r in rows if r["backend"] == goal_row]
    if goal:
        met = all(r["speedup_median"] is not None and r["speedup_median"] >= GOAL and r["parity"] == "pass"
                  for r in goal)
        lines += ["", f"Goal ({goal_row} >= {GOAL}x FP32 at every batch size, parity passing): "
                      f"{'met' if met else 'NOT met'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--batch-sizes", default="1,8,64,256")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for every row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    parser.add_argument("--samples", type=int, default=256, help="calibration images")
    parser.add_argument("--parity-samples", type=int, default=256)
    parser.add_argument("--no-diagnostics", action="store_true", help="time only FP32 and the INT8 row")
    parser.add_argument("--out-root", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import onnx
    from rich.console import Console

    from toolchain.backends import REGISTRY, Candidate, Context, Files, select
    from toolchain.bench.harness import BenchmarkResult, make_parity_plan, run_benchmark
    from toolchain.bench.sources import benchmark_model, parity_inputs
    from toolchain.bench.speedup import speedups
    from toolchain.bench.timing import TimingConfig
    from toolchain.bench.report import benchmark_table, write_benchmark_report
    from toolchain.checkpoint import load_checkpoint
    from toolchain.environment import capture_environment, describe_device
    from toolchain.errors import ToolchainError
    from toolchain.export import export_model
    from toolchain.io import write_json_atomic, write_text_atomic
    from toolchain.options import parse_batch_sizes
    from toolchain.quantize import META_PREFIX, ORT_OPTIMIZERS_KEY, quantize_checkpoint_targets
    from toolchain.runners.onnxruntime import OnnxRuntimeRunner
    from toolchain.runners.torch import TorchRunner

    console = Console(stderr=True)
    env = capture_environment()
    sizes = parse_batch_sizes(args.batch_sizes)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out_root) / f"int8_cpu_{_slug(env.get('cpu') or 'cpu')}_{stamp}"
    console.print(f"device: {describe_device(env)}; results in {out_dir}", highlight=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
            tmp = Path(tmp)
            ckpt = load_checkpoint(args.checkpoint)
            fp32 = export_model(ckpt.model, ckpt.meta, checkpoint_sha256=ckpt.sha256, output=tmp / "fp32.onnx").path
            files = {"tensorrt": tmp / "int8-tensorrt.onnx", "onnxruntime": tmp / "int8-onnxruntime.onnx"}
            quantize_checkpoint_targets(args.checkpoint, files, onnx_path=fp32, samples=args.samples)
            defaults = tmp / "int8-onnxruntime-ort-defaults.onnx"  # the same file, every optimizer on
            model = onnx.load(str(files["onnxruntime"]))
            kept = [p for p in model.metadata_props if p.key != META_PREFIX + ORT_OPTIMIZERS_KEY]
            del model.metadata_props[:]
            model.metadata_props.extend(kept)
            onnx.save(model, str(defaults))

            factory, info = benchmark_model(checkpoint=args.checkpoint)
            shape = (info["in_channels"], info["image_size"], info["image_size"])
            # The two rows the benchmark times, from the registry; the diagnostic rows are the same
            # ONNX Runtime CPU runner on the files they replace.
            ctx = Context(input_shape=shape, files=Files(onnx=fp32, onnx_int8=files["onnxruntime"]),
                          ort_threads=args.threads)
            candidates = select(["onnxruntime-cpu", "onnxruntime-cpu-int8"], ctx)
            if not args.no_diagnostics:
                for name, path in (("onnxruntime-cpu-int8-ort-defaults", defaults),
                                   ("onnxruntime-cpu-int8-tensorrt-placement", files["tensorrt"])):
                    candidates.append(Candidate(name, REGISTRY["onnxruntime-cpu-int8"], "cpu", "int8",
                                                lambda p=path, n=name: OnnxRuntimeRunner(
                                                    p, provider="cpu", threads=args.threads, input_shape=shape, name=n)))
            inputs, labels, source = parity_inputs(info, max(max(sizes), args.parity_samples))
            with TorchRunner(model_factory=factory, device="cpu", input_shape=shape,
                             name="reference-eager-fp32-cpu") as reference:
                plan = make_parity_plan(reference, inputs, labels=labels, source=source, batch_size=max(sizes),
                                        min_samples=args.parity_samples)
            info = {k: v for k, v in info.items() if k != "meta"}
            config = TimingConfig(max_seconds=args.max_seconds)
            # Paired rounds: at each batch size every round times all rows back to back (rotating
            # order), so a change in the machine's load hits FP32 and INT8 alike.
            parts: list[list] = [[] for _ in range(args.repeats)]
            for batch in sizes:
                for index in range(args.repeats):
                    order = candidates[index % len(candidates):] + candidates[:index % len(candidates)]
                    console.print(f"batch {batch}, round {index + 1}/{args.repeats}: "
                                  f"{', '.join(c.name for c in order)}", highlight=False)
                    parts[index].append(run_benchmark(order, [batch], config, parity=plan, environment=env,
                                                      model_info=info))
            rounds = []
            for index, results in enumerate(parts):
                merged = BenchmarkResult(environment=env, config=results[0].config, batch_sizes=sizes,
                                         model=info, parity=results[0].parity)
                for result in results:
                    merged.measurements += result.measurements
                    merged.skipped += result.skipped
                    merged.errors += result.errors
                    merged.backends = merged.backends or result.backends
                    merged.seconds += result.seconds
                merged.speedups = speedups(merged.measurements)
                write_benchmark_report(merged, out_dir / f"round-{index + 1}")
                Console(width=160).print(benchmark_table(merged))
                rounds.append(merged.to_dict())
    except ToolchainError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    summary = summarize(rounds)
    write_json_atomic(out_dir / "summary.json", {"environment": env, "checkpoint": args.checkpoint,
                                                 "threads": args.threads, "batch_sizes": sizes,
                                                 "repeats": args.repeats, "rows": summary})
    text = summary_markdown(summary, env, args)
    write_text_atomic(out_dir / "summary.md", text)
    print(text)
    failed = [r for r in summary if r["parity"] != "pass" and "tensorrt-placement" not in r["backend"]]
    return 4 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
