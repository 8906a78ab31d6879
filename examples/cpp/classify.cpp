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
// Builds against TensorRT 10.x and 11.x (see CMakeLists.txt). The host-side helpers live beside
// this file: json.h (manifest), sha256.h, image.h (PPM/PGM, resize, preprocessing), half.h (FP16).

#include "file.h"
#include "half.h"
#include "image.h"
#include "json.h"
#include "sha256.h"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

using namespace classify;

[[noreturn]] void fail(std::string const& message)
{
    throw std::runtime_error(message);
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

size_t elementSize(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    default: fail("this example handles FP32 and FP16 I/O tensors only");
    }
}

int64_t volume(nvinfer1::Dims const& dims)
{
    int64_t v = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        v *= dims.d[i];
    }
    return v;
}

std::string dimsToString(nvinfer1::Dims const& dims)
{
    std::string out = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        out += (i ? ", " : "") + std::to_string(dims.d[i]);
    }
    return out + ")";
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

Options parseArgs(int argc, char** argv)
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

int run(Options const& opt)
{
    // 1. The manifest: what the engine needs and what its files must hash to.
    std::vector<uint8_t> const manifestBytes = readFile(opt.manifest);
    std::string const manifestText(manifestBytes.begin(), manifestBytes.end());
    Json const manifest = parseJson(manifestText);
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
            if (sha256Hex(readFile(pluginPath)) != expected)
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
    if (opt.verify && sha256Hex(engineBytes) != jsonText(manifest.at({"engine", "sha256"})))
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
} // namespace

int main(int argc, char** argv)
{
    try
    {
        return run(parseArgs(argc, argv));
    }
    catch (std::exception const& e)
    {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
