"""`imis-lite serve` driven by nnInteractive's own torch-free client, and by hostile requests.

The server is started by the test on 127.0.0.1 on a free port (a subprocess, as a user starts it) and stopped
by it. The real client (``nninteractive-client`` 2.6) does what napari's and 3D Slicer's plugins do.
"""

from __future__ import annotations

import json
import struct

import httpx
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from imis_lite.benchmarks.local_server import running_server
from imis_lite.cli.main import main as cli

from imis_lite.demo import sample_path
from imis_lite.metrics import dice
from imis_lite.server import nnia

MODEL = "effvit-s-hr"
KEY = "test-key-7f3a"
LIVER = 5  # TotalSegmentator v2 class of the shipped reference
LIVER_BOX = (41, 25, 0, 105, 86, 29)  # the README's CLI example: x0 y0 z0 x1 y1 z1, inclusive


@pytest.fixture(scope="module")
def server():
    with running_server(KEY, "--model", MODEL, "--threads", "2", "--max-sessions", "3", "--max-body-mb", "64") as url:
        yield url


@pytest.fixture(scope="module")
def ct():
    """The CT as napari (napari-nifti) and 3D Slicer hand it to the client: (slice, row, column) = (z, y, x)."""
    image = nib.load(str(sample_path("example_ct_sm.nii.gz")))
    truth = np.asarray(nib.load(str(sample_path("example_seg.nii.gz"))).dataobj) == LIVER
    spacing = [float(s) for s in image.header.get_zooms()][::-1]
    return np.asarray(image.dataobj, dtype=np.float32).transpose(2, 1, 0), truth.transpose(2, 1, 0), spacing


def _session(url, key=KEY):
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    return nnInteractiveRemoteInferenceSession(url, api_key=key)


def _start(session, ct):
    image, _, spacing = ct
    session.set_image(image[None], {"spacing": spacing})
    buffer = np.zeros(image.shape, np.uint8)
    session.set_target_buffer(buffer)
    return buffer


def _liver_2d_box():
    x0, y0, z0, x1, y1, z1 = LIVER_BOX
    middle = (z0 + z1) // 2
    return [[middle, middle + 1], [y0, y1 + 1], [x0, x1 + 1]]


def test_a_box_on_the_livers_middle_slice_gives_the_clis_3d_answer(server, ct, tmp_path):
    _, truth, _ = ct
    out = tmp_path / "liver.nii.gz"
    result = CliRunner().invoke(cli, ["segment", str(sample_path("example_ct_sm.nii.gz")), "--box", *map(str, LIVER_BOX),
                                      "-o", str(out), "--model", MODEL, "-q"])
    assert result.exit_code == 0, result.output
    cli_dice = dice(np.asarray(nib.load(str(out)).dataobj).T == 1, truth)
    with _session(server) as session:
        assert session.supported_interactions["bbox2d"] and not session.supported_interactions["bbox3d"]
        buffer = _start(session, ct)
        changed = session.add_bbox_interaction(_liver_2d_box(), include_interaction=True)
        assert changed is not None and buffer.any()
        served = dice(buffer == 1, truth)
        # the served box bounds its own slice only (session.ONE_SLICE_BOX), the CLI's 3D box every slice: 0.829 vs
        # 0.854 measured (release-4 student; release 3: 0.79 vs 0.80; release 2: 0.763 vs 0.773)
        assert served > 0.81 and abs(served - cli_dice) <= 0.03, (served, cli_dice)
        assert buffer[0].any() and buffer[29].any()  # propagated up and down from slice 14

        # a negative box clears its slice inside it; undo puts it back; reset empties the buffer
        before = buffer.copy()
        session.add_bbox_interaction([[14, 15], [20, 90], [40, 110]], include_interaction=False)
        assert not buffer[14, 20:90, 40:110].any() and buffer[13].any()
        assert session.undo() and np.array_equal(buffer, before)
        # a positive click on the object (slice 14, inside the liver) keeps it there and changes nothing else
        y, x = np.argwhere(truth[14] & (buffer[14] == 1))[0]
        session.add_point_interaction((14, int(y), int(x)), include_interaction=True)
        assert buffer[14, y, x] == 1
        session.reset_interactions()
        assert not buffer.any()
        assert session.undo() is False  # nothing left to undo after a reset


def test_a_point_alone_starts_an_object_on_the_first_axis(server, ct):
    with _session(server) as session:
        buffer = _start(session, ct)
        session.add_point_interaction((14, 50, 60), include_interaction=False)  # nothing to remove yet
        assert not buffer.any()
        session.add_point_interaction((14, 50, 60), include_interaction=True)
        # with no box the point's slice is along axis 0 (napari's scroll axis): whatever it segments lies there
        touched = np.argwhere(buffer)
        assert len(touched) == 0 or 14 in set(touched[:, 0])


def test_two_sessions_hold_their_own_images(server, ct):
    image, _, spacing = ct
    with _session(server) as first, _session(server) as second:
        one = _start(first, ct)
        second.set_image(image[None, :20], {"spacing": spacing})
        two = np.zeros(image[:20].shape, np.uint8)
        second.set_target_buffer(two)
        x0, y0, _, x1, y1, _ = LIVER_BOX
        second.add_bbox_interaction([[10, 11], [y0, y1 + 1], [x0, x1 + 1]], include_interaction=True)
        first.add_bbox_interaction(_liver_2d_box(), include_interaction=True)
        assert one.any() and two.any() and two.shape == (20, 101, 122)


def test_a_rectangle_dragged_around_voxels_is_the_box_of_those_voxels(server, ct):
    """napari's plugin sends a dragged rectangle's corners as floats: edges half a voxel outside voxels y0..y1
    give the half-open box [y0, y1 + 1), the box integer corners give, for every parity of the edges."""
    answers = []
    with _session(server) as session:
        buffer = _start(session, ct)
        for box in ([[14, 15], [25, 87], [41, 106]], [[14.0, 15.0], [24.5, 86.5], [40.5, 105.5]]):
            session.reset_interactions()
            session.add_bbox_interaction(box, include_interaction=True)
            answers.append(buffer.copy())
    assert answers[0].any() and np.array_equal(answers[0], answers[1])


def test_a_box_on_a_blank_slice_is_refused_with_a_reason(server, ct):
    image, _, spacing = ct
    with _session(server) as session:
        blank = np.full((1, 4, 16, 16), -1000, np.float32)  # air: one grey level after the CT window
        session.set_image(blank, {"spacing": spacing})
        session.set_target_buffer(np.zeros(blank.shape[1:], np.uint8))
        with pytest.raises(Exception, match="400 Bad Request"):  # a reason, not a 500
            session.add_bbox_interaction([[2, 3], [2, 12], [2, 12]], include_interaction=True)


def test_a_wrong_key_is_refused(server):
    from nnInteractive.inference.remote import nnInteractiveRemoteInferenceSession

    with pytest.raises(httpx.HTTPStatusError) as refused:
        nnInteractiveRemoteInferenceSession(server, api_key="wrong")
    assert refused.value.response.status_code == 401
    assert httpx.get(server + "/capabilities").status_code == 401  # no key at all


def _hostile_requests(ct) -> list[tuple[str, dict, bytes]]:
    image, _, _ = ct
    good = nnia.pack(image[None, :8, :8, :4])
    header = good[:8 + len("float32")]
    shape = struct.pack("<4q", 1, 8, 8, 4)
    cases: list[tuple[str, dict, bytes]] = [
        ("/set_image", {}, b""),
        ("/set_image", {}, b"XXXX" + good[4:]),  # bad magic
        ("/set_image", {}, good[:4] + b"\x09" + good[5:]),  # unknown version
        ("/set_image", {}, good[:-10]),  # truncated payload
        ("/set_image", {}, header + struct.pack("<4q", 1, 8, 8, 400) + good[8 + 7 + 32:]),  # shape that lies
        ("/set_image", {}, header + struct.pack("<4q", 1, 1 << 20, 1 << 20, 1 << 20) + good[8 + 7 + 32:]),  # huge
        ("/set_image", {}, header + shape + struct.pack("<I", 1) + struct.pack("<QQ", 1 << 40, 5) + b"12345"),  # lying chunk
        ("/set_image", {}, good[:5] + b"\x01\x04\x05" + b"float" + good[15:]),  # dtype that does not match
        ("/set_image", {}, nnia.pack(image[:8, :8, :4])),  # 3D, not 4D
        ("/set_image", {"X-Meta": "{not json"}, good),
        ("/set_target_buffer", {}, b"[1, 2, 3]"),
        ("/set_target_buffer", {}, b'{"shape": [1, 2, 3], "dtype": "uint8"}'),
        ("/set_target_buffer", {}, b'{"shape": "abc", "dtype": "uint8"}'),
        ("/set_target_buffer", {}, b'{"shape": [8, 8, 4], "dtype": "float32"}'),
        ("/set_target_buffer", {}, b'{"shape": [8, 8, 4], "dtype": "no-such"}'),
        ("/add_bbox_interaction", {}, b"not json at all"),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [[0, 4], [0, 4], [0, 1]]}'),  # no include_interaction
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [[0, 400], [0, 4], [0, 1]], "include_interaction": true}'),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [[-5, 4], [0, 4], [0, 1]], "include_interaction": true}'),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [[0, 4], [0, 4], [0, 4]], "include_interaction": true}'),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [[0, 4], [0, 4]], "include_interaction": true}'),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": "x", "include_interaction": true}'),
        ("/add_bbox_interaction", {}, b'{"bbox_coords": [["a", 4], [0, 4], [0, 1]], "include_interaction": true}'),
        ("/add_point_interaction", {}, b'{"coordinates": [1, 2, 300], "include_interaction": true}'),
        ("/add_point_interaction", {}, b'{"coordinates": [1, 2], "include_interaction": true}'),
        ("/add_point_interaction", {}, b'{"coordinates": null, "include_interaction": true}'),
        ("/add_point_interaction", {}, b'{"coordinates": [1, 2, 3], "include_interaction": "yes"}'),
        ("/add_scribble_interaction", {}, good),
        ("/add_lasso_interaction", {}, good),
        ("/set_do_autozoom", {}, b'{"do_autozoom": 3}'),
    ]
    return cases


def test_hostile_requests_get_a_4xx_with_a_reason_and_the_server_keeps_serving(server, ct):
    """200 malformed or hostile requests (the cases above, in turn, on a session with a small image set, and
    with bad, missing or foreign lease tokens): every one a 4xx with a one-line detail, then a good request."""
    image, _, spacing = ct
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server, headers=auth, timeout=60) as client:
        token = client.post("/claim").json()["lease_token"]
        lease = {"X-Lease-Token": token}
        small = image[None, 12:20, 40:48, 50:54]  # inside the body: the good box at the end meets tissue
        meta = {"X-Meta": json.dumps({"image_properties": {"spacing": spacing}})}
        assert client.post("/set_image", content=nnia.pack(small), headers={**lease, **meta}).status_code == 200
        assert client.post("/set_target_buffer", json={"shape": [8, 8, 4], "dtype": "uint8"}, headers=lease).status_code == 200
        cases = _hostile_requests(ct)
        sent = 0
        while sent < 200:
            for path, headers, body in cases:
                if sent % 7 == 6:
                    headers = {**headers, "X-Lease-Token": "forged-" + str(sent)}
                elif sent % 11 == 10:
                    headers = {**headers, "Authorization": "Bearer nope"}
                response = client.post(path, content=body, headers={**lease, **headers})
                assert 400 <= response.status_code < 500, (path, body[:40], response.status_code, response.text)
                detail = response.json()["detail"]
                assert isinstance(detail, str) and detail and "\n" not in detail and "Traceback" not in detail
                sent += 1
        # a hostile set_target_buffer may have replaced nothing: the session still takes a good box
        assert client.post("/set_target_buffer", json={"shape": [8, 8, 4], "dtype": "uint8"}, headers=lease).status_code == 200
        good = client.post("/add_bbox_interaction", headers=lease,
                           json={"bbox_coords": [[1, 7], [1, 7], [2, 3]], "include_interaction": True})
        assert good.status_code == 200 and "ran_prediction" in json.loads(good.headers["X-Meta"])
        assert client.post("/release", headers=lease).status_code == 200
        assert client.post("/heartbeat", headers=lease).status_code == 410  # released: gone
    assert httpx.get(server + "/healthz").json() == {"ok": True}


def test_the_nnia_reader_round_trips_and_refuses_what_exceeds_its_cap():
    array = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    assert np.array_equal(nnia.unpack(nnia.pack(array), max_bytes=array.nbytes), array)
    with pytest.raises(nnia.ArrayFormatError, match="exceeds the limit"):
        nnia.unpack(nnia.pack(array), max_bytes=array.nbytes - 1)
    from nnInteractive.inference.remote.serialization import pack_array, unpack_array

    assert np.array_equal(unpack_array(nnia.pack(array)), array)  # the client reads what we write
    assert np.array_equal(nnia.unpack(pack_array(array), max_bytes=1 << 20), array)  # and we read what it writes


def test_binding_beyond_loopback_needs_a_key():
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env={"IMIS_LITE_API_KEY": ""})
    assert result.exit_code == 2 and "--api-key" in result.output
