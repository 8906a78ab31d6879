"""Layer-wise parity: find the first layer where a candidate leaves the reference.

The reference (eager PyTorch) exposes every leaf module's output through forward
hooks; the candidate ONNX model (run by ONNX Runtime) exposes every layer's output by
adding them as graph outputs to a copy of the graph. Layers pair by the PyTorch
module's qualified name, which ``toolchain export`` records on every node
(``metadata_props["toolchain.module"]``); a module's output is the output of its last
node. Each pair is judged by its largest absolute error relative to the reference
tensor's range (max - min), so a layer with large activations is not held to the
same absolute number as one with small ones; the limit depends on the precision.
TensorRT engines are not covered: marking layer outputs needs the builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.errors import ToolchainError

#: Largest error relative to the reference tensor's range, per candidate precision.
LAYER_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


def onnx_layer_outputs(model) -> dict[str, str]:
    """{module qualified name: the tensor its last node produces}, in graph order."""
    from toolchain.export import NODE_MODULE_KEY

    out: dict[str, str] = {}
    for node in model.graph.node:
        module = next((p.value for p in node.metadata_props if p.key == NODE_MODULE_KEY), None)
        if module and node.output:
            out.pop(module, None)  # keep the order of last appearance
            out[module] = node.output[0]
    return out


def with_outputs(model, tensors: list[str]):
    """A copy of ``model`` whose graph also outputs ``tensors`` (types from shape inference where known)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
        known = {v.name: v for v in inferred.graph.value_info}
    except Exception:  # inference is a convenience here: untyped outputs work too
        known = {}
    existing = {o.name for o in copy.graph.output}
    for name in tensors:
        if name in existing:
            continue
        if name in known:
            copy.graph.output.append(known[name])
        else:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


def torch_layer_outputs(model, x) -> dict:
    """{leaf module qualified name: its output as a float64 numpy array}, in call order."""
    import torch

    outputs: dict = {}
    handles = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def hook(mod, args, result, n=name):
                if isinstance(result, torch.Tensor):
                    outputs[n] = result.detach().double().cpu().numpy().copy()  # copy: in-place ops follow
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(torch.as_tensor(x))
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def compare_layer(reference, candidate, limit: float) -> dict:
    """Largest error of one layer, absolute and relative to the reference's range; passed when within ``limit``."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        return {"passed": False, "detail": f"shape {list(cand.shape)} vs reference {list(ref.shape)}"}
    if not np.isfinite(cand).all():
        return {"passed": False, "detail": "non-finite values", "max_abs_error": None}
    diff = np.abs(ref - cand)
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    max_abs = float(diff.max(initial=0.0))
    ratio = max_abs / span if span > 0 else (0.0 if max_abs == 0 else float("inf"))
    return {"passed": ratio <= limit, "max_abs_error": max_abs, "mean_abs_error": float(diff.mean()) if diff.size
            else 0.0, "reference_range": span, "error_over_range": ratio, "limit": limit,
            "shape": list(ref.shape)}


@dataclass
class LayerwiseReport:
    reference: str
    candidate: str
    precision: str
    samples: int
    layers: list[dict] = field(default_factory=list)
    unpaired: dict = field(default_factory=dict)

    @property
    def first_divergent(self) -> str | None:
        return next((layer["module"] for layer in self.layers if not layer["passed"]), None)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "precision": self.precision,
                "samples": self.samples, "first_divergent": self.first_divergent,
                "passed": self.first_divergent is None, "layers": self.layers, "unpaired": self.unpaired}

    def table(self):
        from rich.table import Table

        table = Table(title=f"layer-wise parity: {self.candidate} vs {self.reference} ({self.precision})")
        table.add_column("module", no_wrap=True)  # the name is the answer: never cut it
        for column in ("shape", "max abs error", "range", "error / range", "limit", "result"):
            table.add_column(column, justify="left" if column in ("shape", "result") else "right")
        for layer in self.layers:
            fmt = lambda key: "-" if layer.get(key) is None else f"{layer[key]:.3g}"  # noqa: E731
            table.add_row(layer["module"], "x".join(map(str, layer.get("shape", []))), fmt("max_abs_error"),
                          fmt("reference_range"), fmt("error_over_range"), fmt("limit"),
                          "[green]pass[/]" if layer["passed"] else f"[bold red]FAIL[/] {layer.get('detail', '')}")
        return table


def run_layerwise(model, onnx_path, inputs, *, precision: str = "fp32", limit: float | None = None,
                  reference_name: str = "eager PyTorch FP32") -> LayerwiseReport:
    """Run ``model`` (eager, CPU, FP32) and the ONNX file on ``inputs`` with every layer exposed; compare."""
    import numpy as np
    import onnxruntime as ort

    from toolchain.export import load_onnx

    limit = LAYER_TOLERANCE.get(precision, 1e-2) if limit is None else limit
    proto = load_onnx(onnx_path)
    layers = onnx_layer_outputs(proto)
    if not layers:
        raise ToolchainError(f"{onnx_path} records no PyTorch module per node",
                             hint="re-export it with this toolchain (toolchain export)")
    expanded = with_outputs(proto, list(layers.values()))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(expanded.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ToolchainError(f"ONNX Runtime cannot load {onnx_path} with its layers exposed: {first}") from None
    feed_name = session.get_inputs()[0].name
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    names = list(layers.values())
    values = session.run(names, {feed_name: np.ascontiguousarray(inputs, dtype=dtype)})
    candidate = dict(zip(layers, values))
    reference = torch_layer_outputs(model.eval().cpu().float(), np.ascontiguousarray(inputs, dtype=np.float32))
    report = LayerwiseReport(reference=reference_name, candidate=f"onnxruntime {onnx_path}", precision=precision,
                             samples=int(len(inputs)))
    for module, ref in reference.items():
        if module not in candidate:
            continue
        report.layers.append({"module": module, "tensor": layers[module],
                              **compare_layer(ref, candidate[module], limit)})
    report.unpaired = {"reference_only": [m for m in reference if m not in candidate],
                       "candidate_only": [m for m in candidate if m not in reference]}
    return report
