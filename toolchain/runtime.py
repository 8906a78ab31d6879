"""Public runtime API: run a built engine from Python (torch or numpy + cuda-python).

    from toolchain.runtime import TensorRTRunner
    with TensorRTRunner("model.engine") as runner:
        logits = runner.infer({"input": images})["logits"]

The implementation lives in :mod:`toolchain.trt.runtime`; TensorRT is imported on activation.
"""

from toolchain.trt.runtime import TensorRTRunner

__all__ = ["TensorRTRunner"]
