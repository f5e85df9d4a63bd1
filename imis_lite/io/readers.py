"""Readers that keep geometry: NIfTI (nibabel), DICOM series or file (pydicom), PNG/JPEG/TIFF (OpenCV), .npz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .scan import Scan

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_scan(path: str | Path, volume: int | None = None, series: str | None = None) -> Scan:
    """Read any supported input; ``volume`` picks one volume of a 4D NIfTI, ``series`` one DICOM series."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.is_dir():
        from .dicom import read_dicom_folder

        scan = read_dicom_folder(path, series)
    elif name.endswith((".nii", ".nii.gz")):
        scan = read_nifti(path, volume)
    elif name.endswith(".npz"):
        scan = read_npz(path)
    elif name.endswith(IMAGE_SUFFIXES):
        scan = read_image(path)
    elif name.endswith(".dcm") or _has_dicom_preamble(path):
        from .dicom import read_dicom_file

        scan = read_dicom_file(path)
    else:
        raise InputError(f"{path}: unknown format (expected .nii/.nii.gz, a DICOM file or folder, PNG/JPEG/TIFF or .npz)")
    _check_values(scan)
    return scan


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def _check_values(scan: Scan) -> None:
    if scan.data.size == 0:
        raise InputError(f"{scan.path}: the image is empty")
    if np.issubdtype(scan.data.dtype, np.floating) and not np.isfinite(scan.data).all():
        raise InputError(f"{scan.path}: the image contains NaN or infinite values")
    if scan.data.min() == scan.data.max():
        raise InputError(f"{scan.path}: every voxel has the value {scan.data.min():g}; nothing to segment")


def read_nifti(path: Path, volume: int | None = None) -> Scan:
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))  # a NIfTI (or Analyze) image: dataobj, affine, header
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for truncated or foreign files
        raise InputError(f"{path}: not a readable NIfTI file ({type(error).__name__}: {error})".replace("\n", " ")) from None
    if data.ndim == 4:
        if data.shape[3] == 1:
            data = data[..., 0]
        elif volume is None:
            raise InputError(f"{path}: 4D image with {data.shape[3]} volumes; choose one with --volume N (0-based)")
        elif not 0 <= volume < data.shape[3]:
            raise InputError(f"{path}: --volume {volume} is outside 0..{data.shape[3] - 1}")
        else:
            data = data[..., volume]
    file_shape = data.shape
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(f"{path}: {data.ndim}D NIfTI images are not supported (2D, 3D or 4D)")
    affine = np.asarray(image.affine, float)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: its header gives no usable voxel-to-world affine (singular or not finite)")
    return Scan(path, "nifti", data, affine.copy(), True, extras={"header": image.header, "file_shape": file_shape})


def read_image(path: Path) -> Scan:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise InputError(f"{path}: not a readable image file")
    if data.ndim == 3:
        data = cv2.cvtColor(data[:, :, :3], cv2.COLOR_BGR2RGB)
    return Scan(path, "image", data, np.eye(4), False)


def read_npz(path: Path) -> Scan:
    """Challenge form: ``imgs`` (D, H, W) volume with ``spacing`` (z, y, x), or a 2D (H, W[, 3]) image."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "imgs" not in archive.files:
                raise InputError(f"{path}: .npz without an 'imgs' array (has {', '.join(archive.files) or 'nothing'})")
            imgs = archive["imgs"]
            spacing = archive["spacing"] if "spacing" in archive.files else None
            modality = str(archive["modality"]) if "modality" in archive.files else None
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"{path}: not a readable .npz file ({error})") from None
    is_volume = imgs.ndim == 3 and imgs.shape[2] != 3
    if is_volume:
        affine = np.diag([*(np.asarray(spacing, float)[::-1] if spacing is not None else (1.0, 1.0, 1.0)), 1.0])
        return Scan(path, "npz", imgs.transpose(2, 1, 0), affine, True, modality, {"layout": "zyx"})
    return Scan(path, "npz", imgs, np.eye(4), False, modality)
