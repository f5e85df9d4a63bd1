"""The CVPR 2025 interactive protocol's click: at the centre of the largest error region.

Centre = the pixel of the region farthest from its border (distance transform); a miss (ground truth not
predicted) gets a foreground click, a false positive a background click. The first click of a point-first
prompt lands the same way, at the object's own centre.
"""

from __future__ import annotations

import cv2
import numpy as np


def next_click(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float, int] | None:
    """(x, y, label) of the next corrective click on 2D masks, or None when they already agree."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    error = prediction ^ truth
    if not error.any():
        return None
    count, components, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y = centre_click(components == largest)
    return x, y, 1 if truth[int(y), int(x)] else 0


def centre_click(region: np.ndarray) -> tuple[float, float]:
    """(x, y) of the region's pixel farthest from its border, the image's border counting as one."""
    padded = np.pad(region.astype(bool), 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)
