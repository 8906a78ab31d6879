"""LRN in ONNX: the custom ``FusedLRN`` node, its model-local function, and native ``LRN``.

A ``FusedLRN`` node (names from :mod:`toolchain.lrn_op`) is what TensorRT's ONNX
parser hands to our IPluginV3 plugin. The same file also carries a model-local
ONNX function of that name whose body uses only standard ONNX ops, so ONNX
Runtime (which inlines model-local functions) and any other ONNX consumer run the
file with no custom-op library at all.

The function body reproduces ``torch.nn.functional.local_response_norm`` for every
size (odd and even), alpha, beta and bias, operation for operation::

    Xf   = Cast<FLOAT>(X)                       # FP32 accumulation: FP16 squares overflow above 255.9
    sq   = Xf * Xf, viewed as [N, 1, C, rest]   # like PyTorch's view(N, 1, C, H, -1)
    pad  = Pad(sq, channels: size//2 before, (size-1)//2 after)   # PyTorch's window
    sum  = Conv(pad, ones[1, 1, size, 1])       # window sum
    den  = (sum / size * alpha + bias) ** beta  # PyTorch's avg_pool (divisor size), mul, add, pow
    Y    = CastLike(Xf / den, X)

The pads and the kernel shape are computed from the ``size`` attribute inside the
body (``Constant`` with ``ref_attr_name``), so one function serves every call site.

Native ``LRN`` (``--lrn native``) windows ``floor((size-1)/2)`` channels before and
``ceil((size-1)/2)`` after (ONNX operator spec); PyTorch windows ``size//2`` before and
``(size-1)//2`` after. They agree exactly for odd sizes and are mirrored for even
ones, so :func:`native_lrn_problem` refuses even sizes. TensorRT's built-in
``ILRNLayer`` additionally takes only odd windows in [1, 15], beta in [0.01, 1e5]
and bias (k) in [1e-5, 1e10] (NvInfer.h); those are refused too, since the native
mode exists for an A/B against that layer.
"""

from __future__ import annotations

from toolchain import lrn_op
from toolchain.lrn_op import LRNParams

#: The ONNX opset every exported file imports (the default domain). 18 is the
#: dynamo exporter's native opset (no version conversion), supported by ONNX
#: Runtime >= 1.14 and TensorRT 10.x/11.x's ONNX parser.
OPSET = 18

#: Attributes the function declares: the plugin fields plus the lookup attributes
#: the parser consumes (unused by the body, declared so the node validates).
FUNCTION_ATTRIBUTES = (*lrn_op.FIELDS, *lrn_op.LOOKUP_ATTRIBUTES)

# TensorRT ILRNLayer limits (NvInfer.h, 10.x and 11.x).
TRT_LRN_MAX_WINDOW = 15
TRT_LRN_BETA_RANGE = (0.01, 1e5)
TRT_LRN_BIAS_RANGE = (1e-5, 1e10)
TRT_LRN_ALPHA_RANGE = (-1e20, 1e20)


def custom_node_attributes(params: LRNParams) -> dict:
    """Attributes of one FusedLRN node: the plugin fields and the creator lookup."""
    return {**params.attributes(), "plugin_version": lrn_op.PLUGIN_VERSION,
            "plugin_namespace": lrn_op.PLUGIN_NAMESPACE}


def node_problems(node) -> list[str]:
    """Why a FusedLRN node is not the op as defined (pure): every field present with its ONNX type
    (``lrn_op.FIELDS``: a ``size`` stored as FLOAT runs nowhere) and values :class:`LRNParams` accepts."""
    from onnx import AttributeProto

    name = node.name or "<unnamed FusedLRN>"
    attrs = {attr.name: attr for attr in node.attribute}
    problems, values = [], {}
    for field, kind in lrn_op.FIELDS.items():
        attr = attrs.get(field)
        if attr is None:
            problems.append(f"{name}: attribute {field} is missing")
            continue
        stored = AttributeProto.AttributeType.Name(attr.type)
        if stored != kind:
            problems.append(f"{name}: attribute {field} is stored as {stored}, the op takes {kind}")
            continue
        values[field] = int(attr.i) if kind == "INT" else float(attr.f)
    if not problems:
        try:
            LRNParams(**values)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def make_custom_node(input_name: str, output_name: str, params: LRNParams, name: str):
    import onnx

    return onnx.helper.make_node(lrn_op.OP_TYPE, [input_name], [output_name], name=name,
                                 domain=lrn_op.DOMAIN, **custom_node_attributes(params))


def make_lrn_function(opset: int = OPSET):
    """The model-local FunctionProto ``toolchain.FusedLRN`` (standard ops only)."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, value, dtype=TensorProto.INT64):
        values = value if isinstance(value, (list, tuple)) else [value]
        dims = [len(values)] if isinstance(value, (list, tuple)) else []
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name + "_value", dtype, dims, values))

    def from_attr(name, attr, kind):
        node = helper.make_node("Constant", [], [name])
        ref = onnx.AttributeProto()
        ref.name = kind  # value_int / value_float
        ref.ref_attr_name = attr
        ref.type = onnx.AttributeProto.INT if kind == "value_int" else onnx.AttributeProto.FLOAT
        node.attribute.append(ref)
        return node

    n = helper.make_node
    nodes = [
        n("Cast", ["X"], ["xf"], to=TensorProto.FLOAT),
        n("Mul", ["xf", "xf"], ["sq"]),
        n("Shape", ["X"], ["shape"]),
        n("Shape", ["X"], ["nc"], start=0, end=2),
        const("minus_one", [-1]),
        n("Concat", ["nc", "minus_one"], ["flat_shape"], axis=0),
        n("Reshape", ["sq", "flat_shape"], ["sq3"]),              # [N, C, rest]
        const("axis_one", [1]),
        n("Unsqueeze", ["sq3", "axis_one"], ["sq4"]),             # [N, 1, C, rest]
        from_attr("size", "size", "value_int"),
        const("one", 1),
        const("two", 2),
        n("Div", ["size", "two"], ["before"]),                    # size // 2 (non-negative ints)
        n("Sub", ["size", "one"], ["size_minus_one"]),
        n("Div", ["size_minus_one", "two"], ["after"]),           # (size - 1) // 2
        n("Reshape", ["before", "axis_one"], ["before1"]),        # [1]-shaped
        n("Reshape", ["after", "axis_one"], ["after1"]),
        n("Reshape", ["size", "axis_one"], ["size1"]),
        const("zeros2", [0, 0]),
        const("zero1", [0]),
        const("ones2", [1, 1]),
        n("Concat", ["zeros2", "before1", "zero1", "zeros2", "after1", "zero1"], ["pads"], axis=0),
        n("Pad", ["sq4", "pads"], ["padded"]),                    # zeros, like F.pad
        n("Concat", ["ones2", "size1", "axis_one"], ["kernel_shape"], axis=0),   # [1, 1, size, 1]
        const("one_f", 1.0, TensorProto.FLOAT),
        n("Expand", ["one_f", "kernel_shape"], ["kernel"]),
        n("Conv", ["padded", "kernel"], ["window_sum"]),          # [N, 1, C, rest]
        n("Cast", ["size"], ["size_f"], to=TensorProto.FLOAT),
        n("Div", ["window_sum", "size_f"], ["window_mean"]),      # avg_pool, divisor = size
        from_attr("alpha", "alpha", "value_float"),
        from_attr("bias", "bias", "value_float"),
        from_attr("beta", "beta", "value_float"),
        n("Mul", ["window_mean", "alpha"], ["scaled"]),
        n("Add", ["scaled", "bias"], ["shifted"]),
        n("Pow", ["shifted", "beta"], ["den4"]),
        n("Reshape", ["den4", "shape"], ["den"]),
        n("Div", ["xf", "den"], ["yf"]),
        n("CastLike", ["yf", "X"], ["Y"]),
    ]
    return helper.make_function(
        lrn_op.DOMAIN, lrn_op.OP_TYPE, ["X"], ["Y"], nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=list(FUNCTION_ATTRIBUTES),
        doc_string="PyTorch's local_response_norm from standard ONNX ops; TensorRT uses the FusedLRN plugin.",
    )


def add_lrn_function(model, opset: int = OPSET) -> None:
    """Attach the function and the custom domain's opset import to ``model`` (idempotent)."""
    from onnx import helper

    if not any(f.domain == lrn_op.DOMAIN and f.name == lrn_op.OP_TYPE for f in model.functions):
        model.functions.append(make_lrn_function(opset))
    if not any(o.domain == lrn_op.DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(lrn_op.DOMAIN, lrn_op.DOMAIN_VERSION))


def native_lrn_problem(params: LRNParams) -> str | None:
    """Why native ONNX/TensorRT LRN can't stand in exactly for ``params``, or None."""
    size = int(params.size)
    if size % 2 == 0:
        return (f"size {size} is even: ONNX LRN windows floor((size-1)/2)={(size - 1) // 2} channels before and "
                f"ceil((size-1)/2)={size // 2} after, PyTorch {size // 2} before and {(size - 1) // 2} after, "
                "so the results differ")
    if size > TRT_LRN_MAX_WINDOW:
        return f"size {size} exceeds TensorRT's built-in LRN window limit (odd, 1-{TRT_LRN_MAX_WINDOW})"
    low, high = TRT_LRN_BETA_RANGE
    if not low <= params.beta <= high:
        return f"beta {params.beta} is outside TensorRT's built-in LRN range [{low}, {high:g}]"
    low, high = TRT_LRN_BIAS_RANGE
    if not low <= params.bias <= high:
        return f"bias {params.bias} is outside TensorRT's built-in LRN range [{low:g}, {high:g}]"
    low, high = TRT_LRN_ALPHA_RANGE
    if not low <= params.alpha <= high:
        return f"alpha {params.alpha} is outside TensorRT's built-in LRN range [{low:g}, {high:g}]"
    return None


def op_schema():
    """An (unregistered) OpSchema for FusedLRN, which onnxscript needs to emit the node."""
    from onnx.defs import OpSchema

    attr = OpSchema.Attribute
    kinds = {"INT": OpSchema.AttrType.INT, "FLOAT": OpSchema.AttrType.FLOAT}
    attributes = [attr(name, kinds[kind], "") for name, kind in lrn_op.FIELDS.items()]
    attributes += [attr(name, OpSchema.AttrType.STRING, "") for name in lrn_op.LOOKUP_ATTRIBUTES]
    return OpSchema(
        lrn_op.OP_TYPE, lrn_op.DOMAIN, lrn_op.DOMAIN_VERSION,
        inputs=[OpSchema.FormalParameter("X", "T")], outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"], "")],
        attributes=attributes,
    )


def standalone_model(params: LRNParams, shape, *, dtype: str = "fp32", native: bool = False, opset: int = OPSET):
    """A one-node model (input ``X`` -> output ``Y``) for checking the LRN alone.

    ``shape`` may hold strings for symbolic dimensions.
    """
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT16 if dtype == "fp16" else TensorProto.FLOAT
    if native:
        node = helper.make_node("LRN", ["X"], ["Y"], name="lrn", **params.attributes())
    else:
        node = make_custom_node("X", "Y", params, "lrn")
    graph = helper.make_graph([node], "lrn", [helper.make_tensor_value_info("X", elem, list(shape))],
                              [helper.make_tensor_value_info("Y", elem, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if not native:
        add_lrn_function(model, opset)
    return model
