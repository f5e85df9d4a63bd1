"""DICOM series and single/multi-frame files -> a volume in HU (or stored units) with a RAS affine.

Voxel (i, j, k) = (column, row, slice); slices are sorted along the slice normal by ImagePositionPatient.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .scan import Scan

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DICOM_EXTRA_HINT = "pip install 'imis-lite[dicom]' (pylibjpeg with its openjpeg/libjpeg plugins)"


def _pixels(dataset, path: Path) -> np.ndarray:
    try:
        return dataset.pixel_array
    except Exception as error:  # pydicom raises RuntimeError/NotImplementedError for missing decoders
        syntax = dataset.file_meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_compressed:
            raise InputError(
                f"{path}: cannot decode {syntax.name} pixel data here; {DICOM_EXTRA_HINT}"
            ) from None
        raise InputError(f"{path}: unreadable DICOM pixel data ({error})".replace("\n", " ")) from None


def _rescale(pixels: np.ndarray, dataset) -> np.ndarray:
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _orientation(dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cosines = np.asarray(dataset.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    row_dir, col_dir = cosines[:3], cosines[3:]
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def _affine(first, row_dir, col_dir, slice_step: np.ndarray) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS mm."""
    try:
        row_spacing, col_spacing = (float(v) for v in first.get("PixelSpacing", [1, 1]))
    except (TypeError, ValueError):
        row_spacing = col_spacing = 0.0
    if not (row_spacing > 0 and col_spacing > 0 and np.isfinite([row_spacing, col_spacing]).all()):
        log.warning("no usable PixelSpacing (%s): 1 mm assumed", first.get("PixelSpacing"))
        row_spacing = col_spacing = 1.0
    if not (np.isfinite(slice_step).all() and np.linalg.norm(slice_step) > 0):
        log.warning("no usable slice spacing: 1 mm assumed along the slice normal")
        slice_step = np.cross(row_dir, col_dir)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # moving along a row = next column
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = slice_step
    lps[:3, 3] = np.asarray(first.get("ImagePositionPatient", [0, 0, 0]), dtype=float)
    return LPS_TO_RAS @ lps


def _modality(dataset) -> str | None:
    modality = str(dataset.get("Modality", "")).upper()
    return modality or None


#: how far one gap between slice positions may differ from the median gap before the series is refused
SPACING_TOLERANCE = 0.1


def _check_spacing(folder: Path, positions: np.ndarray) -> None:
    """Refuse a series whose slices are not evenly spaced: one affine cannot place them (duplicate positions from
    two acquisitions, a missing slice, or varying spacing), and resampling would invent data."""
    gaps = np.diff(positions)
    if np.any(gaps < 1e-3):
        raise InputError(f"{folder}: {int(np.sum(gaps < 1e-3))} slice(s) share a position with another: two "
                         "acquisitions in one series? Split them into separate folders")
    median = float(np.median(gaps))
    if np.any(np.abs(gaps - median) > SPACING_TOLERANCE * median):
        raise InputError(f"{folder}: slice spacing is not uniform ({gaps.min():.3g} to {gaps.max():.3g} mm, median "
                         f"{median:.3g}): a missing slice? Resample the series to even spacing first")


def _header_errors(read):
    """A reader whose malformed header values (pydicom raises ValueError and friends when a damaged value is
    first used) end in one ``InputError`` line instead of a traceback."""

    def guarded(path: Path, *args):
        try:
            return read(path, *args)
        except InputError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            raise InputError(f"{path}: malformed DICOM header value ({type(error).__name__}: {error})".replace("\n", " ")) from None

    return guarded


@_header_errors
def read_dicom_folder(folder: Path, series: str | None = None) -> Scan:
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "Rows" in dataset:
            headers.append((path, dataset))
    if not headers:
        raise InputError(f"{folder}: no DICOM images in this folder")
    by_series: dict[str, list] = {}
    for path, dataset in headers:
        by_series.setdefault(str(dataset.get("SeriesInstanceUID", "")), []).append((path, dataset))
    if series is not None:
        if series not in by_series:
            raise InputError(f"{folder}: no series {series}; present: {', '.join(by_series)}")
        chosen = by_series[series]
    elif len(by_series) > 1:
        listing = "; ".join(
            f"{uid or '(no UID)'} '{items[0][1].get('SeriesDescription', '')}' {len(items)} images"
            for uid, items in by_series.items()
        )
        raise InputError(f"{folder}: {len(by_series)} series in one folder, choose one with --series UID: {listing}")
    else:
        chosen = next(iter(by_series.values()))

    row_dir, col_dir, normal = _orientation(chosen[0][1])
    positions = [float(np.dot(normal, ds.get("ImagePositionPatient", [0, 0, i]))) for i, (_, ds) in enumerate(chosen)]
    order = np.argsort(positions, kind="stable")
    ordered = [chosen[i] for i in order]
    slices = []
    for path, _ in ordered:
        dataset = pydicom.dcmread(path)
        slices.append(_rescale(_pixels(dataset, path), dataset).T)  # (columns, rows)
    if len({s.shape for s in slices}) > 1:
        raise InputError(f"{folder}: slices of different sizes in one series")
    first, last = ordered[0][1], ordered[-1][1]
    if len(ordered) > 1:
        _check_spacing(folder, np.sort(positions))
        step = (np.asarray(last.ImagePositionPatient, float) - np.asarray(first.ImagePositionPatient, float)) / (len(ordered) - 1)
        tilt = float(np.degrees(np.arccos(min(1.0, abs(np.dot(step, normal)) / max(np.linalg.norm(step), 1e-9)))))
        if tilt > 0.5:
            log.warning("%s: slices are shifted as by a gantry tilt of %.1f degrees; kept exactly in the output's "
                        "(sheared) affine, the slices segmented as stored", folder, tilt)
    else:
        step = normal * float(first.get("SliceThickness", 1) or 1)
    data = np.stack(slices, axis=2)
    return Scan(folder, "dicom", data, _affine(first, row_dir, col_dir, step), True, _modality(first),
                {"source_files": [p for p, _ in ordered]})


@_header_errors
def read_dicom_file(path: Path) -> Scan:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable DICOM file ({error})".replace("\n", " ")) from None
    if "PixelData" not in dataset:
        raise InputError(f"{path}: DICOM file without an image")
    pixels = _rescale(_pixels(dataset, path), dataset)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if dataset.get("SamplesPerPixel", 1) != 1:
        raise InputError(f"{path}: colour DICOM images are not supported; export the frame as PNG")
    if frames == 1:
        pixels = pixels[None]
    row_dir, col_dir, normal = _orientation(dataset)
    reference: Any = dataset  # the dataset, or a multi-frame file's first frame: what _affine reads either way
    step = normal * float(dataset.get("SpacingBetweenSlices", dataset.get("SliceThickness", 1)) or 1)
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if per_frame and len(per_frame) != len(pixels):
        raise InputError(f"{path}: {len(per_frame)} per-frame geometry entries for {len(pixels)} frames")
    if per_frame and "PlanePositionSequence" in per_frame[0]:
        positions = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in per_frame], float)
        if shared and "PlaneOrientationSequence" in shared[0]:
            row_dir, col_dir, normal = _orientation(shared[0].PlaneOrientationSequence[0])
        order = np.argsort(positions @ normal, kind="stable")
        pixels, positions = pixels[order], positions[order]
        if len(positions) > 1:
            step = (positions[-1] - positions[0]) / (len(positions) - 1)
        reference = _FrameGeometry(positions[0], shared[0].PixelMeasuresSequence[0].PixelSpacing if shared else [1, 1])
    data = pixels.transpose(2, 1, 0)  # (frames, rows, columns) -> (columns, rows, frames)
    return Scan(path, "dicom", data, _affine(reference, row_dir, col_dir, step), True, _modality(dataset),
                {"source_files": [path]})


class _FrameGeometry(dict):
    """Enough of a dataset for :func:`_affine` when geometry comes from functional groups."""

    def __init__(self, position, spacing) -> None:
        super().__init__(ImagePositionPatient=list(position), PixelSpacing=list(spacing))
