"""A whole segmentation job: prompts in voxel (or world) coordinates -> one label map for the scan.

This is what ``imis-lite segment`` runs; it validates every prompt against the scan before any model runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import PromptError
from .intensity import infer_modality, to_uint8
from .io.scan import Scan
from .orientation import Reorientation
from .predictor import Segmenter
from .volume import DEFAULT_PROPAGATION, Click, ObjectPrompt, Propagation, segment_object


@dataclass
class RawObject:
    """One object as typed by a user: a box of 4 or 6 numbers, a slice, clicks of 2 or 3 numbers."""

    box: Sequence[float] | None = None
    slice_index: int | None = None
    points: list[Sequence[float]] = field(default_factory=list)
    neg_points: list[Sequence[float]] = field(default_factory=list)


def read_prompt_file(path: Path) -> tuple[list[RawObject], str | None]:
    """JSON: ``{"coords": "voxel"|"world", "objects": [{"box": [...], "slice": z, "points": [[...]],
    "neg_points": [[...]]}, ...]}`` or just the list of objects."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise PromptError(f"{path}: not a readable JSON prompt file ({error})") from None
    objects = spec.get("objects") if isinstance(spec, dict) else spec
    if not isinstance(objects, list) or not objects:
        raise PromptError(f"{path}: expected a non-empty list of objects")
    raw = []
    for i, item in enumerate(objects):
        if not isinstance(item, dict):
            raise PromptError(f"{path}: object {i} is not a JSON object")
        box = item.get("box")
        if box is not None and not _numbers(box):
            raise PromptError(f"{path}: object {i}: box must be a list of numbers")
        where = item.get("slice")
        if where is not None and (isinstance(where, bool) or not isinstance(where, int)):
            raise PromptError(f"{path}: object {i}: slice must be an integer")
        clicks = {}
        for key in ("points", "neg_points"):
            value = item.get(key) or []
            if not isinstance(value, list) or not all(_numbers(point) for point in value):
                raise PromptError(f"{path}: object {i}: {key} must be a list of [x, y] or [x, y, z] lists of numbers")
            clicks[key] = value
        raw.append(RawObject(box, where, clicks["points"], clicks["neg_points"]))
    coords = spec.get("coords") if isinstance(spec, dict) else None
    if coords not in (None, "voxel", "world"):
        raise PromptError(f"{path}: coords must be 'voxel' or 'world'")
    return raw, coords


def _numbers(value: object) -> bool:
    """A JSON list of numbers (booleans are not numbers here)."""
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _to_voxel(scan: Scan, xyz: np.ndarray) -> np.ndarray:
    """World mm (RAS, as the affine maps) -> voxel indices, for (N, 3) points."""
    homogeneous = np.c_[xyz, np.ones(len(xyz))]
    return (np.linalg.inv(scan.affine) @ homogeneous.T).T[:, :3]


def _bounds(scan: Scan) -> tuple[int, ...]:
    """Upper bound (exclusive) of x, y[, z] in prompt coordinates."""
    if scan.is_volume:
        return scan.data.shape[:3]
    height, width = scan.data.shape[:2]
    return width, height


def _check(values: np.ndarray, bounds: tuple[int, ...], what: str) -> None:
    names = "xyz"
    for axis, (value, limit) in enumerate(zip(values, bounds)):
        if not np.isfinite(value) or value < 0 or value > limit - 1:
            raise PromptError(f"{what}: {names[axis]} = {value:g} is outside the image ({names[axis]} in 0..{limit - 1})")


def resolve(scan: Scan, raw: RawObject, world: bool = False) -> ObjectPrompt:
    """Check one object's prompt against the scan and express it as voxel indices."""
    three_d = scan.is_volume
    depth = scan.data.shape[2] if three_d else 1
    bounds = _bounds(scan)
    prompt = ObjectPrompt()
    if raw.box is not None:
        box = np.asarray(raw.box, dtype=float)
        if box.size == 6 and three_d:
            corners = box.reshape(2, 3)
            if world:
                corners = _to_voxel(scan, corners)
                corners = np.sort(corners, axis=0)
            if np.any(corners[1] < corners[0]):
                raise PromptError(f"box {list(raw.box)}: needs x1 >= x0, y1 >= y0, z1 >= z0 (x0 y0 z0 x1 y1 z1)")
            for corner in corners:
                _check(corner, bounds, "box corner")
            prompt.box = (corners[0, 0], corners[0, 1], corners[1, 0], corners[1, 1])
            prompt.z_range = (int(round(corners[0, 2])), int(round(corners[1, 2])))
        elif box.size == 4:
            corners = box.reshape(2, 2)
            if np.any(corners[1] < corners[0]):
                raise PromptError(f"box {list(raw.box)}: needs x1 >= x0 and y1 >= y0 (x0 y0 x1 y1)")
            if three_d:
                if raw.slice_index is None and depth > 1:
                    raise PromptError("a 2D box on a volume needs --slice z (or give a 3D box x0 y0 z0 x1 y1 z1)")
                z = 0 if raw.slice_index is None else raw.slice_index
                if world:
                    corners = np.sort(_to_voxel(scan, np.c_[corners, [z, z]])[:, :2], axis=0)
                _check(np.array([0, 0, z], float), bounds, "--slice")
                prompt.slice_index = int(z)
            for corner in corners:
                _check(corner, bounds[:2], "box corner")
            prompt.box = (corners[0, 0], corners[0, 1], corners[1, 0], corners[1, 1])
        else:
            wanted = "x0 y0 x1 y1 or x0 y0 z0 x1 y1 z1" if three_d else "x0 y0 x1 y1"
            raise PromptError(f"box {list(raw.box)}: expected 4 or 6 numbers ({wanted})")
    for label, points in ((1, raw.points), (0, raw.neg_points)):
        for point in points:
            xyz = np.asarray(point, dtype=float)
            if three_d:
                if xyz.size == 2:
                    point_z = prompt.slice_index if prompt.slice_index is not None else (0 if depth == 1 else None)
                    if point_z is None:
                        raise PromptError(f"point {list(point)}: on a volume give x y z")
                    xyz = np.r_[xyz, point_z]
                if xyz.size != 3:
                    raise PromptError(f"point {list(point)}: expected x y z")
                if world:
                    xyz = _to_voxel(scan, xyz[None])[0]
            elif xyz.size != 2:
                raise PromptError(f"point {list(point)}: expected x y")
            _check(xyz, bounds, "point")
            z = int(round(xyz[2])) if three_d else 0
            prompt.points.append(Click(float(xyz[0]), float(xyz[1]), z, label))
    if prompt.box is None and not prompt.points:
        raise PromptError("each object needs a box or a point")
    if prompt.box is None and not any(p[3] == 1 for p in prompt.points):
        raise PromptError("an object given by clicks needs at least one foreground --point")
    if prompt.z_range is not None:
        z0, z1 = prompt.z_range
        outside = [p for p in prompt.points if not z0 <= p[2] <= z1]
        if outside:
            raise PromptError(f"point at z = {outside[0][2]} lies outside the box's z-range {z0}..{z1}")
    elif prompt.box is None and depth > 1:  # clicks alone on a volume: propagate from the first foreground one
        prompt.slice_index = next(p[2] for p in prompt.points if p[3] == 1)
        prompt.z_range = (0, depth - 1)
    elif prompt.points:
        start = prompt.slice_index if prompt.slice_index is not None else prompt.points[0][2]
        if any(p[2] != start for p in prompt.points):
            raise PromptError("all clicks of one object must lie on the slice being segmented")
        prompt.slice_index = start
    return prompt


def model_volume(scan: Scan, modality: str | None = None, window: tuple[float, float] | None = None) -> np.ndarray:
    """The scan as the uint8 image the model is shown (window or percentile mapping); slice k is ``[:, :, k].T``."""
    return to_uint8(scan.data, modality or scan.modality or infer_modality(scan.data), window)


def segment_scan(
    segmenter: Segmenter,
    scan: Scan,
    prompts: list[ObjectPrompt],
    modality: str | None = None,
    window: tuple[float, float] | None = None,
    on_slice: Callable[[], None] | None = None,
    rules: Propagation = DEFAULT_PROPAGATION,
) -> np.ndarray:
    """Label map with the scan's spatial shape; object i of ``prompts`` gets label i + 1 (later ones win).

    Volumes are segmented in one working frame (``orientation``: RAS+, the propagation axis last), prompts and
    masks mapped there and back, whenever every prompt can be: a 2D box on a slice whose axis is not the
    propagation axis stays in the input's own frame."""
    if scan.is_volume:
        reorientation = Reorientation.of(scan.affine, scan.data.shape)
        canonical = [_to_canonical(prompt, reorientation) for prompt in prompts]
        if not reorientation.is_identity and all(p is not None for p in canonical):
            turned = replace(scan, data=reorientation.array(scan.data))
            labels = _segment(segmenter, turned, [p for p in canonical if p is not None], modality, window, on_slice, rules)
            return reorientation.back(labels)  # a view: no second copy of a big label map
    return _segment(segmenter, scan, prompts, modality, window, on_slice, rules)


def _to_canonical(prompt: ObjectPrompt, reorientation: Reorientation) -> ObjectPrompt | None:
    """``prompt`` in working-frame indices; None for a 2D prompt whose slice would not be a slice there."""
    if prompt.z_range is None and reorientation.axis(2) != 2:
        return None
    points = []
    for x, y, z, label in prompt.points:
        cx, cy, cz = reorientation.index((x, y, z))
        points.append(Click(cx, cy, int(round(cz)), label))
    box, z_range, slice_index = None, None, None
    if prompt.slice_index is not None:
        slice_index = int(round(reorientation.index((0, 0, prompt.slice_index))[2]))
    if prompt.box is not None:
        z0, z1 = prompt.z_range if prompt.z_range is not None else (prompt.slice_index or 0,) * 2
        corners = np.array([reorientation.index((prompt.box[0], prompt.box[1], z0)),
                            reorientation.index((prompt.box[2], prompt.box[3], z1))])
        low, high = corners.min(axis=0), corners.max(axis=0)
        box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
        if prompt.z_range is not None:
            z_range = (int(round(low[2])), int(round(high[2])))
    elif prompt.z_range is not None:
        ends = sorted(reorientation.index((0, 0, z))[2] for z in prompt.z_range)
        z_range = (int(round(ends[0])), int(round(ends[1])))
    return ObjectPrompt(box=box, z_range=z_range, slice_index=slice_index, points=points)


def _segment(segmenter: Segmenter, scan: Scan, prompts: list[ObjectPrompt], modality: str | None,
             window: tuple[float, float] | None, on_slice: Callable[[], None] | None, rules: Propagation) -> np.ndarray:
    image = model_volume(scan, modality, window)
    labels = np.zeros(scan.spatial_shape, dtype=np.uint16 if len(prompts) > 255 else np.uint8)
    slices = len(_touched(prompts)) if scan.is_volume else 1
    with segmenter.holding(min(slices, JOB_CACHE_LIMIT // segmenter.embedding_bytes)):
        _segment_each(segmenter, image, scan.is_volume, prompts, labels, on_slice, rules)
    return labels


#: most bytes of embeddings a job keeps so that objects crossing the same slices encode each slice once
JOB_CACHE_LIMIT = 2 << 30


def _touched(prompts: list[ObjectPrompt]) -> set[int]:
    """Every slice some object's walk may visit."""
    slices: set[int] = set()
    for prompt in prompts:
        z0, z1 = prompt.z_range if prompt.z_range is not None else (prompt.start_slice(),) * 2
        slices.update(range(z0, z1 + 1))
    return slices


def _segment_each(segmenter: Segmenter, image: np.ndarray, is_volume: bool, prompts: list[ObjectPrompt],
                  labels: np.ndarray, on_slice: Callable[[], None] | None, rules: Propagation) -> None:
    for label, prompt in enumerate(prompts, start=1):
        if is_volume:
            masks = segment_object(segmenter, lambda k: image[:, :, k].T, image.shape[2], prompt, on_slice, rules)
            for k, mask in masks.items():
                labels[:, :, k][mask.T] = label
        else:  # a 2D image is a volume of one slice: the same prompt path, the same box rules
            flat = replace(prompt, slice_index=0, points=[Click(p[0], p[1], 0, p[3]) for p in prompt.points])
            labels[segment_object(segmenter, lambda k: image, 1, flat, on_slice, rules)[0]] = label
