"""toolchain: PyTorch AlexNet with LRN to ONNX and FP16 TensorRT, verified and benchmarked."""

__version__ = "0.1.0"
