// C ABI of the standalone LRN kernel library (libtoolchain_lrn_kernels.so), for
// ctypes (toolchain/plugin.py) and any non-C++ caller. Only these symbols are exported.
#include "lrnKernel.h"

#include <cuda_runtime_api.h>

#include <cstdint>

#define TOOLCHAIN_LRN_EXPORT extern "C" __attribute__((visibility("default")))

namespace
{
// Bump when a signature below changes; toolchain/plugin.py checks it.
constexpr int kAbiVersion = 1;
} // namespace

//! dtype: 0 = float32, 1 = float16. stream: a cudaStream_t (0/NULL = legacy default stream).
//! Returns a cudaError_t value (0 = success); asynchronous like any kernel launch.
TOOLCHAIN_LRN_EXPORT int toolchain_lrn_forward(void const* x, void* y, int dtype, int64_t n, int64_t c, int64_t h,
    int64_t w, int size, float alpha, float beta, float bias, void* stream)
{
    if (dtype != 0 && dtype != 1)
    {
        return static_cast<int>(cudaErrorInvalidValue);
    }
    auto const type = dtype == 0 ? toolchain::lrn::LrnDataType::kFLOAT32 : toolchain::lrn::LrnDataType::kFLOAT16;
    return static_cast<int>(toolchain::lrn::lrnForward(
        x, y, type, n, c, h, w, size, alpha, beta, bias, static_cast<cudaStream_t>(stream)));
}

//! Human-readable text of a value returned by toolchain_lrn_forward (static storage).
TOOLCHAIN_LRN_EXPORT char const* toolchain_lrn_error_string(int error)
{
    return cudaGetErrorString(static_cast<cudaError_t>(error));
}

TOOLCHAIN_LRN_EXPORT int toolchain_lrn_abi_version()
{
    return kAbiVersion;
}
