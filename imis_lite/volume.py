"""3D segmentation: segment one slice from the user's prompt, then propagate slice by slice.

Each next slice is prompted with the bounding box of the previous slice's mask, widened by 6 pixels of the
model frame (LiteMedSAM's own 3D inference widens by 3). The measured failure of propagation is a mask that
shrinks slice after slice while the organ grows: the decoder answers a box a few pixels too tight with a
mask inside it, whose box is tighter again. LiteMedSAM was trained with box corners jittered by up to 5
pixels (``bbox_shift``), so 6 is about the loosest box it knows. Margins swept on ../shared/data's 95 volume
objects (the only volumes with ground truth here), mean 3D DSC: effvit-s 0.462 / 0.471 / 0.473 / 0.467 / 0.461
for 3 / 5 / 6 / 8 / 10 pixels; litemedsam 0.418 (3) vs 0.432 (6).
Unlike LiteMedSAM's scheme, every prompt box and every mask stays inside the user's 3D box (x, y and z), and
clicks on any slice of the box correct that slice when propagation reaches it, everything beyond it being
propagated from the corrected slice (propagation never stops before a clicked slice).

Also measured there (README): keeping inside the box lifts 3D DSC by 0.02-0.03; feeding the previous slice's
logits as mask input (``carry_logits``) lowered it by 0.06 with the prompt-only training, and with the trained
click output (read for any mask input) moves litemedsam's mean 0.432 -> 0.439 but splits by modality (CT 72
objects +0.026, MR 23 objects -0.050) and lowers effvit-s's 0.473 -> 0.432 (CT -0.044, MR -0.030), so it stays
off; stopping on the decoder's predicted IoU (``min_score``) or on slice-to-slice overlap (``min_overlap``) only
cuts correct slices when the box's z-range is tight. So these three are off by default, kept for experiments and
loose z-ranges. Widening the box again when a mask touches its edge, choosing among several margins by the
decoder's IoU score, or adding a click at the previous mask's centre gained little or lost (effvit-s: +0.002
over margin 3; -0.007 and -0.046 against margin 6 alone) and were not kept. Guards against leaks measured
nothing (effvit-s, 95 objects, 0.4732 each): cutting a slice's mask to its prompt box, or to the previous mask
grown by the margin when its area more than doubles; retrying an empty slice with the previous logits, or going
on past it, 0.4727 / 0.4730. Per-slice Dice shows why: at an organ's ends the decoder keeps answering a mask of
the previous slice's size while the organ tapers (2-10x too large) or picks a neighbour of the same size, not a
sudden leak. Shrinking each next box as an ellipsoid filling the user's z-range (half-axis = half the
z-range + 0.5 or 1.5 slices) lowered effvit-s's mean to 0.469 (MR most: 0.468 -> 0.459), so the taper is not that
regular. Nor does the previous slices' trend help (effvit-s, 95 objects, OpenVINO fp32; 0.4732 and 36 objects more
than 0.05 below their middle slice with margin 6 alone): moving each edge of the next box by its motion between the
two previous masks gave 0.4707 (40 objects below), by half of it 0.4782 (39), only when it shrinks 0.4708 (41).
The user's box on every slice without propagating gives 0.4593 (43), and choosing per slice between it and the
propagated box, by overlap with the previous mask or by the decoder's IoU estimate, 0.4615 (40) / 0.4657 (42).

The start slice (the middle of the user's 3D box) keeps only the largest connected piece of its mask, unless the
user clicked on it. The user's 3D box spans the whole object, so on its middle slice it is looser than the object
(3.4x the object's area there, median over ../shared/data's 95 volume objects), and a box decoder answers a loose
box with the object plus fragments of whatever else inside the box looks alike; every propagated box then carries
those fragments on (``tests/test_volume.py`` builds such a case). Measured there (OpenVINO fp32, mean 3D DSC):
effvit-s-hr 0.5003 -> 0.5097 (CT 0.488 -> 0.500, MR 0.539 -> 0.541), litemedsam 0.4318 -> 0.4335 (CT and MR both
up); keeping one piece on the propagated slices too, or the pieces touching the previous mask, added nothing
(0.5096 / 0.5102), as their boxes are tight already; keeping the largest 3D piece of the result added 0.0001 /
0.001. A click on the start slice keeps every piece (the user may be adding the second one).

Propagation stops at the first slice left empty, unless a click lies beyond it: going on would prompt the user's
whole box on slices past the organ's end, where a box prompt still finds something (false positives when the
user's z-range is looser than the organ). The shared volumes' z-ranges are tight, and there going on past an
empty slice scores the same (effvit-s-hr 0.5003 either way, litemedsam 0.4318 vs 0.4316). A blank slice (one grey
level: padding, or all air after the window) counts as empty instead of failing the whole object. LiteMedSAM's
own 3D inference, the benchmark's reference (``LITEMEDSAM_PROPAGATION``), never stops: after an empty slice it
sends the user's box again.

A z-range looser than the organ costs accuracy: 3 / 8 slices more at each end lower effvit-s-hr's mean from
0.510 to 0.479 / 0.447 (litemedsam 0.434 to 0.407 / 0.356; the benchmark measures 3), since past the organ's end
the decoder still answers a box with something of the previous mask's size. No measured signal tells those
slices apart, so none replaces the empty slice as the stop: stopping on the decoder's IoU estimate (below 0.3-0.8,
or 0.5-0.7x the previous slice's), SAM's stability score (area of logits > 1 over logits > -1; below 0.5-0.9 or
0.7-0.9x the previous), Dice with the previous mask, area jumps of 2.5-5x, or a mean grey level 0.5-2 standard
deviations from the start slice's gained at most 0.009 for effvit-s-hr (stability below 0.8x the previous
slice's: +0.004 / +0.009 / 0.000 at 0 / 3 / 8 slices looser, 5 objects more than 0.01 worse when tight), and the
same rule lowers litemedsam's 0.434 to 0.409; stopping each end at its best slice (known from the ground truth)
would give 0.546 / 0.544 / 0.529 (litemedsam 0.458 / 0.458 / 0.418). The slices such a stop would cut hold none
of the organ (median), yet the decoder scores them 0.72 against 0.82 for slices kept (medians). Nor does the
start slice matter: starting where the box answer fills the user's box best gave 0.509, and even the slice whose
answer is best by the ground truth 0.524 (effvit-s-hr, tight z-range).

Embeddings stay in the Segmenter's cache, so re-running an object after a click costs only the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .corrections import correct
from .errors import PromptError
from .metrics import dice
from .predictor import Segmenter
from .preprocess import is_constant


@dataclass
class ObjectPrompt:
    """One object, in voxel indices of the volume (x = i, y = j, z = k), corners inclusive.

    box: (x0, y0, x1, y1) on ``slice_index``, or with ``z_range`` a 3D box to propagate through.
    points: (x, y, z, label) clicks, label 1 = foreground, 0 = background; with a ``z_range`` they may lie
    on any slice of it.
    """

    box: tuple[float, float, float, float] | None = None
    z_range: tuple[int, int] | None = None
    slice_index: int | None = None
    points: list[tuple[float, float, int, int]] = field(default_factory=list)

    def start_slice(self) -> int:
        """``slice_index`` when given (a 2D box drawn on one slice of a z-range), else the z-range's middle."""
        if self.slice_index is not None:
            return self.slice_index
        if self.z_range is not None:
            return (self.z_range[0] + self.z_range[1]) // 2
        if self.points:
            return int(self.points[0][2])
        raise PromptError("a prompt needs a box with a slice (or a 3D box) or a point")

    def clicks_on(self, k: int) -> list[tuple[float, float, int, int]]:
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
        for k in range(start + direction, stop + direction, direction):
            clicks = prompt.clicks_on(k)
            keep_going = not rules.stop_when_lost or any((c - k) * direction >= 0 for c in clicked)
            box = mask_box(previous.mask, margin)
            box = None if box is None else bounds.clip(box)
            if box is None:
                if not keep_going:
                    break
                box = np.asarray(prompt.box, float)
            image = slice_image(k)
            if is_constant(image) and not clicks:
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
    return result
