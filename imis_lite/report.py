"""Human-readable facts about a scan, for `imis-lite info`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .intensity import infer_modality
from .io.scan import Scan


def describe_scan(scan: Scan) -> Iterator[str]:
    data = scan.data
    yield f"file:        {scan.path}"
    yield f"format:      {scan.format}"
    if scan.is_volume:
        import nibabel as nib

        x, y, z = data.shape[:3]
        yield f"shape:       x={x} y={y} z={z} (file order; a slice k is shown as rows = y, columns = x)"
        yield "spacing:     " + " x ".join(f"{s:.4g}" for s in scan.spacing) + " mm"
        yield f"orientation: {''.join(nib.aff2axcodes(scan.affine))} (voxel axes -> patient directions)"
        yield f"prompts:     --box x0 y0 z0 x1 y1 z1 with x in 0..{x - 1}, y in 0..{y - 1}, z in 0..{z - 1}"
    else:
        height, width = data.shape[:2]
        channels = data.shape[2] if data.ndim == 3 else 1
        yield f"shape:       width={width} height={height} channels={channels}"
        yield f"prompts:     --box x0 y0 x1 y1 with x (column) in 0..{width - 1}, y (row) in 0..{height - 1}"
    source = "from the file" if scan.modality else "inferred from the values"
    yield f"modality:    {scan.modality or infer_modality(data)} ({source})"
    low, high = np.percentile(data, [0.5, 99.5])
    yield f"values:      min {data.min():g}, max {data.max():g}, 0.5-99.5% {low:g}..{high:g}, dtype {data.dtype}"
