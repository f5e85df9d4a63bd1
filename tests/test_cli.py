"""`imis-lite` end to end: geometry kept, prompts landing where meant, every bad input refused cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from imis_lite.cli.main import main

from imis_lite.metrics import dice

from .conftest import DATA
from .phantoms import AFFINES, box_of, write_dicom_series, write_nifti


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def numbers(values):
    return [str(v) for v in values]


@pytest.mark.parametrize("name", AFFINES)
def test_phantom_mask_lands_on_the_cuboid_and_keeps_the_affine(tmp_path, name):
    source = tmp_path / f"{name}.nii.gz"
    _, truth = write_nifti(source, AFFINES[name])
    out = tmp_path / "seg.nii.gz"
    result = run("segment", source, "--box", *numbers(box_of(truth)), "-o", out, "--modality", "MR")
    assert result.exit_code == 0, result.output
    written = nib.load(str(out))
    np.testing.assert_allclose(written.affine, nib.load(str(source)).affine)
    assert written.shape == truth.shape and written.get_data_dtype() == np.uint8
    assert dice(np.asarray(written.dataobj) == 1, truth) > 0.9


def test_clicks_without_a_box_are_segmented_with_a_warning(tmp_path, phantom_file):
    out = tmp_path / "seg.nii.gz"
    result = run("segment", phantom_file, "--point", 60, 112, 5, "-o", out, "--modality", "MR")
    assert result.exit_code == 0, result.output
    assert "warning: effvit-s-hr's decoder was trained on boxes" in result.output and out.exists()


def test_clicks_on_other_slices_of_a_3d_box_are_taken(tmp_path):
    source = tmp_path / "p.nii.gz"
    _, truth = write_nifti(source, AFFINES["identity"])
    x0, y0, z0, x1, y1, z1 = box_of(truth)
    out = tmp_path / "seg.nii.gz"
    result = run("segment", source, "--box", *numbers(box_of(truth)), "--point", (x0 + x1) // 2, (y0 + y1) // 2, z1,
                 "--neg-point", x0 + 2, y0 + 2, z0, "-o", out, "--modality", "MR")
    assert result.exit_code == 0, result.output
    assert dice(np.asarray(nib.load(str(out)).dataobj) == 1, truth) > 0.9


@pytest.mark.parametrize("name", ["flipped", "oblique"])
def test_world_coordinates_reach_the_same_voxels(tmp_path, name):
    source = tmp_path / "p.nii.gz"
    _, truth = write_nifti(source, AFFINES[name])
    corners = np.array(box_of(truth), float).reshape(2, 3)
    world = (AFFINES[name] @ np.c_[corners, np.ones(2)].T).T[:, :3]
    out = tmp_path / "seg.nii.gz"
    result = run("segment", source, "--coords", "world", "--box", *numbers(world.ravel()), "-o", out, "--modality", "MR")
    assert result.exit_code == 0, result.output
    assert dice(np.asarray(nib.load(str(out)).dataobj) == 1, truth) > 0.9


def test_sagittal_dicom_series_keeps_geometry(tmp_path):
    truth = write_dicom_series(tmp_path / "series")
    out = tmp_path / "seg.nii.gz"
    result = run("segment", tmp_path / "series", "--box", *numbers(box_of(truth)), "-o", out)
    assert result.exit_code == 0, result.output
    written = nib.load(str(out))
    assert dice(np.asarray(written.dataobj) == 1, truth) > 0.9
    # voxel (column, row, slice): columns run along LPS +y (posterior), rows along -z (inferior), slices along -x (right)
    assert nib.aff2axcodes(written.affine) == ("P", "I", "R")
    np.testing.assert_allclose(written.affine[:3, 3], [20.0, 30.0, 40.0])
    np.testing.assert_allclose(np.linalg.norm(written.affine[:3, :3], axis=0), [0.8, 1.5, 2.5])


def _case_3d(name):
    with np.load(DATA / "cases_3d" / name) as case:
        return case["imgs"], case["gts"], case["spacing"]


def test_real_ct_volume_through_the_cli_matches_the_api(tmp_path):
    from imis_lite import Segmenter
    from imis_lite.io import read_scan
    from imis_lite.job import RawObject, resolve, segment_scan

    source = DATA / "fixtures" / "nifti" / "example_ct_sm.nii.gz"
    truth_all = np.asarray(nib.load(str(DATA / "fixtures" / "nifti" / "example_seg.nii.gz")).dataobj)
    truth = truth_all == 3  # kidney_left (TotalSegmentator v2 class 3), slices 0..22
    truth[:, :, :6] = truth[:, :, 17:] = False  # slices 6..16 keep the test quick
    out = tmp_path / "seg.nii.gz"
    result = run("segment", source, "--box", *numbers(box_of(truth, margin=0)), "-o", out)
    assert result.exit_code == 0, result.output
    cli_dice = dice(np.asarray(nib.load(str(out)).dataobj) == 1, truth)
    scan = read_scan(source)
    api = segment_scan(Segmenter(), scan, [resolve(scan, RawObject(box_of(truth, margin=0)))])
    assert cli_dice == pytest.approx(dice(api == 1, truth), abs=1e-9)
    assert cli_dice > 0.85


def test_real_2d_case_png_round_trip(tmp_path):
    with np.load(DATA / "cases_2d" / "kvasirseg_test_0.npz") as case:
        image, truth = case["imgs"], case["gts"] == 1
    import cv2

    source = tmp_path / "polyp.png"
    cv2.imwrite(str(source), image[:, :, ::-1])
    ys, xs = np.nonzero(truth)
    out = tmp_path / "polyp_seg.png"
    result = run("segment", source, "--box", xs.min(), ys.min(), xs.max(), ys.max(), "-o", out)
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.shape == truth.shape
    from imis_lite import Segmenter

    api = Segmenter()
    api.set_image(image)
    expected = api.predict(box=[xs.min(), ys.min(), xs.max(), ys.max()])[0][0]
    assert dice(written == 1, truth) == pytest.approx(dice(expected, truth), abs=1e-9)
    assert dice(written == 1, truth) > 0.8


def test_several_objects_get_labels_in_order(tmp_path):
    source = tmp_path / "p.nii.gz"
    _, truth = write_nifti(source, np.eye(4))
    out = tmp_path / "seg.nii.gz"
    result = run("segment", source, "--box", 28, 88, 91, 136, "--slice", 5, "--box", 120, 10, 170, 50, "--slice", 10,
                 "-o", out, "--modality", "MR")
    assert result.exit_code == 0, result.output
    labels = np.asarray(nib.load(str(out)).dataobj)
    assert dice(labels[:, :, 5] == 1, truth[:, :, 5]) > 0.9
    assert (labels[:, :, 5] == 2).sum() == 0 and (labels[:, :, 10] == 1).sum() == 0
    assert set(np.unique(labels)) <= {0, 1, 2}


# -- bad input: one line, exit code 1 (2 for usage), nothing written ------------------------------------------


@pytest.fixture()
def phantom_file(tmp_path):
    source = tmp_path / "p.nii.gz"
    write_nifti(source, np.eye(4))
    return source


def _refused(result, out, code=1, message=""):
    assert result.exit_code == code, result.output
    assert message in result.output
    if code == 1:
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists() or out.stat().st_size > 0  # never half-written
    return True


BOX = ["--box", "28", "88", "3", "91", "136", "8"]


def test_missing_file(tmp_path):
    out = tmp_path / "o.nii.gz"
    _refused(run("segment", tmp_path / "nope.nii.gz", *BOX, "-o", out), out, message="no such file")
    assert not out.exists()


def test_empty_and_truncated_nifti(tmp_path, phantom_file):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    truncated = tmp_path / "trunc.nii.gz"
    truncated.write_bytes(phantom_file.read_bytes()[:300])
    text = tmp_path / "notes.nii"
    text.write_text("this is a text file\n" * 40)
    for bad in (empty, truncated, text):
        out = tmp_path / "o.nii.gz"
        _refused(run("segment", bad, *BOX, "-o", out), out, message="NIfTI")
        assert not out.exists()


def test_dicom_folder_without_images_and_with_two_series(tmp_path):
    empty = tmp_path / "empty_dicom"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "o.nii.gz"
    _refused(run("segment", empty, *BOX, "-o", out), out, message="no DICOM images")
    mixed = tmp_path / "mixed"
    write_dicom_series(tmp_path / "a")
    write_dicom_series(tmp_path / "b")
    mixed.mkdir()
    for sub in ("a", "b"):
        for f in (tmp_path / sub).iterdir():
            shutil.copy(f, mixed / f"{sub}_{f.name}")
    _refused(run("segment", mixed, *BOX, "-o", out), out, message="--series")
    assert not out.exists()


def test_nan_and_constant_images(tmp_path):
    data = np.ones((20, 20, 5), np.float32)
    for name, values in (("const", data), ("nan", np.where(np.arange(2000).reshape(20, 20, 5) == 7, np.nan, data + np.arange(5)))):
        source = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), str(source))
        out = tmp_path / "o.nii.gz"
        message = "nothing to segment" if name == "const" else "NaN"
        _refused(run("segment", source, "--box", 1, 1, 0, 5, 5, 2, "-o", out), out, message=message)
        assert not out.exists()


@pytest.mark.parametrize(
    "box, message",
    [
        (["--box", "91", "88", "3", "28", "136", "8"], "x1 >= x0"),
        (["--box", "28", "88", "3", "200", "136", "8"], "x = 200 is outside"),
        (["--box", "28", "88", "3", "91", "136", "40"], "z = 40 is outside"),
        (["--box", "28", "88", "91", "136", "--slice", "25"], "outside"),
        (["--box", "28", "88", "3", "91", "136", "8", "--neg-point", "50", "100", "10"], "outside the box's z-range"),
    ],
)
def test_bad_boxes(tmp_path, phantom_file, box, message):
    out = tmp_path / "o.nii.gz"
    _refused(run("segment", phantom_file, *box, "-o", out), out, message=message)
    assert not out.exists()


def test_output_in_missing_or_read_only_folder(tmp_path, phantom_file):
    out = tmp_path / "missing" / "o.nii.gz"
    _refused(run("segment", phantom_file, *BOX, "-o", out), out, message="does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root ignores permission bits; /proc refuses new files to everyone
    target = locked if not os.access(locked, os.W_OK) else Path("/proc")
    try:
        _refused(run("segment", phantom_file, *BOX, "-o", target / "o.nii.gz"), target / "o.nii.gz", message="not writable")
    finally:
        locked.chmod(0o700)


def test_existing_output_needs_force(tmp_path, phantom_file):
    out = tmp_path / "o.nii.gz"
    out.write_bytes(b"precious")
    _refused(run("segment", phantom_file, *BOX, "-o", out), out, message="--force")
    assert out.read_bytes() == b"precious"
    assert run("segment", phantom_file, *BOX, "-o", out, "--force", "--modality", "MR").exit_code == 0
    assert nib.load(str(out)).shape == (192, 160, 12)


def test_bf16_on_onnxruntime_is_refused_before_anything_is_written(tmp_path, phantom_file):
    out = tmp_path / "o.nii.gz"
    _refused(run("segment", phantom_file, *BOX, "-o", out, "--arithmetic", "bf16"), out, message="needs the openvino engine")
    assert not out.exists()


def test_usage_errors_exit_2(tmp_path, phantom_file):
    assert run("segment", phantom_file).exit_code == 2
    assert run("segment", phantom_file, "--engine", "tensorrt", *BOX).exit_code == 2


def test_help_and_version_load_no_runtime():
    code = (
        "import sys; from imis_lite.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
        "try:\n    main(['segment', '--help'])\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('onnxruntime', 'openvino', 'cv2', 'nibabel', 'pydicom', 'imis_lite.predictor') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_global_flags_are_taken_after_the_subcommand_too(tmp_path, phantom_file):
    out = tmp_path / "o.nii.gz"
    loud = run("segment", phantom_file, *BOX, "-o", out, "--modality", "MR")
    assert loud.exit_code == 0 and loud.stderr.strip()  # progress and the summary on stderr
    quiet = run("segment", phantom_file, *BOX, "-o", tmp_path / "q.nii.gz", "--modality", "MR", "-q")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.strip() == ""
    debug = run("segment", tmp_path / "nope.nii.gz", *BOX, "-o", tmp_path / "d.nii.gz", "--debug")
    assert debug.exit_code == 1 and not isinstance(debug.exception, SystemExit)  # the traceback kept, not one line


def test_a_full_disk_leaves_nothing_at_the_output_path(tmp_path, phantom_file, monkeypatch):
    import errno

    import nibabel

    def full_disk(image, filename):
        Path(filename).write_bytes(b"\x00" * 1000)  # part of the file made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nibabel, "save", full_disk)
    out = tmp_path / "o.nii.gz"
    result = run("segment", phantom_file, *BOX, "-o", out, "--modality", "MR")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error")] == [
        "error: [Errno 28] No space left on device"]  # after the progress bar's label, one line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.nii.gz"]  # no temporary left


def test_a_process_killed_mid_write_leaves_nothing_at_the_output_path(tmp_path, phantom_file):
    out = tmp_path / "o.nii.gz"
    code = (
        "import os, signal, sys, nibabel\n"
        "from pathlib import Path\n"
        "def dying(image, filename):\n"
        "    Path(filename).write_bytes(b'half a file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "nibabel.save = dying\n"
        "from imis_lite.cli.main import main\n"
        f"main({[str(a) for a in ['segment', phantom_file, *BOX, '-o', out, '--modality', 'MR']]!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9
    assert not out.exists()
