"""The default model's files (package data: ONNX, safetensors, background set, calibration)."""
