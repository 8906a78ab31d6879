#!/usr/bin/env bash
# One prepared GPU check for a short lease (15 minutes in all, 10 per command): build the
# kernels and plugins, run the needs_cuda tests, the plugin conformance harness, the kernel
# benchmark and the backend benchmark (paper AlexNet, 224 px, batch 1/8/64/256), and write
# JSON + Markdown (device, driver, CUDA, library versions, each stage's status) under $OUT.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine (no network, no TensorRT needed)
#   bash benchmarks/gpu_check.sh --dry-run  # on any machine: checks tools, imports, the build,
#                                           # the test selections and every command's flags
#
# Every stage runs under `timeout` and the whole stays inside GPU_CHECK_BUDGET seconds
# (default 540, 9 min); a stage that fails or times out is recorded and the next one runs.
# Exit status: 0 when every stage passed, 1 otherwise (see $OUT/summary.md).
#
# Environment:
#   OUT               results folder (default ./gpu-results); commit its contents to benchmarks/results/
#   WHEEL_DIR         wheels installed first with --no-index --no-deps, e.g. TensorRT's lean runtime
#                     tensorrt_lean*.whl (default .whl/ in the repo, git-ignored)
#   PYTHON            interpreter (default: the repo's .venv/bin/python, else python3)
#   BUILD_DIR         CMake build folder (default build/gpu-check)
#   CUDA_ARCHS        CMAKE_CUDA_ARCHITECTURES (default 90: H100/H200)
#   TRT_HEADERS       TensorRT include folder for the plugins (default: shared/trt-headers/v11.1
#                     in or beside the repo, when present); the library is the installed one
#                     (libnvinfer, else the lean runtime's libnvinfer_lean)
#   GPU_CHECK_BUDGET  seconds for all stages (default 540)
#   GPU_CHECK_DRY_BUILD=configure   --dry-run configures CMake but does not compile (quick test)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done

OUT="${OUT:-$REPO/gpu-results}"
mkdir -p "$OUT/logs" || exit 2
OUT="$(cd "$OUT" && pwd)"
WHEEL_DIR="${WHEEL_DIR:-$REPO/.whl}"
BUILD_DIR="${BUILD_DIR:-$REPO/build/gpu-check}"
CUDA_ARCHS="${CUDA_ARCHS:-90}"
BUDGET="${GPU_CHECK_BUDGET:-540}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON="$(command -v python3)"; fi
fi
if [[ -z "${TRT_HEADERS:-}" ]]; then
  for candidate in "$REPO/shared/trt-headers/v11.1" "$REPO/../shared/trt-headers/v11.1"; do
    if [[ -f "$candidate/NvInfer.h" ]]; then TRT_HEADERS="$(cd "$candidate" && pwd)"; break; fi
  done
fi
TRT_HEADERS="${TRT_HEADERS:-}"
# The toolchain runs from the checkout even where it is not pip-installed; tests find the
# plugin libraries of this build.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TOOLCHAIN_PLUGIN_DIR="$BUILD_DIR"
# The conformance tests compile against every headers folder beside TRT_HEADERS (v10.16, v11.1).
if [[ -n "$TRT_HEADERS" && -z "${TOOLCHAIN_TRT_HEADERS:-}" ]]; then
  TOOLCHAIN_TRT_HEADERS="$(find "$(dirname "$TRT_HEADERS")" -mindepth 2 -maxdepth 2 -name NvInfer.h -printf '%h:' | sed 's/:$//')"
  export TOOLCHAIN_TRT_HEADERS
fi
export PYTHONUNBUFFERED=1

START=$(date +%s)
STAGES="$OUT/stages.tsv"
: > "$STAGES"
FAILED=0

# record NAME STATUS RC SECONDS CAP COMMAND
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >> "$STAGES"
  # An empty test selection is a failure on the GPU, a warning in a dry run (a harness may not exist yet).
  case "$2" in ok|dry-run|none) ;; no-tests) (( DRY )) || FAILED=1 ;; *) FAILED=1 ;; esac
  printf '   -> %s (rc %s, %ss)\n' "$2" "$3" "$4"
}

# stage NAME CAP_SECONDS CMD [ARGS...]: run under timeout inside the remaining budget, log to $OUT/logs/NAME.log.
stage() {
  local name="$1" cap="$2"; shift 2
  local shown; shown="$(printf '%q ' "$@")"; shown="${shown% }"
  local left=$(( BUDGET - ($(date +%s) - START) ))
  echo "== $name (<= ${cap}s): $shown"
  if (( left < 15 )); then
    echo "budget of ${BUDGET}s spent before this stage" > "$OUT/logs/$name.log"
    record "$name" skipped - 0 "$cap" "$shown"; return
  fi
  (( cap > left )) && cap=$left
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$cap" "$@" > "$OUT/logs/$name.log" 2>&1
  local rc=$? status=ok
  if (( rc == 124 || rc == 137 )); then status=timeout; elif (( rc == 5 )) && [[ "$1" == "$PYTHON" && "$*" == *pytest* ]]; then
    status=no-tests
  elif (( rc != 0 )); then status=failed; fi
  tail -n 3 "$OUT/logs/$name.log" | sed 's/^/   | /'
  record "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$cap" "$shown"
}

# show NAME CAP CMD...: in --dry-run, print the command the GPU run would execute.
show() {
  local name="$1" cap="$2"; shift 2
  local shown; shown="$(printf '%q ' "$@")"; shown="${shown% }"
  echo "== $name (<= ${cap}s, dry run): $shown"
  record "$name" dry-run - 0 "$cap" "$shown"
}

# gpu_stage NAME CAP CHECK_CMD -- RUN_CMD: dry run runs CHECK_CMD (as NAME-check) and shows RUN_CMD.
gpu_stage() {
  local name="$1" cap="$2"; shift 2
  local check=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do check+=("$1"); shift; done
  shift
  if (( DRY )); then
    if (( ${#check[@]} )); then stage "$name-check" 120 "${check[@]}"; fi
    show "$name" "$cap" "$@"
  else
    stage "$name" "$cap" "$@"
  fi
}

echo "gpu_check: repo $REPO, results $OUT, python $PYTHON, budget ${BUDGET}s$( ((DRY)) && echo ', DRY RUN')"

# 1. tools and imports -------------------------------------------------------------------------
stage tools 20 bash -c 'for t in cmake nvcc timeout "$0"; do command -v "$t" >/dev/null || { echo "missing: $t"; exit 1; }; echo "$t: $(command -v "$t")"; done
  nvcc --version | tail -n 2; cmake --version | head -n 1
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  else echo "nvidia-smi: not here"; fi' "$PYTHON"

WHEELS=()
if [[ -d "$WHEEL_DIR" ]]; then
  while IFS= read -r -d '' wheel; do WHEELS+=("$wheel"); done < <(find "$WHEEL_DIR" -maxdepth 1 -name '*.whl' -print0 | sort -z)
fi
if (( ${#WHEELS[@]} )); then
  gpu_stage wheels 60 -- "$PYTHON" -m pip install --no-index --no-deps --disable-pip-version-check -q "${WHEELS[@]}"
else
  echo "== wheels: none in $WHEEL_DIR (the conformance harness needs TensorRT's lean runtime wheel there)"
  record wheels "$( ((DRY)) && echo dry-run || echo none)" - 0 0 "no *.whl in $WHEEL_DIR"
fi

stage imports 30 "$PYTHON" -c '
import importlib, sys
need = ["toolchain", "numpy", "torch", "onnx", "onnxruntime", "click", "rich", "matplotlib", "pytest"]
optional = ["cupy", "tensorrt_lean", "tensorrt", "cuda.bindings", "pynvml"]
missing = []
for name in need + optional:
    try:
        module = importlib.import_module(name)
        version = getattr(module, "__version__", "")
        print(f"{name:14s} {version}")
    except Exception as exc:
        print(f"{name:14s} MISSING ({type(exc).__name__}: {exc})")
        if name in need:
            missing.append(name)
import torch
print("torch CUDA", torch.version.cuda, "available:", torch.cuda.is_available())
sys.exit(f"missing: {missing}" if missing else 0)'

stage environment 30 "$PYTHON" -c '
import json, sys
from toolchain.environment import capture_environment
env = capture_environment()
json.dump(env, open(sys.argv[1], "w"), indent=2, default=str)
print({k: env.get(k) for k in ("gpu_name", "nvidia_driver", "torch", "cuda_runtime", "tensorrt")})' "$OUT/environment.json"

# 2. build ----------------------------------------------------------------------------------------
CMAKE_ARGS=(-S "$REPO/plugins" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS")
if [[ -n "$TRT_HEADERS" ]]; then
  CMAKE_ARGS+=("-DTensorRT_INCLUDE_DIR=$TRT_HEADERS")
  TRT_LIB="$("$PYTHON" -c '
import glob, importlib.util as u, os
for pkg, lib in (("tensorrt_libs", "libnvinfer.so.*"), ("tensorrt_lean_libs", "libnvinfer_lean.so.*")):
    spec = u.find_spec(pkg)
    for folder in (spec.submodule_search_locations if spec else []):
        hits = sorted(glob.glob(os.path.join(folder, lib)))
        if hits:
            print(hits[0]); raise SystemExit
' 2>/dev/null)"
  [[ -n "$TRT_LIB" ]] && CMAKE_ARGS+=("-DTensorRT_LIBRARY=$TRT_LIB")
fi
stage configure 60 cmake "${CMAKE_ARGS[@]}"
if (( DRY )) && [[ "${GPU_CHECK_DRY_BUILD:-build}" == configure ]]; then
  show build 150 cmake --build "$BUILD_DIR" --parallel "$(nproc)"
else
  stage build 150 cmake --build "$BUILD_DIR" --parallel "$(nproc)"
fi

# 3. tests -----------------------------------------------------------------------------------------
gpu_stage test-needs-cuda 90 "$PYTHON" -m pytest -q --collect-only -m needs_cuda tests \
  -- "$PYTHON" -m pytest -q -m needs_cuda -p no:cacheprovider --junitxml="$OUT/needs_cuda.xml" tests
# The conformance tests build the plugin per TensorRT major they find a lean runtime for
# (wheels from $WHEEL_DIR) and run enqueue on this GPU against PyTorch.
gpu_stage conformance 140 "$PYTHON" -m pytest -q --collect-only -k conformance tests \
  -- "$PYTHON" -m pytest -q -k conformance -p no:cacheprovider --junitxml="$OUT/conformance.xml" tests

# 4. benchmarks ------------------------------------------------------------------------------------
mkdir -p "$OUT/kernel" "$OUT/backends"
gpu_stage kernel-bench 60 "$PYTHON" benchmarks/bench_lrn_kernel.py --help \
  -- "$PYTHON" benchmarks/bench_lrn_kernel.py --batches 1,8,64,256 --reps 100 --warmup 10 --out-dir "$OUT/kernel"
# torch.compile (minutes of compiling) and ONNX Runtime on the CPU (seconds per batch-256 run)
# do not fit the lease; TensorRT rows appear where TensorRT is installed (--build-engines).
BACKENDS="eager-fp32,eager-fp16,eager-fp16-fused-lrn,eager-fp16-cuda-graph,onnxruntime-cuda,tensorrt-plugin,tensorrt-plugin-graph,tensorrt-native,tensorrt-native-graph"
BENCH=(benchmarks/bench_backends.py --variant paper --image-size 224 --batch-sizes 1,8,64,256 --backends "$BACKENDS"
       --max-seconds 3 --warmup 5 --out-root "$OUT/backends")
if "$PYTHON" -c 'import tensorrt; tensorrt.Builder' >/dev/null 2>&1; then BENCH+=(--build-engines); fi
gpu_stage backend-bench 140 "$PYTHON" -c '
import sys
from toolchain.backends import BACKEND_NAMES
unknown = [n for n in sys.argv[1].split(",") if n not in BACKEND_NAMES]
sys.exit(f"unknown backends {unknown}" if unknown else 0)' "$BACKENDS" \
  -- "$PYTHON" "${BENCH[@]}"
if (( DRY )); then stage backend-bench-help 60 "$PYTHON" benchmarks/bench_backends.py --help; fi

# 5. summary ---------------------------------------------------------------------------------------
"$PYTHON" - "$OUT" "$DRY" "$(( $(date +%s) - START ))" <<'PY'
import datetime as dt
import json
import sys
from pathlib import Path

out, dry, seconds = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
stages = []
for line in (out / "stages.tsv").read_text().splitlines():
    name, status, rc, secs, cap, command = line.split("\t", 5)
    stages.append({"stage": name, "status": status, "rc": None if rc == "-" else int(rc), "seconds": int(secs),
                   "timeout_s": int(cap), "command": command, "log": f"logs/{name}.log"})
try:
    env = json.loads((out / "environment.json").read_text())
except (OSError, ValueError):
    env = {}
keys = ("gpu_name", "gpus", "nvidia_driver", "torch", "torch_cuda", "cudnn", "onnxruntime", "onnxruntime_providers",
        "tensorrt", "tensorrt_lean", "numpy", "onnx", "python", "cpu", "toolchain", "git_commit", "captured_at")
facts = {k: env.get(k) for k in keys if env.get(k) not in (None, [], "")}
try:
    import subprocess
    nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    facts["nvcc"] = nvcc[-1] if nvcc else None
except (OSError, subprocess.SubprocessError):
    facts["nvcc"] = None
results = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".png", ".xml")
                 and p.name not in ("summary.json", "summary.md"))
passed = all(s["status"] in ("ok", "dry-run", "none") or (dry and s["status"] == "no-tests") for s in stages)
summary = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "dry_run": dry,
           "passed": passed, "seconds": seconds, "environment": facts, "stages": stages, "files": results}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
lines = [f"# GPU check{' (dry run)' if dry else ''}: {'PASS' if passed else 'FAIL'}", "",
         f"{summary['created']}, {seconds} s in all.", "", "| | |", "|---|---|"]
lines += [f"| {k} | {v} |" for k, v in facts.items()]
lines += ["", "| stage | status | rc | seconds | timeout | command |", "|---|---|---|---|---|---|"]
for s in stages:
    command = s["command"].replace("|", "\\|")
    if len(command) > 160:
        command = command[:157] + "..."
    lines.append(f"| {s['stage']} | {s['status']} | {s['rc'] if s['rc'] is not None else ''} | {s['seconds']} | "
                 f"{s['timeout_s']} | `{command}` |")
lines += ["", "Logs: `logs/STAGE.log`. Results:", ""] + [f"- `{r}`" for r in results]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines[:2]))
print(f"wrote {out / 'summary.json'} and {out / 'summary.md'}")
PY
exit "$FAILED"
