"""Deployment formats: ONNX export checked in onnxruntime, and an int8 baseline.

``cnnzip.export.onnx(model, input_shape, "model.onnx")`` writes the graph and checks it;
``cnnzip.export.int8`` quantizes an exported float graph with onnxruntime's static
post-training quantization, the baseline a compressed file is held against. The ONNX
packages are optional (``pip install 'cnnzip[onnx]'``) and imported on first use.
"""

from cnnzip.export.deps import MissingDependencyError, require
from cnnzip.export.graph import Checked, ExportError, check_onnx, export_onnx, session

onnx = export_onnx  # cnnzip.export.onnx(model, input_shape, path)

__all__ = [
    "Checked",
    "ExportError",
    "MissingDependencyError",
    "check_onnx",
    "export_onnx",
    "onnx",
    "require",
    "session",
]
