"""On-edge alerting: NEWS2 and limit rules, the ONNX risk model and the alert lifecycle."""
