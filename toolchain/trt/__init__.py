"""TensorRT: engine building, manifests and the runtime. Imports tensorrt lazily."""
