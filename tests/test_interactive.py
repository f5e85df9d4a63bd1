"""Interactive training of the prompt path: what it trains, what it must leave alone, how it is installed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from imis_lite.distill import export_interactive, train_interactive

from imis_lite.bundle import sha256_of, shipped_weights_dir
from imis_lite.metrics import dice
from imis_lite.prompts import PromptEncoder


@pytest.fixture(scope="module")
def run(tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("interactive")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.05", "--threads", "2"]
    assert train_interactive.main([*args, "--steps", "2"]) == 0
    assert train_interactive.main([*args, "--steps", "3"]) == 0  # resumes from last.pt
    return folder


def test_training_resumes_and_logs_the_click_curve(run):
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    curve = lines[0]["validation"]["dsc_per_click"]
    assert len(curve) == 3 and all(0 <= v <= 1 for v in curve)
    local = lines[0]["validation"]["dsc_per_click_local"]  # the runtime's way: each answer kept near its click
    assert len(local) == 3 and local[0] == curve[0]  # same box, same first answer


def test_only_the_click_and_mask_input_path_changes(run, teacher):
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["net"]
    original = teacher.state_dict()
    changed = {key for key, value in state.items() if not torch.equal(value, original[key])}
    assert changed, "training changed nothing"
    assert all(key.startswith(("prompt_encoder.point_embeddings.0", "prompt_encoder.point_embeddings.1",
                               "prompt_encoder.not_a_point_embed", "prompt_encoder.mask_downscaling")) for key in changed)


def test_installed_prompt_encoder_answers_boxes_as_before_and_clicks_differently(run, tmp_path):
    bundle = tmp_path / "litemedsam"
    bundle.mkdir()
    for name in ("manifest.json", "prompt_encoder.npz"):
        shutil.copy(shipped_weights_dir() / "litemedsam" / name, bundle / name)
    before = PromptEncoder.from_npz(bundle / "prompt_encoder.npz")
    assert export_interactive.main(["--run", str(run), "--bundle", str(bundle)]) == 0
    after = PromptEncoder.from_npz(bundle / "prompt_encoder.npz")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"]["prompt_encoder.npz"]["sha256"] == sha256_of(bundle / "prompt_encoder.npz")
    assert manifest["interactive"]["steps"] == 3
    assert "Interactive prompt path" in (bundle / "MODEL_CARD.md").read_text()
    box = np.array([[20.0, 30.0, 120.0, 140.0]], np.float32)
    assert np.array_equal(before.encode(boxes=box)[0], after.encode(boxes=box)[0])
    assert np.array_equal(before.encode(boxes=box)[1], after.encode(boxes=box)[1])
    click = dict(points=np.array([[[60.0, 80.0]]], np.float32), labels=np.array([[1.0]]))
    assert not np.allclose(before.encode(**click)[0], after.encode(**click)[0])


def test_export_refuses_a_run_whose_box_path_moved(run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    state = torch.load(moved / "last.pt", map_location="cpu", weights_only=False)
    state["net"]["prompt_encoder.no_mask_embed.weight"] += 0.01
    torch.save(state, moved / "last.pt")
    with pytest.raises(SystemExit, match="no_mask changed"):
        export_interactive.trained_arrays(moved)


@pytest.fixture(scope="module")
def click_head_run(tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("click-head")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.05", "--threads", "2",
            "--train", "click-head", "--steps", "2"]
    assert train_interactive.main(args) == 0
    return folder


def test_click_head_training_leaves_every_layer_a_box_uses_untouched(click_head_run, tiny_cache, teacher):
    state = torch.load(click_head_run / "last.pt", map_location="cpu", weights_only=False)["net"]
    original = teacher.state_dict()
    changed = {key for key, value in state.items() if not torch.equal(value, original[key])}
    assert any(key.startswith("mask_decoder.output_hypernetworks_mlps.1.") for key in changed)
    assert all(key.startswith(("mask_decoder.output_hypernetworks_mlps.1.", "prompt_encoder.point_embeddings.0",
                               "prompt_encoder.point_embeddings.1", "prompt_encoder.not_a_point_embed",
                               "prompt_encoder.mask_downscaling")) for key in changed)

    trained = train_interactive.load_litemedsam()
    trained.load_state_dict(state)
    embedding = torch.from_numpy(tiny_cache["embeddings"][:1].astype(np.float32))
    box = torch.tensor([[40.0, 50.0, 150.0, 160.0]])
    click = (torch.tensor([[[90.0, 100.0]]]), torch.tensor([[1]]))
    with torch.no_grad():
        for_box = [train_interactive.Interaction(net, click_channel=True)(embedding, box, None, None, None)
                   for net in (teacher, trained)]
        for_click = [train_interactive.Interaction(net, click_channel=True)(embedding, box, *click, None)
                     for net in (teacher, trained)]
    assert torch.equal(for_box[0], for_box[1])  # a box alone reads channel 0: bit-identical
    assert not torch.allclose(for_click[0], for_click[1])  # a click reads the trained channel 1


def test_installed_click_head_keeps_box_answers_and_changes_click_answers(click_head_run, tmp_path):
    from imis_lite.predictor import Segmenter

    from .conftest import load_case

    weights = tmp_path / "weights"
    for name in ("litemedsam", "effvit-s-hr"):
        shutil.copytree(shipped_weights_dir() / name, weights / name)
    assert export_interactive.main(["--run", str(click_head_run), "--bundle", str(weights / "litemedsam")]) == 0
    case = load_case("cases_2d/btcv_ABD_001_110.npz")
    box, click = np.array([300, 250, 420, 380]), dict(points=[[360, 310]], labels=[1])
    manifest = json.loads((weights / "litemedsam" / "manifest.json").read_text())
    assert manifest["click_channel"] == 1 and manifest["interactive"]["trained"] == "click-head"
    assert manifest["interactive"]["box_logit_max_change_random_inputs"] == 0.0
    shipped, installed = Segmenter("litemedsam", threads=2), Segmenter(str(weights / "litemedsam"), threads=2)
    for segmenter in (shipped, installed):  # sha256-checked
        segmenter.set_image(case["imgs"])
    assert np.array_equal(shipped.predict(box=box)[2], installed.predict(box=box)[2])
    assert not np.allclose(shipped.predict(box=box, **click)[2], installed.predict(box=box, **click)[2])


def test_a_click_head_run_will_not_undo_a_decoder_tuned_to_a_student(click_head_run, tmp_path):
    weights = tmp_path / "weights"
    for name in ("litemedsam", "effvit-s-hr"):
        shutil.copytree(shipped_weights_dir() / name, weights / name)
    before = {path: sha256_of(path) for path in weights.rglob("*") if path.is_file()}
    with pytest.raises(SystemExit, match="would change the box answers"):  # both given: neither is written
        export_interactive.main(["--run", str(click_head_run), "--bundle", str(weights / "litemedsam"),
                                 "--bundle", str(weights / "effvit-s-hr")])
    assert {path: sha256_of(path) for path in weights.rglob("*") if path.is_file()} == before


@pytest.fixture(scope="module")
def second_stage_run(click_head_run, tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("second-stage")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.05", "--threads", "2",
            "--train", "click-head", "--steps", "2", "--init", str(click_head_run / "last.pt"), "--local",
            "--reach-weight", "2"]
    assert train_interactive.main(args) == 0
    return folder


def test_a_second_stage_starts_where_the_first_ended_and_its_card_reproduces_both(click_head_run, second_stage_run,
                                                                                 tmp_path):
    first = [json.loads(line) for line in (click_head_run / "log.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (second_stage_run / "log.jsonl").read_text().splitlines()]
    assert second[0]["validation"] == first[-1]["validation"]  # same held-out objects, same weights
    assert second[-1]["validation"] != first[-1]["validation"]
    bundle = tmp_path / "litemedsam"
    shutil.copytree(shipped_weights_dir() / "litemedsam", bundle)
    assert export_interactive.main(["--run", str(second_stage_run), "--bundle", str(bundle)]) == 0
    record = json.loads((bundle / "manifest.json").read_text())["interactive"]
    assert [stage["steps"] for stage in record["stages"]] == [2, 2] and record["steps"] == 4
    commands = record["command"].splitlines()
    assert len(commands) == 2 and f"--out runs/{click_head_run.name} --train click-head" in commands[0]
    assert f"--init runs/{click_head_run.name}/last.pt --local --reach-weight 2.0" in commands[1]


def test_the_trained_disc_is_where_the_runtime_takes_an_answer_from():
    from imis_lite.corrections import local_update

    shown = np.zeros((64, 64), bool)
    shown[10:30, 10:30] = True
    everything = np.ones_like(shown)
    for x, y in [(40, 20), (33, 12), (50, 50)]:
        reach = train_interactive.click_reach(shown[None], [[(float(x), float(y), 1)]])[0].astype(bool)
        taken = local_update(shown, everything, x, y, True) & ~shown
        assert reach[y, x] and np.array_equal(taken, reach & ~shown)


@pytest.fixture(scope="module")
def decoder_run(tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoder")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.01", "--threads", "2",
            "--train", "decoder", "--steps", "2"]
    assert train_interactive.main(args) == 0
    return folder


def test_decoder_training_moves_the_shared_layers_and_logs_the_box_drift(decoder_run, teacher):
    state = torch.load(decoder_run / "last.pt", map_location="cpu", weights_only=False)["net"]
    original = teacher.state_dict()
    changed = {key for key, value in state.items() if not torch.equal(value, original[key])}
    assert any(key.startswith("mask_decoder.transformer.") for key in changed)
    assert any(key.startswith("mask_decoder.output_hypernetworks_mlps.1.") for key in changed)
    assert not any(key.startswith("image_encoder.") for key in changed)
    lines = [json.loads(line) for line in (decoder_run / "log.jsonl").read_text().splitlines()]
    assert all(line["box_drift"] >= 0 for line in lines[1:])


def test_box_drift_is_zero_for_the_frozen_decoder_and_grows_when_a_shared_layer_moves(tiny_cache, teacher):
    embedding = torch.from_numpy(tiny_cache["embeddings"][:1].astype(np.float32))
    truth = np.zeros((1, 256, 256), bool)
    truth[0, 60:140, 80:170] = True
    frozen = train_interactive.Interaction(teacher)
    moved = train_interactive.load_litemedsam()
    with torch.no_grad():
        same = train_interactive.box_drift(train_interactive.Interaction(moved), frozen, embedding, truth,
                                           np.random.default_rng(0))
        moved.mask_decoder.transformer.layers[0].mlp.lin1.weight.mul_(1.5)
        drift = train_interactive.box_drift(train_interactive.Interaction(moved), frozen, embedding, truth,
                                            np.random.default_rng(0))
    assert same.item() == 0.0
    assert drift.item() > 1e-3


def test_installed_decoder_run_answers_clicks_from_its_click_channel_in_both_bundles(decoder_run, tmp_path):
    from imis_lite.predictor import Segmenter

    from .conftest import load_case

    weights = tmp_path / "weights"
    for name in ("litemedsam", "effvit-s-hr"):
        shutil.copytree(shipped_weights_dir() / name, weights / name)
    as_exported(weights / "effvit-s-hr")  # sharing the teacher's decoder file, as a fresh student export does
    assert export_interactive.main(["--run", str(decoder_run), "--bundle", str(weights / "litemedsam"),
                                    "--bundle", str(weights / "effvit-s-hr")]) == 0
    for name in ("litemedsam", "effvit-s-hr"):
        manifest = manifest_of(weights / name)
        assert manifest["click_channel"] == 1 and manifest["interactive"]["trained"] == "decoder"
        assert manifest["interactive"]["box_logit_max_change_random_inputs"] > 0
        assert "--train decoder --box-weight 1.0" in manifest["interactive"]["command"]
    shared = manifest_of(weights / "effvit-s-hr")["files"]["../litemedsam/decoder.onnx"]["sha256"]
    assert shared == sha256_of(weights / "litemedsam" / "decoder.onnx")  # one file, replaced once, both manifests true
    case = load_case("cases_2d/btcv_ABD_001_110.npz")
    box, click = np.array([300, 250, 420, 380]), dict(points=[[360, 310]], labels=[1])
    shipped, installed = Segmenter("litemedsam", threads=2), Segmenter(str(weights / "litemedsam"), threads=2)
    for segmenter in (shipped, installed):  # sha256-checked
        segmenter.set_image(case["imgs"])
    box_masks = [segmenter.predict(box=box)[0] for segmenter in (shipped, installed)]
    assert dice(box_masks[0], box_masks[1]) > 0.9  # two small steps held to the frozen box answer
    assert not np.allclose(shipped.predict(box=box, **click)[2], installed.predict(box=box, **click)[2])
    Segmenter(str(weights / "effvit-s-hr"), threads=2)  # its manifest checks out against the replaced file


@pytest.fixture(scope="module")
def student_click_head_run(tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("student-click-head")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.05", "--threads", "2",
            "--train", "click-head", "--steps", "2", "--student-bundle", "effvit-s-hr", "--init-bundle", "effvit-s-hr"]
    assert train_interactive.main(args) == 0
    return folder


def test_student_bundle_embeddings_are_its_encoders_answer_to_the_cached_view(tiny_cache):
    from imis_lite.predictor import Segmenter

    student = train_interactive.Embeddings(tiny_cache, None, "effvit-s-hr")(np.array([0, 1])).numpy()
    teacher = train_interactive.Embeddings(tiny_cache, None)(np.array([0, 1])).numpy()
    assert student.shape == teacher.shape == (2, 256, 64, 64)
    assert not np.allclose(student, teacher, atol=0.05)  # the student's, not the cached teacher's
    runtime = Segmenter("effvit-s-hr", threads=2)
    image = tiny_cache["images"][1].astype(np.float32) / 255.0
    expected = runtime.encoder.run({"image": image[None]})["image_embeddings"][0]
    assert np.allclose(student[1], expected, atol=1e-5)


def test_a_student_click_head_goes_to_the_student_alone_and_leaves_the_teachers_decoder(student_click_head_run,
                                                                                        tmp_path):
    from imis_lite.predictor import Segmenter

    from .conftest import load_case

    weights = tmp_path / "weights"
    for name in ("litemedsam", "effvit-s-hr"):
        shutil.copytree(shipped_weights_dir() / name, weights / name)
    teacher_decoder = sha256_of(weights / "litemedsam" / "decoder.onnx")
    assert export_interactive.main(["--run", str(student_click_head_run), "--bundle", str(weights / "effvit-s-hr")]) == 0
    manifest = json.loads((weights / "effvit-s-hr" / "manifest.json").read_text())
    assert {name for files in manifest["variants"].values() for f in files.values() for name in f["decoder"]} == {"decoder.onnx"}
    assert not any(name.startswith("../") for name in manifest["files"])
    assert "--student-bundle effvit-s-hr" in manifest["interactive"]["command"]
    assert manifest["interactive"]["embeddings"].startswith("student bundle effvit-s-hr")
    assert sha256_of(weights / "litemedsam" / "decoder.onnx") == teacher_decoder
    case = load_case("cases_2d/btcv_ABD_001_110.npz")
    box, click = np.array([300, 250, 420, 380]), dict(points=[[360, 310]], labels=[1])
    for name, clicks_change in (("litemedsam", False), ("effvit-s-hr", True)):
        shipped, installed = Segmenter(name, threads=2), Segmenter(str(weights / name), threads=2)  # sha256-checked
        for segmenter in (shipped, installed):
            segmenter.set_image(case["imgs"])
        assert np.array_equal(shipped.predict(box=box)[2], installed.predict(box=box)[2])
        same_clicks = np.array_equal(shipped.predict(box=box, **click)[2], installed.predict(box=box, **click)[2])
        assert same_clicks != clicks_change


def test_box_distillation_scores_the_decoders_box_answer_against_the_teachers(tiny_cache, teacher):
    from imis_lite.distill.train import mask_loss

    views = np.array([0, 1])
    teacher_embedding = train_interactive.Embeddings(tiny_cache, None)(views)
    student_embedding = train_interactive.Embeddings(tiny_cache, None, "effvit-s-hr")(views)
    truth = np.zeros((2, 256, 256), bool)
    truth[:, 60:140, 80:170] = True
    interaction = train_interactive.Interaction(teacher)
    with torch.no_grad():
        itself, from_student = (train_interactive.box_distillation(
            interaction, interaction, embedding, teacher_embedding, truth, np.random.default_rng(0), 4.0)
            for embedding in (teacher_embedding, student_embedding))
        boxes = torch.from_numpy(np.stack([train_interactive.region_prompts(r, r.shape, np.random.default_rng(0))[0]
                                           for r in truth[:1]]))
        answer = interaction(teacher_embedding[:1], boxes, None, None, None)
    assert itself.item() < from_student.item()  # the teacher's own answer is the closest one
    rng = np.random.default_rng(0)
    first_box_only = train_interactive.box_distillation(interaction, interaction, teacher_embedding[:1],
                                                        teacher_embedding[:1], truth[:1], rng, 4.0)
    assert first_box_only.item() == pytest.approx(mask_loss(answer, answer, 4.0).mean().item(), rel=1e-5)


def test_box_truth_grades_the_box_answer_against_the_labelled_object(tiny_cache, teacher):
    views = np.array([0, 1])
    embedding = train_interactive.Embeddings(tiny_cache, None)(views)
    truth = np.zeros((2, 256, 256), bool)
    truth[:, 60:140, 80:170] = True
    interaction = train_interactive.Interaction(teacher)
    with torch.no_grad():
        graded = train_interactive.box_truth(interaction, embedding, truth, np.random.default_rng(3))
        rng = np.random.default_rng(3)
        boxes = torch.from_numpy(np.stack([train_interactive.region_prompts(r, r.shape, rng)[0] for r in truth]))
        answer = interaction(embedding, boxes, None, None, None)[:, 0]
        expected = train_interactive.mask_loss(answer, torch.from_numpy(truth.astype(np.float32)))
    assert graded.item() == pytest.approx(expected.item(), rel=1e-5)
    assert np.all(np.abs(boxes.numpy() - [80, 60, 169, 139]) <= 4)  # jittered as a user draws around the object


@pytest.mark.parametrize("target", ["teacher", "truth"])
def test_box_distillation_needs_a_student_and_the_whole_decoder(tiny_cache, tmp_path, target):
    args = ["--cache", str(tiny_cache.folder), "--out", str(tmp_path), "--box-target", target]
    with pytest.raises(SystemExit, match="--student-bundle"):
        train_interactive.main([*args, "--train", "decoder"])
    with pytest.raises(SystemExit, match="--train decoder"):
        train_interactive.main([*args, "--train", "click-head", "--student-bundle", "effvit-s-hr"])


def manifest_of(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def as_exported(student_bundle):
    """Put a copied student bundle back as ``export_student`` leaves it: reading the teacher's decoder file, its
    card saying so."""
    from imis_lite.distill.bundle_writer import rewrite_manifest
    from imis_lite.distill.model_card import OWN_DECODER_NOTE, SHARED_DECODER_NOTE

    manifest, shared = manifest_of(student_bundle), "../litemedsam/decoder.onnx"
    for files in (f for by_precision in manifest["variants"].values() for f in by_precision.values()):
        files["decoder"] = [shared]
    (student_bundle / "decoder.onnx").unlink()
    del manifest["files"]["decoder.onnx"]
    manifest["files"][shared] = manifest_of(student_bundle.parent / "litemedsam")["files"]["decoder.onnx"]
    card = student_bundle / "MODEL_CARD.md"
    card.write_text(card.read_text().replace(OWN_DECODER_NOTE, SHARED_DECODER_NOTE))
    rewrite_manifest(student_bundle, manifest)


@pytest.fixture(scope="module")
def student_decoder_run(tiny_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("student-decoder")
    args = ["--cache", str(tiny_cache.folder), "--out", str(folder), "--batch", "2", "--log-every", "1",
            "--validation-every", "3", "--validation-objects", "4", "--rounds", "2", "--lr", "0.01", "--threads", "2",
            "--train", "decoder", "--steps", "2", "--student-bundle", "effvit-s-hr", "--init-bundle", "litemedsam",
            "--box-target", "teacher", "--boundary-weight", "4"]
    assert train_interactive.main(args) == 0
    return folder


def test_a_student_decoder_starts_from_the_shipped_click_head_and_records_how_it_was_made(student_decoder_run,
                                                                                          shipped_teacher, tmp_path):
    from imis_lite.predictor import Segmenter

    from .conftest import load_case

    state = torch.load(student_decoder_run / "last.pt", map_location="cpu", weights_only=False)["net"]
    shipped = shipped_teacher[0].state_dict()
    head = "mask_decoder.output_hypernetworks_mlps.1.layers.0.weight"
    box_head = "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight"
    moved = (state[head] - shipped[head]).abs().max().item()
    assert 0 < moved < (state[head] - shipped[box_head]).abs().max().item()  # trained on from the shipped head
    weights = tmp_path / "weights"
    for name in ("litemedsam", "effvit-s-hr"):
        shutil.copytree(shipped_weights_dir() / name, weights / name)
    as_exported(weights / "effvit-s-hr")
    teacher_decoder = sha256_of(weights / "litemedsam" / "decoder.onnx")
    assert export_interactive.main(["--run", str(student_decoder_run), "--bundle", str(weights / "effvit-s-hr")]) == 0
    assert {name for files in manifest_of(weights / "effvit-s-hr")["variants"].values() for f in files.values()
            for name in f["decoder"]} == {"decoder.onnx"}
    record = manifest_of(weights / "effvit-s-hr")["interactive"]
    assert record["box_target"] == "teacher" and record["box_logit_max_change_random_inputs"] > 0
    assert "--box-target teacher --boundary-weight 4.0" in record["command"]
    assert "--init-bundle litemedsam" in record["command"]
    shipped_chain = json.loads((shipped_weights_dir() / "litemedsam" / "manifest.json").read_text())["interactive"]
    assert record["command"].startswith(shipped_chain["command"])  # the bundle it started from comes first
    card = (weights / "effvit-s-hr" / "MODEL_CARD.md").read_text()
    assert "distilled from the teacher's" in card
    assert "tuned for this encoder" in card and "decoder is LiteMedSAM's, unchanged" not in card
    assert sha256_of(weights / "litemedsam" / "decoder.onnx") == teacher_decoder
    case = load_case("cases_2d/btcv_ABD_001_110.npz")
    box = np.array([300, 250, 420, 380])
    answers = []
    for segmenter in (Segmenter("effvit-s-hr", threads=2), Segmenter(str(weights / "effvit-s-hr"), threads=2)):
        segmenter.set_image(case["imgs"])
        answers.append(segmenter.predict(box=box))
    assert not np.allclose(answers[0][2], answers[1][2])  # box answers come from the tuned decoder
    assert dice(answers[0][0], answers[1][0]) > 0.8  # two small steps


def test_teacher_objects_are_the_largest_part_of_the_teachers_answer_in_a_view(tiny_cache, teacher):
    from scipy import ndimage

    views = np.array([0, 1, 2])
    embedding = torch.from_numpy(tiny_cache["embeddings"][views].astype(np.float32))
    kept, objects = train_interactive.teacher_objects(train_interactive.Interaction(teacher), embedding,
                                                      tiny_cache["images"][views], np.random.default_rng(0))
    assert len(kept) and objects.shape == (len(kept), 256, 256) and objects.dtype == bool
    for mask in objects:
        assert mask.sum() >= 9 and ndimage.label(mask)[1] == 1  # one connected object, big enough to box


def test_teacher_objects_need_the_distilled_box_term(tiny_cache, tmp_path):
    with pytest.raises(SystemExit, match="--box-target teacher"):
        train_interactive.main(["--cache", str(tiny_cache.folder), "--out", str(tmp_path), "--train", "decoder",
                                "--student-bundle", "effvit-s-hr", "--teacher-objects"])
