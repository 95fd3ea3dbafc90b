"""Dynamic int8 quantization with ONNX Runtime's own tool (run in .venv-onnx)."""

import sys

from onnxruntime.quantization import QuantType, quantize_dynamic

quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8, per_channel=True)
print(sys.argv[2])
