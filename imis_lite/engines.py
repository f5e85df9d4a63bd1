"""ONNX Runtime and OpenVINO sessions behind one small interface.

CPU is the default everywhere: OpenVINO's AUTO adds latency on CPU-only machines. GPU, NPU or AUTO are
tried on request; when the device is absent a notice is logged and the CPU is used instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from .options import ARITHMETICS, DEVICES, ENGINES, checked

log = logging.getLogger(__name__)

#: OpenVINO may run bf16 or f16 on CPUs that support it; unless asked otherwise we pin f32 for
#: reproducible masks and say which precision actually ran. Each arithmetic, with OpenVINO's name for it in
#: the CPU's OPTIMIZATION_CAPABILITIES:
_CPU_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
assert tuple(_CPU_CAPABILITY) == ARITHMETICS


class Engine(Protocol):
    name: str
    device: str
    #: the arithmetic the engine actually used for its float ops ("f32", "bf16", ...)
    inference_precision: str

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def _check_device(device: str) -> str:
    return checked("device", device.upper(), DEVICES)


class OnnxRuntimeEngine:
    name = "onnxruntime"
    inference_precision = "f32"

    _GPU_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")

    def __init__(self, model: Path, device: str = "CPU", threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Each session has its own thread pool, whose threads spin after a run; the encoder's then compete with
        # the decoder's for the same cores. Without spinning, effvit-s-hr's 3D liver through the CLI took 2.3 s
        # instead of 4.1-5.4 (2 threads, AMD EPYC); LiteMedSAM's, its encoder dominating, moved within noise.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.device = "CPU"
        if _check_device(device) != "CPU":
            usable = [p for p in self._GPU_PROVIDERS if p in ort.get_available_providers()]
            if usable:
                providers = usable[:1] + providers
                self.device = device
            else:
                log.warning("onnxruntime has no %s provider here; running on the CPU", device)
        self.session = ort.InferenceSession(str(model), options, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))


class OpenVinoEngine:
    name = "openvino"

    def __init__(
        self, model: Path, device: str = "CPU", threads: int | None = None, hint: str = "f32"
    ) -> None:
        import openvino as ov

        checked("arithmetic", hint, ARITHMETICS)
        core = ov.Core()
        device = _check_device(device)
        if device not in ("CPU", "AUTO") and not any(d.startswith(device) for d in core.available_devices):
            log.warning("OpenVINO sees no %s here (it has %s); running on the CPU", device, ", ".join(core.available_devices))
            device = "CPU"
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = _cpu_arithmetic(core, hint)
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
        self.device = device
        self.compiled = core.compile_model(core.read_model(str(model)), device, config)
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        try:
            hint_type = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            self.inference_precision = hint_type.to_string() if hasattr(hint_type, "to_string") else str(hint_type)
        except RuntimeError:
            self.inference_precision = "device default"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(inputs)
        return {name: np.asarray(results[output]) for name, output in zip(self.output_names, self.compiled.outputs)}


def _cpu_arithmetic(core, hint: str) -> str:
    """The hint itself where this CPU does that arithmetic natively, else f32 with a notice (emulating bf16
    on a CPU without it is slower than f32)."""
    if hint == "f32" or _CPU_CAPABILITY[hint] in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return hint
    log.warning("this CPU has no native %s arithmetic; running f32", hint)
    return "f32"


def create_engine(
    engine: str, model: Path, device: str = "CPU", threads: int | None = None, hint: str = "f32"
) -> Engine:
    """One session for one model file; ``hint`` only concerns OpenVINO on the CPU."""
    if engine == "onnxruntime":
        return OnnxRuntimeEngine(model, device, threads)
    if engine == "openvino":
        return OpenVinoEngine(model, device, threads, hint)
    checked("engine", engine, ENGINES)
    raise AssertionError(f"engine {engine} is declared but not built")
