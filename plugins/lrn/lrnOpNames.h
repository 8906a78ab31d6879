// Names of the LRN op, shared by the TensorRT plugin and its creator.
// Must equal toolchain/lrn_op.py (OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE, FIELDS);
// tests/test_plugin_build.py parses the literals below, so keep one per line in this form.
#pragma once

namespace toolchain
{
namespace lrn
{

// ONNX op_type == plugin creator name (not "LRN": the ONNX parser maps that to ILRNLayer).
constexpr char const* kLRN_PLUGIN_NAME{"FusedLRN"};
constexpr char const* kLRN_PLUGIN_VERSION{"1"};
constexpr char const* kLRN_PLUGIN_NAMESPACE{"toolchain"};

// Creator fields == ONNX node attributes.
constexpr char const* kLRN_FIELD_SIZE{"size"};   // kINT32
constexpr char const* kLRN_FIELD_ALPHA{"alpha"}; // kFLOAT32, divided by size (PyTorch convention)
constexpr char const* kLRN_FIELD_BETA{"beta"};   // kFLOAT32
constexpr char const* kLRN_FIELD_BIAS{"bias"};   // kFLOAT32 (k)

// Environment variable naming a file the plugin appends its build-call trace to.
constexpr char const* kLRN_TRACE_FILE_ENV{"TOOLCHAIN_LRN_TRACE_FILE"};

} // namespace lrn
} // namespace toolchain
