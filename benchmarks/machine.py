"""What the numbers were measured on: CPU model and flags, threads, library versions."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16", "avx512_bf16", "fma")


def describe_machine(threads: int) -> dict:
    cpu, flags = platform.processor() or "unknown", []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in FLAGS_OF_INTEREST if f in present]
                break
    versions = {}
    for package in ("imis-lite", "numpy", "onnxruntime", "openvino", "torch", "opencv-python-headless"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return {"cpu": cpu, "flags": flags, "threads": threads, "python": platform.python_version(), "versions": versions}
