// FusedLRN's shape rule, apart from the IExprBuilder that getOutputShapes receives.
// IDimensionExpr and IExprBuilder come only from TensorRT's builder (their methods forward to
// TensorRT's internal objects, and the headers forbid deriving from them), so the rule is a
// plain function: the plugin calls it with DimsExprs, tests with Dims (tests/test_plugin_build.py),
// and the real builder drives getOutputShapes in tests/test_rtx_build.py.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace toolchain
{
namespace lrn
{

//! Output dims of FusedLRN: the input's, unchanged (for DimsExprs, the same expressions).
//! Throws std::invalid_argument unless there is one 4-D input and one output.
template <typename DimsT>
DimsT outputDims(DimsT const* inputs, int32_t nbInputs, int32_t nbOutputs)
{
    if (inputs == nullptr || nbInputs != 1 || nbOutputs != 1)
    {
        throw std::invalid_argument("expects 1 input and 1 output");
    }
    // Rank is known at network construction: reject non-4-D inputs as early as possible.
    if (inputs[0].nbDims != 4)
    {
        throw std::invalid_argument("expects a 4-D NCHW tensor, got rank " + std::to_string(inputs[0].nbDims));
    }
    return inputs[0];
}

} // namespace lrn
} // namespace toolchain
