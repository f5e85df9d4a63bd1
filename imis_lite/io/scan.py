"""What every reader returns: the voxels in file order plus what is needed to write a mask back aligned."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Scan:
    """A 2D image or a 3D volume.

    data: volumes are (X, Y, Z) in file order (x = i, the first NIfTI axis; for DICOM x = column,
    y = row, z = slice sorted along the slice normal). 2D images are (H, W) or (H, W, 3), x = column.
    affine: 4x4 voxel -> world (mm, RAS as NIfTI stores it); identity-with-spacing where the file has none.
    """

    path: Path
    format: str  # "nifti", "dicom", "image", "npz"
    data: np.ndarray
    affine: np.ndarray
    is_volume: bool
    modality: str | None = None
    #: format-specific things a writer needs: the NIfTI header, the DICOM datasets, npz keys...
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, : self.data.ndim if self.is_volume else 2], axis=0))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.data.shape[:3] if self.is_volume else self.data.shape[:2]

    def slice_image(self, k: int) -> np.ndarray:
        """Slice k of a volume as the model sees it: (Y, X), rows = j, columns = i."""
        return self.data[:, :, k].T
