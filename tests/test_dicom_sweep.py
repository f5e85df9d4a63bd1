"""pydicom's DICOM test files (and pydicom-data's, when installed) through the CLI: every one a mask or a
one-line refusal with nothing written (``benchmarks/dicom_sweep.py``; CI sweeps every 10th file, the note of
the release that added it gives the whole table)."""

from __future__ import annotations

from imis_lite.benchmarks.dicom_sweep import dicom_test_files, main


def test_every_tenth_dicom_test_file_segments_or_is_refused_cleanly(tmp_path):
    files = dicom_test_files()
    assert len(files) > 50  # pydicom's own test files at least
    assert main(["--out", str(tmp_path), "--every", "10"]) == 0, (tmp_path / "dicom_sweep.md").read_text()
    assert "segmented" in (tmp_path / "dicom_sweep.md").read_text()
