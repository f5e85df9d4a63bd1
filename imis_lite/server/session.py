"""One client's volume, its object and its undo history, as nnInteractive's remote protocol drives them.

The protocol sends a raw 4D image (channel, then three spatial axes in the client's order) and never says
which axis is "the slice". A 2D box is one voxel thick along some axis: that axis is the slice axis, the
box's two sides are the plane the 2D model sees, pictured as the client's viewer shows that slice (the first of
the other two axes down, the second across: napari and 3D Slicer send (z, y, x) and show y down, x across; the
student is not indifferent to a transposed picture), and the object is propagated along that axis through the
whole volume from the boxed slice (``volume.segment_object``). The box says where the object lies on the slice
it was drawn on, not how far it reaches on the others (an organ is wider on some slices than on the drawn one),
so propagated slices are not clipped to it; the CLI's 3D box, which does give the extent, is. A point uses the
last box's axis, else the first axis (the one napari scrolls). A positive point refines the object (the click corrects its slice and
re-propagates); with no object yet it starts one from the click alone. A negative box clears the object
inside the box on its slice. Every change keeps what it overwrote, so undo puts it back.

Intensities are mapped as the CLI maps them (CT window when values look like Hounsfield units, else
percentiles), once per image, so every slice sees the same contrast.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ImageError, PromptError
from ..intensity import infer_modality, to_uint8
from ..predictor import Segmenter
from ..volume import DEFAULT_PROPAGATION, Click, ObjectPrompt, segment_object

#: how many changes undo can walk back
UNDO_DEPTH = 20
#: the axis a point falls back to when no box has named one: the axis napari scrolls through
DEFAULT_POINT_AXIS = 0
#: propagation from a box drawn on one slice: the box bounds that slice only
ONE_SLICE_BOX = replace(DEFAULT_PROPAGATION, keep_inside_box=False)


class ProtocolError(ValueError):
    """A request this session cannot take (4xx): wrong order, wrong shape, coordinates outside the image."""


@dataclass
class Change:
    """What one interaction did to the target buffer: the region, and its values before and after."""

    bbox: list[list[int]] | None  # half-open [lo, hi) per axis; None when nothing changed
    after: np.ndarray | None


@dataclass
class _Step:
    bbox: list[list[int]]
    before: np.ndarray
    prompt: ObjectPrompt | None
    axis: int | None
    erased: list[tuple[int, list[list[int]]]]


@dataclass
class InteractiveVolume:
    """The state of one lease. ``model_lock`` serialises the model among every lease of a server."""

    segmenter: Segmenter
    model_lock: threading.Lock
    max_voxels: int
    volume: np.ndarray | None = None  # uint8 as the model is shown it, in the client's axis order
    target: np.ndarray | None = None  # the client's buffer, mirrored
    prompt: ObjectPrompt | None = None  # in the slice-axis-last frame of ``axis``
    axis: int | None = None
    erased: list[tuple[int, list[list[int]]]] = field(default_factory=list)  # (axis, box) of negative boxes
    history: list[_Step] = field(default_factory=list)

    # -- image and buffer ------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> tuple[int, ...]:
        """A (C, X, Y, Z) image; channel 0 is segmented. Returns its shape."""
        if image.ndim != 4:
            raise ProtocolError(f"expected a 4D image (channel, x, y, z), got {image.ndim}D of shape {list(image.shape)}")
        if int(np.prod(image.shape[1:], dtype=np.float64)) > self.max_voxels:
            raise ProtocolError(f"image of {list(image.shape[1:])} voxels exceeds the limit of {self.max_voxels}")
        if min(image.shape[1:]) < 1 or image.dtype == bool:
            raise ProtocolError("image must be a numeric array with a voxel on every axis")
        data = image[0]
        if not np.isfinite(data).all():
            raise ProtocolError("image holds NaN or infinite values")
        self.volume = to_uint8(data, infer_modality(data))
        self.target, self.prompt, self.axis, self.erased, self.history = None, None, None, [], []
        return tuple(image.shape)

    def set_target(self, shape: object, dtype: object) -> None:
        volume = self._require_volume()
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
            raise ProtocolError("shape must be a list of integers")
        if tuple(shape) != volume.shape:
            raise ProtocolError(f"target buffer shape {shape} differs from the image's {list(volume.shape)}")
        try:
            kind = np.dtype(str(dtype))
        except TypeError:
            raise ProtocolError(f"unknown dtype {dtype!r}") from None
        if kind.kind not in "biu":
            raise ProtocolError(f"target buffer dtype {kind} must be bool or an integer type")
        self.target = np.zeros(volume.shape, kind)
        self.prompt, self.axis, self.erased, self.history = None, None, [], []

    def reset(self) -> None:
        if self.target is not None:
            self.target[:] = 0
        self.prompt, self.axis, self.erased, self.history = None, None, [], []

    # -- interactions ---------------------------------------------------------------------------
    def add_box(self, bbox: object, positive: bool) -> Change:
        target = self._require_target()
        ranges = self._ranges(bbox, target.shape)
        thin = [axis for axis, (lo, hi) in enumerate(ranges) if hi - lo == 1]
        if not thin:
            raise ProtocolError(f"bbox {ranges} is 3D: only 2D boxes (one voxel thick along one axis) are supported")
        axis = self.axis if self.axis in thin else thin[-1]
        plane = [a for a in range(3) if a != axis]
        (y0, y1), (x0, x1), k = ranges[plane[0]], ranges[plane[1]], ranges[axis][0]
        if not positive:
            return self._apply(self.prompt, self.axis, [*self.erased, (axis, ranges)])
        box = (float(x0), float(y0), float(x1 - 1), float(y1 - 1))
        prompt = ObjectPrompt(box=box, z_range=(0, target.shape[axis] - 1), slice_index=k)
        return self._apply(prompt, axis, [])

    def add_point(self, coordinates: object, positive: bool) -> Change:
        target = self._require_target()
        if not (isinstance(coordinates, list) and len(coordinates) == 3
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coordinates)):
            raise ProtocolError("coordinates must be a list of three numbers")
        voxel = [int(round(c)) for c in coordinates]
        if any(not 0 <= v < side for v, side in zip(voxel, target.shape)):
            raise ProtocolError(f"point {coordinates} lies outside the image {list(target.shape)}")
        axis = DEFAULT_POINT_AXIS if self.axis is None else self.axis
        plane = [a for a in range(3) if a != axis]
        click = Click(float(voxel[plane[1]]), float(voxel[plane[0]]), voxel[axis], int(positive))
        if self.prompt is None:
            if not positive:
                return Change(None, None)  # nothing to take away from
            prompt = ObjectPrompt(z_range=(0, target.shape[axis] - 1), slice_index=voxel[axis], points=[click])
        else:
            prompt = replace(self.prompt, points=[*self.prompt.points, click])
        return self._apply(prompt, axis, self.erased)

    def undo(self) -> Change | None:
        """Put back what the last interaction overwrote; None when there is nothing to undo."""
        target = self._require_target()
        if not self.history:
            return None
        step = self.history.pop()
        region = tuple(slice(lo, hi) for lo, hi in step.bbox)
        target[region] = step.before
        self.prompt, self.axis, self.erased = step.prompt, step.axis, step.erased
        return Change(step.bbox, target[region].copy())

    # -- internals -----------------------------------------------------------------------------
    def _apply(self, prompt: ObjectPrompt | None, axis: int | None, erased: list) -> Change:
        target = self._require_target()
        volume = self._require_volume()
        mask = np.zeros(volume.shape, bool)
        if prompt is not None and axis is not None:
            moved = np.moveaxis(volume, axis, 2)
            with self.model_lock:
                try:
                    slices = segment_object(self.segmenter, lambda k: moved[:, :, k], moved.shape[2], prompt,
                                            rules=ONE_SLICE_BOX)
                except (PromptError, ImageError) as error:  # e.g. a box drawn on a blank slice
                    raise ProtocolError(str(error)) from None
            out = np.moveaxis(mask, axis, 2)
            for k, piece in slices.items():
                out[:, :, k] = piece
        for _, ranges in erased:
            mask[tuple(slice(lo, hi) for lo, hi in ranges)] = False
        new = mask.astype(target.dtype)
        changed = np.nonzero(new != target)
        self.prompt, previous_prompt, self.axis, previous_axis = prompt, self.prompt, axis, self.axis
        self.erased, previous_erased = erased, self.erased
        if not len(changed[0]):
            return Change(None, None)
        bbox = [[int(c.min()), int(c.max()) + 1] for c in changed]
        region = tuple(slice(lo, hi) for lo, hi in bbox)
        self.history = [*self.history[-(UNDO_DEPTH - 1):],
                        _Step(bbox, target[region].copy(), previous_prompt, previous_axis, previous_erased)]
        target[region] = new[region]
        return Change(bbox, target[region].copy())

    @staticmethod
    def _ranges(bbox: object, shape: tuple[int, ...]) -> list[list[int]]:
        if not (isinstance(bbox, list) and len(bbox) == 3 and all(isinstance(r, list) and len(r) == 2 for r in bbox)):
            raise ProtocolError("bbox_coords must be three [start, end) pairs, one per axis")
        ranges = []
        for (lo, hi), side in zip(bbox, shape):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
                raise ProtocolError("bbox_coords must hold numbers")
            lo, hi = _voxel_edge(lo), _voxel_edge(hi)
            if not 0 <= lo < hi <= side:
                raise ProtocolError(f"bbox {bbox} lies outside the image {list(shape)} or is empty")
            ranges.append([lo, hi])
        return ranges

    def _require_volume(self) -> np.ndarray:
        if self.volume is None:
            raise ProtocolError("no image: call set_image first")
        return self.volume

    def _require_target(self) -> np.ndarray:
        self._require_volume()
        if self.target is None:
            raise ProtocolError("no target buffer: call set_target_buffer first")
        return self.target


def _voxel_edge(value: float) -> int:
    """The voxel edge nearest a box coordinate, halves rounded up (Python's round sends 40.5 down and 41.5 up).
    napari's plugin sends a dragged rectangle's corners as they are: one drawn around the voxels y0..y1 (edges at
    y0 - 0.5 and y1 + 0.5) becomes [y0, y1 + 1), the same box integer corners give."""
    return int(np.floor(value + 0.5))
