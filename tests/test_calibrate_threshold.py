"""Choosing a bundle's mask threshold on held-out corpus objects: the choice rule, the sweep on a constructed
case whose best threshold is known, and the command on real held-out images writing a loadable bundle."""

import json
import shutil

import numpy as np
from imis_lite.distill.calibrate_threshold import GRID, SECTION, best_threshold, main, sweep

from imis_lite import Segmenter
from imis_lite.bundle import load_bundle

from .conftest import SHARED


def test_the_best_total_wins_only_by_a_clear_margin_over_sams_zero():
    assert best_threshold({"grid": [-2.0, -1.0, 0.0], "dsc": [0.7, 0.8, 0.7], "nsd": [0.5, 0.6, 0.6]}) == -1.0
    assert best_threshold({"grid": [-1.0, 0.0, 1.0], "dsc": [0.5, 0.6, 0.7], "nsd": [0.5, 0.4, 0.3]}) == 0.0
    assert best_threshold({"grid": [-0.5, 0.0], "dsc": [0.805, 0.8], "nsd": [0.6, 0.6]}) == 0.0  # +0.005 < MIN_GAIN


class SoftDisc:
    """A stand-in for the model whose logits are known: (radius - distance from the centre) / 4 around the box
    centre, so that the mask above threshold t is the disc of radius ``radius - 4 t``."""

    input_size = 256

    def __init__(self, radius: float) -> None:
        self.radius = radius

    def set_image(self, image):
        self.shape = image.shape

    def predict(self, box):
        rows, columns = np.mgrid[:self.shape[0], :self.shape[1]]
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        distance = np.hypot(columns - centre_x, rows - centre_y)
        logits = (self.radius - distance)[None] / 4
        return logits > 0, np.zeros(1), logits

    def image_logits(self, low_res):
        return low_res


def test_the_sweep_finds_the_threshold_that_draws_the_object():
    labels = np.zeros((96, 96), np.uint8)
    rows, columns = np.mgrid[:96, :96]
    labels[np.hypot(columns - 48, rows - 48) <= 20] = 1  # the object: radius 20
    result = sweep(SoftDisc(radius=16), [(np.zeros((96, 96), np.uint8), labels)])  # SAM's threshold draws 16
    assert result["objects"] == 1 and result["grid"] == list(GRID) and len(result["per_margin"]) == 3
    assert best_threshold(result) == -1.0  # 16 - 4 x (-1) = 20
    assert result["dsc"][GRID.index(-1.0)] > 0.99 and result["dsc"][GRID.index(0.0)] < 0.8


def test_the_command_writes_a_threshold_the_bundle_then_uses(tmp_path):
    for name in ("litemedsam", "effvit-s-hr"):  # the student shares the teacher's decoder as ../litemedsam/
        shutil.copytree(load_bundle(name).root, tmp_path / name)
    bundle = tmp_path / "effvit-s-hr"
    for _ in range(2):  # a second run replaces its own card section
        assert main(["--bundle", str(bundle), "--corpus", str(SHARED / "corpus"), "--max-images", "2", "--threads", "2"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = manifest["mask_threshold_calibration"]
    assert manifest["mask_threshold"] == best_threshold(record) and manifest["mask_threshold"] in GRID
    assert len(record["images"]) == 2 and record["objects"] >= 2
    assert all(key.startswith("images/") for key in record["images"])
    card = (bundle / "MODEL_CARD.md").read_text()
    assert card.count(SECTION) == 1 and "## Interactive prompt path" in card
    copied = load_bundle(str(bundle))
    for relative in copied.manifest["files"]:
        copied.verified_path(relative)  # the rewritten card passes its sha256 check
    assert Segmenter(str(bundle)).mask_threshold == manifest["mask_threshold"]
