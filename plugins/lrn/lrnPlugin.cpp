// FusedLRN TensorRT plugin: IPluginV3 (OneCore/OneBuild/OneRuntime) + IPluginCreatorV3One.
//
// Registration (one per built library, never both in one loaded copy: a second
// registration of the same name/version/namespace fails, and loadLibrary refuses a
// library whose creators are already registered):
// - default (libtoolchain_lrn_plugin.so): registers the creator when the library is
//   loaded, like REGISTER_TENSORRT_PLUGIN, so ctypes.CDLL / dlopen, polygraphy
//   --plugins and trtexec --staticPlugins work. Links libnvinfer (getPluginRegistry).
// - TOOLCHAIN_LRN_DYNAMIC_REGISTRATION (libtoolchain_lrn_plugin_dynamic.so): exports
//   getCreators / setLoggerFinder for IPluginRegistry::loadLibrary, trtexec
//   --dynamicPlugins and embedding in version-compatible engines. References no
//   libnvinfer symbol, so it works with the lean runtime too.
#include "lrnPlugin.h"

#include "lrnKernel.h"
#include "lrnShape.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

using namespace nvinfer1;

namespace toolchain
{
namespace lrn
{
namespace
{

#if defined(TOOLCHAIN_LRN_DYNAMIC_REGISTRATION)
// TensorRT hands the library an ILoggerFinder through setLoggerFinder.
std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder{nullptr};

ILogger* pluginLogger() noexcept
{
    // findLogger() is not noexcept and locking can throw: never let either escape.
    try
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        return gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    }
    catch (...)
    {
        return nullptr;
    }
}
#else
ILogger* pluginLogger() noexcept
{
    // libnvinfer's global logger (set by the first builder/runtime); may be null.
    return ::getLogger();
}
#endif

void log(ILogger::Severity severity, char const* msg) noexcept
{
    ILogger* logger = pluginLogger();
    if (logger != nullptr)
    {
        logger->log(severity, msg);
    }
    else if (severity <= ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "[FusedLRN] %s\n", msg);
    }
}

void logError(std::string const& msg) noexcept
{
    log(ILogger::Severity::kERROR, msg.c_str());
}

// Catch-all for the noexcept boundary: log and let the caller return its failure code.
void logException(char const* where) noexcept
{
    try
    {
        throw;
    }
    catch (std::exception const& e)
    {
        logError(std::string(kLRN_PLUGIN_NAME) + "::" + where + ": " + e.what());
    }
    catch (...)
    {
        logError(std::string(kLRN_PLUGIN_NAME) + "::" + where + ": unknown exception");
    }
}

bool isSupportedType(DataType t) noexcept
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

char const* typeName(DataType t) noexcept
{
    switch (t)
    {
    case DataType::kFLOAT: return "FLOAT";
    case DataType::kHALF: return "HALF";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kBOOL: return "BOOL";
    default: return "OTHER";
    }
}

std::string dimsText(Dims const& d)
{
    std::string text = "[";
    for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS; ++i)
    {
        text += (i ? "," : "") + std::to_string(d.d[i]);
    }
    return text + "]";
}

std::mutex gTraceMutex;

// One VERBOSE line per build-time call TensorRT makes, so a build's log shows that (and how)
// the real builder drove the plugin: "FusedLRN 'node' build call <method>: <detail>".
// The same line is appended to $TOOLCHAIN_LRN_TRACE_FILE when set: TensorRT-RTX 1.7's logger
// finder hands a dynamically loaded plugin no logger (findLogger() returns null).
void traceBuildCall(std::string const& node, char const* method, std::string const& detail) noexcept
{
    try
    {
        std::string const line
            = std::string(kLRN_PLUGIN_NAME) + " '" + node + "' build call " + method + ": " + detail;
        log(ILogger::Severity::kVERBOSE, line.c_str());
        char const* path = std::getenv(kLRN_TRACE_FILE_ENV);
        if (path != nullptr && path[0] != '\0')
        {
            std::lock_guard<std::mutex> lock(gTraceMutex);
            if (FILE* file = std::fopen(path, "a"))
            {
                std::fprintf(file, "%s\n", line.c_str());
                std::fclose(file);
            }
        }
    }
    catch (...)
    {
    }
}

// Reads one scalar field, accepting the widths TensorRT or callers may use.
template <typename Out>
Out readScalar(PluginField const& f)
{
    if (f.data == nullptr || f.length != 1)
    {
        throw std::invalid_argument(std::string("field '") + f.name + "' must hold exactly one value");
    }
    switch (f.type)
    {
    case PluginFieldType::kINT32: return static_cast<Out>(*static_cast<int32_t const*>(f.data));
    case PluginFieldType::kINT64: return static_cast<Out>(*static_cast<int64_t const*>(f.data));
    case PluginFieldType::kFLOAT32: return static_cast<Out>(*static_cast<float const*>(f.data));
    case PluginFieldType::kFLOAT64: return static_cast<Out>(*static_cast<double const*>(f.data));
    default: throw std::invalid_argument(std::string("field '") + f.name + "' has an unsupported type");
    }
}

} // namespace

void validateAttributes(LrnAttributes const& a)
{
    if (a.size < 1)
    {
        throw std::invalid_argument("size must be >= 1, got " + std::to_string(a.size));
    }
    if (!std::isfinite(a.alpha) || a.alpha < 0.F)
    {
        throw std::invalid_argument("alpha must be finite and >= 0, got " + std::to_string(a.alpha));
    }
    if (!std::isfinite(a.beta))
    {
        throw std::invalid_argument("beta must be finite");
    }
    if (!std::isfinite(a.bias) || !(a.bias > 0.F))
    {
        throw std::invalid_argument("bias must be finite and > 0, got " + std::to_string(a.bias));
    }
}

// ---------------------------------------------------------------------------------------
// LrnPlugin

LrnPlugin::LrnPlugin(std::string name, LrnAttributes const& attrs)
    : mName(std::move(name))
    , mAttrs(attrs)
{
    validateAttributes(mAttrs);
}

LrnPlugin::LrnPlugin(LrnPlugin const& other)
    : mName(other.mName)
    , mAttrs(other.mAttrs)
    , mErrorRecorder(other.mErrorRecorder)
{
    // mSerialFields points into *this, so it is rebuilt on demand, never copied.
}

IPluginCapability* LrnPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    try
    {
        switch (type)
        {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
    }
    catch (...)
    {
        logException("getCapabilityInterface");
    }
    return nullptr;
}

IPluginV3* LrnPlugin::clone() noexcept
{
    try
    {
        return new LrnPlugin(*this);
    }
    catch (...)
    {
        logException("clone");
    }
    return nullptr;
}

char const* LrnPlugin::getPluginName() const noexcept
{
    return kLRN_PLUGIN_NAME;
}

char const* LrnPlugin::getPluginVersion() const noexcept
{
    return kLRN_PLUGIN_VERSION;
}

char const* LrnPlugin::getPluginNamespace() const noexcept
{
    return kLRN_PLUGIN_NAMESPACE;
}

int32_t LrnPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t LrnPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != 1 || nbOutputs != 1)
        {
            throw std::invalid_argument("expects 1 input and 1 output");
        }
        if (in[0].desc.dims.nbDims != 4 || out[0].desc.dims.nbDims != 4)
        {
            throw std::invalid_argument(
                "expects a 4-D NCHW tensor, got rank " + std::to_string(in[0].desc.dims.nbDims));
        }
        if (!isSupportedType(in[0].desc.type) || out[0].desc.type != in[0].desc.type)
        {
            throw std::invalid_argument("supports FP32 or FP16 with output type = input type");
        }
        traceBuildCall(mName, "configurePlugin",
            std::string("type ") + typeName(in[0].desc.type) + " min " + dimsText(in[0].min) + " max "
                + dimsText(in[0].max));
        return 0;
    }
    catch (...)
    {
        logException("configurePlugin");
    }
    return -1;
}

int32_t LrnPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != 1)
        {
            throw std::invalid_argument("expects 1 input and 1 output");
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    catch (...)
    {
        logException("getOutputDataTypes");
    }
    return -1;
}

int32_t LrnPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        if (outputs == nullptr)
        {
            throw std::invalid_argument("expects 1 input and 1 output");
        }
        outputs[0] = outputDims(inputs, nbInputs, nbOutputs);
        traceBuildCall(mName, "getOutputShapes", "input rank " + std::to_string(inputs[0].nbDims));
        return 0;
    }
    catch (...)
    {
        logException("getOutputShapes");
    }
    return -1;
}

bool LrnPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        if (inOut == nullptr || nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1)
        {
            return false;
        }
        // The output is accepted only next to an accepted input (TensorRT usually asks in
        // order, but the answer must not depend on that).
        bool supported = true;
        for (int32_t i = 0; i <= pos && supported; ++i)
        {
            PluginTensorDesc const& desc = inOut[i].desc;
            supported = desc.format == TensorFormat::kLINEAR && desc.dims.nbDims == 4 && isSupportedType(desc.type);
        }
        supported = supported && (pos == 0 || inOut[1].desc.type == inOut[0].desc.type);
        traceBuildCall(mName, "supportsFormatCombination",
            "pos " + std::to_string(pos) + " type " + typeName(inOut[pos].desc.type)
                + (inOut[pos].desc.format == TensorFormat::kLINEAR ? " LINEAR" : " other format")
                + (supported ? " -> yes" : " -> no"));
        return supported;
    }
    catch (...)
    {
        logException("supportsFormatCombination");
    }
    return false;
}

int32_t LrnPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != 1 || nbOutputs != 1 || in[0].dims.nbDims != 4)
        {
            throw std::invalid_argument("expects one 4-D input and one output");
        }
        for (int32_t i = 0; i < 4; ++i)
        {
            if (in[0].dims.d[i] != out[0].dims.d[i])
            {
                throw std::invalid_argument("output shape must equal input shape");
            }
        }
        return 0;
    }
    catch (...)
    {
        logException("onShapeChange");
    }
    return -1;
}

int32_t LrnPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportError("enqueue: null descriptors or buffers");
            return -1;
        }
        Dims const& d = inputDesc[0].dims;
        if (d.nbDims != 4 || !isSupportedType(inputDesc[0].type))
        {
            reportError("enqueue: expects a 4-D FP32 or FP16 tensor");
            return -1;
        }
        LrnDataType const dtype
            = inputDesc[0].type == DataType::kHALF ? LrnDataType::kFLOAT16 : LrnDataType::kFLOAT32;
        cudaError_t const status = lrnForward(inputs[0], outputs[0], dtype, d.d[0], d.d[1], d.d[2], d.d[3],
            mAttrs.size, mAttrs.alpha, mAttrs.beta, mAttrs.bias, stream);
        if (status != cudaSuccess)
        {
            reportError((std::string("enqueue: ") + cudaGetErrorName(status) + ": " + cudaGetErrorString(status))
                    .c_str());
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        logException("enqueue");
    }
    return -1;
}

IPluginV3* LrnPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new LrnPlugin(*this);
        plugin->mErrorRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
        return plugin;
    }
    catch (...)
    {
        logException("attachToContext");
    }
    return nullptr;
}

PluginFieldCollection const* LrnPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        // Same names and types the creator reads: createPlugin restores the plugin.
        mSerialFields.clear();
        mSerialFields.emplace_back(kLRN_FIELD_SIZE, &mAttrs.size, PluginFieldType::kINT32, 1);
        mSerialFields.emplace_back(kLRN_FIELD_ALPHA, &mAttrs.alpha, PluginFieldType::kFLOAT32, 1);
        mSerialFields.emplace_back(kLRN_FIELD_BETA, &mAttrs.beta, PluginFieldType::kFLOAT32, 1);
        mSerialFields.emplace_back(kLRN_FIELD_BIAS, &mAttrs.bias, PluginFieldType::kFLOAT32, 1);
        mSerialFc.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialFc.fields = mSerialFields.data();
        return &mSerialFc;
    }
    catch (...)
    {
        logException("getFieldsToSerialize");
    }
    return nullptr;
}

void LrnPlugin::reportError(char const* what) const noexcept
{
    std::string msg;
    try
    {
        msg = std::string(kLRN_PLUGIN_NAME) + " '" + mName + "': " + what;
    }
    catch (...)
    {
        return;
    }
    // The execution context's error recorder when attached, otherwise the logger.
    if (mErrorRecorder != nullptr)
    {
        mErrorRecorder->reportError(ErrorCode::kFAILED_EXECUTION, msg.c_str());
    }
    else
    {
        logError(msg);
    }
}

// ---------------------------------------------------------------------------------------
// LrnPluginCreator

LrnPluginCreator::LrnPluginCreator()
{
    // Field names the ONNX parser passes through (node attributes of the same name).
    mFields.emplace_back(kLRN_FIELD_SIZE, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kLRN_FIELD_ALPHA, nullptr, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(kLRN_FIELD_BETA, nullptr, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(kLRN_FIELD_BIAS, nullptr, PluginFieldType::kFLOAT32, 1);
    mFc.nbFields = static_cast<int32_t>(mFields.size());
    mFc.fields = mFields.data();
}

char const* LrnPluginCreator::getPluginName() const noexcept
{
    return kLRN_PLUGIN_NAME;
}

char const* LrnPluginCreator::getPluginVersion() const noexcept
{
    return kLRN_PLUGIN_VERSION;
}

char const* LrnPluginCreator::getPluginNamespace() const noexcept
{
    return kLRN_PLUGIN_NAMESPACE;
}

PluginFieldCollection const* LrnPluginCreator::getFieldNames() noexcept
{
    return &mFc;
}

IPluginV3* LrnPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        // Build and runtime phases take the same fields: at runtime they come from
        // getFieldsToSerialize of the plugin that was built into the engine.
        (void) phase;
        LrnAttributes attrs;
        // Every field is required: the exporter always writes all four, and a default
        // here would silently pick one of two alpha conventions (paper vs PyTorch).
        bool have[4] = {false, false, false, false};
        char const* const names[4] = {kLRN_FIELD_SIZE, kLRN_FIELD_ALPHA, kLRN_FIELD_BETA, kLRN_FIELD_BIAS};
        if (fc != nullptr && fc->nbFields > 0 && fc->fields == nullptr)
        {
            throw std::invalid_argument("null field array");
        }
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            if (f.name == nullptr)
            {
                continue;
            }
            if (std::strcmp(f.name, kLRN_FIELD_SIZE) == 0)
            {
                // Read wide and range-check before narrowing: 2**32 + 5 must not become 5.
                double const v = readScalar<double>(f);
                if (!(v == std::floor(v)) || v < 1 || v > 2147483647.0)
                {
                    throw std::invalid_argument("size must be an integer in [1, 2147483647]");
                }
                attrs.size = static_cast<int32_t>(v);
                have[0] = true;
            }
            else if (std::strcmp(f.name, kLRN_FIELD_ALPHA) == 0)
            {
                attrs.alpha = readScalar<float>(f);
                have[1] = true;
            }
            else if (std::strcmp(f.name, kLRN_FIELD_BETA) == 0)
            {
                attrs.beta = readScalar<float>(f);
                have[2] = true;
            }
            else if (std::strcmp(f.name, kLRN_FIELD_BIAS) == 0)
            {
                attrs.bias = readScalar<float>(f);
                have[3] = true;
            }
            // Other fields are ignored: the parser only passes names from getFieldNames.
        }
        for (int32_t i = 0; i < 4; ++i)
        {
            if (!have[i])
            {
                throw std::invalid_argument(std::string("missing required field '") + names[i] + "'");
            }
        }
        return new LrnPlugin(name != nullptr ? name : "", attrs);
    }
    catch (...)
    {
        // The instance name is the ONNX node's name: say which node was refused.
        try
        {
            logException((std::string("createPlugin('") + (name != nullptr ? name : "") + "')").c_str());
        }
        catch (...)
        {
            logException("createPlugin");
        }
    }
    return nullptr;
}

} // namespace lrn
} // namespace toolchain

// ---------------------------------------------------------------------------------------
// Registration

#if defined(TOOLCHAIN_LRN_DYNAMIC_REGISTRATION)

// TENSORRTAPI is empty outside TensorRT's own build, and the library is built with
// hidden visibility: export the two entry points explicitly.
#define TOOLCHAIN_LRN_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

TOOLCHAIN_LRN_PLUGIN_EXPORT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static toolchain::lrn::LrnPluginCreator sCreator;
    static IPluginCreatorInterface* const sCreators[] = {&sCreator};
    nbCreators = 1;
    return sCreators;
}

TOOLCHAIN_LRN_PLUGIN_EXPORT void setLoggerFinder(ILoggerFinder* finder)
{
    try
    {
        std::lock_guard<std::mutex> lock(toolchain::lrn::gLoggerMutex);
        toolchain::lrn::gLoggerFinder = finder;
    }
    catch (...)
    {
        // Keep the previous finder; logging falls back to stderr when there is none.
    }
}

#else

namespace
{
// What REGISTER_TENSORRT_PLUGIN does, except that it passes the creator's own
// namespace instead of "" so the registry key cannot disagree with
// getPluginNamespace(), and it reports a failed registration.
struct LrnStaticRegistrar
{
    toolchain::lrn::LrnPluginCreator creator;
    LrnStaticRegistrar()
    {
        IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr || !registry->registerCreator(creator, toolchain::lrn::kLRN_PLUGIN_NAMESPACE))
        {
            toolchain::lrn::log(ILogger::Severity::kWARNING,
                "FusedLRN: creator not registered (no plugin registry, or already registered by another copy of "
                "the plugin library)");
        }
    }
};
LrnStaticRegistrar gLrnStaticRegistrar;
} // namespace

#endif
