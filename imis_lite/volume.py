"""3D segmentation from a 3D box: segment the middle slice, then walk up and down.

Each next slice is prompted with the bounding box of the previous slice's mask, widened by 3 pixels of the
model frame as LiteMedSAM's own 3D inference does (a flush box makes the mask shrink slice after slice),
until the mask vanishes or the box's z-range ends. Embeddings stay in the Segmenter's cache, so several objects
in one volume share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import PromptError
from .predictor import Segmenter


@dataclass
class ObjectPrompt:
    """One object, in voxel indices of the volume (x = i, y = j, z = k), corners inclusive.

    box: (x0, y0, x1, y1) on ``slice_index``, or with ``z_range`` a 3D box to propagate through.
    points: (x, y, z, label) clicks, label 1 = foreground, 0 = background.
    """

    box: tuple[float, float, float, float] | None = None
    z_range: tuple[int, int] | None = None
    slice_index: int | None = None
    points: list[tuple[float, float, int, int]] = field(default_factory=list)

    def start_slice(self) -> int:
        if self.z_range is not None:
            return (self.z_range[0] + self.z_range[1]) // 2
        if self.slice_index is not None:
            return self.slice_index
        if self.points:
            return int(self.points[0][2])
        raise PromptError("a prompt needs a box with a slice (or a 3D box) or a point")


#: LiteMedSAM's ``bbox_shift`` for propagated boxes, in pixels of the model's input frame.
PROPAGATION_MARGIN = 3


def mask_box(mask: np.ndarray, margin: float = 0.0) -> np.ndarray | None:
    """x0 y0 x1 y1 (x = column) of a 2D mask widened by ``margin`` pixels inside the image; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    height, width = mask.shape
    return np.array([
        max(xs.min() - margin, 0), max(ys.min() - margin, 0),
        min(xs.max() + margin, width - 1), min(ys.max() + margin, height - 1),
    ], dtype=np.float64)


def segment_object(
    segmenter: Segmenter,
    slice_image: Callable[[int], np.ndarray],
    depth: int,
    prompt: ObjectPrompt,
    on_slice: Callable[[], None] | None = None,
) -> dict[int, np.ndarray]:
    """Slice index -> (Y, X) bool mask for one object; ``slice_image(k)`` gives slice k as (Y, X)."""
    start = prompt.start_slice()
    if not 0 <= start < depth:
        raise PromptError(f"slice {start} is outside the volume (z in 0..{depth - 1})")
    segmenter.set_image(slice_image(start))
    points = [p for p in prompt.points if int(p[2]) == start]
    masks, _, _ = segmenter.predict(
        box=None if prompt.box is None else np.asarray(prompt.box, float),
        points=[[p[0], p[1]] for p in points] if points else None,
        labels=[p[3] for p in points] if points else None,
    )
    result = {start: masks[0]}
    if on_slice:
        on_slice()
    if prompt.z_range is None:
        return result
    z0, z1 = prompt.z_range
    margin = PROPAGATION_MARGIN * max(segmenter.image_shape) / segmenter.input_size
    for direction, stop in ((1, z1), (-1, z0)):
        previous = result[start]
        for k in range(start + direction, stop + direction, direction):
            box = mask_box(previous, margin)
            if box is None:
                break
            segmenter.set_image(slice_image(k))
            previous = segmenter.predict(box=box)[0][0]
            if on_slice:
                on_slice()
            if not previous.any():
                break
            result[k] = previous
    return result
