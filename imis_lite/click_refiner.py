"""The click refiner: a small network that takes corrective clicks where SAM's decoder does not.

SAM's decoder redraws the whole mask from 64x64 image tokens on every click, so fed its own previous answer it
loses that answer's detail while it adds the click (docs/experiments.md). The refiner instead starts from the
previous logits and adds a change: it reads the model-frame image, the previous logits, discs around the clicks
so far, the box (if any) and the image embedding, and answers new logits in the same 256x256 frame
(``distill.train_click_refiner`` trains it on simulated corrective clicks against the corpus label maps). A first
click without a box starts from the decoder's answer to that click, as the refiner was trained. A bundle that
ships one names it in its manifest (``refiner``); its inputs are made here, the same for training and run time.
"""

from __future__ import annotations

import numpy as np

#: disc radius, in model-frame pixels, that marks each click on its map
CLICK_RADIUS = 5
#: previous logits are clipped to +-PRIOR_LIMIT before the refiner reads them and adds its change
PRIOR_LIMIT = 8.0


def click_maps(points: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """(2, size, size) float32: discs of CLICK_RADIUS around the foreground clicks (map 0) and the background
    clicks (map 1); points (K, 2) x, y in model-frame pixels, labels (K,) 1 = foreground."""
    maps = np.zeros((2, size, size), np.float32)
    rows, columns = np.ogrid[:size, :size]
    for (x, y), label in zip(np.asarray(points, np.float64), np.asarray(labels)):
        maps[0 if label else 1][(rows - y) ** 2 + (columns - x) ** 2 <= CLICK_RADIUS ** 2] = 1.0
    return maps


def box_map(box: np.ndarray | None, size: int) -> np.ndarray:
    """(1, size, size) float32: 1 inside the box (x0 y0 x1 y1, model-frame pixels, corners inclusive); without
    a box the whole frame is inside, as nothing bounds the object (all 0 would read as "outside the box")."""
    if box is None:
        return np.ones((1, size, size), np.float32)
    inside = np.zeros((1, size, size), np.float32)
    x0, y0, x1, y1 = np.clip(np.round(np.asarray(box, np.float64)), 0, size - 1).astype(int)
    inside[0, y0:y1 + 1, x0:x1 + 1] = 1.0
    return inside


def refiner_inputs(image: np.ndarray, embedding: np.ndarray, previous: np.ndarray, points: np.ndarray,
                   labels: np.ndarray, box: np.ndarray | None) -> dict[str, np.ndarray]:
    """The refiner's named inputs for one object: image (1, 3, S, S) in [0, 1] (the encoder's input),
    embedding (1, C, h, w), previous low-res logits (S, S), clicks and box in model-frame pixels."""
    size = image.shape[-1]
    return {"image": image.astype(np.float32), "embedding": embedding.astype(np.float32),
            "previous": previous.reshape(1, 1, size, size).astype(np.float32),
            "clicks": click_maps(points, labels, size)[None], "box": box_map(box, size)[None]}
