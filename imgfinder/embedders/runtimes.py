"""The runtimes a model can run on, named once for every family, shell and check."""

from __future__ import annotations

TORCH = "torch"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
RUNTIMES = (TORCH, ONNX, ONNX_INT8)
#: not a runtime: ONNX Runtime when installed, else torch (or what a collection was indexed on)
AUTO = "auto"
CHOICES = (AUTO, *RUNTIMES)
#: what each runtime adds to an embedder key: the vectors of two precisions never mix
TAGS = {TORCH: "torch-fp32", ONNX: "onnx-fp32", ONNX_INT8: "onnx-int8"}
#: the Python package each runtime needs
PACKAGES = {TORCH: "torch", ONNX: "onnxruntime", ONNX_INT8: "onnxruntime"}
#: the precision of each ONNX runtime's towers
PRECISIONS = {ONNX: "fp32", ONNX_INT8: "int8"}
