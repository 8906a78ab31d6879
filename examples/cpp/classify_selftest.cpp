// classify_selftest: runs the example's host-side helpers (json, sha256, image, half) and prints
// what they compute, so tests/test_examples.py can compare them with Python (json, hashlib,
// numpy, toolchain's transform). Plain C++17: no TensorRT or CUDA needed.
//
//   classify_selftest MANIFEST IMAGE SIZE CHANNELS       one JSON line: hashes, classes, tensor
//   classify_selftest sha256 FILE...                    one hex digest per line
//   classify_selftest json FILE                         the parsed document written back as JSON
//   classify_selftest half-encode IN.f32 OUT.u16        float32 -> FP16 bits
//   classify_selftest half-decode IN.u16 OUT.f32        FP16 bits -> float32
//   classify_selftest preprocess IMAGE SIZE CHANNELS MEAN STD OUT.f32   (MEAN/STD: comma lists)
#include "file.h"
#include "half.h"
#include "image.h"
#include "json.h"
#include "sha256.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

using namespace classify;

std::string quoted(std::string const& s)
{
    std::string out = "\"";
    for (char c : s)
    {
        if (c == '"' || c == '\\')
        {
            out += '\\';
            out += c;
        }
        else if (static_cast<unsigned char>(c) < 0x20)
        {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
        }
        else
        {
            out += c; // UTF-8 passes through
        }
    }
    return out + "\"";
}

std::string write(Json const& value)
{
    switch (value.kind)
    {
    case Json::Kind::kNull: return "null";
    case Json::Kind::kBool: return value.boolean ? "true" : "false";
    case Json::Kind::kNumber:
    {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", value.number);
        std::string text = buf;
        return text == "nan" || text == "-nan" ? "NaN" : text == "inf" ? "Infinity" : text == "-inf" ? "-Infinity" : text;
    }
    case Json::Kind::kString: return quoted(value.text);
    case Json::Kind::kArray:
    {
        std::string out = "[";
        for (size_t i = 0; i < value.items.size(); ++i)
        {
            out += (i ? ", " : "") + write(value.items[i]);
        }
        return out + "]";
    }
    case Json::Kind::kObject:
    {
        std::string out = "{";
        bool first = true;
        for (auto const& [key, item] : value.fields)
        {
            out += (first ? "" : ", ") + quoted(key) + ": " + write(item);
            first = false;
        }
        return out + "}";
    }
    }
    return "null";
}

template <typename T>
std::vector<T> readArray(std::string const& path)
{
    std::vector<uint8_t> const bytes = readFile(path);
    std::vector<T> out(bytes.size() / sizeof(T));
    std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
    return out;
}

template <typename T>
void writeArray(std::string const& path, std::vector<T> const& values)
{
    FILE* f = std::fopen(path.c_str(), "wb");
    bool const ok = f != nullptr && std::fwrite(values.data(), sizeof(T), values.size(), f) == values.size();
    if (f != nullptr)
    {
        std::fclose(f);
    }
    if (!ok)
    {
        throw std::runtime_error("cannot write " + path);
    }
}

//! MANIFEST IMAGE SIZE CHANNELS: what classify computes before TensorRT, in one JSON line.
int summary(char** argv)
{
    std::vector<uint8_t> const bytes = readFile(argv[1]);
    Json const manifest = parseJson(std::string(bytes.begin(), bytes.end()));
    int const size = std::atoi(argv[3]);
    int const channels = std::atoi(argv[4]);
    std::vector<float> const mean = jsonFloats(manifest.at({"model", "mean"}));
    std::vector<float> const stdev = jsonFloats(manifest.at({"model", "std"}));
    std::vector<float> const tensor = preprocess(readNetpbm(argv[2]), size, channels, mean, stdev);
    std::printf("{\"manifest_sha256\": \"%s\", \"engine_sha256\": %s, \"classes\": [", sha256Hex(bytes).c_str(),
        quoted(jsonText(manifest.at({"engine", "sha256"}))).c_str());
    Json const* classes = manifest.at({"model", "classes"});
    for (size_t i = 0; classes != nullptr && i < classes->items.size(); ++i)
    {
        std::printf("%s%s", i ? ", " : "", quoted(classes->items[i].text).c_str());
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

int usage()
{
    std::fprintf(stderr,
        "usage: classify_selftest MANIFEST IMAGE SIZE CHANNELS\n"
        "       classify_selftest sha256 FILE...\n"
        "       classify_selftest json FILE\n"
        "       classify_selftest half-encode IN.f32 OUT.u16 | half-decode IN.u16 OUT.f32\n"
        "       classify_selftest preprocess IMAGE SIZE CHANNELS MEAN STD OUT.f32\n");
    return 2;
}

int dispatch(int argc, char** argv)
{
    std::string const command = argc > 1 ? argv[1] : "";
    if (command == "sha256" && argc >= 3)
    {
        for (int i = 2; i < argc; ++i)
        {
            std::printf("%s\n", sha256Hex(readFile(argv[i])).c_str());
        }
        return 0;
    }
    if (command == "json" && argc == 3)
    {
        std::vector<uint8_t> const bytes = readFile(argv[2]);
        std::printf("%s\n", write(parseJson(std::string(bytes.begin(), bytes.end()))).c_str());
        return 0;
    }
    if (command == "half-encode" && argc == 4)
    {
        std::vector<float> const in = readArray<float>(argv[2]);
        std::vector<uint16_t> out(in.size());
        for (size_t i = 0; i < in.size(); ++i)
        {
            out[i] = floatToHalf(in[i]);
        }
        writeArray(argv[3], out);
        return 0;
    }
    if (command == "half-decode" && argc == 4)
    {
        std::vector<uint16_t> const in = readArray<uint16_t>(argv[2]);
        std::vector<float> out(in.size());
        for (size_t i = 0; i < in.size(); ++i)
        {
            out[i] = halfToFloat(in[i]);
        }
        writeArray(argv[3], out);
        return 0;
    }
    if (command == "preprocess" && argc == 8)
    {
        writeArray(argv[7], preprocess(readNetpbm(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), parseFloats(argv[5]),
                                parseFloats(argv[6])));
        return 0;
    }
    if (argc == 5)
    {
        return summary(argv);
    }
    return usage();
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        return dispatch(argc, argv);
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
