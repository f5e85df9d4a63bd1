"""Fuzzing (hypothesis): damaged files and hostile prompt text either read cleanly or fail with one clear error.

Inputs are real files (a NIfTI phantom, a DICOM CT, a PNG and a challenge .npz built from a shipped case) that
hypothesis truncates, bit-flips, or gives absurd header fields. The property: ``read_scan`` returns a scan of
finite numbers or raises ``ImisLiteError``; nothing else escapes. The prompt parsers get arbitrary text. CI
runs a bounded number of examples (``FUZZ_EXAMPLES``, default 60 per test); set it to run a long campaign.
A few cases go through the whole CLI to check the end of the chain: exit 0 with a mask, or exit 1 with one
line and nothing at the output path.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imis_lite.cli.main import main

from imis_lite.errors import ImisLiteError
from imis_lite.intensity import parse_window
from imis_lite.io import read_scan
from imis_lite.job import RawObject, read_prompt_file, resolve

from .conftest import DATA
from .phantoms import write_nifti

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("originals")
    write_nifti(folder / "phantom.nii", np.diag([1.5, 1.0, 2.0, 1.0]))
    with np.load(DATA / "cases_2d" / sorted(os.listdir(DATA / "cases_2d"))[0], allow_pickle=False) as case:
        image = case["imgs"]
        np.savez(folder / "case.npz", imgs=image, spacing=np.array([1.0, 1.0]))
    ok, png = cv2.imencode(".png", image if image.ndim == 2 else image[:, :, ::-1])
    assert ok
    return {"phantom.nii": (folder / "phantom.nii").read_bytes(), "case.npz": (folder / "case.npz").read_bytes(),
            "image.png": png.tobytes(), "ct.dcm": (DATA / "fixtures" / "dicom_single" / "CT_small.dcm").read_bytes()}


def damage(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    """``data`` cut to the fraction ``cut`` of its length, then with bits flipped at fractional offsets."""
    out = bytearray(data[: max(0, int(len(data) * cut))])
    for where, bit in flips:
        if out:
            out[int(where * (len(out) - 1))] ^= 1 << bit
    return bytes(out)


def reads_cleanly_or_refuses(path: Path) -> None:
    try:
        scan = read_scan(path)
    except ImisLiteError as error:
        assert str(error) and "\n" not in str(error).strip()
        return
    assert scan.data.size > 0 and np.issubdtype(scan.data.dtype, np.number)
    assert scan.affine.shape == (4, 4) and np.isfinite(scan.affine).all()


@pytest.mark.parametrize("name", ["phantom.nii", "case.npz", "image.png", "ct.dcm"])
@FUZZ
@given(cut=st.one_of(st.just(1.0), st.floats(0, 1)),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=8))
def test_damaged_files_read_cleanly_or_fail_with_one_line(originals, tmp_path, name, cut, flips):
    path = tmp_path / name
    path.write_bytes(damage(originals[name], cut, flips))
    reads_cleanly_or_refuses(path)


#: NIfTI-1 header fields (offset, struct format) that readers trust: dim, datatype, bitpix, pixdim, vox_offset,
#: scl_slope / scl_inter, qform / sform codes, srow
NIFTI_FIELDS = [(40, "<8h"), (70, "<h"), (72, "<h"), (76, "<8f"), (108, "<f"), (112, "<2f"), (252, "<2h"),
                (280, "<12f")]


@FUZZ
@given(field=st.sampled_from(NIFTI_FIELDS), data=st.data())
def test_absurd_nifti_header_fields_are_refused_or_read(originals, tmp_path, field, data):
    offset, layout = field
    count = struct.calcsize(layout) // (2 if layout[-1] == "h" else 4)
    kind = st.integers(-32768, 32767) if layout[-1] == "h" else st.floats(width=32, allow_nan=True, allow_infinity=True)
    values = data.draw(st.lists(kind, min_size=count, max_size=count))
    header = bytearray(originals["phantom.nii"])
    struct.pack_into(layout, header, offset, *values)
    path = tmp_path / "absurd.nii"
    path.write_bytes(bytes(header))
    reads_cleanly_or_refuses(path)


@FUZZ
@given(text=st.text(max_size=40))
def test_window_text_is_parsed_or_refused(text):
    try:
        level, width = parse_window(text)
    except ImisLiteError:
        return
    assert np.isfinite([level, width]).all() and width > 0


@FUZZ
@given(payload=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                            lambda children: st.lists(children, max_size=4) | st.dictionaries(
                                st.sampled_from(["objects", "box", "slice", "points", "neg_points", "coords", "x"]),
                                children, max_size=4), max_leaves=20))
def test_prompt_files_and_prompts_resolve_or_refuse(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("prompts") / "p.json"
    path.write_text(json.dumps(payload))
    scan = _phantom_scan()
    try:
        objects, coords = read_prompt_file(path)
        for raw in objects:
            resolve(scan, raw, world=coords == "world")
    except ImisLiteError as error:
        assert str(error)


@FUZZ
@given(box=st.lists(st.one_of(st.integers(-10, 300), st.floats()), max_size=7),
       point=st.lists(st.one_of(st.integers(-10, 300), st.floats()), max_size=4))
def test_boxes_and_points_as_numbers_resolve_or_refuse(box, point):
    scan = _phantom_scan()
    try:
        resolve(scan, RawObject(box or None, points=[point] if point else []))
    except ImisLiteError as error:
        assert str(error)


_SCAN = []


def _phantom_scan():
    if not _SCAN:
        from imis_lite.io.scan import Scan

        from .phantoms import phantom

        data, _ = phantom()
        _SCAN.append(Scan(Path("phantom.nii"), "nifti", data, np.diag([1.5, 1.0, 2.0, 1.0]), True, "MR"))
    return _SCAN[0]


@pytest.mark.parametrize("cut, flips", [(0.5, []), (1.0, [(0.01, 3), (0.02, 5)]), (1.0, [(0.3, 1)] * 3), (0.0, [])])
def test_damaged_input_through_the_cli_gives_a_mask_or_one_line_and_no_output(originals, tmp_path, cut, flips):
    source = tmp_path / "phantom.nii"
    source.write_bytes(damage(originals["phantom.nii"], cut, flips))
    out = tmp_path / "mask.nii.gz"
    result = CliRunner().invoke(main, ["segment", str(source), "--box", "28", "88", "3", "91", "136", "8", "-o", str(out),
                                       "--modality", "MR", "-q"])
    if result.exit_code == 0:
        assert out.is_file()
    else:
        assert result.exit_code == 1 and not out.exists(), result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    shutil.rmtree(tmp_path, ignore_errors=True)
