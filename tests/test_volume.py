"""3D propagation on a phantom with a known extent, through the Python API."""

import numpy as np

from imis_lite import Segmenter
from imis_lite.intensity import to_uint8
from imis_lite.metrics import dice
from imis_lite.volume import ObjectPrompt, mask_box, segment_object

from .phantoms import CUBOID, phantom


def test_mask_box_is_inclusive_and_none_when_empty():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert mask_box(mask).tolist() == [3, 2, 8, 4]
    assert mask_box(np.zeros((3, 3), bool)) is None


def test_propagation_covers_the_cuboid_and_stays_inside_the_z_range():
    data, truth = phantom()
    image = to_uint8(data, "MR")
    segmenter = Segmenter(threads=2)
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
