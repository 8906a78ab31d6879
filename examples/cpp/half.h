// FP16 <-> FP32 on the host, for engines built with FP16 I/O tensors. Round to nearest even,
// like numpy's astype(float16) and CUDA's __float2half_rn; header-only, no CUDA needed.
#pragma once

#include <cstdint>
#include <cstring>

namespace classify
{

inline uint16_t floatToHalf(float value)
{
    uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    uint32_t const sign = (bits >> 16) & 0x8000U;
    int32_t const exponent = static_cast<int32_t>((bits >> 23) & 0xFFU) - 127 + 15;
    uint32_t mantissa = bits & 0x7FFFFFU;
    if (((bits >> 23) & 0xFFU) == 0xFFU)
    {
        return static_cast<uint16_t>(sign | 0x7C00U | (mantissa ? 0x200U : 0U)); // Inf, or a quiet NaN
    }
    if (exponent >= 31)
    {
        return static_cast<uint16_t>(sign | 0x7C00U); // overflow: Inf
    }
    if (exponent <= 0)
    {
        // Subnormal half (or zero): shift the mantissa with its implicit bit into place.
        if (exponent < -10)
        {
            return static_cast<uint16_t>(sign);
        }
        mantissa |= 0x800000U;
        uint32_t const shift = static_cast<uint32_t>(14 - exponent);
        uint32_t half = mantissa >> shift;
        uint32_t const rest = mantissa & ((1U << shift) - 1U);
        uint32_t const midpoint = 1U << (shift - 1U);
        if (rest > midpoint || (rest == midpoint && (half & 1U)))
        {
            ++half;
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
    uint32_t const rest = mantissa & 0x1FFFU;
    if (rest > 0x1000U || (rest == 0x1000U && (half & 1U)))
    {
        ++half; // may carry into the exponent, which is the correct rounding
    }
    return static_cast<uint16_t>(half);
}

inline float halfToFloat(uint16_t half)
{
    uint32_t const sign = (static_cast<uint32_t>(half) & 0x8000U) << 16;
    uint32_t exponent = (half >> 10) & 0x1FU;
    uint32_t mantissa = half & 0x3FFU;
    uint32_t bits = 0;
    if (exponent == 0x1FU)
    {
        bits = sign | 0x7F800000U | (mantissa << 13);
    }
    else if (exponent != 0)
    {
        bits = sign | ((exponent + 112U) << 23) | (mantissa << 13);
    }
    else if (mantissa != 0)
    {
        // Subnormal half: normalize into FP32's wider exponent range.
        exponent = 113;
        while ((mantissa & 0x400U) == 0)
        {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FFU) << 13);
    }
    else
    {
        bits = sign;
    }
    float out = 0.F;
    std::memcpy(&out, &bits, sizeof(out));
    return out;
}

} // namespace classify
