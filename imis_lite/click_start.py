"""Where an object started from one click begins: the best of several candidate answers, as a trained ranker sees it.

SAM's decoder, asked about one click, draws a part of the object (a small blob round the click on a large organ);
asked about a box, it draws whatever the box frames. So a click alone is answered here by candidates: the
decoder's answer to the click itself and to square boxes of several sides centred on the click, drawn in one batch.
A small network (``distill.train_click_start``) scores each candidate from what the runtime can see (the decoder's
IoU estimate, the candidate's size against its neighbours', how much of it the box cuts, the grey levels inside
it and just outside it) and the best one is where the click refiner starts. All of it is in the model frame, the
same for training and at run time. A bundle that ships a ranker names it in its manifest (``click_start``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: sides, in model-frame pixels, of the square boxes centred on the click whose answers are candidates
CANDIDATE_SIDES = (16, 32, 64, 128, 240)
#: width, in model-frame pixels, of the band inside a box's border where a candidate counts as cut by the box, and
#: of the ring just outside a candidate whose grey level is compared with the inside
BAND = 3
FEATURES = 14


def candidate_boxes(x: float, y: float, content: tuple[int, int]) -> np.ndarray:
    """(K, 4) x0 y0 x1 y1 model-frame boxes, one per side of CANDIDATE_SIDES, centred on the click and cut to the
    image's content (height, width) in the frame, its padding left out."""
    half = np.asarray(CANDIDATE_SIDES, np.float64)[:, None] / 2
    height, width = content
    return np.clip(np.c_[x - half, y - half, x + half, y + half], 0, [width - 1, height - 1, width - 1, height - 1])


def _cut_share(mask: np.ndarray, box: np.ndarray | None) -> float:
    """The share of the mask within BAND pixels inside the box's border (0 for the click's own answer)."""
    if box is None or not mask.any():
        return 0.0
    x0, y0, x1, y1 = np.round(box).astype(int)
    inner = np.zeros_like(mask)
    inner[y0 + BAND:y1 - BAND + 1, x0 + BAND:x1 - BAND + 1] = True
    return float((mask & ~inner).sum() / mask.sum())


def candidate_features(grey: np.ndarray, logits: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                       x: float, y: float, threshold: float) -> np.ndarray:
    """(1 + K, FEATURES) float32: row 0 the click's own answer, then one row per box of ``boxes``.

    grey: (S, S) model-frame image in [0, 1]; logits: (1 + K, S, S) low-res logits in the same frame; scores:
    (1 + K,) the decoder's IoU estimates; (x, y) the click in model-frame pixels."""
    size = grey.shape[0]
    masks = logits > threshold
    row, column = int(np.clip(round(y), 0, size - 1)), int(np.clip(round(x), 0, size - 1))
    clicked_grey = float(grey[max(row - 1, 0):row + 2, max(column - 1, 0):column + 2].mean())
    spread = float(grey.std()) + 1e-3
    areas = masks.reshape(len(masks), -1).sum(1).astype(np.float64)
    log_areas = np.log1p(areas / size ** 2 * 1e4)
    click_mask = masks[0]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND + 1, 2 * BAND + 1))
    rows = []
    for index, (mask, logit, score) in enumerate(zip(masks, logits, scores)):
        box = None if index == 0 else boxes[index - 1]
        side = 0.0 if box is None else float(box[2] - box[0]) / size
        before = log_areas[index - 1] if index > 1 else log_areas[index]
        after = log_areas[index + 1] if 0 < index < len(masks) - 1 else log_areas[index]
        ring = (cv2.dilate(mask.astype(np.uint8), kernel) > 0) & ~mask
        inside = grey[mask] if mask.any() else np.array([clicked_grey])
        outside = grey[ring] if ring.any() else inside
        union = (mask | click_mask).sum()
        rows.append([
            float(index == 0), side, float(score), float(score - scores.max()), log_areas[index],
            before - log_areas[index], after - log_areas[index], _cut_share(mask, box),
            float(mask[row, column]), float(np.clip(logit[row, column], -20, 20)) / 10,
            (mask & click_mask).sum() / union if union else 0.0,
            float(inside.std()) / spread, abs(float(inside.mean()) - clicked_grey) / spread,
            abs(float(inside.mean()) - float(outside.mean())) / spread])
    return np.asarray(rows, np.float32)


class ClickStartRanker:
    """A two-layer perceptron over standardised candidate features (``click_start.npz``: mean, scale, w1, b1, w2,
    b2); the higher its output, the better it expects the candidate to match the object."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as weights:
            self.mean, self.scale = weights["mean"], weights["scale"]
            self.w1, self.b1, self.w2, self.b2 = weights["w1"], weights["b1"], weights["w2"], weights["b2"]

    def rank(self, features: np.ndarray) -> np.ndarray:
        hidden = np.maximum((features - self.mean) / self.scale @ self.w1 + self.b1, 0)
        return (hidden @ self.w2 + self.b2)[:, 0]
