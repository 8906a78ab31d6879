#!/usr/bin/env bash
# Syntax-checks the FusedLRN plugin sources against one TensorRT headers folder, in
# both registration variants (static and TOOLCHAIN_LRN_DYNAMIC_REGISTRATION).
# Usage: check_headers.sh TENSORRT_INCLUDE_DIR [CUDA_INCLUDE_DIR]
# Needs only a C++17 compiler and the CUDA toolkit headers; fetches nothing.
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1/NvInfer.h" ]]; then
    echo "usage: $0 TENSORRT_INCLUDE_DIR [CUDA_INCLUDE_DIR]  (the folder holding NvInfer.h)" >&2
    exit 2
fi
trt_include=$1
cuda_include=${2:-${CUDA_HOME:-/usr/local/cuda}/include}
if [[ ! -f "$cuda_include/cuda_runtime_api.h" ]]; then
    echo "error: cuda_runtime_api.h not found in $cuda_include (pass CUDA_INCLUDE_DIR or set CUDA_HOME)" >&2
    exit 2
fi
cxx=${CXX:-g++}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=$(sed -n 's/^#define TRT_MAJOR_ENTERPRISE \([0-9]*\).*/\1/p; s/^#define NV_TENSORRT_MAJOR \([0-9]*\).*/\1/p' \
    "$trt_include/NvInferVersion.h" | head -n1)

status=0
for variant in static dynamic; do
    defs=()
    [[ $variant == dynamic ]] && defs=(-DTOOLCHAIN_LRN_DYNAMIC_REGISTRATION)
    for src in lrnPlugin.cpp lrnCApi.cpp lrnConformance.cpp; do
        if "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -Wno-deprecated-declarations \
            -I"$here" -isystem "$trt_include" -isystem "$cuda_include" "${defs[@]}" "$here/$src"; then
            echo "ok   TensorRT ${version:-?} ($trt_include) $variant $src"
        else
            echo "FAIL TensorRT ${version:-?} ($trt_include) $variant $src"
            status=1
        fi
    done
done
exit $status
