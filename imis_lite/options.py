"""Every choice a user makes when running a model, declared once: the API, the CLI and the benchmark read it.

Kept free of heavy imports so that ``imis-lite --help`` can build its option lists from it.
"""

from __future__ import annotations

from .errors import OptionError

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")  # of the stored weights
ARITHMETICS = ("f32", "bf16", "f16")  # what OpenVINO computes float layers in (bf16 / f16 only where native)
DEVICES = ("CPU", "GPU", "NPU", "AUTO")

DEFAULT_ENGINE = "onnxruntime"
DEFAULT_PRECISION = "fp32"
DEFAULT_ARITHMETIC = "f32"
DEFAULT_DEVICE = "CPU"


def checked(kind: str, value: str, valid: tuple[str, ...]) -> str:
    """``value`` when it is one of ``valid``, else an ``OptionError`` naming the valid ones."""
    if value not in valid:
        raise OptionError(f"unknown {kind} '{value}'; valid: {', '.join(valid)}")
    return value


def checked_run_options(engine: str, precision: str, arithmetic: str, device: str) -> str:
    """Check one run's options together; returns the device in OpenVINO's spelling (upper case)."""
    checked("engine", engine, ENGINES)
    checked("precision", precision, PRECISIONS)
    checked("arithmetic", arithmetic, ARITHMETICS)
    if arithmetic != DEFAULT_ARITHMETIC and engine != "openvino":
        raise OptionError(f"{arithmetic} arithmetic needs the openvino engine")
    return checked("device", device.upper(), DEVICES)
