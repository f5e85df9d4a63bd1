"""Peak memory of the CLI on a big CT: 512x512x1000 int16, one organ boxed over 300 slices.

The volume is synthesised from the shipped CT (each slice resized to 512x512, slices repeated along z to 1000,
written uncompressed as a user's converted DICOM series would be), so its intensities are a real CT's. The CLI
runs in a fresh process; its peak resident memory is read from the operating system after it exits.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from imis_lite.demo import sample_path

SHAPE = (512, 512, 1000)
BOX_SLICES = 300


def synthesise(path: Path) -> list[int]:
    """Write the big CT to ``path``; returns the 3D box (x0 y0 z0 x1 y1 z1) of the liver over BOX_SLICES slices."""
    source = nib.load(sample_path("example_ct_sm.nii.gz"))
    data = np.asarray(source.dataobj, dtype=np.int16)
    big = np.empty(SHAPE, np.int16)
    picks = np.linspace(0, data.shape[2] - 1, SHAPE[2]).round().astype(int)
    for k, pick in enumerate(picks):  # cv2 takes (width, height) and works on (rows, columns) = (x, y) here
        big[:, :, k] = cv2.resize(data[:, :, pick], (SHAPE[1], SHAPE[0]), interpolation=cv2.INTER_LINEAR)
    zoom = np.diag([data.shape[0] / SHAPE[0], data.shape[1] / SHAPE[1], data.shape[2] / SHAPE[2], 1.0])
    nib.save(nib.Nifti1Image(big, source.affine @ zoom), str(path))
    x0, y0, x1, y1 = (int(round(v * 512 / s)) for v, s in zip((41, 25, 105, 86), (122, 101, 122, 101)))
    start = (SHAPE[2] - BOX_SLICES) // 2
    return [x0, y0, start, x1, y1, start + BOX_SLICES - 1]


def big_volume(model: str, threads: int) -> dict:
    """Seconds and peak RSS (MB) of ``imis-lite segment`` on the synthesised CT."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big_ct.nii"
        box = synthesise(path)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imis_lite.cli", "-q", "segment", str(path), "--box", *map(str, box),
                        "--model", model, "--threads", str(threads), "-o", str(Path(tmp) / "mask.nii.gz")],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux: the largest child so far
    return {"shape": list(SHAPE), "box_slices": BOX_SLICES, "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak / 1024, 1), "earlier_children_peak_mb": round(before / 1024, 1)}
