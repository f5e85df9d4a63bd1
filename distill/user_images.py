"""Training images from files a user points at: folders of NIfTI, DICOM, PNG/JPEG/TIFF and .npz.

Volumes are sliced along each of their three axes. Every file goes through the runtime's own readers and
intensity mapping (CT window, percentiles otherwise, one mapping per volume as ``imis-lite segment`` does),
so the student is taught on the pixels it will be given. Challenge-form .npz files with a ``gts`` array
bring their labels, which then place the prompts of the prompt-in-the-loop loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from imis_lite.errors import InputError
from imis_lite.intensity import infer_modality, to_uint8
from imis_lite.io import read_scan
from imis_lite.io.readers import IMAGE_SUFFIXES

log = logging.getLogger("imis_lite.distill")

FILE_SUFFIXES = (".nii", ".nii.gz", ".npz", ".dcm", *IMAGE_SUFFIXES)
USER_LICENSE_CLASS = "user"


@dataclass(frozen=True)
class UserImage:
    """One 2D training image: a whole 2D file, or slice ``index`` of a volume along ``axis``."""

    path: Path  # a file, or a folder holding one DICOM series
    key: str  # stable name in a cache's item list
    source: str
    modality: str
    axis: int | None = None
    index: int | None = None
    license_class: str = USER_LICENSE_CLASS

    @property
    def mask_path(self) -> Path | None:
        return self.path if _labels(self.path) is not None else None

    def image(self) -> np.ndarray:
        """(H, W) or (H, W, 3) uint8."""
        return _take(_pixels(self.path), self.axis, self.index)

    def mask(self) -> np.ndarray:
        """(H, W) uint8 label map (only for .npz files with ``gts``)."""
        labels = _labels(self.path)
        assert labels is not None
        return _take(labels, self.axis, self.index).astype(np.uint8)


def _take(volume_or_image: np.ndarray, axis: int | None, index: int | None) -> np.ndarray:
    if axis is None:
        return volume_or_image
    return np.ascontiguousarray(np.take(volume_or_image, index, axis=axis).T)  # axis 2: (Y, X) as the runtime


@lru_cache(maxsize=4)
def _scan(path: Path):
    return read_scan(path)


@lru_cache(maxsize=4)
def _pixels(path: Path) -> np.ndarray:
    scan = _scan(path)
    return to_uint8(scan.data, scan.modality or infer_modality(scan.data))


@lru_cache(maxsize=4)
def _labels(path: Path) -> np.ndarray | None:
    if not path.name.endswith(".npz"):
        return None
    with np.load(path, allow_pickle=False) as archive:
        if "gts" not in archive.files:
            return None
        labels = archive["gts"]
    return labels.transpose(2, 1, 0) if _scan(path).is_volume else labels  # the reader's (x, y, z) order


def _inputs(folder: Path) -> list[Path]:
    """Image files, and folders of DICOM files without a suffix (one series each), in sorted order."""
    found: list[Path] = []
    for directory in sorted({folder, *(p for p in folder.rglob("*") if p.is_dir())}):
        files = sorted(p for p in directory.iterdir() if p.is_file())
        found += [p for p in files if p.name.lower().endswith(FILE_SUFFIXES) and not p.name.lower().endswith(".dcm")]
        if any(p.name.lower().endswith(".dcm") or _is_dicom(p) for p in files):
            found.append(directory)
    return found


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def read_user_folder(folder: str | Path, slices_per_axis: int = 8) -> list[UserImage]:
    """Every readable image under ``folder``; volumes give ``slices_per_axis`` slices along each axis,
    spread over the middle 80% (the ends are mostly air)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise SystemExit(f"--images {folder}: no such folder")
    images: list[UserImage] = []
    pending = _inputs(folder)
    while pending:
        path = pending.pop(0)
        try:
            scan = _scan(path)
        except InputError as error:
            if path.is_dir():  # not one series (several, or single-frame images): read its files one by one
                pending[:0] = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix.lower() == ".dcm" or _is_dicom(p)))
            else:
                log.warning("skipped %s", error)
            continue
        modality = scan.modality or infer_modality(scan.data)
        key = f"user/{folder.name}/{path.relative_to(folder).as_posix() or '.'}"
        if not scan.is_volume:
            images.append(UserImage(path, key, f"user:{folder.name}", modality))
            continue
        for axis, length in enumerate(scan.data.shape[:3]):
            if length < 2:
                continue
            picks = np.unique(np.linspace(0.1 * (length - 1), 0.9 * (length - 1), slices_per_axis).round().astype(int))
            images += [UserImage(path, f"{key}#axis{axis}:{k}", f"user:{folder.name}", modality, axis, int(k)) for k in picks]
    if not images:
        raise SystemExit(f"--images {folder}: no readable NIfTI, DICOM, PNG/JPEG/TIFF or .npz image found")
    return images
