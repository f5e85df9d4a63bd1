"""Peak resident memory of one variant (load + one encode + one decode), measured in a fresh process.

python -m imis_lite.benchmarks.memory MODEL ENGINE PRECISION THREADS  -> prints peak RSS in MB
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_rss_mb(model: str, engine: str, precision: str, threads: int, arithmetic: str = "f32") -> float:
    output = subprocess.run(
        [sys.executable, "-m", "imis_lite.benchmarks.memory", model, engine, precision, str(threads), arithmetic],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def cli_cold_start_s(*args: str) -> float:
    """Wall-clock seconds of a fresh ``imis-lite`` process (median of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imis_lite.cli", *args], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[1]


def _main() -> None:
    import numpy as np

    from imis_lite.demo import boxes_from_labels, sample_path
    from imis_lite.predictor import Segmenter

    model, engine, precision, threads, arithmetic = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    with np.load(sample_path(), allow_pickle=False) as case:
        image, truth = case["imgs"], case["gts"]
    segmenter = Segmenter(model, engine=engine, precision=precision, threads=threads, arithmetic=arithmetic)
    segmenter.set_image(image)
    segmenter.predict(box=next(iter(boxes_from_labels(truth).values())))
    print(_own_peak_mb())


def _own_peak_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, since ru_maxrss survives exec and can report the parent's peak."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    _main()
