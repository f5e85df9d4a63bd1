"""Benchmark metrics and the click simulator on constructed cases with known answers."""

import numpy as np
import pytest

from imis_lite.metrics import dice, nsd
from imis_lite.protocol import next_click


def square(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_dice_hand_computed():
    a, b = square((10, 10), 0, 2, 0, 5), square((10, 10), 0, 2, 3, 8)  # 10 px each, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 20)
    assert dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_nsd_identical_empty_and_far_apart():
    truth = square((40, 40), 5, 15, 5, 15)
    assert nsd(truth, truth, (1, 1)) == 1.0
    assert nsd(np.zeros_like(truth), np.zeros_like(truth), (1, 1)) == 1.0
    assert nsd(truth, np.zeros_like(truth), (1, 1)) == 0.0
    assert nsd(square((40, 40), 25, 35, 25, 35), truth, (1, 1)) == 0.0  # every surface point > 2 mm away


def test_nsd_tolerance_decides_a_one_pixel_shift():
    truth, shifted = square((40, 40), 5, 15, 5, 15), square((40, 40), 6, 16, 5, 15)
    assert nsd(shifted, truth, (1, 1), tolerance=2.0) == 1.0
    assert nsd(shifted, truth, (1, 1), tolerance=0.5) < 0.9


def test_nsd_respects_anisotropic_spacing():
    truth = np.zeros((12, 12, 12), bool)
    truth[3:9, 3:9, 3:9] = True
    shifted = np.roll(truth, 1, axis=2)
    assert nsd(shifted, truth, (1.0, 1.0, 1.0)) == 1.0  # 1 mm apart, within 2 mm
    assert nsd(shifted, truth, (1.0, 1.0, 3.0)) < 1.0  # the moved faces are 3 mm apart
    assert nsd(np.roll(truth, 1, axis=0), truth, (1.0, 1.0, 3.0)) == 1.0  # along a 1 mm axis: fine


def test_first_click_on_a_miss_is_foreground_at_its_centre():
    truth = square((50, 60), 10, 31, 20, 41)  # centre (x=30, y=20)
    x, y, label = next_click(np.zeros_like(truth), truth)
    assert label == 1 and (x, y) == (30.0, 20.0)


def test_click_goes_to_the_largest_error_region():
    truth = square((60, 60), 5, 15, 5, 15)
    prediction = truth.copy()
    prediction[30:50, 30:50] = True  # 400 px false positive
    prediction[5:8, 5:8] = False  # 9 px miss
    x, y, label = next_click(prediction, truth)
    assert label == 0 and 38 <= x <= 41 and 38 <= y <= 41


def test_regions_touching_the_border_are_centred_inside():
    truth = square((30, 30), 0, 10, 0, 30)  # a band along the top edge
    x, y, label = next_click(np.zeros_like(truth), truth)
    assert label == 1 and 4 <= y <= 5


def test_no_click_when_masks_agree():
    truth = square((10, 10), 2, 5, 2, 5)
    assert next_click(truth, truth) is None
