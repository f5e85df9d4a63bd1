"""Readers and writers against files with known content: shared fixtures and constructed cases."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from imis_lite.errors import InputError
from imis_lite.io import read_scan, write_labels

from .conftest import DATA
from .phantoms import phantom, write_dicom_series


def test_dicom_series_matches_the_published_volume():
    """The JPEG 2000 CT series decodes to the HU volume the shared case was made from."""
    scan = read_scan(DATA / "fixtures" / "dicom_ct_series")
    with np.load(DATA / "cases_3d" / "totalseg_ct_dicom_series.npz") as case:
        expected = case["imgs"].transpose(2, 1, 0)
        spacing = case["spacing"]
    assert scan.modality == "CT" and scan.data.shape == expected.shape
    np.testing.assert_array_equal(scan.data, expected)
    np.testing.assert_allclose(scan.spacing, spacing[::-1])


def test_npz_volume_is_read_in_file_order():
    scan = read_scan(DATA / "cases_3d" / "totalseg_mr_example_sm.npz")
    nifti = read_scan(DATA / "fixtures" / "nifti" / "example_mr_sm.nii.gz")
    np.testing.assert_array_equal(scan.data, nifti.data)


def test_single_file_dicom():
    scan = read_scan(DATA / "fixtures" / "dicom_single" / "CT_small.dcm")
    assert scan.data.shape == (128, 128, 1) and scan.modality == "CT"
    assert scan.data.min() < -500  # rescaled to HU


def test_constructed_series_sorted_by_position_not_file_name(tmp_path):
    write_dicom_series(tmp_path / "s")
    data, _ = phantom()
    np.testing.assert_array_equal(read_scan(tmp_path / "s").data, data)


def test_4d_nifti_needs_a_volume_choice(tmp_path):
    path = tmp_path / "four.nii.gz"
    data = np.random.default_rng(0).normal(size=(8, 9, 10, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(InputError, match="--volume"):
        read_scan(path)
    np.testing.assert_array_equal(read_scan(path, volume=2).data, data[..., 2])
    with pytest.raises(InputError, match="outside 0..2"):
        read_scan(path, volume=3)


def test_nifti_output_keeps_shape_affine_and_header(tmp_path):
    source = DATA / "fixtures" / "nifti" / "example_mr_sm.nii.gz"
    scan = read_scan(source)
    labels = np.zeros(scan.data.shape, np.uint8)
    labels[10:20, 5:9, 3] = 2
    out = tmp_path / "labels.nii.gz"
    write_labels(out, scan, labels)
    written, original = nib.load(str(out)), nib.load(str(source))
    assert written.shape == original.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_array_equal(written.header.get_zooms(), original.header.get_zooms())
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels)


def test_many_objects_switch_to_uint16(tmp_path):
    scan = read_scan(DATA / "fixtures" / "nifti" / "example_mr_sm.nii.gz")
    labels = np.zeros(scan.data.shape, np.uint16)
    labels.flat[:300] = np.arange(1, 301)
    write_labels(tmp_path / "l.nii.gz", scan, labels)
    assert nib.load(str(tmp_path / "l.nii.gz")).get_data_dtype() == np.uint16


def test_npz_output_is_in_challenge_order(tmp_path):
    scan = read_scan(DATA / "cases_3d" / "totalseg_mr_example_sm.npz")
    labels = np.zeros(scan.data.shape, np.uint8)
    labels[1, 2, 3] = 1
    write_labels(tmp_path / "o.npz", scan, labels)
    with np.load(tmp_path / "o.npz") as out:
        assert out["segs"].shape == (20, 91, 117) and out["segs"][3, 2, 1] == 1


def test_dicom_seg_references_its_source(tmp_path):
    import pydicom

    write_dicom_series(tmp_path / "s")
    scan = read_scan(tmp_path / "s")
    labels = np.zeros(scan.data.shape, np.uint8)
    labels[30:90, 90:135, 3:9] = 1
    out = tmp_path / "seg.dcm"
    write_labels(out, scan, labels)
    seg = pydicom.dcmread(out)
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    source_uids = {pydicom.dcmread(f).SOPInstanceUID for f in scan.extras["source_files"]}
    referenced = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert referenced == source_uids


def _series_cases():
    even = [k * 2.5 for k in range(12)]
    return {
        "missing slice": ([*even[:5], *even[6:], 30.0], "not uniform"),
        "duplicate position": ([*even[:6], even[5], *even[7:]], "share a position"),
        "varying spacing": ([k * 2.5 + (0.6 if k % 2 else 0) for k in range(12)], "not uniform"),
    }


@pytest.mark.parametrize("case", sorted(_series_cases()))
def test_dicom_series_that_one_affine_cannot_place_are_refused_in_one_line(tmp_path, case):
    from imis_lite.errors import InputError
    from imis_lite.io import read_scan

    from .phantoms import write_dicom_series

    offsets, message = _series_cases()[case]
    write_dicom_series(tmp_path / "series", offsets=offsets)
    with pytest.raises(InputError, match=message) as refused:
        read_scan(tmp_path / "series")
    assert "\n" not in str(refused.value)


def test_a_gantry_tilted_series_is_read_with_the_tilt_in_its_affine_and_says_so(tmp_path, caplog):
    from imis_lite.io import read_scan

    from .phantoms import write_dicom_series

    write_dicom_series(tmp_path / "series", shift_mm=0.5)
    with caplog.at_level("WARNING"):
        scan = read_scan(tmp_path / "series")
    assert "gantry tilt of 11.3 degrees" in caplog.text  # atan(0.5 / 2.5)
    slice_axis = scan.affine[:3, 2]
    assert np.allclose(np.abs(slice_axis), [2.5, 0.5, 0.0], atol=1e-6)  # the shift kept: world positions stay true


def test_windowing_a_big_ct_makes_no_whole_volume_float_copy():
    """512x512x400 int16: the uint8 output plus chunk-sized float temporaries, not 4-byte copies of it all."""
    import tracemalloc

    from imis_lite.intensity import CHUNK_ELEMENTS, to_uint8

    data = np.full((512, 512, 400), -200, np.int16)
    data[100:300, 100:300] = 60
    tracemalloc.start()
    try:
        out = to_uint8(data, "CT")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[150, 150, 0] == round((60 + 160) / 400 * 255)
    assert peak < out.nbytes + 3 * CHUNK_ELEMENTS * 4 < 4 * data.size  # a float32 copy alone would be 4 bytes a voxel


def test_a_dicom_without_usable_pixel_spacing_is_read_at_1_mm_and_says_so(tmp_path, caplog):
    import pydicom

    dataset = pydicom.dcmread(DATA / "fixtures" / "dicom_single" / "CT_small.dcm")
    dataset.PixelSpacing = [0, 0]
    dataset.save_as(tmp_path / "zero.dcm")
    with caplog.at_level("WARNING"):
        scan = read_scan(tmp_path / "zero.dcm")
    assert "1 mm assumed" in caplog.text
    assert np.allclose(np.linalg.norm(scan.affine[:3, :2], axis=0), [1.0, 1.0])


def test_a_multiframe_file_whose_frame_geometry_does_not_match_its_frames_is_refused():
    from pydicom.data import get_testdata_file

    with pytest.raises(InputError, match="per-frame geometry entries for 1 frames"):
        read_scan(get_testdata_file("liver_1frame.dcm"))


def test_a_damaged_dicom_header_value_is_refused_in_one_line(tmp_path):
    """Found by the long fuzz run: one bit flipped turns ImagePositionPatient's separator into ';'."""
    data = bytearray((DATA / "fixtures" / "dicom_single" / "CT_small.dcm").read_bytes())
    data[int(0.06084099193659155 * (len(data) - 1))] ^= 1 << 1
    (tmp_path / "flipped.dcm").write_bytes(bytes(data))
    with pytest.raises(InputError) as refused:
        read_scan(tmp_path / "flipped.dcm")
    assert "\n" not in str(refused.value)
