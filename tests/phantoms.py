"""Asymmetric phantoms with known answers: an off-centre bright cuboid in a textured background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (192, 160, 12)  # x, y, z: in-plane size of a downsampled CT slice, few slices to stay quick
CUBOID = (slice(30, 90), slice(90, 135), slice(3, 9))  # off-centre on every axis


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """(data int16, truth bool) of shape SHAPE."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    data = (200 + x + y // 2 + 3 * z).astype(np.int16)
    truth = np.zeros(SHAPE, bool)
    truth[CUBOID] = True
    data[truth] = 1200
    return data, truth


def box_of(mask: np.ndarray, margin: int = 2) -> list[int]:
    """x0 y0 z0 x1 y1 z1 (inclusive) around a 3D mask, ``margin`` voxels wider in x and y as a user draws it
    (LiteMedSAM was trained on such boxes; a box flush with the edges under-segments small objects)."""
    idx = np.argwhere(mask)
    pad = np.array([margin, margin, 0])
    low = np.maximum(idx.min(0) - pad, 0)
    high = np.minimum(idx.max(0) + pad, np.array(mask.shape) - 1)
    return [*low.tolist(), *high.tolist()]


def rotation(degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


AFFINES = {
    "identity": np.eye(4),
    "flipped": np.diag([-1.5, 1.0, 2.0, 1.0]),
    "permuted": np.array([[0, 1.2, 0, 5], [0.8, 0, 0, -3], [0, 0, 2.5, 10], [0, 0, 0, 1]], float),
    "oblique": np.r_[np.c_[rotation(30) @ np.diag([0.9, 1.1, 3.0]), [12, -7, 40]], [[0, 0, 0, 1]]],
}


def write_nifti(path: Path, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    data, truth = phantom()
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return data, truth


def write_dicom_series(folder: Path, offsets: list[float] | None = None, shift_mm: float = 0.0) -> np.ndarray:
    """Sagittal-oriented series (columns along patient y, rows along -z), files named in shuffled order.

    ``offsets``: each slice's position along the normal (mm; default 2.5 apart); ``shift_mm``: each slice moved
    that much further along the rows per slice, as a gantry tilt does. Returns the truth mask in the reader's
    voxel order (column, row, slice).
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    data, truth = phantom()  # (columns, rows, slices)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    normal = np.cross(row_dir, col_dir)
    order = np.random.default_rng(3).permutation(SHAPE[2])
    for k in range(SHAPE[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"img{order[k]:03d}"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "Phantom^Cuboid", "PHANTOM1"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "20000101", "O", "20260101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "A1", "", "1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SeriesNumber, ds.InstanceNumber = 1, int(order[k]) + 1
        ds.ImageOrientationPatient = [*row_dir, *col_dir]
        along = offsets[k] if offsets is not None else k * 2.5
        ds.ImagePositionPatient = list(np.array([-20.0, -30.0, 40.0]) + along * normal + k * shift_mm * row_dir)
        ds.PixelSpacing = [1.5, 0.8]
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).astype(np.int16).tobytes()
        ds.save_as(folder / f"img{order[k]:03d}", enforce_file_format=True)
    return truth
