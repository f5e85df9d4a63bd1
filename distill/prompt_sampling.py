"""Prompts for the prompt-in-the-loop loss: a box and a click per view, on a ground-truth object when the
view has one, else on a random region (the teacher's answer to it is the target either way)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: the fewest pixels an object needs to be prompted on
MIN_OBJECT_PIXELS = 9


def random_region(valid_shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = valid_shape
    box_h = rng.uniform(0.1, 0.6) * height
    box_w = rng.uniform(0.1, 0.6) * width
    y0 = rng.uniform(0, height - box_h)
    x0 = rng.uniform(0, width - box_w)
    return np.array([x0, y0, x0 + box_w, y0 + box_h], np.float32)


def sample_labels(mask: np.ndarray) -> list[int]:
    """The labels of a label map large enough to prompt (``MIN_OBJECT_PIXELS`` or more)."""
    return [int(label) for label in np.unique(mask) if label and (mask == label).sum() >= MIN_OBJECT_PIXELS]


def sample_prompts(mask: np.ndarray, valid_shape: tuple[int, int], rng: np.random.Generator,
                   max_jitter: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(box x0 y0 x1 y1, point x y) in model-input pixels.

    The box is an object's bounding box with a few pixels of jitter (users draw loosely); the click lies
    inside the same object, drawn with probability rising towards its interior, as users click.
    """
    labels = sample_labels(mask)
    if not labels:
        box = random_region(valid_shape, rng)
        return box, np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
    return region_prompts(mask == rng.choice(labels), valid_shape, rng, max_jitter)


def region_prompts(region: np.ndarray, valid_shape: tuple[int, int], rng: np.random.Generator,
                   max_jitter: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """(box x0 y0 x1 y1, point x y) for one non-empty object mask, in model-input pixels."""
    ys, xs = np.nonzero(region)
    jitter = rng.uniform(-max_jitter, max_jitter, 4)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32) + jitter
    height, width = valid_shape
    box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    weights = depth[ys, xs] ** 2
    pick = rng.choice(len(xs), p=weights / weights.sum())
    return box, np.array([xs[pick], ys[pick]], np.float32)


def largest_part(mask: np.ndarray, min_pixels: int = MIN_OBJECT_PIXELS) -> np.ndarray | None:
    """The largest connected part of a binary mask, or None when it has fewer than ``min_pixels``: what a
    teacher's answer to a region calls an object, on a view that has no label map."""
    parts, count = ndimage.label(mask)
    if not count:
        return None
    sizes = np.bincount(parts.ravel())[1:]
    biggest = int(np.argmax(sizes))
    return parts == biggest + 1 if sizes[biggest] >= min_pixels else None


def content_shape(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of a view up to its last non-zero row and column: the padding added at the bottom
    and right is not part of the image."""
    rows, cols = np.nonzero(image.reshape(-1, *image.shape[-2:]).max(axis=0))
    return (int(rows.max()) + 1, int(cols.max()) + 1) if len(rows) else image.shape[-2:]
