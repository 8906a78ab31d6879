// LRN across channels, NCHW, FP32/FP16 in and out, FP32 math.
//
// Design (the op is purely memory bound: ~1 FMA-ish chain per element):
// - One thread owns one pixel column (n, h*w) and walks the channels. Threads of a
//   warp hold consecutive h*w, so every load/store of a channel is coalesced and
//   each input element is read from DRAM once and each output written once.
// - The window sum of squares slides: add the square entering at c + (size-1)/2,
//   subtract the one leaving at c - size/2 - 1. The x values of the window live in
//   a per-thread ring buffer in shared memory (slot-major, so a warp's accesses hit
//   32 different banks), so the centre value and the leaving square come back
//   without touching global memory, and the square subtracted is bit-identical to
//   the one added.
// - Sliding add/subtract in FP32 accumulates rounding, and when a large square
//   leaves the window the small remainder is lost to cancellation (x = 1e4 next to
//   x = 1e-2 gives a wrong sum, not just an imprecise one). So the sum is recomputed
//   exactly from the ring (a) every R = min(size, C) steps, which keeps the drift
//   from growing along C at an amortized cost of one shared load per element, and
//   (b) whenever it has fallen below 1/8 of its peak since the last exact sum. The
//   rounding error since the last exact sum is at most ~R*eps*peak, so the relative
//   error of the sum stays below ~8*R*eps (4e-6 for size 9); rounding of the final
//   x * base^-beta dominates.
// - When the ring would not fit in 48 KiB of shared memory even for 32 threads
//   (size > 384), the same walk re-reads x through the read-only cache instead
//   (those re-reads hit L1/L2; DRAM traffic stays one read per element).
// - With few columns (small batch and small H*W, e.g. 1x256x27x27) a column per
//   thread cannot fill the GPU, so the channels are split into chunks walked by
//   different threads; each chunk re-reads the size-1 halo channels (L2 hits).
// - Entering values are loaded kUnroll channels ahead so each thread keeps several
//   independent loads in flight.
#include "lrnKernel.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

namespace toolchain
{
namespace lrn
{
namespace
{

constexpr int32_t kMaxBlock = 256;

// The per-column walk is also compiled for the host so its logic can be checked
// on machines without a GPU (tests include this file into a host harness).
#ifdef __CUDA_ARCH__
#define LRN_LDG(ptr) __ldg(ptr)
#else
#define LRN_LDG(ptr) (*(ptr))
#endif
#define LRN_HD __host__ __device__ __forceinline__

LRN_HD int32_t imin(int32_t a, int32_t b)
{
    return a < b ? a : b;
}
LRN_HD int32_t imax(int32_t a, int32_t b)
{
    return a > b ? a : b;
}
LRN_HD int64_t lmin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
LRN_HD int64_t lmax(int64_t a, int64_t b)
{
    return a > b ? a : b;
}
constexpr size_t kSmemBudget = 48 * 1024; // no opt-in needed below this

LRN_HD float toFloat(float v)
{
    return v;
}
LRN_HD float toFloat(__half v)
{
    return __half2float(v);
}
template <typename T>
LRN_HD T fromFloat(float v);
template <>
LRN_HD float fromFloat<float>(float v)
{
    return v;
}
template <>
LRN_HD __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

// Window values kept in shared memory, one column of `ring` slots per thread.
struct SmemRing
{
    float* base; // &smem[threadIdx.x]
    int32_t stride; // blockDim.x
    LRN_HD void put(int32_t slot, float v) const
    {
        base[slot * stride] = v;
    }
    template <typename T>
    LRN_HD float get(int32_t slot, T const* /*col*/, int64_t /*ch*/, int64_t /*hw*/) const
    {
        return base[slot * stride];
    }
};

// Fallback for very large windows: values are re-read from global memory (cache hits).
struct GlobalRing
{
    LRN_HD void put(int32_t, float) const {}
    template <typename T>
    LRN_HD float get(int32_t /*slot*/, T const* col, int64_t ch, int64_t hw) const
    {
        return toFloat(LRN_LDG(col + ch * hw));
    }
};

LRN_HD int32_t wrapInc(int32_t slot, int32_t ring)
{
    return slot + 1 == ring ? 0 : slot + 1;
}

// Channel indices are 64-bit inside the walk: with C up to INT32_MAX, c + hi and
// c0 + kUnroll would overflow int32. Ring slots stay 32-bit (slot < ring <= C).
LRN_HD int32_t posMod(int64_t v, int32_t m)
{
    int64_t r = v % m;
    return static_cast<int32_t>(r < 0 ? r + m : r);
}

struct LrnParams
{
    int64_t hw;      // H*W, the channel stride
    int64_t columns; // N*H*W
    int64_t items;   // columns * chunks
    int64_t C;
    int64_t chunkC;  // channels per chunk
    int64_t lo;      // size / 2 channels before, at most C
    int64_t hi;      // (size - 1) / 2 channels after, at most C
    int32_t ring;    // min(size, C)
    float scale;     // alpha / size
    float negBeta;
    float bias;
};

template <typename T, int kUnroll, typename Ring>
LRN_HD void lrnColumn(
    T const* __restrict__ xc, T* __restrict__ yc, int64_t cBegin, int64_t cEnd, LrnParams const& p, Ring const& ring)
{
    int64_t const hw = p.hw;
    int64_t const C = p.C;
    int32_t const R = p.ring;

    // Prime with the window of cBegin except its last channel (entered in the loop).
    int64_t const first = lmax(0, cBegin - p.lo);
    int64_t const primeEnd = lmin(C, cBegin + p.hi);
    float sum = 0.F;
    int32_t slot = posMod(first, R);
    for (int64_t ch = first; ch < primeEnd; ++ch)
    {
        float const v = toFloat(LRN_LDG(xc + ch * hw));
        ring.put(slot, v);
        sum = fmaf(v, v, sum);
        slot = wrapInc(slot, R);
    }

    int32_t enterSlot = posMod(cBegin + p.hi, R);
    int32_t leaveSlot = posMod(cBegin - p.lo - 1, R);
    int32_t centreSlot = posMod(cBegin, R);
    int32_t sinceExact = 0;
    float peak = sum; // largest running sum since the last exact one

    for (int64_t c0 = cBegin; c0 < cEnd; c0 += kUnroll)
    {
        // Issue the entering loads of the next kUnroll channels together.
        float in[kUnroll];
#pragma unroll
        for (int32_t k = 0; k < kUnroll; ++k)
        {
            int64_t const ch = c0 + k + p.hi;
            in[k] = (c0 + k < cEnd && ch < C) ? toFloat(LRN_LDG(xc + ch * hw)) : 0.F;
        }
#pragma unroll
        for (int32_t k = 0; k < kUnroll; ++k)
        {
            int64_t const c = c0 + k;
            if (c < cEnd)
            {
                // Leave before enter: with R == size both use the same slot.
                int64_t const leave = c - p.lo - 1;
                if (leave >= first)
                {
                    float const v = ring.get(leaveSlot, xc, leave, hw);
                    sum = fmaf(-v, v, sum);
                }
                if (c + p.hi < C)
                {
                    ring.put(enterSlot, in[k]);
                    sum = fmaf(in[k], in[k], sum);
                }
                peak = fmaxf(peak, sum);
                // A non-finite sum (Inf/NaN in the window, or Inf - Inf after one left)
                // is also recomputed, so non-finite inputs affect only their own windows.
                if (++sinceExact == R || sum * 8.F < peak || !(fabsf(sum) <= 3.402823466e38F))
                {
                    // Exact re-summation bounds the sliding-sum drift and cancellation.
                    sinceExact = 0;
                    int64_t const wBegin = lmax(0, c - p.lo);
                    int64_t const wEnd = lmin(C - 1, c + p.hi);
                    int32_t s = posMod(wBegin, R);
                    float exact = 0.F;
                    for (int64_t ch = wBegin; ch <= wEnd; ++ch)
                    {
                        float const v = ring.get(s, xc, ch, hw);
                        exact = fmaf(v, v, exact);
                        s = wrapInc(s, R);
                    }
                    sum = exact;
                    peak = exact;
                }
                // Clamp drift below 0, but keep NaN (fmaxf would turn NaN into 0 and hide it).
                float const base = fmaf(p.scale, sum < 0.F ? 0.F : sum, p.bias);
                float const xv = ring.get(centreSlot, xc, c, hw);
                // x * base^-beta; base >= bias > 0, so log2 is defined. exp2f/log2f are
                // the accurate (few-ulp) versions, cheap next to the memory traffic.
                // beta = 0 gives x whatever the window holds, as pow(inf or NaN, 0) = 1
                // in PyTorch (0 * log2(inf) would be NaN).
                float const factor = p.negBeta == 0.F ? 1.F : exp2f(p.negBeta * log2f(base));
                yc[c * hw] = fromFloat<T>(xv * factor);
                enterSlot = wrapInc(enterSlot, R);
                leaveSlot = wrapInc(leaveSlot, R);
                centreSlot = wrapInc(centreSlot, R);
            }
        }
    }
}

template <typename T, int kUnroll, bool kSmem>
__global__ void __launch_bounds__(kMaxBlock) lrnKernel(T const* __restrict__ x, T* __restrict__ y, LrnParams p)
{
    extern __shared__ float smem[];
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < p.items; item += stride)
    {
        int64_t const chunk = item / p.columns;
        int64_t const col = item - chunk * p.columns;
        int64_t const n = col / p.hw;
        int64_t const offset = n * p.C * p.hw + (col - n * p.hw);
        int64_t const cBegin = chunk * p.chunkC;
        int64_t const cEnd = lmin(p.C, cBegin + p.chunkC);
        if (kSmem)
        {
            SmemRing const ring{smem + threadIdx.x, static_cast<int32_t>(blockDim.x)};
            lrnColumn<T, kUnroll>(x + offset, y + offset, cBegin, cEnd, p, ring);
        }
        else
        {
            lrnColumn<T, kUnroll>(x + offset, y + offset, cBegin, cEnd, p, GlobalRing{});
        }
    }
}

int32_t smCount(int32_t device)
{
    // Cached per device: the attribute query is cheap but enqueue is hot.
    constexpr int32_t kMaxDevices = 64;
    static std::atomic<int32_t> cache[kMaxDevices]{};
    if (device >= 0 && device < kMaxDevices)
    {
        int32_t cached = cache[device].load(std::memory_order_relaxed);
        if (cached > 0)
        {
            return cached;
        }
    }
    int32_t count = 0;
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || count <= 0)
    {
        cudaGetLastError(); // don't leave a sticky-looking error for the caller
        count = 108;
    }
    if (device >= 0 && device < kMaxDevices)
    {
        cache[device].store(count, std::memory_order_relaxed);
    }
    return count;
}

// Shape-dependent launch parameters (host side; also used by the host test harness).
LrnParams makeParams(int64_t n, int64_t c, int64_t h, int64_t w, int32_t size, float alpha, float beta, float bias,
    int32_t smCnt)
{
    int64_t const hw = h * w;
    int64_t const columns = n * hw;
    LrnParams p{};
    p.hw = hw;
    p.columns = columns;
    p.C = c;
    // Clipping to [0, C-1] makes any reach beyond C equivalent to C.
    p.lo = std::min<int64_t>(size / 2, c);
    p.hi = std::min<int64_t>((size - 1) / 2, c);
    p.ring = static_cast<int32_t>(std::min<int64_t>(size, c));
    p.scale = alpha / static_cast<float>(size);
    p.negBeta = -beta;
    p.bias = bias;

    // Enough threads for ~2 full waves; split channels only when columns are too few.
    // Chunks stay >= max(8, size) channels so the re-read halo stays a fraction.
    int64_t const target = static_cast<int64_t>(smCnt) * 2048 * 2;
    int64_t chunks = 1;
    if (columns < target)
    {
        int64_t const minChunk = std::max<int64_t>(8, size);
        int64_t const maxChunks = std::max<int64_t>(1, (c + minChunk - 1) / minChunk);
        chunks = std::min<int64_t>((target + columns - 1) / columns, maxChunks);
    }
    int64_t const chunkC = (c + chunks - 1) / chunks;
    chunks = (c + chunkC - 1) / chunkC;
    p.chunkC = chunkC;
    p.items = columns * chunks;

    return p;
}

template <typename T, int kUnroll>
cudaError_t launch(void const* x, void* y, LrnParams p, int32_t smCnt, cudaStream_t stream)
{
    // Largest block (<= 256) whose ring fits; otherwise the global-memory walk.
    int32_t block = kMaxBlock;
    while (block > 32 && static_cast<size_t>(p.ring) * block * sizeof(float) > kSmemBudget)
    {
        block /= 2;
    }
    bool const useSmem = static_cast<size_t>(p.ring) * block * sizeof(float) <= kSmemBudget;
    if (!useSmem)
    {
        block = kMaxBlock;
    }
    int64_t blocks = (p.items + block - 1) / block;
    // Grid-stride loop past ~32 waves of blocks; keeps gridDim.x far from its limit.
    int64_t const maxBlocks = static_cast<int64_t>(smCnt) * (2048 / block) * 32;
    blocks = std::max<int64_t>(1, std::min(blocks, maxBlocks));
    T const* xt = static_cast<T const*>(x);
    T* yt = static_cast<T*>(y);
    if (useSmem)
    {
        size_t const smemBytes = static_cast<size_t>(p.ring) * block * sizeof(float);
        lrnKernel<T, kUnroll, true><<<static_cast<uint32_t>(blocks), block, smemBytes, stream>>>(xt, yt, p);
    }
    else
    {
        lrnKernel<T, kUnroll, false><<<static_cast<uint32_t>(blocks), block, 0, stream>>>(xt, yt, p);
    }
    return cudaGetLastError();
}

} // namespace

cudaError_t lrnForward(void const* x, void* y, LrnDataType dtype, int64_t n, int64_t c, int64_t h, int64_t w,
    int32_t size, float alpha, float beta, float bias, cudaStream_t stream) noexcept
{
    if (n < 0 || c < 0 || h < 0 || w < 0 || size < 1 || !std::isfinite(alpha) || !std::isfinite(beta)
        || !std::isfinite(bias) || !(bias > 0.F) || alpha < 0.F)
    {
        return cudaErrorInvalidValue;
    }
    if (dtype != LrnDataType::kFLOAT32 && dtype != LrnDataType::kFLOAT16)
    {
        return cudaErrorInvalidValue;
    }
    if (n == 0 || c == 0 || h == 0 || w == 0)
    {
        return cudaSuccess;
    }
    // Channel indices are 32-bit in the kernel; offsets are 64-bit.
    if (c > INT32_MAX || h > INT64_MAX / w || n > INT64_MAX / (h * w) || c > INT64_MAX / (n * h * w) / 2)
    {
        return cudaErrorInvalidValue;
    }
    size_t const elemBytes = dtype == LrnDataType::kFLOAT16 ? 2 : 4;
    int64_t const hw = h * w;
    int64_t const columns = n * hw;
    uint64_t const bytes = static_cast<uint64_t>(columns * c) * elemBytes;
    uintptr_t const xb = reinterpret_cast<uintptr_t>(x);
    uintptr_t const yb = reinterpret_cast<uintptr_t>(y);
    if (x == nullptr || y == nullptr || (xb < yb + bytes && yb < xb + bytes))
    {
        return cudaErrorInvalidValue; // the ring holds x values: in-place would read outputs
    }

    int32_t device = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err != cudaSuccess)
    {
        return err;
    }
    int32_t const smCnt = smCount(device);

    LrnParams const p = makeParams(n, c, h, w, size, alpha, beta, bias, smCnt);

    // FP16 elements are half the bytes: twice the loads in flight per thread.
    return dtype == LrnDataType::kFLOAT16 ? launch<__half, 8>(x, y, p, smCnt, stream)
                                          : launch<float, 4>(x, y, p, smCnt, stream);
}

} // namespace lrn
} // namespace toolchain
