"""The click-start ranker: its candidate boxes sit on the click inside the image, its features tell a candidate
that fits the object from one that spills past it, its training and export make a bundle whose first click starts
from one of those candidates, and it refuses a bundle whose decoder it never saw."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from imis_lite.distill import click_refiner_data, export_click_start, train_click_start

from imis_lite import Segmenter
from imis_lite.bundle import sha256_of, shipped_weights_dir
from imis_lite.click_start import BAND, CANDIDATE_SIDES, FEATURES, ClickStartRanker, candidate_boxes, candidate_features
from imis_lite.corrections import Correction


def test_candidate_boxes_are_centred_on_the_click_and_cut_to_the_image():
    boxes = candidate_boxes(100, 40, (120, 256))  # content 120 rows x 256 columns
    assert len(boxes) == len(CANDIDATE_SIDES)
    assert np.array_equal(boxes[0], [92, 32, 108, 48])  # side 16, fully inside
    assert boxes[-1, 1] == 0 and boxes[-1, 3] == 119 and boxes[-1, 0] == 0 and boxes[-1, 2] == 220


def test_features_tell_the_fitting_candidate_from_one_that_spills_into_the_background():
    size = 64
    rows, columns = np.ogrid[:size, :size]
    disk = (rows - 32) ** 2 + (columns - 30) ** 2 <= 10 ** 2
    grey = np.where(disk, 0.8, 0.1).astype(np.float32)
    square = np.zeros((size, size), bool)
    square[16:49, 14:47] = True  # the box of side 32 around the click, filled
    boxes = np.array([[14, 16, 46, 48], [0, 0, 63, 63]], np.float64)
    logits = np.stack([np.where(disk, 5.0, -5.0), np.where(square, 5.0, -5.0), np.where(disk, 5.0, -5.0)])
    features = candidate_features(grey, logits, np.array([0.5, 0.9, 0.8]), boxes, 30, 32, 1.0)
    assert features.shape == (3, FEATURES)
    click_row, filled, fitting = features
    assert click_row[0] == 1 and filled[0] == 0 and click_row[1] == 0 and filled[1] == 0.5  # the click's own answer; side
    assert filled[3] == 0 and fitting[3] == pytest.approx(-0.1)  # IoU estimate against the best
    assert filled[7] > 0.2 and fitting[7] == 0  # the filled box is cut by its border, the disk lies inside its box
    assert fitting[11] < 1e-5 and filled[11] > 0.5  # grey spread inside: none on the disk, the background inside the box
    assert fitting[13] > filled[13]  # the disk's edge has the contrast
    assert fitting[10] == 1 and 0 < filled[10] < 1  # overlap with the click's answer (the disk itself here)
    assert BAND == 3


@pytest.fixture(scope="module")
def ranker_run(tiny_cache, tmp_path_factory):
    data, run = tmp_path_factory.mktemp("start-data"), tmp_path_factory.mktemp("click-start")
    assert click_refiner_data.main(["--cache", str(tiny_cache.folder), "--bundle", "effvit-s-hr", "--out", str(data),
                                    "--jitters", "1"]) == 0
    assert train_click_start.main(["--set", str(tiny_cache.folder), str(data), "--bundle", "effvit-s-hr", "--out", str(run),
                                   "--train-rows", "6", "--steps", "20", "--threads", "2"]) == 0
    return run


def test_training_reports_the_pick_between_the_clicks_answer_and_the_best_candidate(ranker_run):
    record = json.loads((ranker_run / "log.json").read_text())
    for part in ("training", "held_out"):
        numbers = record[part]
        assert numbers["rows"] > 0 and numbers["click"] <= numbers["best"] and numbers["picked"] <= numbers["best"]
    table = np.load(ranker_run / "features.npz")
    assert table["features"].shape[1:] == (1 + len(CANDIDATE_SIDES), FEATURES) and table["dice"].max() <= 1
    ranker = ClickStartRanker(ranker_run / "click_start.npz")
    assert ranker.rank(table["features"][0]).shape == (1 + len(CANDIDATE_SIDES),)


def test_an_installed_ranker_starts_a_first_click_from_one_of_its_candidates(ranker_run, tmp_path):
    bundle = tmp_path / "effvit-s-hr"
    shutil.copytree(shipped_weights_dir() / "effvit-s-hr", bundle)
    assert export_click_start.main(["--run", str(ranker_run), "--bundle", str(bundle)]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["click_start"] == "click_start.npz"
    assert manifest["files"]["click_start.npz"]["sha256"] == sha256_of(bundle / "click_start.npz")
    assert "train_click_start --set" in (bundle / "MODEL_CARD.md").read_text()
    image = np.zeros((200, 300), np.uint8)
    image[60:140, 100:220] = 200  # a bright block, wider than tall
    segmenter = Segmenter(str(bundle), engine="onnxruntime", threads=2)
    segmenter.set_image(image)
    logits, _ = segmenter.start_from_click(160, 100)
    candidates = [segmenter.predict(points=[[160, 100]], labels=[1])[2][0]]
    frame = candidate_boxes(160 * 256 / 300, 100 * 256 / 300, (171, 256)) * 300 / 256
    candidates += list(segmenter.predict(box=np.clip(frame, 0, [299, 199, 299, 199]))[2][:, 0])
    assert any(np.allclose(logits, candidate, atol=1e-3) for candidate in candidates)
    first = Correction(segmenter)
    assert first.click(160, 100).shape == image.shape and first.logits is not None


def test_a_ranker_refuses_a_bundle_with_another_decoder(ranker_run, tmp_path):
    bundle = tmp_path / "litemedsam"
    shutil.copytree(shipped_weights_dir() / "litemedsam", bundle)
    with pytest.raises(SystemExit, match="another decoder"):
        export_click_start.main(["--run", str(ranker_run), "--bundle", str(bundle)])
    assert "click_start" not in json.loads((bundle / "manifest.json").read_text())
