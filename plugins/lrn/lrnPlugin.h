// TensorRT IPluginV3 plugin "FusedLRN" (namespace "toolchain", version "1"): LRN across
// channels of a 4-D NCHW tensor, FP32 or FP16 in LINEAR format, output type = input type.
// Builds against the TensorRT 10.x and 11.x headers.
#pragma once

#include "lrnOpNames.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace toolchain
{
namespace lrn
{

//! The op's attributes, in PyTorch's convention (alpha is divided by size).
struct LrnAttributes
{
    int32_t size{5};
    float alpha{1e-4F};
    float beta{0.75F};
    float bias{1.F};
};

class LrnPlugin final : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime
{
public:
    //! Throws std::invalid_argument for invalid attributes.
    LrnPlugin(std::string name, LrnAttributes const& attrs);
    LrnPlugin(LrnPlugin const& other);
    LrnPlugin& operator=(LrnPlugin const&) = delete;
    ~LrnPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    LrnAttributes const& attributes() const noexcept
    {
        return mAttrs;
    }

private:
    void reportError(char const* what) const noexcept;

    std::string mName;
    LrnAttributes mAttrs;
    nvinfer1::IErrorRecorder* mErrorRecorder{nullptr}; // set per execution context by attachToContext
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFc{};
};

class LrnPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    LrnPluginCreator();
    ~LrnPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFc{};
};

//! Validates attributes; throws std::invalid_argument with a readable message.
void validateAttributes(LrnAttributes const& attrs);

} // namespace lrn
} // namespace toolchain
