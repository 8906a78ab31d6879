// classify: run a toolchain-built AlexNet TensorRT engine on one image, from C++, without Python.
//
//   classify ENGINE IMAGE.ppm [--plugin LIB] [--manifest PATH] [--size N] [--mean r,g,b] [--std r,g,b]
//            [--top K] [--no-verify]
//
// Steps, in the order that keeps executable code from being loaded unchecked:
//   1. read ENGINE.manifest.json (written by `toolchain build`): preprocessing, class names, sha256s;
//   2. check the sha256 of the plugin library, then dlopen() it: its static initializer registers
//      the FusedLRN creator with TensorRT's plugin registry (REGISTER_TENSORRT_PLUGIN);
//   3. check the TensorRT library version against the manifest, and the engine's sha256;
//   4. deserialize, run with enqueueV3 on a stream, print the top-K classes.
//
// Images: binary PPM (P6, RGB) or PGM (P5, grey), 8 bits. Convert anything else with e.g.
//   python -c "from PIL import Image; Image.open('cat.jpg').convert('RGB').save('cat.ppm')"
// Preprocessing follows toolchain's evaluation transform: resize the shorter side to
// round(size*256/224) with an antialiased bilinear filter, center-crop size x size, scale to
// [0, 1], grey<->RGB to the engine's channels, normalize with mean/std.
//
// Builds against TensorRT 10.x and 11.x (see CMakeLists.txt).

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

[[noreturn]] void fail(std::string const& message)
{
    throw std::runtime_error(message);
}

std::vector<uint8_t> readFile(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
    {
        fail("cannot open " + path);
    }
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// ------------------------------------------------------------------------------------------------
// A small JSON reader: enough for the manifest (objects, arrays, strings, numbers, booleans, null).

struct Json
{
    enum class Kind
    {
        kNull,
        kBool,
        kNumber,
        kString,
        kArray,
        kObject
    };
    Kind kind{Kind::kNull};
    bool boolean{false};
    double number{0.0};
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> fields;

    Json const* get(std::string const& key) const
    {
        auto it = fields.find(key);
        return (kind == Kind::kObject && it != fields.end()) ? &it->second : nullptr;
    }
    //! Follow a path of object keys; nullptr when any step is missing.
    Json const* at(std::initializer_list<char const*> path) const
    {
        Json const* node = this;
        for (char const* key : path)
        {
            node = node ? node->get(key) : nullptr;
        }
        return node;
    }
};

class JsonParser
{
public:
    explicit JsonParser(std::string const& text)
        : mText(text)
    {
    }

    Json parse()
    {
        Json value = parseValue();
        skipSpace();
        if (mPos != mText.size())
        {
            error("trailing characters");
        }
        return value;
    }

private:
    [[noreturn]] void error(char const* what) const
    {
        fail(std::string("manifest JSON: ") + what + " at offset " + std::to_string(mPos));
    }

    void skipSpace()
    {
        while (mPos < mText.size() && std::isspace(static_cast<unsigned char>(mText[mPos])))
        {
            ++mPos;
        }
    }

    char peek()
    {
        skipSpace();
        if (mPos >= mText.size())
        {
            error("unexpected end");
        }
        return mText[mPos];
    }

    void expect(char c)
    {
        if (peek() != c)
        {
            error("unexpected character");
        }
        ++mPos;
    }

    bool consumeWord(char const* word)
    {
        size_t const n = std::strlen(word);
        if (mText.compare(mPos, n, word) == 0)
        {
            mPos += n;
            return true;
        }
        return false;
    }

    Json parseValue()
    {
        Json value;
        char const c = peek();
        if (c == '{')
        {
            value.kind = Json::Kind::kObject;
            ++mPos;
            if (peek() == '}')
            {
                ++mPos;
                return value;
            }
            while (true)
            {
                std::string key = parseString();
                expect(':');
                value.fields[key] = parseValue();
                if (peek() == ',')
                {
                    ++mPos;
                    continue;
                }
                expect('}');
                return value;
            }
        }
        if (c == '[')
        {
            value.kind = Json::Kind::kArray;
            ++mPos;
            if (peek() == ']')
            {
                ++mPos;
                return value;
            }
            while (true)
            {
                value.items.push_back(parseValue());
                if (peek() == ',')
                {
                    ++mPos;
                    continue;
                }
                expect(']');
                return value;
            }
        }
        if (c == '"')
        {
            value.kind = Json::Kind::kString;
            value.text = parseString();
            return value;
        }
        if (consumeWord("true") || consumeWord("false"))
        {
            value.kind = Json::Kind::kBool;
            value.boolean = mText[mPos - 1] == 'e' && mText[mPos - 2] == 'u';
            return value;
        }
        if (consumeWord("null"))
        {
            return value;
        }
        char* end = nullptr;
        value.number = std::strtod(mText.c_str() + mPos, &end);
        if (end == mText.c_str() + mPos)
        {
            error("invalid value");
        }
        value.kind = Json::Kind::kNumber;
        mPos = static_cast<size_t>(end - mText.c_str());
        return value;
    }

    std::string parseString()
    {
        expect('"');
        std::string out;
        while (mPos < mText.size() && mText[mPos] != '"')
        {
            char c = mText[mPos++];
            if (c != '\\')
            {
                out += c;
                continue;
            }
            if (mPos >= mText.size())
            {
                error("bad escape");
            }
            char const e = mText[mPos++];
            switch (e)
            {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u':
            {
                if (mPos + 4 > mText.size())
                {
                    error("bad \\u escape");
                }
                unsigned code = static_cast<unsigned>(std::stoul(mText.substr(mPos, 4), nullptr, 16));
                mPos += 4;
                // Class names are mostly ASCII; encode the BMP code point as UTF-8.
                if (code < 0x80)
                {
                    out += static_cast<char>(code);
                }
                else if (code < 0x800)
                {
                    out += static_cast<char>(0xC0 | (code >> 6));
                    out += static_cast<char>(0x80 | (code & 0x3F));
                }
                else
                {
                    out += static_cast<char>(0xE0 | (code >> 12));
                    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
                    out += static_cast<char>(0x80 | (code & 0x3F));
                }
                break;
            }
            default: out += e; break; // \" \\ \/
            }
        }
        if (mPos >= mText.size())
        {
            error("unterminated string");
        }
        ++mPos;
        return out;
    }

    std::string const& mText;
    size_t mPos{0};
};

// ------------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), to check the engine and plugin library against the manifest.

class Sha256
{
public:
    static std::string hexDigest(std::vector<uint8_t> const& data)
    {
        std::array<uint32_t, 8> h{0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU, 0x510e527fU, 0x9b05688cU,
            0x1f83d9abU, 0x5be0cd19U};
        std::vector<uint8_t> msg(data);
        uint64_t const bitLength = static_cast<uint64_t>(data.size()) * 8U;
        msg.push_back(0x80U);
        while (msg.size() % 64 != 56)
        {
            msg.push_back(0U);
        }
        for (int i = 7; i >= 0; --i)
        {
            msg.push_back(static_cast<uint8_t>(bitLength >> (8 * i)));
        }
        for (size_t chunk = 0; chunk < msg.size(); chunk += 64)
        {
            compress(h, &msg[chunk]);
        }
        std::ostringstream out;
        for (uint32_t word : h)
        {
            char buf[9];
            std::snprintf(buf, sizeof(buf), "%08x", word);
            out << buf;
        }
        return out.str();
    }

private:
    static uint32_t rotr(uint32_t x, int n)
    {
        return (x >> n) | (x << (32 - n));
    }

    static void compress(std::array<uint32_t, 8>& h, uint8_t const* block)
    {
        static constexpr std::array<uint32_t, 64> k{0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU,
            0x59f111f1U, 0x923f82a4U, 0xab1c5ed5U, 0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U, 0x72be5d74U,
            0x80deb1feU, 0x9bdc06a7U, 0xc19bf174U, 0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU, 0x2de92c6fU,
            0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU, 0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U, 0xc6e00bf3U,
            0xd5a79147U, 0x06ca6351U, 0x14292967U, 0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU, 0x53380d13U, 0x650a7354U,
            0x766a0abbU, 0x81c2c92eU, 0x92722c85U, 0xa2bfe8a1U, 0xa81a664bU, 0xc24b8b70U, 0xc76c51a3U, 0xd192e819U,
            0xd6990624U, 0xf40e3585U, 0x106aa070U, 0x19a4c116U, 0x1e376c08U, 0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U,
            0x4ed8aa4aU, 0x5b9cca4fU, 0x682e6ff3U, 0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U, 0x90befffaU,
            0xa4506cebU, 0xbef9a3f7U, 0xc67178f2U};
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
        std::array<uint32_t, 8> v = h;
        for (int i = 0; i < 64; ++i)
        {
            uint32_t const s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
            uint32_t const ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
            uint32_t const t1 = v[7] + s1 + ch + k[i] + w[i];
            uint32_t const s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
            uint32_t const maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            uint32_t const t2 = s0 + maj;
            v = {t1 + t2, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
        }
        for (int i = 0; i < 8; ++i)
        {
            h[i] += v[i];
        }
    }
};

// ------------------------------------------------------------------------------------------------
// Images: PPM/PGM in, CHW float out.

struct Image
{
    int width{0};
    int height{0};
    int channels{0};
    std::vector<float> pixels; // HWC, in [0, 1]
};

Image readNetpbm(std::string const& path)
{
    std::vector<uint8_t> const bytes = readFile(path);
    size_t pos = 0;
    auto token = [&]() {
        std::string out;
        while (pos < bytes.size())
        {
            char const c = static_cast<char>(bytes[pos]);
            if (c == '#')
            {
                while (pos < bytes.size() && bytes[pos] != '\n')
                {
                    ++pos;
                }
            }
            else if (std::isspace(static_cast<unsigned char>(c)))
            {
                if (!out.empty())
                {
                    break;
                }
                ++pos;
            }
            else
            {
                out += c;
                ++pos;
            }
        }
        return out;
    };
    std::string const magic = token();
    if (magic != "P6" && magic != "P5")
    {
        fail(path + " is not a binary PPM (P6) or PGM (P5) image; convert it, e.g. with Pillow: "
                    "Image.open(src).convert('RGB').save('image.ppm')");
    }
    Image image;
    image.channels = magic == "P6" ? 3 : 1;
    image.width = std::atoi(token().c_str());
    image.height = std::atoi(token().c_str());
    int const maxValue = std::atoi(token().c_str());
    ++pos; // the single whitespace after the header
    if (image.width <= 0 || image.height <= 0 || maxValue <= 0 || maxValue > 255)
    {
        fail(path + ": unsupported size or bit depth (8-bit images only)");
    }
    size_t const count = static_cast<size_t>(image.width) * image.height * image.channels;
    if (bytes.size() < pos + count)
    {
        fail(path + " is truncated");
    }
    image.pixels.resize(count);
    for (size_t i = 0; i < count; ++i)
    {
        image.pixels[i] = static_cast<float>(bytes[pos + i]) / static_cast<float>(maxValue);
    }
    return image;
}

//! Weights of an antialiased linear (triangle) filter resampling `in` samples to `out` samples.
std::vector<std::vector<std::pair<int, float>>> linearWeights(int in, int out)
{
    double const scale = static_cast<double>(in) / out;
    double const support = std::max(1.0, scale); // widen the filter when shrinking (antialiasing)
    std::vector<std::vector<std::pair<int, float>>> weights(out);
    for (int o = 0; o < out; ++o)
    {
        double const center = (o + 0.5) * scale;
        int const lo = std::max(0, static_cast<int>(std::floor(center - support)));
        int const hi = std::min(in - 1, static_cast<int>(std::ceil(center + support)));
        double total = 0.0;
        for (int i = lo; i <= hi; ++i)
        {
            double const w = std::max(0.0, 1.0 - std::abs((i + 0.5 - center) / support));
            if (w > 0.0)
            {
                weights[o].emplace_back(i, static_cast<float>(w));
                total += w;
            }
        }
        for (auto& entry : weights[o])
        {
            entry.second = static_cast<float>(entry.second / total);
        }
    }
    return weights;
}

Image resize(Image const& src, int width, int height)
{
    auto const wx = linearWeights(src.width, width);
    auto const wy = linearWeights(src.height, height);
    int const c = src.channels;
    std::vector<float> rows(static_cast<size_t>(src.height) * width * c, 0.F); // horizontal pass
    for (int y = 0; y < src.height; ++y)
    {
        for (int x = 0; x < width; ++x)
        {
            for (auto const& [i, w] : wx[x])
            {
                for (int k = 0; k < c; ++k)
                {
                    rows[(static_cast<size_t>(y) * width + x) * c + k] += w * src.pixels[(static_cast<size_t>(y) * src.width + i) * c + k];
                }
            }
        }
    }
    Image dst{width, height, c, std::vector<float>(static_cast<size_t>(width) * height * c, 0.F)};
    for (int y = 0; y < height; ++y)
    {
        for (auto const& [j, w] : wy[y])
        {
            for (int x = 0; x < width * c; ++x)
            {
                dst.pixels[static_cast<size_t>(y) * width * c + x] += w * rows[static_cast<size_t>(j) * width * c + x];
            }
        }
    }
    return dst;
}

//! toolchain's evaluation transform, to a CHW float tensor.
std::vector<float> preprocess(Image const& image, int size, int channels, std::vector<float> const& mean,
    std::vector<float> const& stdev)
{
    // Python's round() (ties to even, as std::nearbyint in the default rounding mode), like toolchain.data.
    int const shorter = static_cast<int>(std::nearbyint(size * 256.0 / 224.0));
    // Like torchvision's Resize(int): the longer side is truncated, not rounded.
    int const w = image.width <= image.height ? shorter : static_cast<int>(double(image.width) * shorter / image.height);
    int const h = image.width <= image.height ? static_cast<int>(double(image.height) * shorter / image.width) : shorter;
    Image const resized = resize(image, w, h);
    int const top = static_cast<int>(std::nearbyint((h - size) / 2.0)); // torchvision's center crop
    int const left = static_cast<int>(std::nearbyint((w - size) / 2.0));
    std::vector<float> chw(static_cast<size_t>(channels) * size * size);
    for (int y = 0; y < size; ++y)
    {
        for (int x = 0; x < size; ++x)
        {
            float const* p = &resized.pixels[(static_cast<size_t>(y + top) * w + (x + left)) * resized.channels];
            for (int k = 0; k < channels; ++k)
            {
                float v = 0.F;
                if (resized.channels == channels)
                {
                    v = p[k];
                }
                else if (resized.channels == 1)
                {
                    v = p[0]; // grey -> RGB: repeat
                }
                else
                {
                    v = 0.299F * p[0] + 0.587F * p[1] + 0.114F * p[2]; // RGB -> grey: luma
                }
                chw[(static_cast<size_t>(k) * size + y) * size + x] = (v - mean[k]) / stdev[k];
            }
        }
    }
    return chw;
}

// ------------------------------------------------------------------------------------------------
// FP16 <-> FP32 on the host (for engines built with FP16 I/O), round-to-nearest-even.

uint16_t floatToHalf(float value)
{
    uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    uint32_t const sign = (bits >> 16) & 0x8000U;
    int32_t exponent = static_cast<int32_t>((bits >> 23) & 0xFFU) - 127 + 15;
    uint32_t mantissa = bits & 0x7FFFFFU;
    if (((bits >> 23) & 0xFFU) == 0xFFU)
    {
        return static_cast<uint16_t>(sign | 0x7C00U | (mantissa ? 0x200U : 0U));
    }
    if (exponent >= 31)
    {
        return static_cast<uint16_t>(sign | 0x7C00U);
    }
    if (exponent <= 0)
    {
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

float halfToFloat(uint16_t half)
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

// ------------------------------------------------------------------------------------------------
// TensorRT and CUDA plumbing.

class Logger : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            std::cerr << "[TensorRT] " << msg << "\n";
        }
    }
};

void checkCuda(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        fail(std::string(what) + " failed: " + cudaGetErrorString(status));
    }
}

struct DeviceBuffer
{
    void* ptr{nullptr};
    explicit DeviceBuffer(size_t bytes)
    {
        checkCuda(cudaMalloc(&ptr, std::max<size_t>(bytes, 1)), "cudaMalloc");
    }
    ~DeviceBuffer()
    {
        cudaFree(ptr);
    }
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
};

[[maybe_unused]] size_t elementSize(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    default: fail("this example handles FP32 and FP16 I/O tensors only");
    }
}

[[maybe_unused]] int64_t volume(nvinfer1::Dims const& dims)
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

[[maybe_unused]] std::string dimsToString(nvinfer1::Dims const& dims)
{
    std::string out = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        out += (i ? ", " : "") + std::to_string(dims.d[i]);
    }
    return out + ")";
}

std::vector<float> parseFloats(std::string const& text)
{
    std::vector<float> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ','))
    {
        out.push_back(std::stof(item));
    }
    return out;
}

std::vector<float> jsonFloats(Json const* node)
{
    std::vector<float> out;
    if (node && node->kind == Json::Kind::kArray)
    {
        for (Json const& item : node->items)
        {
            out.push_back(static_cast<float>(item.number));
        }
    }
    return out;
}

std::string jsonText(Json const* node, std::string const& fallback = "")
{
    return node && node->kind == Json::Kind::kString ? node->text : fallback;
}

struct Options
{
    std::string engine;
    std::string image;
    std::string plugin;
    std::string manifest;
    int size{0};
    std::vector<float> mean;
    std::vector<float> stdev;
    int top{5};
    bool verify{true};
};

[[maybe_unused]] Options parseArgs(int argc, char** argv)
{
    Options o;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i)
    {
        std::string const arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
            {
                fail(arg + " needs a value");
            }
            return argv[++i];
        };
        if (arg == "--plugin") o.plugin = value();
        else if (arg == "--manifest") o.manifest = value();
        else if (arg == "--size") o.size = std::stoi(value());
        else if (arg == "--mean") o.mean = parseFloats(value());
        else if (arg == "--std") o.stdev = parseFloats(value());
        else if (arg == "--top") o.top = std::stoi(value());
        else if (arg == "--no-verify") o.verify = false;
        else if (arg == "-h" || arg == "--help")
        {
            std::cout << "usage: classify ENGINE IMAGE.ppm [--plugin LIB] [--manifest PATH] [--size N]\n"
                         "                [--mean r,g,b] [--std r,g,b] [--top K] [--no-verify]\n";
            std::exit(0);
        }
        else if (!arg.empty() && arg[0] == '-') fail("unknown option " + arg);
        else positional.push_back(arg);
    }
    if (positional.size() != 2)
    {
        fail("usage: classify ENGINE IMAGE.ppm [options]; see --help");
    }
    o.engine = positional[0];
    o.image = positional[1];
    if (o.manifest.empty())
    {
        o.manifest = o.engine + ".manifest.json";
    }
    return o;
}

#ifndef CLASSIFY_SELF_TEST
int run(Options const& opt)
{
    // 1. The manifest: what the engine needs and what its files must hash to.
    std::vector<uint8_t> const manifestBytes = readFile(opt.manifest);
    std::string const manifestText(manifestBytes.begin(), manifestBytes.end());
    Json const manifest = JsonParser(manifestText).parse();
    Json const* model = manifest.get("model");

    // 2. The plugin library: hash first, then load (loading runs its code).
    Json const* pluginRecord = manifest.get("plugin");
    bool const needsPlugin = pluginRecord && pluginRecord->kind == Json::Kind::kObject;
    std::string pluginPath = opt.plugin.empty() && needsPlugin ? jsonText(pluginRecord->get("file")) : opt.plugin;
    void* pluginHandle = nullptr;
    if (!pluginPath.empty())
    {
        if (opt.verify && needsPlugin)
        {
            std::string const expected = jsonText(pluginRecord->get("sha256"));
            if (Sha256::hexDigest(readFile(pluginPath)) != expected)
            {
                fail("plugin library " + pluginPath + " does not match the sha256 in " + opt.manifest);
            }
        }
        pluginHandle = dlopen(pluginPath.c_str(), RTLD_NOW | RTLD_GLOBAL);
        if (pluginHandle == nullptr)
        {
            fail(std::string("cannot load the plugin library: ") + dlerror());
        }
    }
    else if (needsPlugin)
    {
        fail("the engine needs the FusedLRN plugin library: pass --plugin PATH");
    }

    // 3. TensorRT version and engine hash.
    std::string const builtWith = jsonText(manifest.at({"environment", "tensorrt"}), "?");
    int32_t const libVersion = getInferLibVersion();
    int const major = libVersion / 10000;
    int const minor = (libVersion / 100) % 100;
    int const patch = libVersion % 100;
    std::string const here = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
    if (opt.verify && builtWith.rfind(here + ".", 0) != 0 && builtWith != here)
    {
        fail("the engine was built with TensorRT " + builtWith + ", this is TensorRT " + here);
    }
    std::vector<uint8_t> const engineBytes = readFile(opt.engine);
    if (opt.verify && Sha256::hexDigest(engineBytes) != jsonText(manifest.at({"engine", "sha256"})))
    {
        fail("engine " + opt.engine + " does not match the sha256 in " + opt.manifest);
    }

    // 4. Deserialize and describe the I/O.
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    if (!runtime)
    {
        fail("cannot create the TensorRT runtime");
    }
    std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(engineBytes.data(), engineBytes.size())};
    if (!engine)
    {
        fail("cannot deserialize " + opt.engine + " (built for another TensorRT or GPU, or the plugin is missing)");
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};
    if (!context)
    {
        fail("cannot create an execution context");
    }
    std::string inputName;
    std::string outputName;
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i)
    {
        char const* name = engine->getIOTensorName(i);
        (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputName : outputName) = name;
    }
    nvinfer1::Dims const maxShape
        = engine->getProfileShape(inputName.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    nvinfer1::Dims const minShape
        = engine->getProfileShape(inputName.c_str(), 0, nvinfer1::OptProfileSelector::kMIN);
    if (maxShape.nbDims != 4 || minShape.d[0] > 1)
    {
        fail("expected an NCHW input whose profile allows batch 1, got min " + dimsToString(minShape));
    }
    int const channels = static_cast<int>(maxShape.d[1]);
    int const size = opt.size ? opt.size : static_cast<int>(maxShape.d[2]);
    std::vector<float> mean = !opt.mean.empty() ? opt.mean : jsonFloats(model ? model->get("mean") : nullptr);
    std::vector<float> stdev = !opt.stdev.empty() ? opt.stdev : jsonFloats(model ? model->get("std") : nullptr);
    if (mean.empty())
    {
        mean.assign(channels, 0.F);
    }
    if (stdev.empty())
    {
        stdev.assign(channels, 1.F);
    }
    if (static_cast<int>(mean.size()) != channels || static_cast<int>(stdev.size()) != channels)
    {
        fail("--mean/--std need " + std::to_string(channels) + " values");
    }

    // 5. Preprocess, copy in, run, copy out.
    std::vector<float> const input = preprocess(readNetpbm(opt.image), size, channels, mean, stdev);
    nvinfer1::Dims inputShape = maxShape;
    inputShape.d[0] = 1;
    inputShape.d[2] = size;
    inputShape.d[3] = size;
    if (!context->setInputShape(inputName.c_str(), inputShape))
    {
        fail("the engine does not accept input shape " + dimsToString(inputShape));
    }
    nvinfer1::Dims const outputShape = context->getTensorShape(outputName.c_str());
    nvinfer1::DataType const inType = engine->getTensorDataType(inputName.c_str());
    nvinfer1::DataType const outType = engine->getTensorDataType(outputName.c_str());
    size_t const outCount = static_cast<size_t>(volume(outputShape));
    DeviceBuffer dIn(input.size() * elementSize(inType));
    DeviceBuffer dOut(outCount * elementSize(outType));
    std::vector<uint16_t> inputHalf;
    void const* hostIn = input.data();
    if (inType == nvinfer1::DataType::kHALF)
    {
        inputHalf.resize(input.size());
        std::transform(input.begin(), input.end(), inputHalf.begin(), floatToHalf);
        hostIn = inputHalf.data();
    }
    cudaStream_t stream = nullptr;
    checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    checkCuda(cudaMemcpyAsync(dIn.ptr, hostIn, input.size() * elementSize(inType), cudaMemcpyHostToDevice, stream),
        "copy to device");
    context->setTensorAddress(inputName.c_str(), dIn.ptr);
    context->setTensorAddress(outputName.c_str(), dOut.ptr);
    if (!context->enqueueV3(stream))
    {
        fail("inference failed (see the TensorRT messages above)");
    }
    std::vector<uint8_t> raw(outCount * elementSize(outType));
    checkCuda(cudaMemcpyAsync(raw.data(), dOut.ptr, raw.size(), cudaMemcpyDeviceToHost, stream), "copy to host");
    checkCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    cudaStreamDestroy(stream);

    std::vector<float> logits(outCount);
    for (size_t i = 0; i < outCount; ++i)
    {
        if (outType == nvinfer1::DataType::kHALF)
        {
            uint16_t h = 0;
            std::memcpy(&h, &raw[i * 2], 2);
            logits[i] = halfToFloat(h);
        }
        else
        {
            std::memcpy(&logits[i], &raw[i * 4], 4);
        }
    }

    // 6. Softmax and top-K.
    float const peak = *std::max_element(logits.begin(), logits.end());
    std::vector<double> prob(outCount);
    double total = 0.0;
    for (size_t i = 0; i < outCount; ++i)
    {
        prob[i] = std::exp(static_cast<double>(logits[i] - peak));
        total += prob[i];
    }
    std::vector<size_t> order(outCount);
    std::iota(order.begin(), order.end(), size_t{0});
    size_t const k = std::min(outCount, static_cast<size_t>(std::max(opt.top, 1)));
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
        [&](size_t a, size_t b) { return logits[a] > logits[b]; });
    Json const* classes = model ? model->get("classes") : nullptr;
    std::cout << "engine " << opt.engine << " (TensorRT " << here << "), input " << dimsToString(inputShape) << "\n";
    for (size_t r = 0; r < k; ++r)
    {
        size_t const c = order[r];
        std::string label = "class " + std::to_string(c);
        if (classes && classes->kind == Json::Kind::kArray && c < classes->items.size())
        {
            label = classes->items[c].text;
        }
        std::printf("%zu. %-24s %6.2f%%  (logit %.4f)\n", r + 1, label.c_str(), 100.0 * prob[c] / total, logits[c]);
    }
    // Engine, context and runtime go before the plugin library they may call into.
    context.reset();
    engine.reset();
    runtime.reset();
    if (pluginHandle)
    {
        dlclose(pluginHandle);
    }
    return 0;
}
#else
//! Built with -DCLASSIFY_SELF_TEST (no TensorRT or CUDA libraries needed): prints, as JSON, what the
//! host-side code computes, so tests can compare it with Python (hashlib, the JSON module, torchvision).
//!   classify MANIFEST IMAGE SIZE CHANNELS
int selfTest(int argc, char** argv)
{
    if (argc != 5)
    {
        fail("self-test usage: classify MANIFEST IMAGE SIZE CHANNELS");
    }
    std::vector<uint8_t> const bytes = readFile(argv[1]);
    Json const manifest = JsonParser(std::string(bytes.begin(), bytes.end())).parse();
    int const size = std::atoi(argv[3]);
    int const channels = std::atoi(argv[4]);
    std::vector<float> const mean = jsonFloats(manifest.at({"model", "mean"}));
    std::vector<float> const stdev = jsonFloats(manifest.at({"model", "std"}));
    std::vector<float> const tensor = preprocess(readNetpbm(argv[2]), size, channels, mean, stdev);
    std::printf("{\"manifest_sha256\": \"%s\", \"engine_sha256\": \"%s\", \"classes\": [",
        Sha256::hexDigest(bytes).c_str(), jsonText(manifest.at({"engine", "sha256"})).c_str());
    Json const* classes = manifest.at({"model", "classes"});
    for (size_t i = 0; classes && i < classes->items.size(); ++i)
    {
        std::string escaped;
        for (char c : classes->items[i].text)
        {
            if (c == '"' || c == '\\')
            {
                escaped += '\\';
            }
            escaped += c;
        }
        std::printf("%s\"%s\"", i ? ", " : "", escaped.c_str());
    }
    std::printf("], \"half_round_trip\": [");
    float const probes[] = {0.1F, -2.5F, 65504.F, 1e-6F, 3.14159F};
    for (size_t i = 0; i < 5; ++i)
    {
        std::printf("%s%.9g", i ? ", " : "", halfToFloat(floatToHalf(probes[i])));
    }
    std::printf("], \"tensor\": [");
    for (size_t i = 0; i < tensor.size(); ++i)
    {
        std::printf("%s%.6f", i ? ", " : "", tensor[i]);
    }
    std::printf("]}\n");
    return 0;
}
#endif

} // namespace

int main(int argc, char** argv)
{
    try
    {
#ifdef CLASSIFY_SELF_TEST
        return selfTest(argc, argv);
#else
        return run(parseArgs(argc, argv));
#endif
    }
    catch (std::exception const& e)
    {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
