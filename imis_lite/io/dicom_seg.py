"""DICOM SEG output (highdicom, the `dicom` extra) referencing the source series, one segment per object."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from .dicom import DICOM_EXTRA_HINT
from .scan import Scan


def write_dicom_seg(path: Path, scan: Scan, labels: np.ndarray) -> None:
    """labels (columns, rows, slices) -> a BINARY SEG with algorithm type SEMIAUTOMATIC."""
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
    except ImportError:
        raise InputError(f"DICOM SEG output needs highdicom: {DICOM_EXTRA_HINT}") from None

    sources = [pydicom.dcmread(f) for f in scan.extras["source_files"]]
    objects = [int(v) for v in np.unique(labels) if v > 0]
    if not objects:
        raise InputError("nothing was segmented; DICOM SEG cannot hold an empty segmentation")
    frames = labels.transpose(2, 1, 0)  # (slices, rows, columns) in the sorted source order
    pixel_array = np.stack([frames == v for v in objects], axis=-1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="imis-lite", family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=f"object {value}",
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
        )
        for i, value in enumerate(objects)
    ]
    try:
        seg = _segmentation(hd, sources, pixel_array, descriptions)
    except (AttributeError, ValueError, TypeError) as error:
        raise InputError(f"cannot build a DICOM SEG from these source images ({error}); write .nii.gz instead") from None
    seg.save_as(path)


def _segmentation(hd, sources, pixel_array: np.ndarray, descriptions):
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixel_array.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="imis-lite",
        manufacturer_model_name="imis-lite",
        software_versions=__version__,
        device_serial_number="0",
        omit_empty_frames=False,
    )
