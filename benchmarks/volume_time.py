"""End-to-end 3D seconds for every variant: one organ of the shipped CT propagated through the Python API.

The CLI timing (``cli_3d``) is what a user waits for, but only once per model (the CLI's default engine); this
one times every model x engine x precision on the same job in the same process, so they compare as ratios.
The gallbladder (13 slices) keeps it to about a minute for all variants, the PyTorch reference included.
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np

from imis_lite.demo import sample_path
from imis_lite.io.readers import read_scan
from imis_lite.job import RawObject, resolve, segment_scan
from imis_lite.metrics import dice

GALLBLADDER = 4


def organ_box(labels: np.ndarray, label: int) -> list[int]:
    """Inclusive voxel box x0 y0 z0 x1 y1 z1 of ``label``."""
    where = np.nonzero(labels == label)
    return [int(a.min()) for a in where] + [int(a.max()) for a in where]


def volume_seconds(segmenters: dict[str, object], label: int = GALLBLADDER) -> dict[str, dict]:
    """Variant label -> {"seconds", "slices", "dice"} for one box-prompted organ of example_ct_sm.nii.gz."""
    scan = read_scan(sample_path("example_ct_sm.nii.gz"))
    truth = np.asarray(nib.load(sample_path("example_seg.nii.gz")).dataobj) == label
    box = organ_box(truth, True)
    prompt = resolve(scan, RawObject(box=box))
    results = {}
    for name, segmenter in segmenters.items():
        started = time.perf_counter()
        labels = segment_scan(segmenter, scan, [prompt])
        seconds = time.perf_counter() - started
        results[name] = {"seconds": round(seconds, 2), "slices": int(np.any(labels > 0, axis=(0, 1)).sum()),
                         "dice": round(dice(labels > 0, truth), 4)}
    return results
