"""Does an ONNX file hold a model's weights? Checked by content, not by the hashes it records.

ONNX files record the sha256 of the checkpoint they were exported from, but a file
can be edited with its metadata kept, or exported from other weights (a variant's
random ones). :func:`verify_onnx_weights` compares every parameter of the PyTorch
model with the ONNX file's tensor of the same name (the exporter names initializers
after the parameters) before quantize, parity, benchmark and pipeline do any work:

* FP32 initializers: equal up to 1e-6 relative (the exporter copies them bit for bit);
* FP16 initializers (``--dtype fp16``): within FP16 rounding, one unit in the last
  place of the parameter (2**-10 relative, 2**-24 absolute near zero);
* INT8 Q/DQ weights and INT32 Q/DQ biases (``toolchain quantize``): dequantized,
  ``(q - zero_point) * scale``, within half a quantization step (``scale / 2``) per
  element. Quantization cannot tell a change smaller than that; the float biases of
  ``--target tensorrt`` files are still compared exactly.

Any parameter that is missing (unless it is all zeros: the exporter drops a zero bias),
has another shape, or differs beyond its tolerance is a
mismatch; extra ONNX tensors (shape constants, scales) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.errors import ToolchainError

FP32_RTOL = 1e-6
FP16_RTOL = 2.0 ** -10
FP16_ATOL = 2.0 ** -24
#: Slack on half a quantization step: ONNX Runtime rounds w / scale in float32.
QUANT_SLACK = 1.001
_CHUNK = 1 << 20


@dataclass
class OnnxTensor:
    """A parameter as the ONNX file holds it: float values, or integers with their dequantization."""

    name: str
    kind: str                 # "fp32", "fp16" or "quantized"
    values: object            # numpy array (the stored one: float, or integer for "quantized")
    scale: object = None      # "quantized": scales along ``axis`` (or a scalar)
    zero_point: object = None
    axis: int | None = None

    @property
    def shape(self) -> tuple:
        return tuple(self.values.shape)


def _float_kinds():
    from onnx import TensorProto

    return {TensorProto.FLOAT: "fp32", TensorProto.DOUBLE: "fp32", TensorProto.FLOAT16: "fp16",
            TensorProto.BFLOAT16: "fp16"}


def onnx_tensors(model) -> dict[str, OnnxTensor]:
    """The model's parameters by name: float initializers, and DequantizeLinear of constant integers.

    A dequantized tensor takes the name of its quantized initializer without the
    ``_quantized`` suffix ONNX Runtime's quantizer adds (``features.0.weight_quantized``
    -> ``features.0.weight``), else the DequantizeLinear's output name.
    """
    from onnx import helper, numpy_helper

    kinds = _float_kinds()
    inits = {init.name: init for init in model.graph.initializer}
    out: dict[str, OnnxTensor] = {}
    for init in model.graph.initializer:
        if init.data_type in kinds:
            out[init.name] = OnnxTensor(init.name, kinds[init.data_type], numpy_helper.to_array(init))
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        if not all(name in inits for name in node.input if name):
            continue  # an activation's DQ
        quantized = inits[node.input[0]]
        name = quantized.name.removesuffix("_quantized") if quantized.name.endswith("_quantized") \
            else node.output[0]
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        out[name] = OnnxTensor(name, "quantized", numpy_helper.to_array(quantized),
                               scale=numpy_helper.to_array(inits[node.input[1]]), zero_point=zero, axis=axis)
    return out


def _rows(array, axis: int | None):
    """``array`` as (channels, -1) rows along ``axis`` (per-channel data), or one row."""
    import numpy as np

    if axis is None or array.ndim == 0:
        return array.reshape(1, -1)
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


def tensor_difference(reference, tensor: OnnxTensor) -> tuple[float, float] | None:
    """(largest excess over the tolerance, largest |difference|) where ``tensor`` is not ``reference``; None if it is.

    Pure numpy, in chunks (a large fc layer is tens of millions of values).
    """
    import numpy as np

    ref = np.asarray(reference)
    if tensor.shape != tuple(ref.shape):
        return float("inf"), float("inf")
    if tensor.kind == "fp32" and np.array_equal(tensor.values, ref):
        return None  # the common case, without temporaries
    worst_excess, worst_diff = -np.inf, 0.0
    if tensor.kind == "quantized":
        per_channel = np.ndim(tensor.scale) == 1 and tensor.scale.size > 1
        axis = (tensor.axis % ref.ndim) if per_channel and ref.ndim else None
        q_rows, ref_rows = _rows(tensor.values, axis), _rows(ref, axis)
        scale = np.asarray(tensor.scale, dtype=np.float64).reshape(-1, 1) if per_channel else \
            np.full((q_rows.shape[0], 1), float(np.asarray(tensor.scale).reshape(-1)[0]))
        zero = np.zeros_like(scale) if tensor.zero_point is None else \
            (np.asarray(tensor.zero_point, dtype=np.float64).reshape(-1, 1) if per_channel else
             np.full_like(scale, float(np.asarray(tensor.zero_point).reshape(-1)[0])))
        step = max(1, _CHUNK // max(1, q_rows.shape[1]))
        for start in range(0, q_rows.shape[0], step):
            sl = slice(start, start + step)
            values = (q_rows[sl].astype(np.float64) - zero[sl]) * scale[sl]
            diff = np.abs(values - ref_rows[sl].astype(np.float64))
            allowed = scale[sl] / 2 * QUANT_SLACK + 1e-12
            worst_excess = max(worst_excess, float((diff - allowed).max(initial=-np.inf)))
            worst_diff = max(worst_diff, float(diff.max(initial=0.0)))
    else:
        flat_t, flat_r = tensor.values.reshape(-1), ref.reshape(-1)
        for start in range(0, flat_r.size, _CHUNK):
            t = flat_t[start:start + _CHUNK].astype(np.float64)
            r = flat_r[start:start + _CHUNK].astype(np.float64)
            diff = np.abs(t - r)
            allowed = FP32_RTOL * np.abs(r) if tensor.kind == "fp32" else \
                np.maximum(FP16_RTOL * np.abs(r), FP16_ATOL)
            diff = np.where(np.isnan(diff), np.inf, diff)
            worst_excess = max(worst_excess, float((diff - allowed).max(initial=-np.inf)))
            worst_diff = max(worst_diff, float(diff.max(initial=0.0)))
    return (worst_excess, worst_diff) if worst_excess > 0 else None


def weight_differences(state: dict, model) -> list[str]:
    """Every way the ONNX ``model`` fails to hold ``state`` ({parameter name: array}), as short phrases (pure)."""
    import numpy as np

    tensors = onnx_tensors(model)
    problems = []
    for name, value in state.items():
        ref = np.asarray(value)
        if not np.issubdtype(ref.dtype, np.floating):
            continue  # integer buffers (counters) are not weights
        tensor = tensors.get(name)
        if tensor is None:
            if not ref.any():
                continue  # the exporter drops an all-zero bias (a Conv/Gemm without it computes the same)
            problems.append(f"{name} is not in the ONNX file")
            continue
        found = tensor_difference(ref, tensor)
        if found is None:
            continue
        if tensor.shape != tuple(ref.shape):
            problems.append(f"{name} has shape {list(tensor.shape)}, the model's {list(ref.shape)}")
        else:
            problems.append(f"{name} differs by up to {found[1]:.3g}")
    return problems


def model_state(torch_model) -> dict:
    """A PyTorch model's parameters and float buffers as numpy arrays (CPU, FP32)."""
    return {name: tensor.detach().float().cpu().numpy() for name, tensor in torch_model.state_dict().items()
            if tensor.is_floating_point()}


def verify_onnx_weights(torch_model, onnx_model_or_path, *, onnx_label: str, reference_label: str) -> None:
    """Refuse, in one line, an ONNX file whose weights are not ``torch_model``'s (see the module docstring)."""
    from pathlib import Path

    from toolchain.artifacts import load_onnx

    model = load_onnx(onnx_model_or_path) if isinstance(onnx_model_or_path, (str, Path)) else onnx_model_or_path
    state = model_state(torch_model)
    problems = weight_differences(state, model)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ToolchainError(f"{onnx_label} does not hold the weights of {reference_label}: {len(problems)} of "
                             f"{len(state)} tensor(s) differ ({shown})",
                             hint=f"pass the ONNX file exported from {reference_label} (toolchain export), "
                                  "or the checkpoint the ONNX file came from")
