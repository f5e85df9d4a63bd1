"""3D segmentation: segment one slice from the user's prompt, then propagate slice by slice.

Each next slice is prompted with the bounding box of the previous slice's mask, widened by 6 pixels of the
model frame: a decoder answers a box a few pixels too tight with a mask inside it, so without slack the mask
shrinks slice after slice while the organ grows, and LiteMedSAM was trained with boxes jittered by up to 5.
Every prompt box and mask stays inside the user's 3D box, and a click on any slice corrects that slice when
propagation reaches it, everything beyond being propagated from the corrected slice. The start slice keeps
only its mask's largest connected piece (a loose box also frames lookalikes), unless the user clicked there.
Propagation stops at the first empty slice, unless a click lies beyond it: no measured signal (IoU estimate,
stability score, overlap, area, grey level) told wrong slices from right ones better. The previous slice's
logits are not fed back as mask input: that lowered 3D DSC. Measurements: docs/experiments.md.
An object given by clicks alone walks the same way, bounded by the slice instead of a box. The walk has the
encoder embed its next slices on the Segmenter's worker thread while the decoder answers the current one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from .corrections import correct
from .errors import PromptError
from .metrics import dice
from .predictor import Segmenter
from .preprocess import is_constant


class Click(NamedTuple):
    """One click in voxel indices of the volume (x = i, y = j, z = k; a 2D image is one slice, z = 0);
    label 1 = foreground, 0 = background. A tuple, so ``x, y, z, label = click`` reads it too."""

    x: float
    y: float
    z: int = 0
    label: int = 1


@dataclass
class ObjectPrompt:
    """One object, in voxel indices of the volume (x = i, y = j, z = k), corners inclusive.

    box: (x0, y0, x1, y1) on ``slice_index``, or with ``z_range`` a 3D box to propagate through.
    points: ``Click`` values; with a ``z_range`` they may lie on any slice of it.
    """

    box: tuple[float, float, float, float] | None = None
    z_range: tuple[int, int] | None = None
    slice_index: int | None = None
    points: list[Click] = field(default_factory=list)

    def start_slice(self) -> int:
        """``slice_index`` when given (a 2D box drawn on one slice of a z-range), else the z-range's middle."""
        if self.slice_index is not None:
            return self.slice_index
        if self.z_range is not None:
            return (self.z_range[0] + self.z_range[1]) // 2
        if self.points:
            return int(self.points[0][2])
        raise PromptError("a prompt needs a box with a slice (or a 3D box) or a point")

    def clicks_on(self, k: int) -> list[Click]:
        return [p for p in self.points if int(p[2]) == k]


@dataclass(frozen=True)
class Propagation:
    """The rules of slice-to-slice propagation (measured on ../shared/data's volumes; see the README)."""

    margin: float = 6.0  # box widening, pixels of the model frame
    carry_logits: bool = False  # previous slice's logits as mask input too (CT better, MR worse: module docstring)
    keep_inside_box: bool = True
    min_score: float = 0.0
    min_overlap: float = 0.0
    stop_when_lost: bool = True  # False: a slice left empty does not end it; the next one gets the user's box
    one_piece_start: bool = True  # the start slice of a 3D box keeps its largest piece (no click on it)


DEFAULT_PROPAGATION = Propagation()
#: LiteMedSAM's own 3D inference (its challenge script), kept as the benchmark's reference: each slice boxed by
#: the previous mask's box widened by 3 pixels of 256, or by the user's box when that mask is empty; every slice
#: of the z-range is segmented, none is skipped or ends it.
LITEMEDSAM_PROPAGATION = Propagation(margin=3.0, keep_inside_box=False, stop_when_lost=False, one_piece_start=False)
#: slices the walk has the encoder embed ahead of it: enough to keep the encoder's worker busy while the decoder
#: works, few enough that a walk ending early wastes little
AHEAD = 2


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


def largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a 2D bool mask (the mask itself when it has one piece or none)."""
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    return pieces == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


@dataclass
class _SliceAnswer:
    mask: np.ndarray
    logits: np.ndarray | None  # low-res, model frame; None for a blank slice
    score: float


class _Bounds:
    """The user's box in x and y (the whole slice without one), for clipping prompt boxes and masks."""

    def __init__(self, box: tuple[float, float, float, float] | None, shape: tuple[int, int]) -> None:
        height, width = shape
        self.box = np.array([0, 0, width - 1, height - 1], float) if box is None else np.asarray(box, float)
        self.inside = np.zeros(shape, bool)
        x0, y0, x1, y1 = self.box
        self.inside[int(np.floor(y0)):int(np.ceil(y1)) + 1, int(np.floor(x0)):int(np.ceil(x1)) + 1] = True

    def clip(self, box: np.ndarray) -> np.ndarray | None:
        """The part of a box inside the user's box; None when they do not meet."""
        clipped = np.r_[np.maximum(box[:2], self.box[:2]), np.minimum(box[2:], self.box[2:])]
        return None if np.any(clipped[2:] < clipped[:2]) else clipped


def _predict(segmenter: Segmenter, box, clicks, mask_input) -> _SliceAnswer:
    """The box (with ``mask_input``), then this slice's clicks one by one, each correcting near itself."""
    answer = correct(segmenter, box, [(p[0], p[1], p[3]) for p in clicks], mask_input)
    assert answer.mask is not None  # correct() refuses a prompt that gives none
    return _SliceAnswer(answer.mask, answer.logits, answer.score)


def segment_object(
    segmenter: Segmenter,
    slice_image: Callable[[int], np.ndarray],
    depth: int,
    prompt: ObjectPrompt,
    on_slice: Callable[[], None] | None = None,
    rules: Propagation = DEFAULT_PROPAGATION,
) -> dict[int, np.ndarray]:
    """Slice index -> (Y, X) bool mask for one object; ``slice_image(k)`` gives slice k as (Y, X)."""
    start = prompt.start_slice()
    if not 0 <= start < depth:
        raise PromptError(f"slice {start} is outside the volume (z in 0..{depth - 1})")
    segmenter.set_image(slice_image(start))
    if prompt.z_range is not None:
        _queue(segmenter, slice_image, range(start + 1, prompt.z_range[1] + 1)[:AHEAD])
    bounds = _Bounds(prompt.box if rules.keep_inside_box else None, segmenter.image_shape)
    first = _predict(segmenter, None if prompt.box is None else np.asarray(prompt.box, float), prompt.clicks_on(start), None)
    first.mask &= bounds.inside
    if rules.one_piece_start and prompt.z_range is not None and not prompt.clicks_on(start):
        first.mask = largest_piece(first.mask)
    result = {start: first.mask}
    if on_slice:
        on_slice()
    if prompt.z_range is None:
        return result
    z0, z1 = prompt.z_range
    clicked = {int(p[2]) for p in prompt.points}
    margin = rules.margin * max(segmenter.image_shape) / segmenter.input_size
    for direction, stop in ((1, z1), (-1, z0)):
        previous = first
        walk = range(start + direction, stop + direction, direction)
        _queue(segmenter, slice_image, walk[:AHEAD])
        for step, k in enumerate(walk):
            _queue(segmenter, slice_image, walk[step + AHEAD:step + AHEAD + 1])
            clicks = prompt.clicks_on(k)
            keep_going = not rules.stop_when_lost or any((c - k) * direction >= 0 for c in clicked)
            box = mask_box(previous.mask, margin)
            box = None if box is None else bounds.clip(box)
            if box is None:
                if not keep_going:
                    break
                box = None if prompt.box is None else np.asarray(prompt.box, float)
            image = slice_image(k)
            if (is_constant(image) or box is None) and not clicks:
                current = _SliceAnswer(np.zeros(segmenter.image_shape, bool), None, 0.0)
            else:
                segmenter.set_image(image)
                carried = previous.logits if rules.carry_logits and previous.mask.any() else None
                current = _predict(segmenter, box, clicks, carried)
                current.mask &= bounds.inside
            if on_slice:
                on_slice()
            looks_lost = (not current.mask.any() or current.score < rules.min_score
                          or (rules.min_overlap > 0 and dice(current.mask, previous.mask) < rules.min_overlap))
            if looks_lost and not keep_going:
                break
            result[k] = current.mask
            previous = current
        segmenter.cancel_ahead()
    return result


def _queue(segmenter: Segmenter, slice_image: Callable[[int], np.ndarray], slices: range) -> None:
    """Have the encoder embed these coming slices while the walk decodes (blank ones are never encoded)."""
    images = (slice_image(k) for k in slices)
    segmenter.encode_ahead(image for image in images if not is_constant(image))
