"""Training, export and quantization of imis-lite's models (needs the `distill` extra: torch, onnx, nncf)."""
