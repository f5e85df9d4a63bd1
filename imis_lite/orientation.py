"""One orientation for the networks, whatever the storage: volumes are segmented in nibabel's closest canonical
(RAS+) frame, its axes ordered so that the propagation axis comes last, and the masks mapped back exactly.

A 2D model sees slice k of the third axis as a picture, so the same CT stored with an axis flipped, two axes
swapped, or the slice axis first is a different picture to it (a volume stored z-first is even cut sagittally).
Reordering and flipping axes to RAS+ makes every storage of one scan the same input. Propagation runs along
the axis of the coarsest spacing when one is clearly coarser (the acquisition axis of thick-slice scans: across
thick slices a 2D model would see smeared pictures), else along S (axial). RAS+ rather than the radiological
LPS view because it is what LiteMedSAM segments best (docs/experiments.md). Only axis permutations and flips
are applied, never a resampling; prompts stay in the input's voxel indices and are mapped here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: a spacing this much coarser than both others makes its axis the propagation axis
COARSER = 1.1
AXIAL = 2  # S in RAS+


@dataclass(frozen=True)
class Reorientation:
    """The permutation and flips from a volume's storage to the working frame (``nibabel.orientations`` array)."""

    ornt: np.ndarray  # (3, 2): for each input axis, its working-frame axis and +1 / -1
    shape: tuple[int, int, int]  # the input's spatial shape

    @classmethod
    def of(cls, affine: np.ndarray, shape: tuple[int, ...]) -> Reorientation:
        from nibabel.orientations import io_orientation

        ras = io_orientation(affine)
        spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
        by_ras = {int(ras[axis, 0]): float(spacing[axis]) for axis in range(3)}
        coarsest = max(by_ras, key=lambda axis: by_ras[axis])
        others = [by_ras[axis] for axis in by_ras if axis != coarsest]
        last = coarsest if all(by_ras[coarsest] > COARSER * other for other in others) else AXIAL
        order = [axis for axis in range(3) if axis != last] + [last]
        ornt = np.array([[order.index(int(ras[axis, 0])), ras[axis, 1]] for axis in range(3)], float)
        return cls(ornt, (int(shape[0]), int(shape[1]), int(shape[2])))

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.ornt, [[0, 1], [1, 1], [2, 1]]))

    def array(self, data: np.ndarray) -> np.ndarray:
        """The input-grid array (spatial axes first) in the working frame: a view, no copy."""
        from nibabel.orientations import apply_orientation

        return apply_orientation(data, self.ornt)

    def back(self, working: np.ndarray) -> np.ndarray:
        """A working-frame array brought back to the input's grid (the inverse of ``array``)."""
        out = np.transpose(working, [int(target) for target, _ in self.ornt])
        flipped = tuple(axis for axis, (_, direction) in enumerate(self.ornt) if direction < 0)
        return np.flip(out, flipped) if flipped else out

    def index(self, voxel: tuple[float, float, float]) -> tuple[float, float, float]:
        """An input voxel index (x, y, z) as a working-frame index."""
        out = [0.0, 0.0, 0.0]
        for axis, (target, direction) in enumerate(self.ornt):
            value = float(voxel[axis])
            out[int(target)] = value if direction > 0 else self.shape[axis] - 1 - value
        return (out[0], out[1], out[2])

    def axis(self, input_axis: int) -> int:
        """Where an input axis goes."""
        return int(self.ornt[input_axis, 0])
