// Local Response Normalization (across channels) for NCHW tensors: CUDA kernel launcher.
//
// No TensorRT types here: the same launcher serves the TensorRT plugin, the
// standalone C ABI (lrnCApi.cpp) and through it the PyTorch custom op.
//
//   y[n,c,h,w] = x[n,c,h,w] / (bias + alpha / size * S) ^ beta
//   S = sum of x[n,c',h,w]^2 for c' in [c - size/2, c + (size-1)/2], clipped to [0, C-1]
//
// This is PyTorch's torch.nn.functional.local_response_norm (alpha divided by size,
// divisor stays `size` at the edges), also ONNX LRN for odd sizes.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace toolchain
{
namespace lrn
{

enum class LrnDataType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

//! Runs LRN on `stream`. x and y are device pointers to contiguous NCHW tensors of
//! `dtype` (y has the same type) and must not overlap. Accumulation and the power
//! are done in FP32, so FP16 inputs whose squares overflow FP16 still give finite
//! results. Empty tensors (any dimension 0) are a no-op.
//!
//! Returns cudaErrorInvalidValue for bad arguments (negative dims, size < 1,
//! non-finite parameters, bias + alpha/size*S that can be <= 0 (bias <= 0 or alpha < 0),
//! null or overlapping pointers, unknown dtype), otherwise the launch status.
//! Asynchronous: errors during execution surface at a later synchronization.
cudaError_t lrnForward(void const* x, void* y, LrnDataType dtype, int64_t n, int64_t c, int64_t h, int64_t w,
    int32_t size, float alpha, float beta, float bias, cudaStream_t stream) noexcept;

} // namespace lrn
} // namespace toolchain
