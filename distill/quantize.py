"""INT8 encoders: ONNX Runtime (dynamic for the teacher, static QDQ for students) and OpenVINO + NNCF.

ORT: only the MatMuls with constant weights (the linear layers, ~40% of TinyViT's time) are quantized,
dynamically, per channel, with 7-bit weights (``reduce_range``: AVX2 CPUs without VNNI saturate 8-bit
u8s8 products). Measured on this 2-core AVX2 machine: static QDQ of Conv/MatMul was slower than fp32 and
broke the embedding (relative error 0.2-0.9), dynamic ConvInteger likewise; LayerNorm, Softmax and GELU
stay float.
NNCF: the transformer preset keeps the same sensitive ops in float. TinyViT's convolutions are left in
float as well: quantizing them moved LiteMedSAM's embedding by a relative 0.24-0.7 and mask Dice against
PyTorch fell to 0.970 (24 corpus images), while MatMul-only INT8 keeps Dice >= 0.98. ``ignored_types``
sets which op types stay float (a linear attention's normalising division, for instance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def weight_matmuls(model: Path) -> list[str]:
    """Names of MatMul nodes whose second input is a stored weight (linear layers, not attention products)."""
    import onnx

    graph = onnx.load(str(model)).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def onnxruntime_int8(model: Path, output: Path, exclude_nodes: list[str] | None = None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [name for name in weight_matmuls(model) if name not in (exclude_nodes or [])]
    quantize_dynamic(
        str(model), str(output), op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
    )


CONVOLUTIONS = ["Convolution", "GroupConvolution"]


def onnxruntime_int8_static(model: Path, output: Path, calibration: list[np.ndarray], exclude_nodes: list[str]) -> None:
    """Static QDQ INT8 of a convolutional encoder: per-channel weights, activations calibrated on real images
    (MinMax). Meant for the students, whose convolutions carry the work; ``exclude_nodes`` stay float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": tensor} for tensor in calibration])

        def get_next(self):
            return next(self.items, None)

    prepared = output.with_suffix(".prepared.onnx")
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
            nodes_to_exclude=exclude_nodes, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


def openvino_int8(model: Path, output_xml: Path, calibration: list[np.ndarray], ignored_types: list[str] | None = None,
                  transformer: bool = True) -> None:
    """NNCF post-training quantization of an ONNX or IR model, saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    ov_model = ov.Core().read_model(str(model))
    ignored = nncf.IgnoredScope(types=ignored_types, validate=False) if ignored_types else None
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(calibration), subset_size=len(calibration),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None, preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=ignored,
    )
    ov.save_model(quantized, str(output_xml), compress_to_fp16=True)
