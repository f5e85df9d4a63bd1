"""The Segmenter API on the shipped sample: shapes, caching, batching, clicks and its errors."""

import json

import numpy as np
import pytest

from imis_lite import Segmenter
from imis_lite.demo import boxes_from_labels, sample_path
from imis_lite.errors import EngineError, ImageError, PromptError
from imis_lite.metrics import dice


@pytest.fixture(scope="module")
def sample():
    with np.load(sample_path(), allow_pickle=False) as case:
        return case["imgs"], case["gts"], json.loads(str(case["labels"]))


@pytest.fixture(scope="module")
def segmenter():
    """At SAM's threshold (0), as the PyTorch reference these tests compare with."""
    return Segmenter("litemedsam", engine="onnxruntime", threads=2, mask_threshold=0.0)


def test_predict_before_set_image_is_a_clear_error():
    with pytest.raises(ImageError, match="no image set"):
        Segmenter().predict(box=[0, 0, 10, 10])


def test_shipped_sample_liver_from_its_box(segmenter, sample):
    image, truth, names = sample
    liver = [int(k) for k, v in names.items() if v == "liver"][0]
    box = boxes_from_labels(truth)[liver]
    segmenter.set_image(image)
    masks, scores, logits = segmenter.predict(box=box)
    assert masks.shape == (1, 512, 512) and masks.dtype == bool
    assert scores.shape == (1,) and logits.shape == (1, 256, 256)
    assert dice(masks[0], truth == liver) > 0.8  # 0.827, as PyTorch LiteMedSAM


def test_masks_are_the_logits_above_the_threshold_the_bundle_names(segmenter, sample):
    """The manifest's mask_threshold (distill.calibrate_threshold's choice on held-out corpus objects: SAM's 0 for
    both shipped bundles) makes the masks; mask_threshold= sets another."""
    image, truth, names = sample
    default = Segmenter("litemedsam", engine="onnxruntime", threads=2)
    manifest = default.bundle.manifest
    assert default.mask_threshold == manifest["mask_threshold"] == manifest["mask_threshold_calibration"]["threshold"]
    looser = Segmenter("litemedsam", engine="onnxruntime", threads=2, mask_threshold=-1.0)
    liver = [int(k) for k, v in names.items() if v == "liver"][0]
    box = boxes_from_labels(truth)[liver]
    for seg in (default, looser):
        seg.set_image(image)
    masks, _, low_res = default.predict(box=box)
    logits = default.image_logits(low_res)
    assert logits.shape == (1, 512, 512)
    assert np.array_equal(masks, logits > default.mask_threshold)
    loose = looser.predict(box=box)[0]
    assert np.array_equal(loose, logits > -1.0)
    assert (masks <= loose).all() and loose.sum() > masks.sum()


def test_second_set_image_with_the_same_image_reuses_the_embedding(segmenter, sample):
    image = sample[0]
    segmenter.set_image(image)
    calls = []
    original = segmenter.encoder.run
    segmenter.encoder.run = lambda inputs: calls.append(1) or original(inputs)
    try:
        segmenter.set_image(image.copy())
        assert calls == []
        segmenter.set_image(image[::-1].copy())
        assert calls == [1]
    finally:
        segmenter.encoder.run = original


def test_several_boxes_at_once_equal_one_at_a_time(segmenter, sample):
    image, truth, _ = sample
    boxes = np.stack(list(boxes_from_labels(truth).values()))[:4]
    segmenter.set_image(image)
    batch, scores, logits = segmenter.predict(box=boxes)
    assert batch.shape == (4, 1, 512, 512) and scores.shape == (4, 1) and logits.shape == (4, 1, 256, 256)
    for i, box in enumerate(boxes):
        single, _, _ = segmenter.predict(box=box)
        assert dice(single[0], batch[i, 0]) > 0.999


def test_multimask_gives_three_masks(segmenter, sample):
    segmenter.set_image(sample[0])
    masks, scores, logits = segmenter.predict(box=[100, 100, 300, 300], multimask=True)
    assert masks.shape == (3, 512, 512) and scores.shape == (3,) and logits.shape == (3, 256, 256)


def test_clicks_and_mask_input_equal_pytorch(segmenter, sample, shipped_teacher):
    """Clicks and mask input through the runtime equal PyTorch's with the same weights (the bundle's
    retrained prompt encoder and decoder, its click channel read for clicks)."""
    from imis_lite.distill.reference import TorchSegmenter

    image, truth, names = sample
    kidney = [int(k) for k, v in names.items() if v == "kidney_right"][0]
    box = boxes_from_labels(truth)[kidney]
    clicks = dict(points=[[160, 200], [140, 160]], labels=[1, 0])
    reference = TorchSegmenter(*shipped_teacher)
    for seg in (segmenter, reference):
        seg.set_image(image)
    ours = segmenter.predict(box=box, **clicks)
    theirs = reference.predict(box=box, **clicks)
    assert dice(ours[0][0], theirs[0][0]) > 0.99
    alone = segmenter.predict(**clicks)
    assert dice(alone[0][0], reference.predict(**clicks)[0][0]) > 0.99
    refined = segmenter.predict(box=box, mask_input=ours[2])
    expected = reference.predict(box=box, mask_input=theirs[2])
    assert dice(refined[0][0], expected[0][0]) > 0.99


@pytest.mark.parametrize(
    "prompt, message",
    [
        (dict(box=[10, 10, 600, 20]), "outside the 512x512 image"),
        (dict(box=[-1, 10, 20, 20]), "outside"),
        (dict(box=[50, 10, 20, 20]), "x1 >= x0"),
        (dict(box=[1, 2, 3]), "x0 y0 x1 y1"),
        (dict(points=[[10, 700]]), "outside"),
        (dict(points=[[10, 10]], labels=[2]), "labels"),
        (dict(), "at least one prompt"),
    ],
)
def test_bad_prompts_are_clear_errors(segmenter, sample, prompt, message):
    segmenter.set_image(sample[0])
    with pytest.raises(PromptError, match=message):
        segmenter.predict(**prompt)


def test_bf16_arithmetic_where_the_cpu_has_it_and_masks_close_to_f32(sample):
    """OpenVINO computes in bfloat16 only on a CPU that does it natively (else f32, said so); on the shipped CT
    slice every organ's bf16 mask stays close to the f32 one (measured on an AVX-512 BF16 CPU: Dice >= 0.994)."""
    import openvino as ov

    image, truth, _ = sample
    native = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    exact = Segmenter("effvit-s-hr", engine="openvino", threads=2)
    fast = Segmenter("effvit-s-hr", engine="openvino", threads=2, arithmetic="bf16")
    assert exact.encoder.inference_precision == "f32"
    assert fast.encoder.inference_precision == fast.decoder.inference_precision == ("bf16" if native else "f32")
    assert fast.describe().endswith(f"arithmetic {'bf16' if native else 'f32'}")
    exact.set_image(image)
    fast.set_image(image)
    for box in boxes_from_labels(truth).values():
        assert dice(exact.predict(box=box)[0][0], fast.predict(box=box)[0][0]) > 0.95


def test_bf16_arithmetic_needs_openvino():
    with pytest.raises(EngineError, match="needs the openvino engine"):
        Segmenter("effvit-s-hr", engine="onnxruntime", arithmetic="bf16")
    with pytest.raises(EngineError, match="unknown arithmetic"):
        Segmenter("effvit-s-hr", engine="openvino", arithmetic="fp8")


class _CountingEngine:
    """A real engine, counted: how many images the Segmenter actually encodes."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0
        self.name, self.device, self.inference_precision = engine.name, engine.device, engine.inference_precision

    def run(self, inputs):
        self.calls += 1
        return self.engine.run(inputs)


def test_a_segmenter_runs_engines_it_is_handed_and_bounds_its_cache_in_bytes(sample):
    from dataclasses import replace

    from imis_lite.predictor import LoadedModel, load_model

    loaded = load_model("effvit-s-hr", threads=2)
    counting = _CountingEngine(loaded.encoder)
    one = 256 * 64 * 64 * 4  # one embedding, float32
    segmenter = Segmenter(replace(loaded, encoder=counting), cache_bytes=2 * one)
    assert isinstance(loaded, LoadedModel) and segmenter.bundle.name == "effvit-s-hr"
    image = sample[0]
    a, b, c = image, image[::-1].copy(), image[:, ::-1].copy()
    for picture in (a, b, a, c):  # a is cached when seen again; c then pushes out b, the oldest
        segmenter.set_image(picture)
    assert counting.calls == 3 and segmenter.cached_bytes == 2 * one
    segmenter.set_image(b)
    assert counting.calls == 4 and segmenter.cached_bytes <= 2 * one
    segmenter.set_image(c)
    assert counting.calls == 4  # still cached
    masks, _, _ = segmenter.predict(box=[100, 100, 300, 300])
    assert masks.shape == (1, *image.shape[:2])


def test_unknown_options_raise_the_packages_own_error():
    from imis_lite.errors import OptionError

    for options, message in (({"engine": "tensorrt"}, "unknown engine"), ({"precision": "int4"}, "unknown precision"),
                             ({"device": "TPU"}, "unknown device"), ({"arithmetic": "fp8"}, "unknown arithmetic")):
        with pytest.raises(OptionError, match=message):
            Segmenter("effvit-s-hr", **options)


class _QuadrantDecoder:
    """A decoder with known answers: output 0 empty, 1 the top-left quadrant, 2 the bottom-right, 3 everything,
    rated 0.9, 0.1, 0.8, 0.3 by its IoU head, for every prompt."""

    name, device, inference_precision = "fake", "CPU", "f32"

    def run(self, inputs):
        prompts = inputs["sparse_prompt"].shape[0]
        logits = np.full((prompts, 4, 256, 256), -10.0, np.float32)
        logits[:, 1, :128, :128] = logits[:, 2, 128:, 128:] = logits[:, 3] = 10.0
        return {"low_res_logits": logits, "iou_scores": np.tile(np.float32([0.9, 0.1, 0.8, 0.3]), (prompts, 1))}


def test_a_point_first_decoder_answers_one_click_alone_with_its_best_rated_candidate():
    """One click without box or mask is ambiguous, so a decoder whose manifest says ``point_first`` answers it with
    the best-rated of its three candidates (outputs 1-3); a box, or several clicks, read output 0."""
    from dataclasses import replace

    from imis_lite.predictor import load_model

    loaded = load_model("effvit-s-hr", threads=2)
    manifest = {key: value for key, value in loaded.bundle.manifest.items() if key != "click_channel"}
    point_first = replace(loaded.bundle, manifest={**manifest, "point_first": "multimask"})
    segmenter = Segmenter(replace(loaded, bundle=point_first, decoder=_QuadrantDecoder()))
    assert segmenter.takes_clicks_alone and not Segmenter(loaded).takes_clicks_alone
    segmenter.set_image(np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8))
    mask, score, _ = segmenter.predict(points=[[10, 20]], labels=[1])
    assert float(score[0]) == pytest.approx(0.8) and mask[0, 256:, 256:].all() and not mask[0, :256, :256].any()
    assert not segmenter.predict(box=[10, 10, 100, 100])[0].any()
    assert not segmenter.predict(points=[[10, 20], [300, 300]], labels=[1, 0])[0].any()
