"""End-to-end 3D time through the CLI: the shipped CT sample, its largest organ from a box, in a fresh process.

This is what a user waits for (reading, windowing, every slice's encoder and decoder, writing NIfTI), so it
is timed as a subprocess, per model, with the CLI's default engine and precision.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from imis_lite.demo import sample_path
from imis_lite.metrics import dice


def largest_organ_box(labels: np.ndarray) -> tuple[int, list[int]]:
    """Label and inclusive voxel box x0 y0 z0 x1 y1 z1 of the largest label."""
    values, counts = np.unique(labels[labels > 0], return_counts=True)
    label = int(values[np.argmax(counts)])
    where = np.nonzero(labels == label)
    return label, [int(a.min()) for a in where] + [int(a.max()) for a in where]


def cli_3d(model: str, threads: int) -> dict:
    """Seconds (best of 2 runs; wall, and the seconds the CLI reports after Python and the CLI have started) and
    Dice of the CLI on example_ct_sm.nii.gz's largest organ."""
    truth = np.asarray(nib.load(sample_path("example_seg.nii.gz")).dataobj)
    label, box = largest_organ_box(truth)
    runs, score = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mask.nii.gz"
        for _ in range(2):
            command = [sys.executable, "-m", "imis_lite.cli", "segment", str(sample_path("example_ct_sm.nii.gz")),
                       "--box", *map(str, box), "--model", model, "--threads", str(threads), "-o", str(out), "--force"]
            started = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            reported = re.search(r"([0-9.]+) s$", done.stderr.strip())
            runs.append((time.perf_counter() - started, float(reported.group(1)) if reported else float("nan")))
        score = dice(np.asarray(nib.load(out).dataobj) > 0, truth == label)
    wall, after_start = min(runs)
    return {"seconds": round(wall, 2), "segmentation_seconds": round(after_start, 2), "dice": round(float(score), 4),
            "label": label, "box": box}
