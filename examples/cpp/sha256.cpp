// SHA-256 (see sha256.h). Full blocks are hashed in place; only the padded tail is copied,
// so a 120 MB engine is not duplicated in memory.
#include "sha256.h"

#include <array>
#include <cstdio>
#include <cstring>

namespace classify
{
namespace
{

constexpr std::array<uint32_t, 64> kRound{0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU, 0x59f111f1U,
    0x923f82a4U, 0xab1c5ed5U, 0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U, 0x72be5d74U, 0x80deb1feU,
    0x9bdc06a7U, 0xc19bf174U, 0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU, 0x2de92c6fU, 0x4a7484aaU,
    0x5cb0a9dcU, 0x76f988daU, 0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U, 0xc6e00bf3U, 0xd5a79147U,
    0x06ca6351U, 0x14292967U, 0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU, 0x53380d13U, 0x650a7354U, 0x766a0abbU,
    0x81c2c92eU, 0x92722c85U, 0xa2bfe8a1U, 0xa81a664bU, 0xc24b8b70U, 0xc76c51a3U, 0xd192e819U, 0xd6990624U,
    0xf40e3585U, 0x106aa070U, 0x19a4c116U, 0x1e376c08U, 0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U, 0x4ed8aa4aU,
    0x5b9cca4fU, 0x682e6ff3U, 0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U, 0x90befffaU, 0xa4506cebU,
    0xbef9a3f7U, 0xc67178f2U};

using State = std::array<uint32_t, 8>;

uint32_t rotr(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

void compress(State& h, uint8_t const* block)
{
    std::array<uint32_t, 64> w{};
    for (int i = 0; i < 16; ++i)
    {
        w[i] = (uint32_t{block[4 * i]} << 24) | (uint32_t{block[4 * i + 1]} << 16) | (uint32_t{block[4 * i + 2]} << 8)
            | uint32_t{block[4 * i + 3]};
    }
    for (int i = 16; i < 64; ++i)
    {
        uint32_t const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    State v = h;
    for (int i = 0; i < 64; ++i)
    {
        uint32_t const s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
        uint32_t const ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
        uint32_t const t1 = v[7] + s1 + ch + kRound[i] + w[i];
        uint32_t const s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
        uint32_t const maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
        v = {t1 + s0 + maj, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (int i = 0; i < 8; ++i)
    {
        h[i] += v[i];
    }
}

} // namespace

std::string sha256Hex(uint8_t const* data, size_t size)
{
    State h{0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU, 0x510e527fU, 0x9b05688cU, 0x1f83d9abU, 0x5be0cd19U};
    size_t const full = size / 64 * 64;
    for (size_t offset = 0; offset < full; offset += 64)
    {
        compress(h, data + offset);
    }
    // Tail: the remaining bytes, 0x80, zeros, then the length in bits (big-endian) -- one or two blocks.
    std::array<uint8_t, 128> tail{};
    size_t const rest = size - full;
    if (rest > 0)
    {
        std::memcpy(tail.data(), data + full, rest);
    }
    tail[rest] = 0x80U;
    size_t const tailSize = rest < 56 ? 64 : 128;
    uint64_t const bits = static_cast<uint64_t>(size) * 8U;
    for (int i = 0; i < 8; ++i)
    {
        tail[tailSize - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
    }
    for (size_t offset = 0; offset < tailSize; offset += 64)
    {
        compress(h, tail.data() + offset);
    }
    std::string out;
    for (uint32_t word : h)
    {
        char buf[9];
        std::snprintf(buf, sizeof(buf), "%08x", word);
        out += buf;
    }
    return out;
}

} // namespace classify
