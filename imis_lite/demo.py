"""The quick-start job: segment the shipped BTCV CT slice from its reference boxes and score it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from .metrics import dice
from .predictor import Segmenter

SAMPLE = "btcv_ABD_001_110.npz"


def sample_path(name: str = SAMPLE) -> Path:
    return Path(str(resources.files("imis_lite.samples").joinpath(name)))


def boxes_from_labels(label_map: np.ndarray) -> dict[int, np.ndarray]:
    """Label -> x0 y0 x1 y1 (inclusive, x = column) of each object in a 2D label map."""
    boxes = {}
    for label in np.unique(label_map[label_map > 0]):
        ys, xs = np.nonzero(label_map == label)
        boxes[int(label)] = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    return boxes


def run_demo(**segmenter_options) -> Iterator[str]:
    with np.load(sample_path(), allow_pickle=False) as case:
        image, truth, names = case["imgs"], case["gts"], json.loads(str(case["labels"]))
    segmenter = Segmenter(**segmenter_options)
    yield f"model: {segmenter.describe()}"
    started = time.perf_counter()
    segmenter.set_image(image)
    encoded = time.perf_counter()
    boxes = boxes_from_labels(truth)
    masks, _, _ = segmenter.predict(box=np.stack(list(boxes.values())))
    decoded = time.perf_counter()
    scores = []
    for (label, box), mask in zip(boxes.items(), masks[:, 0]):
        scores.append(dice(mask, truth == label))
        yield f"  {names[str(label)]:<30} box {' '.join(str(int(v)) for v in box):<17} Dice {scores[-1]:.3f}"
    yield (
        f"{SAMPLE}: {len(scores)} organs, mean Dice {np.mean(scores):.3f}; "
        f"encoder {1000 * (encoded - started):.0f} ms, decoder {1000 * (decoded - encoded):.0f} ms for all boxes"
    )
