"""Click-by-click correction of one object: each click changes the mask only where it reaches.

The decoder answers a click with a whole new mask that also moves where the user was content (fed its own
logits it erodes; a negative click on a thin rim shrinks the whole organ). So, like FocalClick's progressive
merge, a click takes the decoder's answer only inside a disc around itself, whose radius follows the click's
distance to the previous mask's edge, and there only the change connected to the clicked pixel. An answer that
leaves the clicked pixel on the wrong side is asked once more with its own logits; a click still refused works
as an edge-respecting brush (``brush``): the pixels of the clicked grey level, connected to it, inside the disc,
are added or removed. Measurements behind each choice: docs/experiments.md.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import PromptError
from .predictor import Segmenter
from .protocol import next_click

#: disc radius = REACH * (distance from the click to the previous mask's edge) + SLACK pixels
REACH, SLACK = 2.0, 4.0
#: a brush stroke takes pixels whose grey level is within this fraction of the image's range of the click's
BRUSH_TOLERANCE = 0.08


def _pixel(shape: tuple[int, int], x: float, y: float) -> tuple[int, int]:
    """(row, column) of the pixel a click at x = column, y = row lands on, inside the image."""
    height, width = shape
    return int(np.clip(round(y), 0, height - 1)), int(np.clip(round(x), 0, width - 1))


def ignores_click(proposed: np.ndarray, x: float, y: float, foreground: bool) -> bool:
    """Whether the answer leaves the clicked pixel (x = column, y = row) on the side the user said it is not."""
    return bool(proposed[_pixel(proposed.shape, x, y)] != foreground)


def local_update(previous: np.ndarray, proposed: np.ndarray, x: float, y: float, foreground: bool) -> np.ndarray:
    """The part of the decoder's change that reaches the click: ``proposed`` where it differs from ``previous``
    in one connected piece with the clicked pixel, inside a disc around the click; ``previous`` elsewhere.

    Nothing changes when the answer ignores the click (``ignores_click``) or the pixel was already right.
    previous, proposed: (H, W) bool masks of the same image; x = column, y = row, pixels.
    """
    if ignores_click(proposed, x, y, foreground) or not ignores_click(previous, x, y, foreground):
        return previous
    row, column = _pixel(previous.shape, x, y)
    changed = click_disc(previous, x, y, foreground) & (proposed != previous)
    _, pieces = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
    return np.where(pieces == pieces[row, column], proposed, previous)


def _edge_distance(previous: np.ndarray, x: float, y: float, foreground: bool) -> float:
    """Pixels from the click to the previous mask's edge, seen from the side the click asks to change."""
    wrong_side = ~previous if foreground else previous
    return float(cv2.distanceTransform(wrong_side.astype(np.uint8), cv2.DIST_L2, 3)[_pixel(previous.shape, x, y)])


def _disc(shape: tuple[int, int], x: float, y: float, radius: float) -> np.ndarray:
    row, column = _pixel(shape, x, y)
    rows, columns = np.ogrid[:shape[0], :shape[1]]
    return (rows - row) ** 2 + (columns - column) ** 2 <= radius * radius


def click_disc(previous: np.ndarray, x: float, y: float, foreground: bool) -> np.ndarray:
    """(H, W) bool: the disc around a click that ``local_update`` may take the decoder's answer from, its radius
    REACH x (distance from the click to the previous mask's edge) + SLACK pixels."""
    return _disc(previous.shape, x, y, REACH * _edge_distance(previous, x, y, foreground) + SLACK)


def grey_levels(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in 0..1: the image's grey level (channel mean) over its own range, for ``brush``."""
    grey = image.astype(np.float32)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    low, high = float(grey.min()), float(grey.max())
    return (grey - low) / max(high - low, 1e-6)


def brush(previous: np.ndarray, grey: np.ndarray, x: float, y: float, foreground: bool) -> np.ndarray:
    """The mask with the click's own stroke: the pixels within ``BRUSH_TOLERANCE`` of the clicked pixel's grey
    level (median of its 3x3 neighbourhood), connected to it, inside the disc that reaches the previous mask's
    edge; added for a foreground click, removed for a background one. For clicks the decoder will not take.

    previous: (H, W) bool; grey: ``grey_levels`` of the image; x = column, y = row, pixels.
    """
    if not ignores_click(previous, x, y, foreground):  # the pixel is already on the side asked
        return previous
    row, column = _pixel(previous.shape, x, y)
    clicked = np.median(grey[max(row - 1, 0):row + 2, max(column - 1, 0):column + 2])
    radius = max(_edge_distance(previous, x, y, foreground), 1.0)
    alike = _disc(previous.shape, x, y, radius) & (np.abs(grey - clicked) <= BRUSH_TOLERANCE)
    if not alike[row, column]:  # a lone outlier pixel: nothing around it to stroke
        return previous
    _, pieces = cv2.connectedComponents(alike.astype(np.uint8), connectivity=8)
    stroke = pieces == pieces[row, column]
    return previous | stroke if foreground else previous & ~stroke


class Correction:
    """One object on the Segmenter's current image: a box (or a first click), then corrective clicks.

    ``c = Correction(segmenter, box=[x0, y0, x1, y1])``, then ``c.click(x, y)`` / ``c.click(x, y, False)``;
    ``c.mask`` is (H, W) bool, ``c.logits`` the decoder's low-res logits, fed back on the next click;
    ``prior``: low-res logits to send with the box (3D propagation's previous slice); ``use_brush=False`` leaves a
    click the decoder will not take unanswered (what the network alone does, as the benchmark measures it).
    Every click is sent with all clicks so far, the box and the previous logits (asked once more from its own
    answer when that ignores the click); what the answer changes is kept where it reaches the click only
    (``local_update``), and an answer that still ignores the click gives way to the click's ``brush`` stroke.
    An object started from a click, not a box, is answered by the bundle's click refiner where it ships one
    (``imis_lite.click_refiner``): measured, it takes a first click and the clicks after it better than the
    decoder, while after a box the decoder kept near each click, with the brush, did better (docs/experiments.md).
    """

    def __init__(self, segmenter: Segmenter, box: np.ndarray | list | tuple | None = None,
                 prior: np.ndarray | None = None, use_brush: bool = True) -> None:
        self.segmenter = segmenter
        self.use_brush = use_brush
        self.box = None if box is None else np.asarray(box, dtype=np.float64)
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.mask: np.ndarray | None = None
        self.logits: np.ndarray | None = None
        self.score = 0.0
        if self.box is not None:
            masks, scores, logits = segmenter.predict(box=self.box, mask_input=prior)
            self.mask, self.score, self.logits = masks[0], float(scores[0]), logits[0]

    def click(self, x: float, y: float, foreground: bool = True) -> np.ndarray:
        """Add one click (pixels of the image, x = column) and return the corrected mask."""
        self.points.append((float(x), float(y)))
        self.labels.append(int(foreground))
        if self.segmenter.click_refiner is not None and self.box is None:
            return self._refine(x, y, foreground)
        masks, scores, logits = self.segmenter.predict(
            box=self.box, points=self.points, labels=self.labels, mask_input=self.logits)
        if self.mask is not None and ignores_click(masks[0], x, y, foreground):  # once more, from its own answer
            masks, scores, logits = self.segmenter.predict(
                box=self.box, points=self.points, labels=self.labels, mask_input=logits[0])
        proposed = masks[0]
        if self.mask is None:
            self.mask = proposed
        elif ignores_click(proposed, x, y, foreground):
            if self.use_brush:
                self.mask = brush(self.mask, grey_levels(self.segmenter.image), x, y, foreground)
        else:
            self.mask = local_update(self.mask, proposed, x, y, foreground)
        self.score, self.logits = float(scores[0]), logits[0]
        return self.mask

    def _refine(self, x: float, y: float, foreground: bool) -> np.ndarray:
        """The bundle's click refiner answers from the previous logits: its whole answer is taken (it was
        trained to change what the clicks ask and keep the rest); one that still leaves the clicked pixel on
        the wrong side gives way to the click's brush stroke. The first click starts from the decoder's answer
        to it, as the refiner was trained, or, where the bundle ships a click-start ranker, from the candidate it
        ranks first (``imis_lite.click_start``). A click on a pixel already on the side it asks changes nothing, as
        ``local_update`` keeps it for the decoder; it joins the clicks every later answer reads. The refiner gives
        no IoU estimate: ``score`` stays the decoder's."""
        if self.mask is not None and not ignores_click(self.mask, x, y, foreground):
            return self.mask
        if self.logits is None and foreground and self.segmenter.click_start is not None:
            self.logits, self.score = self.segmenter.start_from_click(x, y)
        elif self.logits is None:
            _, scores, logits = self.segmenter.predict(points=self.points, labels=self.labels)
            self.score, self.logits = float(scores[0]), logits[0]
        proposed, self.logits = self.segmenter.refine_clicks(self.points, self.labels, self.logits, self.box)
        if self.mask is not None and ignores_click(proposed, x, y, foreground) and self.use_brush:
            self.mask = brush(self.mask, grey_levels(self.segmenter.image), x, y, foreground)
        else:
            self.mask = proposed
        return self.mask


def correct(segmenter: Segmenter, box: np.ndarray | list | tuple | None, clicks: list[tuple[float, float, int]],
            prior: np.ndarray | None = None) -> Correction:
    """The box, then each (x, y, label) click in the order given, on the Segmenter's current image."""
    correction = Correction(segmenter, box, prior)
    for x, y, label in clicks:
        correction.click(x, y, bool(label))
    if correction.mask is None:
        raise PromptError("a prompt needs a box or at least one click")
    return correction


def protocol_clicks(correction: Correction, truth: np.ndarray, clicks: int) -> list[np.ndarray]:
    """The mask after each of ``clicks`` corrective clicks placed as the benchmark places them (``next_click``:
    the centre of the largest error against ``truth``, (H, W) bool; without a mask yet, the object's centre
    first); a perfect mask takes no more clicks."""
    masks = []
    for _ in range(clicks):
        click = next_click(np.zeros_like(truth) if correction.mask is None else correction.mask, truth)
        if click is not None:
            x, y, label = click
            correction.click(x, y, bool(label))
        masks.append(np.zeros_like(truth) if correction.mask is None else correction.mask)
    return masks
