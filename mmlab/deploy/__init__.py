"""Deployment: ONNX export of a DualEncoder's towers, INT8 and FP16 copies, ONNX Runtime sessions.

onnx, onnxruntime and onnxscript (the `deploy` extra) are imported only when a function needs them."""
from mmlab.deploy.export import DEFAULT_OPSET, export_onnx, onnx_metadata
from mmlab.deploy.files import OnnxFileError, load_onnx, write_atomic, write_bytes_atomic
from mmlab.deploy.fingerprint import model_fingerprint
from mmlab.deploy.quantize import convert_fp16, quantize_int8, quantize_torch_dynamic
from mmlab.deploy.session import OnnxEncoder

__all__ = ["DEFAULT_OPSET", "OnnxEncoder", "OnnxFileError", "convert_fp16", "export_onnx", "load_onnx",
           "model_fingerprint", "onnx_metadata", "quantize_int8", "quantize_torch_dynamic", "write_atomic",
           "write_bytes_atomic"]
