"""Accuracy on challenge-form .npz cases: box protocol (DSC, NSD) and the 5-click protocol (DSC per click).

2D cases: box = the object's bounding box (optionally jittered), then clicks at the centre of the largest
error region, through the runtime's ``Correction`` (all clicks so far, the previous low-res logits fed back,
each answer kept near its click). 3D cases: a 3D box through the same propagation as
``imis-lite segment`` (window/percentile intensity, middle slice first), and again through LiteMedSAM's own
scheme as the reference (its challenge script: the previous mask's box widened by 3 pixels of 256, the user's
box again after an empty slice, every slice of the z-range), and with every slice boxed by its own ground
truth: the ceiling of any rule that propagates a box, since only the decoder's accuracy slice by slice is left.
Both propagations run once more with the box's z-range ``LOOSE_Z`` slices longer at each end (inside the
volume), as a user's box drawn by eye is: there the rule for where to stop decides slices that hold no object.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imis_lite.corrections import Correction, protocol_clicks
from imis_lite.demo import boxes_from_labels
from imis_lite.io import read_scan
from imis_lite.job import RawObject, model_volume, resolve, segment_scan
from imis_lite.metrics import dice, nsd
from imis_lite.volume import LITEMEDSAM_PROPAGATION, mask_box

#: slices added at each end of a 3D box's z-range for the loose-box runs
LOOSE_Z = 3


@dataclass
class ObjectScore:
    case: str
    modality: str
    label: int
    dims: int
    dsc: float
    nsd: float
    click_dsc: list[float] = field(default_factory=list)  # after 1..N clicks (2D only)
    middle_slice_dsc: float | None = None  # 3D: DSC of the first, box-prompted middle slice on its own
    litemedsam_scheme_dsc: float | None = None  # 3D: DSC through LiteMedSAM's own propagation
    truth_box_per_slice_dsc: float | None = None  # 3D: DSC with every slice boxed by its own ground truth
    loose_z_dsc: float | None = None  # 3D: DSC when the box's z-range is LOOSE_Z slices longer at each end
    loose_z_litemedsam_scheme_dsc: float | None = None  # 3D: the same through LiteMedSAM's own propagation


def jittered(box: np.ndarray, pixels: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The box with each edge moved by up to ``pixels``, kept inside the image and non-empty."""
    if pixels <= 0:
        return box
    moved = box + rng.integers(-pixels, pixels + 1, size=4)
    height, width = shape
    moved = np.clip(moved, 0, [width - 1, height - 1, width - 1, height - 1])
    return np.array([min(moved[0], moved[2]), min(moved[1], moved[3]), max(moved[0], moved[2]), max(moved[1], moved[3])])


def score_2d(segmenter, name: str, modality: str, image, truth, clicks: int, jitter: int, rng) -> list[ObjectScore]:
    segmenter.set_image(image)
    scores = []
    for label, box in boxes_from_labels(truth).items():
        target = truth == label
        box = jittered(box, jitter, truth.shape, rng)
        correction = Correction(segmenter, box)
        mask = correction.mask
        result = ObjectScore(name, modality, label, 2, dice(mask, target), nsd(mask, target, (1.0, 1.0)))
        result.click_dsc += [dice(mask, target) for mask in protocol_clicks(correction, target, clicks)]
        scores.append(result)
    return scores


def score_3d(segmenter, path: Path) -> list[ObjectScore]:
    scan = read_scan(path)
    volume = model_volume(scan)
    with np.load(path, allow_pickle=False) as case:
        truth_all = case["gts"].transpose(2, 1, 0)  # challenge (z, y, x) -> file order (x, y, z)
    scores = []
    for label in (int(v) for v in np.unique(truth_all) if v > 0):
        truth = truth_all == label
        corners = np.argwhere(truth)
        low, high = corners.min(0), corners.max(0)
        prompt = resolve(scan, RawObject([*low, *high]))
        predicted = segment_scan(segmenter, scan, [prompt]) == 1
        reference = segment_scan(segmenter, scan, [prompt], rules=LITEMEDSAM_PROPAGATION) == 1
        loose = resolve(scan, RawObject([low[0], low[1], max(low[2] - LOOSE_Z, 0),
                                         high[0], high[1], min(high[2] + LOOSE_Z, truth.shape[2] - 1)]))
        middle = (low[2] + high[2]) // 2  # where propagation starts, from the box alone
        scores.append(ObjectScore(path.stem, scan.modality or "", label, 3, dice(predicted, truth), nsd(predicted, truth, scan.spacing),
                                  middle_slice_dsc=dice(predicted[:, :, middle], truth[:, :, middle]),
                                  litemedsam_scheme_dsc=dice(reference, truth),
                                  truth_box_per_slice_dsc=dice(boxed_by_truth(segmenter, volume, truth), truth),
                                  loose_z_dsc=dice(segment_scan(segmenter, scan, [loose]) == 1, truth),
                                  loose_z_litemedsam_scheme_dsc=dice(
                                      segment_scan(segmenter, scan, [loose], rules=LITEMEDSAM_PROPAGATION) == 1, truth)))
    return scores


def boxed_by_truth(segmenter, volume: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(x, y, z) mask with each slice that holds the object segmented from that slice's tight ground-truth box."""
    mask = np.zeros_like(truth)
    for k in np.flatnonzero(truth.any(axis=(0, 1))):
        segmenter.set_image(volume[:, :, k].T)
        mask[:, :, k] = segmenter.predict(box=mask_box(truth[:, :, k].T))[0][0].T
    return mask


def evaluate(segmenter, cases: list[Path], clicks: int = 5, jitter: int = 0, seed: int = 0) -> tuple[list[ObjectScore], dict]:
    """Scores of every object of every case, plus wall-clock seconds per 3D case."""
    rng = np.random.default_rng(seed)
    scores: list[ObjectScore] = []
    seconds_3d: dict[str, float] = {}
    for path in cases:
        with np.load(path, allow_pickle=False) as case:
            imgs = case["imgs"]
            is_3d = imgs.ndim == 3 and imgs.shape[2] != 3
            modality = str(case["modality"]) if "modality" in case.files else ""
            truth = None if is_3d else case["gts"]
        if is_3d:
            started = time.perf_counter()
            scores.extend(score_3d(segmenter, path))
            seconds_3d[path.stem] = time.perf_counter() - started
        else:
            scores.extend(score_2d(segmenter, path.stem, modality, imgs, truth, clicks, jitter, rng))
    return scores, seconds_3d


def summarise(scores: list[ObjectScore]) -> dict:
    """Mean DSC/NSD over all objects and per modality (2D and 3D apart), and the DSC-vs-clicks curve."""
    out: dict = {}
    for dims in (2, 3):
        subset = [s for s in scores if s.dims == dims]
        if not subset:
            continue
        group = {"all": _means(subset)}
        for modality in sorted({s.modality for s in subset}):
            group[modality] = _means([s for s in subset if s.modality == modality])
        out[f"{dims}d"] = group
    two_d = [s for s in scores if s.dims == 2 and s.click_dsc]
    if two_d:
        curve = _click_curve(two_d)
        out["clicks"] = {"dsc_per_click": curve, "auc": round(float(np.trapezoid(curve) / (len(curve) - 1)), 4),
                         "per_modality": {m: _click_curve([s for s in two_d if s.modality == m])
                                          for m in sorted({s.modality for s in two_d})}}
    return out


def _click_curve(subset: list[ObjectScore]) -> list[float]:
    """Mean DSC after the box, then after each click."""
    curve = [float(np.mean([s.dsc for s in subset]))] + list(np.mean([s.click_dsc for s in subset], axis=0))
    return [round(float(v), 4) for v in curve]


def _means(subset: list[ObjectScore]) -> dict:
    means = {"dsc": round(float(np.mean([s.dsc for s in subset])), 4),
             "nsd": round(float(np.mean([s.nsd for s in subset])), 4), "objects": len(subset)}
    middles = [s.middle_slice_dsc for s in subset if s.middle_slice_dsc is not None]
    if middles:
        means["middle_slice_dsc"] = round(float(np.mean(middles)), 4)
        means["objects_below_middle_minus_0.05"] = sum(s.dsc < s.middle_slice_dsc - 0.05 for s in subset if s.middle_slice_dsc is not None)
        means["litemedsam_scheme_dsc"] = round(float(np.mean([s.litemedsam_scheme_dsc for s in subset])), 4)
        boxed = [s for s in subset if s.truth_box_per_slice_dsc is not None]
        if boxed:
            means["truth_box_per_slice_dsc"] = round(float(np.mean([s.truth_box_per_slice_dsc for s in boxed])), 4)
            means["truth_box_per_slice_below_middle_minus_0.05"] = sum(
                s.truth_box_per_slice_dsc < s.middle_slice_dsc - 0.05 for s in boxed)
        loose = [s for s in subset if s.loose_z_dsc is not None]
        if loose:
            means["loose_z_dsc"] = round(float(np.mean([s.loose_z_dsc for s in loose])), 4)
            means["loose_z_litemedsam_scheme_dsc"] = round(float(np.mean([s.loose_z_litemedsam_scheme_dsc for s in loose])), 4)
    return means


def save_scores(path: Path, scores: list[ObjectScore]) -> None:
    path.write_text(json.dumps([asdict(s) for s in scores]) + "\n")
