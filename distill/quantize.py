"""INT8 encoders: ONNX Runtime (dynamic for the teacher, static QDQ for students) and OpenVINO + NNCF.

ORT: only the MatMuls with constant weights (the linear layers, ~40% of TinyViT's time) are quantized,
dynamically, per channel, with 7-bit weights (``reduce_range``: AVX2 CPUs without VNNI saturate 8-bit
u8s8 products). Measured on this 2-core AVX2 machine: static QDQ of Conv/MatMul was slower than fp32 and
broke the embedding (relative error 0.2-0.9), dynamic ConvInteger likewise; LayerNorm, Softmax and GELU
stay float. Quantizing all 40 of LiteMedSAM's linear layers moves its embedding by a relative 0.12 and small
organs with it (mean mask Dice against PyTorch 0.961 on ../shared/data); the layers differ by 10x in how much
they move it (the MLPs' second layers most, after GELU's long tail), so ``float_matmuls`` keeps the most
sensitive ones in float until the error is under a bound measured on calibration images.
NNCF (static: activation ranges fixed from calibration images) needs more in float for the same accuracy;
``openvino_int8_fewest_float`` grows its own float head of the same ranking. TinyViT's convolutions stay float
too: quantizing them moved LiteMedSAM's embedding by a relative 0.24-0.7 and mask Dice against PyTorch fell to
0.970 (24 corpus images). ``ignored_types`` sets which op types stay float (a linear attention's normalising
division, for instance), ``ignored_names`` which single ops.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def weight_matmuls(model: Path) -> list[str]:
    """Names of MatMul nodes whose second input is a stored weight (linear layers, not attention products)."""
    import onnx

    graph = onnx.load(str(model)).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def _ort_session(model: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = threads, 1, 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def embedding_error(run: Callable[[np.ndarray], np.ndarray], tensors: list[np.ndarray],
                    reference: list[np.ndarray]) -> float:
    """Mean over images of |embedding - reference| / |reference| (Frobenius norms)."""
    return float(np.mean([np.linalg.norm(run(t) - r) / np.linalg.norm(r) for t, r in zip(tensors, reference)]))


def _fp32_embeddings(model: Path, tensors: list[np.ndarray], threads: int) -> list[np.ndarray]:
    session = _ort_session(model, threads)
    return [session.run(None, {"image": tensor})[0] for tensor in tensors]


def _onnxruntime_error(model: Path, tensors: list[np.ndarray], reference: list[np.ndarray], threads: int) -> float:
    session = _ort_session(model, threads)
    return embedding_error(lambda tensor: session.run(None, {"image": tensor})[0], tensors, reference)


def rank_matmuls(model: Path, tensors: list[np.ndarray], reference: list[np.ndarray], threads: int = 2) -> list[str]:
    """Weight MatMuls, the one that moves the embedding of ``tensors`` (fp32: ``reference``) most when it
    alone is INT8 first."""
    nodes = weight_matmuls(model)
    sensitivity = {}
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.onnx"
        for node in nodes:
            onnxruntime_int8(model, trial, [n for n in nodes if n != node])
            sensitivity[node] = _onnxruntime_error(trial, tensors, reference, threads)
    return sorted(nodes, key=sensitivity.__getitem__, reverse=True)


def fewest_float(ranked: list[str], error_of: Callable[[list[str]], float], max_error: float, step: int = 5,
                 start: int = 0) -> tuple[list[str], float]:
    """The shortest head of ``ranked`` (``start``, then ``step`` more at a time) to keep in float so that
    ``error_of(kept)`` is at most ``max_error``; also the error reached."""
    count = min(start, len(ranked))
    while True:
        error = error_of(ranked[:count])
        if error <= max_error or count == len(ranked):
            return ranked[:count], error
        count = min(count + step, len(ranked))


def float_matmuls(model: Path, tensors: list[np.ndarray], max_error: float, step: int = 5,
                  threads: int = 2) -> tuple[list[str], float, list[str]]:
    """The weight MatMuls to leave in float so that ONNX Runtime INT8 of the rest moves the embedding of
    ``tensors`` by at most ``max_error`` (relative), the error reached, and the full sensitivity ranking."""
    reference = _fp32_embeddings(model, tensors, threads)
    ranked = rank_matmuls(model, tensors, reference, threads)
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.onnx"

        def error_of(kept: list[str]) -> float:
            onnxruntime_int8(model, trial, kept)
            return _onnxruntime_error(trial, tensors, reference, threads)

        kept, error = fewest_float(ranked, error_of, max_error, step)
    return kept, error, ranked


def openvino_int8_fewest_float(model: Path, output_xml: Path, reference_model: Path, ranked: list[str],
                               calibration: list[np.ndarray], tensors: list[np.ndarray], max_error: float,
                               start: int, ignored_types: list[str] | None = None, step: int = 5,
                               threads: int = 2) -> tuple[list[str], float]:
    """OpenVINO + NNCF INT8 (exact ranges) keeping the shortest head of ``ranked`` in float, from ``start``
    layers on, that moves the embedding of ``tensors`` by at most ``max_error``; saved as ``output_xml``.
    Static activation ranges cost more than ONNX Runtime's dynamic ones, hence a head of its own."""
    import openvino as ov

    reference = _fp32_embeddings(reference_model, tensors, threads)
    with tempfile.TemporaryDirectory() as tmp:
        def trial(kept: list[str]) -> Path:
            return Path(tmp) / f"float{len(kept)}.xml"

        def error_of(kept: list[str]) -> float:
            openvino_int8(model, trial(kept), calibration, ignored_types, ignored_names=kept, exact_ranges=True)
            compiled = ov.Core().compile_model(str(trial(kept)), "CPU", {"INFERENCE_NUM_THREADS": threads})
            return embedding_error(lambda tensor: compiled(tensor)[0], tensors, reference)

        kept, error = fewest_float(ranked, error_of, max_error, step, start)
        shutil.copyfile(trial(kept), output_xml)
        shutil.copyfile(trial(kept).with_suffix(".bin"), output_xml.with_suffix(".bin"))
    return kept, error


def onnxruntime_int8(model: Path, output: Path, exclude_nodes: list[str] | None = None,
                     float_weights_fp16: bool = False) -> None:
    """Dynamic INT8 of the weight MatMuls but ``exclude_nodes``; ``float_weights_fp16`` stores those in fp16."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [name for name in weight_matmuls(model) if name not in (exclude_nodes or [])]
    if not nodes:  # an empty nodes_to_quantize means "all nodes" to onnxruntime
        shutil.copyfile(model, output)
        return
    quantize_dynamic(
        str(model), str(output), op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
    )
    if float_weights_fp16 and exclude_nodes:
        store_weights_fp16(output, exclude_nodes)


def store_weights_fp16(model: Path, matmuls: list[str]) -> None:
    """Store the weights of these float MatMuls as fp16 behind a Cast: half the bytes on disk, fp32 at run time
    (ONNX Runtime folds the Cast when the session loads). fp16 rounding (2^-11) is far below INT8's."""
    import onnx
    from onnx import helper, numpy_helper

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    initializers = {init.name: init for init in graph.initializer}
    casts = []
    for node in graph.node:
        if node.name not in matmuls or node.input[1] not in initializers:
            continue
        weight = initializers[node.input[1]]
        half = numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), f"{weight.name}_fp16")
        graph.initializer.remove(weight)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [weight.name], name=f"{weight.name}_to_fp32",
                                      to=onnx.TensorProto.FLOAT))
    for cast in reversed(casts):
        graph.node.insert(0, cast)
    onnx.save(graph_model, str(model))


CONVOLUTIONS = ["Convolution", "GroupConvolution"]


def onnxruntime_int8_static(model: Path, output: Path, calibration: list[np.ndarray], exclude_nodes: list[str]) -> None:
    """Static QDQ INT8 of a convolutional encoder: per-channel weights, activations calibrated on real images
    to their 99.99th percentile (MinMax lets one image's outlier activation stretch a layer's range for all).
    Meant for the students, whose convolutions carry the work; ``exclude_nodes`` stay float."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
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
            calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": 99.99},
        )
    finally:
        prepared.unlink(missing_ok=True)


def openvino_int8(model: Path, output_xml: Path, calibration: list[np.ndarray], ignored_types: list[str] | None = None,
                  transformer: bool = True, ignored_names: list[str] | None = None, exact_ranges: bool = False) -> None:
    """NNCF post-training quantization of an ONNX or IR model, saved as OpenVINO IR.

    ``exact_ranges``: activation ranges from the calibration min/max and no SmoothQuant. For LiteMedSAM with 20
    linear layers in float, mean mask Dice against fp32 on ../shared/data went 0.963 (defaults) -> 0.966 (no
    SmoothQuant) -> 0.973 (and min/max ranges); with 30 in float, 0.987.
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    ov_model = ov.Core().read_model(str(model))
    ignored = (nncf.IgnoredScope(types=ignored_types or [], names=ignored_names or [], validate=False)
               if ignored_types or ignored_names else None)
    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1),
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
    ) if exact_ranges else None
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(calibration), subset_size=len(calibration),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None, preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=ignored, advanced_parameters=advanced,
    )
    ov.save_model(quantized, str(output_xml), compress_to_fp16=True)
