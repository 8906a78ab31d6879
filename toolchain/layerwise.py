"""Layer-wise parity: find the first layer where a candidate leaves the reference.

The reference (eager PyTorch) exposes every leaf module's output through forward
hooks; the candidate ONNX model (run by ONNX Runtime) exposes every layer's output by
adding them as graph outputs to a copy of the graph. Layers pair by the PyTorch
module's qualified name, which ``toolchain export`` records on every node
(``metadata_props["toolchain.module"]``); a module's output is the output of its last
node. Each pair is judged by its largest absolute error relative to the reference
tensor's range (max - min), so a layer with large activations is not held to the
same absolute number as one with small ones; the limit depends on the precision.
Each pair is judged by the same tolerances as plain parity at the file's precision
(:func:`toolchain.parity.compare_outputs`: allclose with the range-relative term, per-sample
cosine), so a file that passes parity does not show a divergent layer only because its
layers are held to a stricter rule. The candidate is the registry's ONNX Runtime runner with
every layer's tensor added to its outputs. TensorRT engines are not covered: marking layer
outputs needs the builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.errors import ToolchainError

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


def compare_layer(reference, candidate, tolerances) -> dict:
    """One layer against the reference with plain parity's checks (per sample: the layer flattened)."""
    import numpy as np

    from toolchain.parity import compare_outputs

    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        return {"passed": False, "detail": f"shape {list(cand.shape)} vs reference {list(ref.shape)}",
                "shape": list(ref.shape)}
    flat = (len(ref), -1) if ref.ndim > 1 else (len(ref), 1)
    result = compare_outputs(ref.reshape(flat), cand.reshape(flat), tolerances, count_top1=False)
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    max_abs = result.metrics.get("max_abs_error")
    return {"passed": result.passed, "max_abs_error": max_abs, "reference_range": span,
            "error_over_range": (max_abs / span if span > 0 and max_abs is not None else None),
            "cosine_min": result.metrics.get("cosine_min"), "shape": list(ref.shape),
            "detail": "; ".join(f"{c.name} ({c.detail})" for c in result.failed)}


@dataclass
class LayerwiseReport:
    reference: str
    candidate: str
    precision: str
    samples: int
    layers: list[dict] = field(default_factory=list)
    unpaired: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergent(self) -> str | None:
        return next((layer["module"] for layer in self.layers if not layer["passed"]), None)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "precision": self.precision,
                "samples": self.samples, "first_divergent": self.first_divergent, "tolerances": self.tolerances,
                "passed": self.first_divergent is None, "layers": self.layers, "unpaired": self.unpaired,
                "notes": self.notes}

    def table(self):
        from rich.table import Table

        table = Table(title=f"layer-wise parity: {self.candidate} vs {self.reference} ({self.precision})")
        table.add_column("module", no_wrap=True)  # the name is the answer: never cut it
        for column in ("shape", "max abs error", "range", "error / range", "min cosine", "result"):
            table.add_column(column, justify="left" if column in ("shape", "result") else "right")
        for layer in self.layers:
            fmt = lambda key: "-" if layer.get(key) is None else f"{layer[key]:.3g}"  # noqa: E731
            table.add_row(layer["module"], "x".join(map(str, layer.get("shape", []))), fmt("max_abs_error"),
                          fmt("reference_range"), fmt("error_over_range"), fmt("cosine_min"),
                          "[green]pass[/]" if layer["passed"] else f"[bold red]FAIL[/] {layer.get('detail', '')}")
        return table


def run_layerwise(model, runner, inputs, *, precision: str, tolerances: dict,
                  reference_name: str = "eager PyTorch FP32") -> LayerwiseReport:
    """Run ``model`` (eager, CPU, FP32) and ``runner`` (an inactive ONNX Runtime runner from the registry)
    on ``inputs`` with every layer exposed; compare each pair with ``tolerances`` (plain parity's)."""
    import dataclasses

    import numpy as np

    from toolchain.artifacts import load_onnx

    layers = onnx_layer_outputs(load_onnx(runner.path, load_weights=False))
    if not layers:
        raise ToolchainError(f"{runner.path} records no PyTorch module per node",
                             hint="re-export it with this toolchain (toolchain export)")
    runner.extra_outputs = list(layers.values())
    with runner:
        values = runner.infer({"input": np.ascontiguousarray(inputs, dtype=np.float32)})
    candidate = {module: values[tensor] for module, tensor in layers.items() if tensor in values}
    reference = torch_layer_outputs(model.eval().cpu().float(), np.ascontiguousarray(inputs, dtype=np.float32))
    tolerance = tolerances.get("logits") or next(iter(tolerances.values()))
    report = LayerwiseReport(reference=reference_name, candidate=f"{runner.name} {runner.path}", precision=precision,
                             samples=int(len(inputs)), tolerances=dataclasses.asdict(tolerance))
    for module, ref in reference.items():
        if module not in candidate:
            continue
        report.layers.append({"module": module, "tensor": layers[module],
                              **compare_layer(ref, candidate[module], tolerance)})
    report.unpaired = {"reference_only": [m for m in reference if m not in candidate],
                       "candidate_only": [m for m in candidate if m not in reference]}
    return report
