"""Label-map writers that carry the input's geometry, writing to a temporary file and renaming.

Output checks (folder exists and is writable, no overwrite without ``force``) run before any model does,
so a bad output path costs nothing and never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from .scan import Scan

SUFFIXES = {".nii": "nifti", ".nii.gz": "nifti", ".png": "png", ".npz": "npz", ".dcm": "dicom-seg"}


def output_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise InputError(f"{path}: unknown output type; use one of {', '.join(SUFFIXES)}")


def default_output(scan: Scan) -> Path:
    """``<input name>_seg`` beside the input: .nii.gz for NIfTI/DICOM, .png for images, .npz for .npz."""
    name = scan.path.name
    for suffix in (".nii.gz", ".nii", ".npz", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    suffix = {"nifti": ".nii.gz", "dicom": ".nii.gz", "npz": ".npz", "image": ".png"}[scan.format]
    return scan.path.parent / f"{name}_seg{suffix}"


def check_output(path: Path, scan: Scan, force: bool) -> str:
    """Validate where and what we are going to write; returns the output format."""
    kind = output_format(path)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: output folder does not exist")
    try:  # a real probe: permission bits say nothing to root, nor about read-only mounts
        handle, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.probe.")
        os.close(handle)
        os.unlink(probe)
    except OSError:
        raise InputError(f"{path.parent}: output folder is not writable") from None
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    if kind == "png" and scan.is_volume and scan.data.shape[2] != 1:
        raise InputError(f"{path}: a PNG holds one 2D slice; write a 3D result as .nii.gz or .npz")
    if kind == "dicom-seg" and scan.format != "dicom":
        raise InputError(f"{path}: DICOM SEG output needs DICOM input")
    return kind


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def label_dtype(labels: np.ndarray) -> type:
    return np.uint8 if labels.max(initial=0) <= 255 else np.uint16


def write_labels(path: str | Path, scan: Scan, labels: np.ndarray, force: bool = False) -> None:
    """labels: the scan's spatial shape ((X, Y, Z) for volumes, (H, W) for 2D images), 0 = background."""
    path = Path(path)
    kind = check_output(path, scan, force)
    labels = labels.astype(label_dtype(labels))
    if kind == "nifti":
        _atomic(path, lambda tmp: _write_nifti(tmp, scan, labels))
    elif kind == "png":
        _atomic(path, lambda tmp: _write_png(tmp, scan, labels))
    elif kind == "npz":
        _atomic(path, lambda tmp: _write_npz(tmp, scan, labels))
    else:
        from .dicom_seg import write_dicom_seg

        _atomic(path, lambda tmp: write_dicom_seg(tmp, scan, labels))


def _write_nifti(path: Path, scan: Scan, labels: np.ndarray) -> None:
    import nibabel as nib

    header = scan.extras.get("header")
    header = header.copy() if header is not None else None
    if not scan.is_volume:
        labels = labels.T[:, :, None]  # (H, W) image -> (X, Y, 1) with x = column
    shape = scan.extras.get("file_shape")
    if shape is not None and len(shape) == 2:
        labels = labels[:, :, 0]
    image = nib.Nifti1Image(labels, scan.affine, header)
    image.set_data_dtype(labels.dtype)
    image.header.set_slope_inter(1, 0)
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    nib.save(image, str(path))


def _write_png(path: Path, scan: Scan, labels: np.ndarray) -> None:
    import cv2

    if scan.is_volume:
        labels = labels[:, :, 0].T
    if not cv2.imwrite(str(path), labels):
        raise InputError(f"{path}: could not write PNG")


def _write_npz(path: Path, scan: Scan, labels: np.ndarray) -> None:
    segs = labels.transpose(2, 1, 0) if scan.is_volume else labels
    np.savez_compressed(path, segs=segs)
