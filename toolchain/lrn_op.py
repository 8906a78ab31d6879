"""The LRN custom op: the one place that names it.

The ONNX exporter writes every LocalResponseNorm as one node of this op, and the
TensorRT plugin registers a creator under the same name, version and namespace,
with the same field names. ``plugins/lrn/lrnOpNames.h`` repeats these strings for
the C++ side; a test checks that both agree.

Convention: ``alpha`` follows PyTorch/ONNX/TensorRT, i.e. it is divided by
``size`` before multiplying the sum of squares::

    y[c] = x[c] / (bias + alpha / size * sum_{c' in window(c)} x[c']^2) ** beta

where the window is ``[c - size//2, c + (size-1)//2]`` clipped to the channels.
The 2012 paper's alpha multiplies the plain sum: use :func:`alpha_from_paper`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ONNX op_type of the node, and the TensorRT plugin creator's name. Deliberately
#: not ``LRN``: TensorRT's ONNX parser sends ``LRN`` to its built-in layer.
OP_TYPE = "FusedLRN"
#: Custom ONNX domain of the node (and of its model-local function).
DOMAIN = "toolchain"
#: Creator version, written as the node attribute ``plugin_version``.
PLUGIN_VERSION = "1"
#: Creator namespace, written as the node attribute ``plugin_namespace``; its
#: presence makes TensorRT >= 10.15 prefer the plugin over the local function.
PLUGIN_NAMESPACE = "toolchain"
#: Version of the custom domain in the model's opset imports.
DOMAIN_VERSION = 1

#: Node attributes that reach the plugin creator, with their ONNX types.
FIELDS = {"size": "INT", "alpha": "FLOAT", "beta": "FLOAT", "bias": "FLOAT"}
#: Largest size: the plugin field and the kernel argument are int32.
INT32_MAX = 2**31 - 1
#: Attributes the parser consumes to find the creator.
LOOKUP_ATTRIBUTES = ("plugin_version", "plugin_namespace")
#: Environment variable naming a file the plugin appends its build-call trace to (lrnOpNames.h).
TRACE_FILE_ENV = "TOOLCHAIN_LRN_TRACE_FILE"


@dataclass(frozen=True)
class LRNParams:
    """Hyperparameters of one LRN, in PyTorch's convention (alpha divided by size)."""

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0

    def __post_init__(self):
        if int(self.size) != self.size or not 1 <= self.size <= INT32_MAX:
            # TensorRT's ONNX parser narrows INT attributes to int32: a larger size would change.
            raise ValueError(f"LRN size must be an integer in [1, {INT32_MAX}], got {self.size}")
        if not self.bias > 0:
            raise ValueError(f"LRN bias (k) must be positive, got {self.bias}")
        if self.alpha < 0:
            raise ValueError(f"LRN alpha must be non-negative, got {self.alpha}")

    def attributes(self) -> dict:
        return {"size": int(self.size), "alpha": float(self.alpha), "beta": float(self.beta), "bias": float(self.bias)}


def alpha_from_paper(paper_alpha: float, size: int) -> float:
    """Convert the paper's alpha (on the plain sum) to PyTorch's (on the mean)."""
    return paper_alpha * size


#: The 2012 paper's LRN: n=5, k=2, alpha=1e-4 on the plain sum, beta=0.75.
PAPER_LRN = LRNParams(size=5, alpha=alpha_from_paper(1e-4, 5), beta=0.75, bias=2.0)
