"""3D propagation on a phantom with a known extent, through the Python API."""

import numpy as np
import pytest

from imis_lite import Segmenter
from imis_lite.intensity import to_uint8
from imis_lite.metrics import dice
from imis_lite.volume import LITEMEDSAM_PROPAGATION, ObjectPrompt, Propagation, largest_piece, mask_box, segment_object

from .phantoms import CUBOID, phantom


def test_mask_box_is_inclusive_and_none_when_empty():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert mask_box(mask).tolist() == [3, 2, 8, 4]
    assert mask_box(np.zeros((3, 3), bool)) is None


@pytest.fixture(scope="module")
def phantom_segmenter():
    data, truth = phantom()
    return Segmenter(threads=2), to_uint8(data, "MR"), truth


def test_propagation_covers_the_cuboid_and_stays_inside_the_z_range(phantom_segmenter):
    segmenter, image, truth = phantom_segmenter
    x, y, z = CUBOID
    box = (x.start - 2, y.start - 2, x.stop + 1, y.stop + 1)
    calls = []
    slices = segment_object(segmenter, lambda k: image[:, :, k].T, image.shape[2],
                            ObjectPrompt(box=box, z_range=(z.start, z.stop - 1)), lambda: calls.append(1))
    assert sorted(slices) == list(range(z.start, z.stop)) and len(calls) == z.stop - z.start
    result = np.zeros_like(truth)
    for k, mask in slices.items():
        result[:, :, k] = mask.T
    assert dice(result, truth) > 0.9
    # a z-range wider than the object: every slice stays inside it (LiteMedSAM keeps finding "something"
    # in a box, so propagation rarely stops early; see the README)
    wide = segment_object(segmenter, lambda k: image[:, :, k].T, image.shape[2], ObjectPrompt(box=box, z_range=(1, 10)))
    assert set(wide) <= set(range(1, 11)) and set(range(z.start, z.stop)) <= set(wide)


def _segment(segmenter, image, prompt):
    return segment_object(segmenter, lambda k: image[:, :, k].T, image.shape[2], prompt)


def test_masks_stay_inside_the_users_box_on_every_slice(phantom_segmenter):
    segmenter, image, _ = phantom_segmenter
    x, y, z = CUBOID
    box = (x.start + 20, y.start - 2, x.stop + 10, y.stop + 1)  # cuts the cuboid's left part off
    slices = _segment(segmenter, image, ObjectPrompt(box=box, z_range=(z.start, z.stop - 1)))
    assert sorted(slices) == list(range(z.start, z.stop))
    for mask in slices.values():
        columns = np.flatnonzero(mask.any(axis=0))
        assert columns.min() >= box[0] and columns.max() <= box[2]


def test_a_click_on_another_slice_corrects_it_and_what_lies_beyond(phantom_segmenter):
    segmenter, image, _ = phantom_segmenter
    x, y, z = CUBOID
    box = (x.start - 2, y.start - 2, x.stop + 1, y.stop + 1)
    plain = _segment(segmenter, image, ObjectPrompt(box=box, z_range=(z.start, z.stop - 1)))
    last = z.stop - 1
    cross_section = np.zeros_like(plain[last])
    cross_section[y, x] = True
    rows, columns = np.nonzero(cross_section & ~plain[last])  # cuboid pixels the box alone leaves out: its rim
    assert len(rows) > 0
    nearest = np.argmin(np.hypot(columns - (x.start + 4), rows - y.start))  # on the top rim, near the left end
    missed = (int(columns[nearest]), int(rows[nearest]))
    clicked = _segment(segmenter, image, ObjectPrompt(box=box, z_range=(z.start, z.stop - 1),
                                                      points=[(*missed, last, 1)]))
    assert all(np.array_equal(plain[k], clicked[k]) for k in range(z.start, last))
    assert clicked[last][missed[1], missed[0]] and (clicked[last] >= plain[last]).all()


def test_a_blank_slice_ends_propagation_and_litemedsams_rule_goes_on_with_the_users_box(phantom_segmenter):
    """A slice of one grey level (padding) inside the z-range gives an empty mask instead of an error; our rule
    stops there, LiteMedSAM's (the benchmark's reference) prompts the next slice with the user's box."""
    segmenter, image, truth = phantom_segmenter
    x, y, z = CUBOID
    gap = z.stop - 2
    with_gap = image.copy()
    with_gap[:, :, gap] = with_gap[0, 0, gap]
    box = (x.start - 2, y.start - 2, x.stop + 1, y.stop + 1)
    prompt = ObjectPrompt(box=box, z_range=(z.start, z.stop - 1))
    ours = segment_object(segmenter, lambda k: with_gap[:, :, k].T, image.shape[2], prompt)
    assert sorted(ours) == list(range(z.start, gap))
    theirs = segment_object(segmenter, lambda k: with_gap[:, :, k].T, image.shape[2], prompt,
                            rules=LITEMEDSAM_PROPAGATION)
    assert sorted(theirs) == list(range(z.start, z.stop))
    assert not theirs[gap].any()
    assert dice(theirs[z.stop - 1], truth[:, :, z.stop - 1].T) > 0.9


def test_the_start_slice_keeps_its_largest_piece_so_a_fragment_in_a_loose_box_is_not_propagated(phantom_segmenter):
    """A bright blob apart from the cuboid, inside the user's loose 3D box on the three middle slices: the decoder
    answers that box with both, and without the one-piece rule the blob is carried to the next slices too.
    LiteMedSAM's decoder, which answers with two separate pieces; the release-2 student's mask bridges the gap
    into one piece, which no piece rule can split (docs/experiments.md)."""
    _, image, truth = phantom_segmenter
    segmenter = Segmenter("litemedsam", threads=2)
    x, y, z = CUBOID
    middle = (z.start + z.stop - 1) // 2
    with_blob = image.copy()
    with_blob[100:114, 95:109, middle - 1:middle + 2] = image[x.start, y.start, z.start]  # (x, y, z), the cuboid's grey
    blob = (slice(95, 109), slice(100, 114))  # (y, x) on a slice
    prompt = ObjectPrompt(box=(x.start - 2, y.start - 10, 120, y.stop + 1), z_range=(z.start, z.stop - 1))
    ours = segment_object(segmenter, lambda k: with_blob[:, :, k].T, image.shape[2], prompt)
    assert sorted(ours) == list(range(z.start, z.stop))
    assert all(not ours[k][blob].any() for k in ours)
    assert all(dice(ours[k], truth[:, :, k].T) > 0.9 for k in ours)
    every_piece = segment_object(segmenter, lambda k: with_blob[:, :, k].T, image.shape[2], prompt,
                                 rules=Propagation(one_piece_start=False))
    assert every_piece[middle][blob].mean() > 0.8 and every_piece[middle + 1][blob].mean() > 0.8


def test_largest_piece_keeps_the_biggest_8_connected_part():
    mask = np.zeros((8, 10), bool)
    mask[0:3, 0:3] = True  # 9 pixels
    mask[3, 3] = True  # touches the first piece at a corner: same 8-connected piece
    mask[5:8, 5:10] = True  # 15 pixels
    assert largest_piece(mask).sum() == 15 and largest_piece(mask)[6, 7]
    assert largest_piece(mask[:4, :4]).sum() == 10
    assert not largest_piece(np.zeros((3, 3), bool)).any()
