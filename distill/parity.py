"""Export-time parity: every variant of a bundle against the PyTorch model it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imis_lite.metrics import dice
from imis_lite.predictor import Segmenter

from .corpus import CorpusImage
from .reference import TorchReference

#: Below these, an export is refused rather than shipped.
MIN_FP32_DICE = 0.99
#: Measured on the held-out corpus images (largest object each): 0.994 (ORT) and 0.995 (OpenVINO); on
#: ../shared/data, with many small organs, the same files give 0.985 and 0.987 (see tests).
MIN_INT8_MEAN_DICE = 0.98
#: fp32 variants must equal PyTorch up to float rounding.
MAX_EMBEDDING_DIFF = {"onnxruntime": 1e-3, "openvino": 1e-3}


def largest_object_box(mask: np.ndarray) -> np.ndarray:
    """x0 y0 x1 y1 (inclusive) of the largest label in a label map."""
    labels, counts = np.unique(mask[mask > 0], return_counts=True)
    ys, xs = np.nonzero(mask == labels[np.argmax(counts)])
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def check_bundle(folder: Path, net, validation: list[CorpusImage], threads: int = 2) -> dict[str, float]:
    reference = TorchReference(net)
    cases = []
    for item in validation:
        image = item.image()
        box = largest_object_box(item.mask())
        embedded = reference.embed(image)
        cases.append((image, box, embedded, reference.predict(image, box[None], embedded)[0][0]))

    report: dict[str, float] = {}
    for engine in ("onnxruntime", "openvino"):
        for precision in ("fp32", "int8"):
            seg = Segmenter(str(folder), engine=engine, precision=precision, threads=threads)
            dices, diffs = [], []
            for image, box, (embedding, _), expected in cases:
                seg.set_image(image)
                if precision == "fp32":
                    diffs.append(float(np.abs(seg._require_image().embedding - embedding.numpy()).max()))
                masks, _, _ = seg.predict(box=box)
                dices.append(dice(masks[0], expected))
            key = f"{engine}_{precision}"
            report[f"{key}_mask_dice_mean"] = round(float(np.mean(dices)), 5)
            report[f"{key}_mask_dice_min"] = round(float(np.min(dices)), 5)
            if diffs:
                report[f"{key}_embedding_max_abs_diff"] = float(f"{max(diffs):.3g}")
    failures = [
        key for key, value in report.items()
        if (key.endswith("fp32_mask_dice_min") and value < MIN_FP32_DICE)
        or (key.endswith("int8_mask_dice_mean") and value < MIN_INT8_MEAN_DICE)
        or (key.endswith("embedding_max_abs_diff") and value > MAX_EMBEDDING_DIFF[key.split("_")[0]])
    ]
    if failures:
        raise RuntimeError(f"parity check failed ({', '.join(failures)}): {report}")
    return report
