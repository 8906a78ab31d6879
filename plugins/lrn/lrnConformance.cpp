// Conformance harness for the FusedLRN plugin: does to the plugin what TensorRT's
// builder and runtime do, through TensorRT's real plugin registry (libnvinfer or
// libnvinfer_lean; the lean runtime's registry works without a GPU or driver).
//
//   toolchain_lrn_conformance registry  (--static LIB | --dynamic LIB)...
//   toolchain_lrn_conformance interface (--static LIB | --dynamic LIB)
//   toolchain_lrn_conformance loops     (--static LIB | --dynamic LIB) [N]
//   toolchain_lrn_conformance enqueue   (--static LIB | --dynamic LIB) SIZE ALPHA BETA BIAS fp32|fp16 N C H W IN OUT
//
// Every result is one JSON object per line on stdout ({"check": ..., "ok": ...} and
// data lines), so tests/test_plugin_conformance.py and `toolchain plugin check` read
// the same thing. Exit status: 0 when every check passed, 1 otherwise, 2 on usage errors.
#include "lrnOpNames.h"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <limits>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

using namespace nvinfer1;

#if defined(TRT_MAJOR_ENTERPRISE)
#define CONFORMANCE_TRT_MAJOR TRT_MAJOR_ENTERPRISE
#else
#define CONFORMANCE_TRT_MAJOR NV_TENSORRT_MAJOR
#endif

namespace
{

int gFailures = 0;

std::string jsonEscape(std::string const& s)
{
    std::string out;
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
            out += c;
        }
    }
    return out;
}

void check(std::string const& name, bool ok, std::string const& detail = "")
{
    if (!ok)
    {
        ++gFailures;
    }
    std::printf("{\"check\": \"%s\", \"ok\": %s, \"detail\": \"%s\"}\n", jsonEscape(name).c_str(),
        ok ? "true" : "false", jsonEscape(detail).c_str());
    std::fflush(stdout);
}

void data(std::string const& json)
{
    std::printf("%s\n", json.c_str());
    std::fflush(stdout);
}

// --- logging: the harness's logger, and stderr captured around calls --------------------

struct HarnessLogger : ILogger
{
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        try
        {
            if (severity <= Severity::kERROR)
            {
                errors.emplace_back(msg != nullptr ? msg : "");
            }
            else if (severity == Severity::kWARNING)
            {
                warnings.emplace_back(msg != nullptr ? msg : "");
            }
        }
        catch (...)
        {
        }
    }
};

struct HarnessLoggerFinder : ILoggerFinder
{
    ILogger* logger{nullptr};
    ILogger* findLogger() override
    {
        return logger;
    }
};

HarnessLogger gLogger;
HarnessLoggerFinder gFinder;

//! Redirects fd 2 to a temporary file for its lifetime; text() returns what was written.
class StderrCapture
{
public:
    StderrCapture()
    {
        std::fflush(stderr);
        mFile = std::tmpfile();
        mSaved = dup(2);
        if (mFile != nullptr && mSaved >= 0)
        {
            dup2(fileno(mFile), 2);
        }
    }
    ~StderrCapture()
    {
        restore();
        if (mFile != nullptr)
        {
            std::fclose(mFile);
        }
    }
    std::string text()
    {
        restore();
        std::string out;
        if (mFile != nullptr)
        {
            std::fflush(mFile);
            std::rewind(mFile);
            char buf[4096];
            size_t n = 0;
            while ((n = std::fread(buf, 1, sizeof(buf), mFile)) > 0)
            {
                out.append(buf, n);
            }
        }
        return out;
    }

private:
    void restore()
    {
        if (mSaved >= 0)
        {
            std::fflush(stderr);
            dup2(mSaved, 2);
            close(mSaved);
            mSaved = -1;
        }
    }
    FILE* mFile{nullptr};
    int mSaved{-1};
};

//! What one call logged: the harness logger's new errors plus anything on stderr.
struct Logged
{
    size_t errorsBefore;
    StderrCapture capture;
    Logged()
        : errorsBefore(gLogger.errors.size())
    {
    }
    std::string text()
    {
        std::string out = capture.text();
        for (size_t i = errorsBefore; i < gLogger.errors.size(); ++i)
        {
            out += gLogger.errors[i] + "\n";
        }
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
        {
            out.pop_back();
        }
        return out;
    }
};

// --- registry and libraries --------------------------------------------------------------

struct Library
{
    bool dynamic;
    std::string path;
};

//! Loads one plugin library the way TensorRT's users do; returns whether it loaded.
bool loadLibrary(Library const& lib, std::string& detail)
{
    IPluginRegistry* registry = getPluginRegistry();
    Logged logged;
    bool ok = false;
    if (lib.dynamic)
    {
        // IPluginRegistry::loadLibrary: what trtexec --dynamicPlugins and setPluginsToSerialize use.
        ok = registry->loadLibrary(lib.path.c_str()) != nullptr;
        if (ok)
        {
            // Route the library's log to the harness (TensorRT hands it its own finder).
            void* handle = dlopen(lib.path.c_str(), RTLD_NOW | RTLD_NOLOAD);
            auto* setFinder
                = handle != nullptr ? reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(handle, "setLoggerFinder")) : nullptr;
            if (setFinder != nullptr)
            {
                setFinder(&gFinder);
            }
        }
    }
    else
    {
        // Static registration: loading the library runs its registrar (ctypes.CDLL, trtexec --staticPlugins).
        ok = dlopen(lib.path.c_str(), RTLD_NOW | RTLD_LOCAL) != nullptr;
        if (!ok)
        {
            char const* err = dlerror();
            detail = err != nullptr ? err : "dlopen failed";
        }
    }
    std::string const text = logged.text();
    if (!text.empty())
    {
        detail += (detail.empty() ? "" : "; ") + text;
    }
    return ok;
}

int countCreators(IPluginRegistry* registry)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* all = registry->getAllCreators(&n);
    int count = 0;
    for (int32_t i = 0; all != nullptr && i < n; ++i)
    {
        auto* c = all[i];
        if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            continue;
        }
        auto* v3 = static_cast<IPluginCreatorV3One*>(c);
        if (std::strcmp(v3->getPluginName(), toolchain::lrn::kLRN_PLUGIN_NAME) == 0
            && std::strcmp(v3->getPluginNamespace(), toolchain::lrn::kLRN_PLUGIN_NAMESPACE) == 0)
        {
            ++count;
        }
    }
    return count;
}

IPluginCreatorV3One* findCreator()
{
    IPluginCreatorInterface* c = getPluginRegistry()->getCreator(toolchain::lrn::kLRN_PLUGIN_NAME,
        toolchain::lrn::kLRN_PLUGIN_VERSION, toolchain::lrn::kLRN_PLUGIN_NAMESPACE);
    if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return nullptr;
    }
    return static_cast<IPluginCreatorV3One*>(c);
}

// --- names of enum values (only those the plugin accepts need a name) ----------------------

std::string typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "FLOAT";
    case DataType::kHALF: return "HALF";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kBOOL: return "BOOL";
    case DataType::kUINT8: return "UINT8";
    case DataType::kBF16: return "BF16";
    case DataType::kINT64: return "INT64";
    default: return "DataType(" + std::to_string(static_cast<int>(t)) + ")";
    }
}

std::string formatName(TensorFormat f)
{
    return f == TensorFormat::kLINEAR ? "LINEAR" : "TensorFormat(" + std::to_string(static_cast<int>(f)) + ")";
}

std::string fieldTypeName(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kFLOAT16: return "FLOAT16";
    case PluginFieldType::kFLOAT32: return "FLOAT32";
    case PluginFieldType::kFLOAT64: return "FLOAT64";
    case PluginFieldType::kINT8: return "INT8";
    case PluginFieldType::kINT16: return "INT16";
    case PluginFieldType::kINT32: return "INT32";
    case PluginFieldType::kCHAR: return "CHAR";
    case PluginFieldType::kDIMS: return "DIMS";
    case PluginFieldType::kUNKNOWN: return "UNKNOWN";
    case PluginFieldType::kBF16: return "BF16";
    case PluginFieldType::kINT64: return "INT64";
    default: return "PluginFieldType(" + std::to_string(static_cast<int>(t)) + ")";
    }
}

// --- error recorder and resource context of an "execution context" -------------------------

class HarnessErrorRecorder : public IErrorRecorder
{
public:
    std::vector<std::pair<ErrorCode, std::string>> errors;
    int32_t getNbErrors() const noexcept override
    {
        return static_cast<int32_t>(errors.size());
    }
    ErrorCode getErrorCode(int32_t i) const noexcept override
    {
        return errors.at(static_cast<size_t>(i)).first;
    }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override
    {
        return errors.at(static_cast<size_t>(i)).second.c_str();
    }
    bool hasOverflowed() const noexcept override
    {
        return false;
    }
    void clear() noexcept override
    {
        errors.clear();
    }
    bool reportError(ErrorCode code, ErrorDesc desc) noexcept override
    {
        try
        {
            errors.emplace_back(code, desc != nullptr ? desc : "");
        }
        catch (...)
        {
        }
        return true;
    }
    RefCount incRefCount() noexcept override
    {
        return ++mRefs;
    }
    RefCount decRefCount() noexcept override
    {
        return --mRefs;
    }

private:
    RefCount mRefs{0};
};

class HarnessResourceContext : public IPluginResourceContext
{
public:
    explicit HarnessResourceContext(IErrorRecorder* recorder)
        : mRecorder(recorder)
    {
    }
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return mRecorder;
    }

private:
    IErrorRecorder* mRecorder;
};

// --- plugin helpers ----------------------------------------------------------------------

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return plugin != nullptr ? static_cast<T*>(plugin->getCapabilityInterface(type)) : nullptr;
}

//! Field collection in the form TensorRT's ONNX parser builds from node attributes.
struct Fields
{
    std::vector<PluginField> fields;
    std::vector<std::unique_ptr<char[]>> storage;
    PluginFieldCollection fc{};

    template <typename T>
    Fields& add(char const* name, T value, PluginFieldType type)
    {
        storage.emplace_back(new char[sizeof(T)]);
        std::memcpy(storage.back().get(), &value, sizeof(T));
        fields.emplace_back(name, storage.back().get(), type, 1);
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
        return *this;
    }
};

//! Parser-style alpha/beta/bias with `size` given as another field type (64-bit, fractional, ...).
template <typename T>
Fields fieldsWithSize(T size, PluginFieldType type, float alpha = 1e-4F, float beta = 0.75F, float bias = 1.F)
{
    Fields f;
    f.add(toolchain::lrn::kLRN_FIELD_SIZE, size, type)
        .add(toolchain::lrn::kLRN_FIELD_ALPHA, alpha, PluginFieldType::kFLOAT32)
        .add(toolchain::lrn::kLRN_FIELD_BETA, beta, PluginFieldType::kFLOAT32)
        .add(toolchain::lrn::kLRN_FIELD_BIAS, bias, PluginFieldType::kFLOAT32);
    return f;
}

//! The fields TensorRT's ONNX parser builds from the node's attributes (INT -> kINT32, FLOAT -> kFLOAT32).
Fields parserFields(int32_t size, float alpha, float beta, float bias)
{
    return fieldsWithSize(size, PluginFieldType::kINT32, alpha, beta, bias);
}

struct Attrs
{
    double size, alpha, beta, bias;
};

//! Reads back what a plugin serializes (the attributes it holds).
bool serializedAttrs(IPluginV3* plugin, Attrs& out, std::string& detail)
{
    auto* rt = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    PluginFieldCollection const* fc = rt != nullptr ? rt->getFieldsToSerialize() : nullptr;
    if (fc == nullptr || fc->nbFields != 4 || fc->fields == nullptr)
    {
        detail = "getFieldsToSerialize returned no collection of 4 fields";
        return false;
    }
    int found = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        double v = 0;
        if (f.type == PluginFieldType::kINT32)
        {
            v = *static_cast<int32_t const*>(f.data);
        }
        else if (f.type == PluginFieldType::kFLOAT32)
        {
            v = *static_cast<float const*>(f.data);
        }
        else
        {
            detail = std::string("field ") + f.name + " serialized as " + fieldTypeName(f.type);
            return false;
        }
        std::string const name = f.name;
        if (name == toolchain::lrn::kLRN_FIELD_SIZE)
        {
            out.size = v, ++found;
        }
        else if (name == toolchain::lrn::kLRN_FIELD_ALPHA)
        {
            out.alpha = v, ++found;
        }
        else if (name == toolchain::lrn::kLRN_FIELD_BETA)
        {
            out.beta = v, ++found;
        }
        else if (name == toolchain::lrn::kLRN_FIELD_BIAS)
        {
            out.bias = v, ++found;
        }
    }
    if (found != 4)
    {
        detail = "serialized fields are not size/alpha/beta/bias";
        return false;
    }
    return true;
}

bool sameAttrs(Attrs const& a, Attrs const& b)
{
    return a.size == b.size && a.alpha == b.alpha && a.beta == b.beta && a.bias == b.bias;
}

std::string describe(Attrs const& a)
{
    char buf[160];
    std::snprintf(buf, sizeof(buf), "size=%.17g alpha=%.9g beta=%.9g bias=%.9g", a.size, a.alpha, a.beta, a.bias);
    return buf;
}

PluginTensorDesc tensorDesc(DataType type, TensorFormat format, std::vector<int64_t> const& dims)
{
    PluginTensorDesc d{};
    d.type = type;
    d.format = format;
    d.scale = 1.F;
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        d.dims.d[i] = dims[i];
    }
    return d;
}

DynamicPluginTensorDesc dynamicDesc(DataType type, std::vector<int64_t> const& dims, std::vector<int64_t> const& mn,
    std::vector<int64_t> const& mx)
{
    DynamicPluginTensorDesc d{};
    d.desc = tensorDesc(type, TensorFormat::kLINEAR, dims);
    d.min = tensorDesc(type, TensorFormat::kLINEAR, mn).dims;
    d.max = tensorDesc(type, TensorFormat::kLINEAR, mx).dims;
    d.opt = d.max;
    return d;
}

// --- commands ----------------------------------------------------------------------------

int cmdRegistry(std::vector<Library> const& libs)
{
    IPluginRegistry* registry = getPluginRegistry();
    check("registry.available", registry != nullptr);
    if (registry == nullptr)
    {
        return 1;
    }
    for (size_t i = 0; i < libs.size(); ++i)
    {
        std::string detail;
        bool const loaded = loadLibrary(libs[i], detail);
        int const creators = countCreators(registry);
        data(std::string("{\"load\": ") + std::to_string(i) + ", \"how\": \"" + (libs[i].dynamic ? "dynamic" : "static")
            + "\", \"loaded\": " + (loaded ? "true" : "false") + ", \"creators\": " + std::to_string(creators)
            + ", \"detail\": \"" + jsonEscape(detail) + "\"}");
    }
    IPluginCreatorV3One* creator = findCreator();
    check("registry.getCreator", creator != nullptr, "FusedLRN/1/toolchain");
    if (creator != nullptr)
    {
        data(std::string("{\"creator\": {\"name\": \"") + creator->getPluginName() + "\", \"version\": \""
            + creator->getPluginVersion() + "\", \"namespace\": \"" + creator->getPluginNamespace() + "\"}}");
    }
    return gFailures == 0 ? 0 : 1;
}

void checkCreate(IPluginCreatorV3One* creator, std::string const& name, Fields const& fields, bool expectOk)
{
    Logged logged;
    IPluginV3* plugin = creator->createPlugin(name.c_str(), &fields.fc, TensorRTPhase::kBUILD);
    std::string const text = logged.text();
    if (expectOk)
    {
        check("createPlugin.accepts." + name, plugin != nullptr, text);
    }
    else
    {
        // Refused: null, and a reason in the log (never a crash).
        check("createPlugin.refuses." + name, plugin == nullptr && !text.empty(), text);
    }
    delete plugin;
}

int cmdInterface()
{
    IPluginCreatorV3One* creator = findCreator();
    check("registry.getCreator", creator != nullptr);
    if (creator == nullptr)
    {
        return 1;
    }
    check("creator.interface", std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0,
        creator->getInterfaceInfo().kind);

    // Field names and types (compared with toolchain/lrn_op.py's FIELDS by the test).
    PluginFieldCollection const* names = creator->getFieldNames();
    check("creator.getFieldNames", names != nullptr && names->nbFields > 0);
    for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i)
    {
        data(std::string("{\"field\": \"") + names->fields[i].name + "\", \"type\": \""
            + fieldTypeName(names->fields[i].type) + "\", \"length\": " + std::to_string(names->fields[i].length) + "}");
    }

    // createPlugin as the ONNX parser calls it (FLOAT -> kFLOAT32, INT -> kINT32) ...
    checkCreate(creator, "parser_odd", parserFields(5, 5e-4F, 0.75F, 2.F), true);
    checkCreate(creator, "parser_even", parserFields(4, 1e-4F, 0.75F, 1.F), true);
    checkCreate(creator, "parser_size_gt_channels", parserFields(1001, 1e-4F, 0.75F, 1.F), true);
    checkCreate(creator, "parser_beta_zero", parserFields(5, 1e-4F, 0.F, 1.F), true);
    // ... and with 64-bit fields, which other front ends pass.
    {
        Fields f;
        f.add("size", int64_t{5}, PluginFieldType::kINT64)
            .add("alpha", 5e-4, PluginFieldType::kFLOAT64)
            .add("beta", 0.75, PluginFieldType::kFLOAT64)
            .add("bias", 2.0, PluginFieldType::kFLOAT64);
        checkCreate(creator, "wide_64bit", f, true);
        IPluginV3* plugin = creator->createPlugin("wide", &f.fc, TensorRTPhase::kBUILD);
        Attrs got{};
        std::string detail;
        bool const ok = serializedAttrs(plugin, got, detail);
        check("createPlugin.wide_64bit.values",
            ok && got.size == 5 && got.alpha == static_cast<double>(5e-4F) && got.beta == 0.75 && got.bias == 2.0,
            ok ? describe(got) : detail);
        delete plugin;
    }
    // Bad attributes: nullptr and a logged reason.
    float const nan = std::numeric_limits<float>::quiet_NaN();
    float const inf = std::numeric_limits<float>::infinity();
    checkCreate(creator, "size_zero", parserFields(0, 1e-4F, 0.75F, 1.F), false);
    checkCreate(creator, "size_negative", parserFields(-3, 1e-4F, 0.75F, 1.F), false);
    // 2**32 + 5 must not wrap to 5.
    checkCreate(creator, "size_past_int32", fieldsWithSize(int64_t{4294967301LL}, PluginFieldType::kINT64), false);
    checkCreate(creator, "size_fractional", fieldsWithSize(5.5, PluginFieldType::kFLOAT64), false);
    checkCreate(creator, "bias_zero", parserFields(5, 1e-4F, 0.75F, 0.F), false);
    checkCreate(creator, "bias_negative", parserFields(5, 1e-4F, 0.75F, -1.F), false);
    checkCreate(creator, "alpha_negative", parserFields(5, -1e-4F, 0.75F, 1.F), false);
    checkCreate(creator, "alpha_nan", parserFields(5, nan, 0.75F, 1.F), false);
    checkCreate(creator, "beta_inf", parserFields(5, 1e-4F, inf, 1.F), false);
    checkCreate(creator, "bias_inf", parserFields(5, 1e-4F, 0.75F, inf), false);
    for (char const* missing : {"size", "alpha", "beta", "bias"})
    {
        Fields full = parserFields(5, 1e-4F, 0.75F, 1.F);
        Fields f;
        for (auto const& field : full.fields)
        {
            if (std::strcmp(field.name, missing) != 0)
            {
                if (field.type == PluginFieldType::kINT32)
                {
                    f.add(field.name, *static_cast<int32_t const*>(field.data), field.type);
                }
                else
                {
                    f.add(field.name, *static_cast<float const*>(field.data), field.type);
                }
            }
        }
        checkCreate(creator, std::string("missing_") + missing, f, false);
    }
    checkCreate(creator, "size_wrong_type", fieldsWithSize(int16_t{5}, PluginFieldType::kINT16), false);
    {
        PluginFieldCollection nullFields{2, nullptr};
        Logged logged;
        IPluginV3* p = creator->createPlugin("null_fields", &nullFields, TensorRTPhase::kBUILD);
        std::string const text = logged.text();
        check("createPlugin.refuses.null_fields", p == nullptr && !text.empty(), text);
        delete p;
    }

    Fields good = parserFields(5, 5e-4F, 0.75F, 2.F);
    IPluginV3* plugin = creator->createPlugin("lrn1", &good.fc, TensorRTPhase::kBUILD);
    check("createPlugin.build", plugin != nullptr);
    if (plugin == nullptr)
    {
        return 1;
    }
    auto* core = capability<IPluginV3OneCore>(plugin, PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    check("capability.core", core != nullptr && std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    check("capability.build", build != nullptr && std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    check("capability.runtime",
        runtime != nullptr && std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
    if (core == nullptr || build == nullptr || runtime == nullptr)
    {
        delete plugin;
        return 1;
    }
    check("core.names",
        std::strcmp(core->getPluginName(), toolchain::lrn::kLRN_PLUGIN_NAME) == 0
            && std::strcmp(core->getPluginVersion(), toolchain::lrn::kLRN_PLUGIN_VERSION) == 0
            && std::strcmp(core->getPluginNamespace(), toolchain::lrn::kLRN_PLUGIN_NAMESPACE) == 0);
    check("build.getNbOutputs", build->getNbOutputs() == 1, std::to_string(build->getNbOutputs()));

    // supportsFormatCombination over every (type x format) at the input and at the output.
    int32_t const nbTypes = EnumMax<DataType>();
    int32_t const nbFormats = EnumMax<TensorFormat>();
    std::vector<int64_t> const dims{-1, 96, 55, 55};
    int tried = 0;
    for (int32_t ti = 0; ti < nbTypes; ++ti)
    {
        for (int32_t fi = 0; fi < nbFormats; ++fi)
        {
            DynamicPluginTensorDesc io[2]{};
            io[0].desc = tensorDesc(static_cast<DataType>(ti), static_cast<TensorFormat>(fi), dims);
            io[1].desc = io[0].desc;
            ++tried;
            if (build->supportsFormatCombination(0, io, 1, 1))
            {
                data("{\"accepts\": 0, \"in\": [\"" + typeName(io[0].desc.type) + "\", \""
                    + formatName(io[0].desc.format) + "\"]}");
            }
            for (int32_t to = 0; to < nbTypes; ++to)
            {
                for (int32_t fo = 0; fo < nbFormats; ++fo)
                {
                    io[1].desc = tensorDesc(static_cast<DataType>(to), static_cast<TensorFormat>(fo), dims);
                    ++tried;
                    if (build->supportsFormatCombination(1, io, 1, 1))
                    {
                        data("{\"accepts\": 1, \"in\": [\"" + typeName(io[0].desc.type) + "\", \""
                            + formatName(io[0].desc.format) + "\"], \"out\": [\"" + typeName(io[1].desc.type)
                            + "\", \"" + formatName(io[1].desc.format) + "\"]}");
                    }
                }
            }
        }
    }
    data("{\"format_combinations_tried\": " + std::to_string(tried) + ", \"types\": " + std::to_string(nbTypes)
        + ", \"formats\": " + std::to_string(nbFormats) + "}");
    {
        DynamicPluginTensorDesc io[2]{};
        io[0].desc = tensorDesc(DataType::kFLOAT, TensorFormat::kLINEAR, {-1, 96, 55});
        io[1].desc = io[0].desc;
        check("supportsFormatCombination.rejects_rank3", !build->supportsFormatCombination(0, io, 1, 1));
        check("supportsFormatCombination.rejects_bad_pos", !build->supportsFormatCombination(2, io, 1, 1));
    }

    // getOutputDataTypes: output type = input type.
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        DataType out = DataType::kINT32;
        int32_t const status = build->getOutputDataTypes(&out, 1, &t, 1);
        check("getOutputDataTypes." + typeName(t), status == 0 && out == t, typeName(out));
    }

    // getOutputShapes is not called here: its IExprBuilder and IDimensionExpr arguments exist only
    // inside TensorRT's builder. Its rule (lrnShape.h) is tested on its own, and TensorRT-RTX's
    // real builder calls it in tests/test_rtx_build.py.

    // configurePlugin with dynamic (-1) and concrete dims; onShapeChange with concrete dims.
    {
        DynamicPluginTensorDesc in = dynamicDesc(DataType::kHALF, {-1, 96, 55, 55}, {1, 96, 55, 55}, {256, 96, 55, 55});
        DynamicPluginTensorDesc out = in;
        check("configurePlugin.dynamic", build->configurePlugin(&in, 1, &out, 1) == 0);
        in = dynamicDesc(DataType::kFLOAT, {8, 256, 27, 27}, {8, 256, 27, 27}, {8, 256, 27, 27});
        out = in;
        check("configurePlugin.concrete", build->configurePlugin(&in, 1, &out, 1) == 0);
        out.desc.type = DataType::kHALF;
        Logged logged;
        int32_t const status = build->configurePlugin(&in, 1, &out, 1);
        std::string const text = logged.text();
        check("configurePlugin.rejects_type_mismatch", status != 0 && !text.empty(), text);
        check("getWorkspaceSize", build->getWorkspaceSize(&in, 1, &out, 1) == 0);
        PluginTensorDesc const rin = tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, {8, 96, 55, 55});
        PluginTensorDesc const rout = rin;
        check("onShapeChange.concrete", runtime->onShapeChange(&rin, 1, &rout, 1) == 0);
        PluginTensorDesc const bad = tensorDesc(DataType::kHALF, TensorFormat::kLINEAR, {8, 96, 55, 54});
        Logged logged2;
        int32_t const status2 = runtime->onShapeChange(&rin, 1, &bad, 1);
        std::string const text2 = logged2.text();
        check("onShapeChange.rejects_shape_mismatch", status2 != 0 && !text2.empty(), text2);
    }

    // getFieldsToSerialize -> createPlugin(RUNTIME) gives the same attributes.
    Attrs original{};
    std::string detail;
    bool const serialOk = serializedAttrs(plugin, original, detail);
    check("getFieldsToSerialize", serialOk && original.size == 5 && original.alpha == static_cast<double>(5e-4F)
            && original.beta == 0.75 && original.bias == 2.0,
        serialOk ? describe(original) : detail);
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    IPluginV3* restored = creator->createPlugin("lrn1", serial, TensorRTPhase::kRUNTIME);
    Attrs restoredAttrs{};
    check("createPlugin.runtime_round_trip",
        restored != nullptr && serializedAttrs(restored, restoredAttrs, detail) && sameAttrs(original, restoredAttrs),
        describe(restoredAttrs));

    // clone and attachToContext: equal attributes, independent lifetimes.
    IPluginV3* cloned = plugin->clone();
    HarnessErrorRecorder recorder;
    HarnessResourceContext context(&recorder);
    IPluginV3* attached = runtime->attachToContext(&context);
    delete plugin; // the copies must not depend on the original
    plugin = nullptr;
    Attrs clonedAttrs{}, attachedAttrs{};
    check("clone.independent_equal",
        cloned != nullptr && cloned != restored && serializedAttrs(cloned, clonedAttrs, detail)
            && sameAttrs(original, clonedAttrs));
    check("attachToContext.independent_equal",
        attached != nullptr && attached != cloned && serializedAttrs(attached, attachedAttrs, detail)
            && sameAttrs(original, attachedAttrs));

    // enqueue without a GPU (or with bad descriptors) fails into the context's error recorder, not a crash.
    auto* attachedRt = capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME);
    if (attachedRt != nullptr)
    {
        int devices = 0;
        bool const haveGpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
        cudaGetLastError();
        PluginTensorDesc const bad = tensorDesc(DataType::kINT8, TensorFormat::kLINEAR, {1, 4, 2, 2});
        void const* inputs[] = {reinterpret_cast<void const*>(16)};
        void* outputs[] = {reinterpret_cast<void*>(4096)};
        size_t const before = recorder.errors.size();
        int32_t const status = attachedRt->enqueue(&bad, &bad, inputs, outputs, nullptr, nullptr);
        check("enqueue.rejects_int8_into_error_recorder", status != 0 && recorder.errors.size() == before + 1,
            recorder.errors.empty() ? "" : recorder.errors.back().second);
        if (!haveGpu)
        {
            PluginTensorDesc const good = tensorDesc(DataType::kFLOAT, TensorFormat::kLINEAR, {1, 4, 2, 2});
            size_t const before2 = recorder.errors.size();
            int32_t const status2 = attachedRt->enqueue(&good, &good, inputs, outputs, nullptr, nullptr);
            check("enqueue.no_gpu_reports_error", status2 != 0 && recorder.errors.size() == before2 + 1,
                recorder.errors.empty() ? "" : recorder.errors.back().second);
        }
        data(std::string("{\"gpu\": ") + (haveGpu ? "true" : "false") + "}");
    }
    delete cloned;
    delete attached;
    delete restored;
    return gFailures == 0 ? 0 : 1;
}

int cmdLoops(int iterations)
{
    IPluginCreatorV3One* creator = findCreator();
    check("registry.getCreator", creator != nullptr);
    if (creator == nullptr)
    {
        return 1;
    }
    Fields good = parserFields(5, 5e-4F, 0.75F, 2.F);
    Fields bad = parserFields(0, 5e-4F, 0.75F, 2.F);
    HarnessErrorRecorder recorder;
    HarnessResourceContext context(&recorder);
    int made = 0;
    {
        StderrCapture quiet; // refused creations log every time
        for (int i = 0; i < iterations; ++i)
        {
            IPluginV3* p = creator->createPlugin("loop", &good.fc, TensorRTPhase::kBUILD);
            if (p == nullptr)
            {
                break;
            }
            auto* rt = capability<IPluginV3OneRuntime>(p, PluginCapabilityType::kRUNTIME);
            IPluginV3* c = p->clone();
            IPluginV3* a = rt->attachToContext(&context);
            IPluginV3* r = creator->createPlugin("loop", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
            rt->getFieldsToSerialize(); // rebuilt each call: must not leak the previous one
            delete creator->createPlugin("loop_bad", &bad.fc, TensorRTPhase::kBUILD);
            delete r;
            delete a;
            delete c;
            delete p;
            ++made;
        }
    }
    check("loops.create_destroy", made == iterations, std::to_string(made) + " of " + std::to_string(iterations));
    return gFailures == 0 ? 0 : 1;
}

bool readFile(char const* path, std::vector<char>& out, size_t bytes)
{
    FILE* f = std::fopen(path, "rb");
    if (f == nullptr)
    {
        return false;
    }
    out.resize(bytes);
    size_t const n = std::fread(out.data(), 1, bytes, f);
    std::fclose(f);
    return n == bytes;
}

int cmdEnqueue(int argc, char** argv)
{
    // SIZE ALPHA BETA BIAS fp32|fp16 N C H W IN OUT
    if (argc != 11)
    {
        std::fprintf(stderr, "enqueue: expected SIZE ALPHA BETA BIAS fp32|fp16 N C H W IN OUT\n");
        return 2;
    }
    IPluginCreatorV3One* creator = findCreator();
    check("registry.getCreator", creator != nullptr);
    if (creator == nullptr)
    {
        return 1;
    }
    double const size = std::strtod(argv[0], nullptr);
    float const alpha = std::strtof(argv[1], nullptr);
    float const beta = std::strtof(argv[2], nullptr);
    float const bias = std::strtof(argv[3], nullptr);
    // As the parser passes an int32 size; anything else as FLOAT64, for the plugin to refuse.
    Fields fields = size == std::floor(size) && size >= -2147483648.0 && size <= 2147483647.0
        ? fieldsWithSize(static_cast<int32_t>(size), PluginFieldType::kINT32, alpha, beta, bias)
        : fieldsWithSize(size, PluginFieldType::kFLOAT64, alpha, beta, bias);
    bool const half = std::strcmp(argv[4], "fp16") == 0;
    std::vector<int64_t> dims{std::atoll(argv[5]), std::atoll(argv[6]), std::atoll(argv[7]), std::atoll(argv[8])};
    Logged logged;
    IPluginV3* plugin = creator->createPlugin("enqueue", &fields.fc, TensorRTPhase::kRUNTIME);
    std::string const refusal = logged.text();
    check("enqueue.createPlugin", plugin != nullptr, refusal);
    if (plugin == nullptr)
    {
        return 1;
    }
    HarnessErrorRecorder recorder;
    HarnessResourceContext context(&recorder);
    auto* rt = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    IPluginV3* attached = rt->attachToContext(&context);
    auto* art = capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME);
    DataType const type = half ? DataType::kHALF : DataType::kFLOAT;
    PluginTensorDesc const desc = tensorDesc(type, TensorFormat::kLINEAR, dims);
    size_t const count = static_cast<size_t>(dims[0] * dims[1] * dims[2] * dims[3]);
    size_t const bytes = count * (half ? 2 : 4);
    std::vector<char> host;
    bool ok = readFile(argv[9], host, bytes);
    check("enqueue.read_input", ok, argv[9]);
    void* dx = nullptr;
    void* dy = nullptr;
    cudaStream_t stream = nullptr;
    ok = ok && art->onShapeChange(&desc, 1, &desc, 1) == 0;
    ok = ok && cudaMalloc(&dx, bytes) == cudaSuccess && cudaMalloc(&dy, bytes) == cudaSuccess
        && cudaStreamCreate(&stream) == cudaSuccess;
    ok = ok && cudaMemcpyAsync(dx, host.data(), bytes, cudaMemcpyHostToDevice, stream) == cudaSuccess
        && cudaMemsetAsync(dy, 0xff, bytes, stream) == cudaSuccess; // NaN-fill: unwritten outputs show
    void const* inputs[] = {dx};
    void* outputs[] = {dy};
    int32_t const status = ok ? art->enqueue(&desc, &desc, inputs, outputs, nullptr, stream) : -1;
    ok = ok && status == 0;
    ok = ok && cudaMemcpyAsync(host.data(), dy, bytes, cudaMemcpyDeviceToHost, stream) == cudaSuccess
        && cudaStreamSynchronize(stream) == cudaSuccess;
    cudaError_t const last = cudaGetLastError();
    std::string detail = recorder.errors.empty() ? std::string(cudaGetErrorString(last)) : recorder.errors.back().second;
    check("enqueue.run", ok, ok ? "" : detail);
    if (ok)
    {
        FILE* f = std::fopen(argv[10], "wb");
        ok = f != nullptr && std::fwrite(host.data(), 1, bytes, f) == bytes;
        if (f != nullptr)
        {
            std::fclose(f);
        }
        check("enqueue.write_output", ok, argv[10]);
    }
    cudaFree(dx);
    cudaFree(dy);
    if (stream != nullptr)
    {
        cudaStreamDestroy(stream);
    }
    delete attached;
    delete plugin;
    return gFailures == 0 ? 0 : 1;
}

int usage()
{
    std::fprintf(stderr,
        "usage: toolchain_lrn_conformance registry (--static LIB | --dynamic LIB)...\n"
        "       toolchain_lrn_conformance interface|loops (--static LIB | --dynamic LIB) [N]\n"
        "       toolchain_lrn_conformance enqueue (--static LIB | --dynamic LIB) SIZE ALPHA BETA BIAS fp32|fp16 N C H W "
        "IN OUT\n");
    return 2;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 4)
    {
        return usage();
    }
    std::string const command = argv[1];
    std::vector<Library> libs;
    int i = 2;
    for (; i + 1 < argc; i += 2)
    {
        std::string const flag = argv[i];
        if (flag != "--static" && flag != "--dynamic")
        {
            break;
        }
        libs.push_back({flag == "--dynamic", argv[i + 1]});
    }
    if (libs.empty())
    {
        return usage();
    }
    gFinder.logger = &gLogger;
    data("{\"tensorrt\": {\"headers_major\": " + std::to_string(CONFORMANCE_TRT_MAJOR) + ", \"library_version\": "
        + std::to_string(getInferLibVersion()) + "}}");
    if (command == "registry")
    {
        return cmdRegistry(libs);
    }
    if (libs.size() != 1)
    {
        return usage();
    }
    std::string detail;
    bool const loaded = loadLibrary(libs[0], detail);
    check(std::string("load.") + (libs[0].dynamic ? "dynamic" : "static"), loaded, detail);
    if (!loaded)
    {
        return 1;
    }
    if (command == "interface")
    {
        return cmdInterface();
    }
    if (command == "loops")
    {
        return cmdLoops(i < argc ? std::atoi(argv[i]) : 1000);
    }
    if (command == "enqueue")
    {
        return cmdEnqueue(argc - i, argv + i);
    }
    return usage();
}
