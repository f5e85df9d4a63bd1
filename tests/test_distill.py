"""The distillation pipeline: student registry, teacher adapters, teacher cache, a training step, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from imis_lite.distill.student import STUDENTS, LinearAttentionNorm, LiteMLA, build_student, count_gflops, count_parameters

TEACHER_GFLOPS = 74.9


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_students_give_the_teachers_embedding_layout_at_a_fifteenth_of_its_cost(name):
    student = build_student(name).eval()
    with torch.no_grad():
        embedding = student(torch.rand(2, 3, 256, 256))
    assert embedding.shape == (2, 256, 64, 64)
    assert count_gflops(student) <= TEACHER_GFLOPS / 15
    assert 0.5e6 < count_parameters(student) < 20e6


def test_student_matches_a_768_channel_teacher():
    with torch.no_grad():
        assert build_student("effvit-s", out_channels=768).eval()(torch.rand(1, 3, 256, 256)).shape == (1, 768, 64, 64)


def test_unknown_student_lists_the_registry():
    with pytest.raises(ValueError, match="effvit-m, effvit-s"):
        build_student("effvit-xl")


def test_linear_attention_divides_in_fp32_under_autocast():
    attention = LiteMLA(32, 16).eval()
    seen = []
    attention.norm.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0].dtype, output.dtype)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attention(torch.rand(1, 32, 8, 8))
    assert seen and all(output == torch.float32 for _, output in seen)
    assert any(incoming == torch.bfloat16 for incoming, _ in seen)  # the products around it did run in bf16


def test_linear_attention_normaliser_is_a_weighted_mean_of_values():
    # numerator / denominator, broadcast over the value rows: 6 / 2 everywhere
    numerator, denominator = torch.full((1, 1, 4, 3), 6.0), torch.full((1, 1, 1, 3), 2.0)
    assert torch.allclose(LinearAttentionNorm()(numerator, denominator), torch.full((1, 1, 4, 3), 3.0), atol=1e-5)


def _save_state(model, path, prefix="", extra=None):
    state = {prefix + key: value for key, value in model.state_dict().items()}
    state.update(extra or {})
    torch.save({"model": state}, path)


def test_medsam_teacher_loads_a_vit_b_state_dict(tmp_path):
    from imis_lite.distill.teachers import MedSAMTeacher, import_torchvision

    import_torchvision()
    from segment_anything import sam_model_registry

    reference = sam_model_registry["vit_b"]()
    _save_state(reference, tmp_path / "medsam_vit_b.pth")
    teacher = MedSAMTeacher(tmp_path / "medsam_vit_b.pth")
    assert teacher.embedding_channels == 256
    assert torch.equal(teacher.net.image_encoder.patch_embed.proj.weight, reference.image_encoder.patch_embed.proj.weight)
    assert teacher.teacher_input(torch.rand(1, 3, 256, 256)).shape == (1, 3, 1024, 1024)
    assert not any(p.requires_grad for p in teacher.net.parameters())


def test_imisnet_teacher_loads_its_image_encoder_and_gives_768_channels(tmp_path):
    from imis_lite.distill.teachers import IMISEncoder, IMISNetTeacher

    encoder = IMISEncoder.build()
    _save_state(encoder, tmp_path / "IMISNet-B.pth", "image_encoder.", {"text_model.embeddings.weight": torch.zeros(3)})
    teacher = IMISNetTeacher(tmp_path / "IMISNet-B.pth")
    with torch.no_grad():
        features = teacher.net.image_encoder(torch.rand(1, 3, 64, 64))
    assert features.shape == (1, 768, 4, 4)
    assert torch.equal(teacher.net.image_encoder.neck[0].weight, encoder.neck[0].weight)


def test_teachers_refuse_a_missing_or_foreign_checkpoint(tmp_path):
    from imis_lite.distill.teachers import IMISNetTeacher, MedSAMTeacher

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        MedSAMTeacher(tmp_path / "absent.pth")
    torch.save({"mask_decoder.x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no 'image_encoder"):
        IMISNetTeacher(tmp_path / "other.pth")


def test_teacher_cache_holds_views_teacher_answers_and_prompts_inside_objects(tiny_cache):
    assert tiny_cache.complete == 6
    assert tiny_cache["embeddings"].shape == (6, 256, 64, 64)
    assert float(np.abs(tiny_cache["embeddings"][:6].astype(np.float32)).max()) > 0
    for index in range(6):
        mask, (x, y) = tiny_cache["masks"][index], tiny_cache["points"][index].astype(int)
        if mask.any():  # BTCV views carry organ labels: the click lies on a labelled pixel
            assert mask[y, x] > 0
        x0, y0, x1, y1 = tiny_cache["boxes"][index]
        assert 0 <= x0 < x1 <= 255 and 0 <= y0 < y1 <= 255


def test_teacher_cache_resumes_without_redoing_views(tiny_cache):
    from imis_lite.distill.teacher_cache import build_cache

    before = tiny_cache["embeddings"][:6].copy()
    again = build_cache(tiny_cache.folder, tiny_cache.meta["corpus"], "litemedsam", views=2,
                        license_classes=("permissive",), seed=0, limit=6)
    assert again.complete == 6 and np.array_equal(again["embeddings"][:6], before)


def test_a_few_training_steps_on_a_fixed_batch_lower_the_loss(tiny_cache):
    from imis_lite.distill.teachers import load_teacher
    from imis_lite.distill.train import Objective, load_batch

    torch.manual_seed(0)
    teacher = load_teacher("litemedsam", onnx_encoder=None)
    student = build_student("effvit-s")
    objective = Objective(teacher, embedding_scale=0.0115, prompt_weight=0.2)
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-3)
    batch = load_batch(tiny_cache, np.arange(4), torch.device("cpu"))
    losses = []
    for _ in range(6):
        terms = objective(student.train()(batch["images"]), batch, with_prompts=True)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(float(terms["total"]))
    assert losses[-1] < losses[0]


def test_training_command_resumes_and_export_matches_pytorch(tiny_cache, tmp_path):
    from imis_lite.distill import export_student, train

    run = tmp_path / "run"
    common = ["--cache", str(tiny_cache.folder), "--out", str(run), "--batch", "2", "--log-every", "1", "--validation-every", "3"]
    assert train.main([*common, "--steps", "2"]) == 0
    assert train.main([*common, "--steps", "3"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

    bundle = tmp_path / "weights" / "student"
    assert export_student.main(["--run", str(run), "--out", str(bundle), "--calibration-images", "4", "--validation-images", "3"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["parity"]["onnxruntime_fp32_embedding_max_abs_diff"] < 1e-3
    assert manifest["student"]["gflops"] <= TEACHER_GFLOPS / 15
    assert manifest["files"]["../litemedsam/decoder.onnx"]["sha256"]
    assert "permissive" in (bundle / "MODEL_CARD.md").read_text()
    from imis_lite.distill.export_interactive import SECTION

    from imis_lite.bundle import load_bundle
    teacher = load_bundle("litemedsam").manifest  # its decoder carries the trained click output: so must the student
    assert manifest["click_channel"] == teacher["click_channel"] and manifest["interactive"] == teacher["interactive"]
    assert manifest["files"]["prompt_encoder.npz"]["sha256"] == teacher["files"]["prompt_encoder.npz"]["sha256"]
    assert SECTION in (bundle / "MODEL_CARD.md").read_text()


def test_boundary_band_is_the_ring_between_dilation_and_erosion():
    from imis_lite.distill.train import boundary_band

    square = torch.zeros(1, 1, 64, 64)
    square[..., 20:40, 20:40] = 1
    band = boundary_band(square)  # 5-pixel window: 2 pixels either side of the edge
    assert band.sum() == 24 * 24 - 16 * 16
    assert band[0, 0, 30, 30] == 0 and band[0, 0, 20, 30] == 1 and band[0, 0, 18, 30] == 1 and band[0, 0, 17, 30] == 0


def test_boundary_weight_raises_the_loss_of_an_edge_error_more_than_of_an_interior_one():
    from imis_lite.distill.train import mask_loss

    teacher = torch.full((1, 1, 64, 64), -8.0)
    teacher[..., 20:40, 20:40] = 8.0
    edge_error, interior_error = teacher.clone(), teacher.clone()
    edge_error[..., 19, 20:40] = 8.0  # one row grown at the edge
    interior_error[..., 5, 20:40] = 8.0  # the same number of pixels wrong far from the object
    plain = [float(mask_loss(wrong, teacher)) for wrong in (edge_error, interior_error)]
    weighted = [float(mask_loss(wrong, teacher, boundary_weight=4.0)) for wrong in (edge_error, interior_error)]
    assert abs(plain[0] - plain[1]) < 0.02 * plain[0]
    assert weighted[0] > 1.5 * weighted[1]


def test_a_second_stage_pools_an_extra_cache_and_starts_from_the_first_stages_student(tiny_cache, tmp_path):
    from imis_lite.distill import train
    from imis_lite.distill.corpus import DEFAULT_CORPUS
    from imis_lite.distill.teacher_cache import build_cache

    extra = build_cache(tmp_path / "extra", DEFAULT_CORPUS.resolve(), "litemedsam", views=2,
                        license_classes=("permissive",), seed=1, limit=4, exclude_sources=("btcv_imis",))
    assert not any("btcv_imis" in path for path, _ in extra.meta["items"])
    pool = train.CacheSet([tiny_cache.folder, extra.folder], validation_every=3)
    training, validation = pool.split()
    assert set(training[:, 0]) == {0, 1} and len(training) + len(validation) == 6 + 4
    batch = pool.batch(training[[0, -1]], torch.device("cpu"))
    assert batch["images"].shape[0] == 2 and batch["embeddings"].shape[1:] == (256, 64, 64)

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--cache", str(tiny_cache.folder), "--batch", "2", "--log-every", "1", "--validation-every", "3"]
    assert train.main([*common, "--out", str(first), "--steps", "1"]) == 0
    assert train.main([*common, "--out", str(second), "--steps", "1", "--lr", "0", "--extra-cache", str(extra.folder),
                       "--init", str(first / "student.pt"), "--boundary-weight", "4", "--fresh-prompts",
                       "--teacher-objects", "--label-weight", "0.5"]) == 0
    before, after = torch.load(first / "student.pt"), torch.load(second / "student.pt")
    weights = [name for name in before if "running_" not in name and "num_batches" not in name]  # not BN statistics
    assert all(torch.equal(before[name], after[name]) for name in weights)  # lr 0: the init is what it saved
    record = json.loads((second / "log.jsonl").read_text())
    assert record["validation"]["box_dice_vs_teacher"] > 0
    config = json.loads((second / "config.json").read_text())
    assert config["extra_cache"] == [str(extra.folder)] and config["init"] == str(first / "student.pt")
    from imis_lite.distill.model_card import _train_command, training_stages
    assert training_stages(second) == [first, second]  # the model card lists both stages' commands
    assert "--extra-cache runs/extra --init runs/first/student.pt --out runs/second" in _train_command(config)
    assert _train_command(config).endswith("--boundary-weight 4.0 --fresh-prompts --teacher-objects --label-weight 0.5 --seed 0")
    with pytest.raises(SystemExit, match="--teacher-objects needs --fresh-prompts"):
        train.main([*common, "--out", str(tmp_path / "third"), "--steps", "1", "--teacher-objects"])
    with pytest.raises(SystemExit, match="--label-weight needs --fresh-prompts"):
        train.main([*common, "--out", str(tmp_path / "third"), "--steps", "1", "--label-weight", "1"])


def test_a_student_with_a_refiner_starts_as_the_student_without_one():
    from imis_lite.distill.train import load_init

    base, refined = build_student("effvit-s").eval(), build_student("effvit-s-hr").eval()
    load_init(refined, base.state_dict())
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(refined(image), base(image))  # the refiner's last convolution starts at zero
    with pytest.raises(SystemExit, match="does not fit"):
        load_init(refined, build_student("effvit-m").state_dict())


def test_training_the_refiner_alone_leaves_the_first_stage_untouched(tiny_cache, tmp_path):
    from imis_lite.distill import train
    from imis_lite.distill.model_card import _train_command

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--cache", str(tiny_cache.folder), "--batch", "2", "--log-every", "1", "--validation-every", "3"]
    assert train.main([*common, "--out", str(first), "--steps", "1"]) == 0
    assert train.main([*common, "--out", str(second), "--steps", "3", "--student", "effvit-s-hr", "--warmup", "1",
                       "--init", str(first / "student.pt"), "--train", "refiner"]) == 0
    before, after = torch.load(first / "student.pt"), torch.load(second / "student.pt")
    assert all(torch.equal(before[name], after[name]) for name in before)  # weights and batch-norm statistics
    assert after["refiner.output.weight"].abs().sum() > 0  # the refiner left zero
    config = json.loads((second / "config.json").read_text())
    assert "--init runs/first/student.pt --train refiner --out runs/second --student effvit-s-hr" in _train_command(config)
    with pytest.raises(SystemExit, match="needs a student with a refiner"):
        train.main([*common, "--out", str(tmp_path / "third"), "--steps", "1", "--train", "refiner"])


def test_fresh_prompts_land_on_a_labelled_object_and_carry_the_teachers_answer_to_them():
    from imis_lite.distill.teachers import decode_prompts, load_teacher
    from imis_lite.distill.train import Objective, fresh_prompts

    objective = Objective(load_teacher("litemedsam", onnx_encoder=None), embedding_scale=0.0115, prompt_weight=1.0)
    masks = torch.zeros(2, 256, 256, dtype=torch.uint8)
    masks[0, 100:140, 60:90] = 3  # view 0: one object; view 1: no label map
    cached = {"boxes": torch.tensor([[0.0, 0, 50, 50], [10, 10, 200, 200]]), "points": torch.tensor([[5.0, 5], [50, 50]])}
    batch = {"masks": masks, "embeddings": torch.randn(2, 256, 64, 64) * 0.1,
             "teacher_logits": torch.zeros(2, 2, 256, 256), **{k: v.clone() for k, v in cached.items()}}
    fresh_prompts(objective, batch, np.random.default_rng(0))
    box, (x, y) = batch["boxes"][0].numpy(), batch["points"][0].numpy().astype(int)
    assert np.all(np.abs(box - [60, 100, 89, 139]) <= 4)  # the object's box, a few pixels of jitter
    assert masks[0, y, x] == 3
    with torch.no_grad():
        expected = decode_prompts(objective.prompt_encoder, objective.mask_decoder, batch["embeddings"][:1],
                                  batch["boxes"][:1], batch["points"][:1])
    assert torch.allclose(batch["teacher_logits"][:1], expected)
    assert torch.equal(batch["boxes"][1], cached["boxes"][1]) and not batch["teacher_logits"][1].any()


def test_the_label_term_grades_the_box_answer_on_the_drawn_object_and_only_on_labelled_views():
    from imis_lite.distill.teachers import decode_prompts, load_teacher
    from imis_lite.distill.train import Objective, fresh_prompts, soft_mask_loss

    objective = Objective(load_teacher("litemedsam", onnx_encoder=None), embedding_scale=0.0115, prompt_weight=1.0,
                          label_weight=2.0)
    masks = torch.zeros(2, 256, 256, dtype=torch.uint8)
    masks[0, 100:140, 60:90] = 3
    masks[0, 10:30, 200:240] = 5  # two objects: the one drawn is the one graded
    batch = {"masks": masks, "embeddings": torch.randn(2, 256, 64, 64) * 0.1, "teacher_logits": torch.zeros(2, 2, 256, 256),
             "boxes": torch.tensor([[0.0, 0, 50, 50], [10, 10, 200, 200]]), "points": torch.tensor([[5.0, 5], [50, 50]])}
    fresh_prompts(objective, batch, np.random.default_rng(0))
    x, y = batch["points"][0].numpy().astype(int)
    assert torch.equal(batch["objects"][0], (masks[0] == masks[0, y, x]).float())
    assert batch["labelled"].tolist() == [True, False] and not batch["objects"][1].any()
    embedding = torch.randn(2, 256, 64, 64) * 0.1
    with torch.no_grad():
        terms = objective(embedding, batch, with_prompts=True)
        logits = decode_prompts(objective.prompt_encoder, objective.mask_decoder, embedding, batch["boxes"], batch["points"])
    expected = soft_mask_loss(logits[:1, :1], batch["objects"][:1, None], batch["objects"][:1, None]).mean()
    assert torch.isclose(terms["label"], expected)
    assert torch.isclose(terms["total"], terms["embedding"] + terms["box"] + 0.5 * terms["click"] + 2.0 * terms["label"])
    perfect = soft_mask_loss(batch["objects"][:1, None] * 40 - 20, batch["objects"][:1, None], batch["objects"][:1, None])
    assert float(perfect.mean()) < 0.01 < float(terms["label"])


def test_largest_part_and_content_shape_on_constructed_arrays():
    from imis_lite.distill.prompt_sampling import content_shape, largest_part

    mask = np.zeros((30, 40), bool)
    mask[2:5, 2:5] = True  # 9 pixels
    mask[10:20, 20:30] = True  # 100 pixels
    assert np.array_equal(largest_part(mask), np.pad(np.ones((10, 10), bool), ((10, 10), (20, 10))))
    assert largest_part(np.zeros((8, 8), bool)) is None
    assert largest_part(mask[:6, :6]) is not None and largest_part(mask[:6, :6], min_pixels=10) is None
    view = np.zeros((3, 256, 256), np.float32)
    view[1, :180, :97] = 0.5  # an image of 180 x 97 padded to 256 at the bottom and right
    view[:, 20:40, 10:30] = 0.0  # black inside the image does not shorten it
    assert content_shape(view) == (180, 97)


def test_teacher_object_prompts_frame_what_the_teacher_segments_in_a_view_without_labels(tiny_cache):
    from imis_lite.distill.prompt_sampling import content_shape, random_region, region_prompts, sample_labels
    from imis_lite.distill.teachers import decode_prompts, load_teacher
    from imis_lite.distill.train import Objective, fresh_prompts, load_batch
    from scipy import ndimage

    objective = Objective(load_teacher("litemedsam", onnx_encoder=None), embedding_scale=0.0115, prompt_weight=1.0)
    batch = load_batch(tiny_cache, np.arange(2), torch.device("cpu"))
    batch["masks"][1] = 0  # view 1 as an image without labels; view 0 keeps its organs
    cached_box = batch["boxes"][1].clone()
    fresh_prompts(objective, batch, np.random.default_rng(7), teacher_objects=True)

    # replay the draws: view 0's organ first, then view 1's random region inside its content
    rng, organs = np.random.default_rng(7), batch["masks"][0].numpy()
    region_prompts(organs == rng.choice(sample_labels(organs)), organs.shape, rng)
    region = random_region(content_shape(batch["images"][1].numpy()), rng)
    with torch.no_grad():
        answer = decode_prompts(objective.prompt_encoder, objective.mask_decoder, batch["embeddings"][1:],
                                torch.from_numpy(region[None]), torch.from_numpy((region[None, :2] + region[None, 2:]) / 2))
    parts, count = ndimage.label((answer[0, 0] > 0).numpy())
    assert count >= 1
    part = parts == 1 + np.argmax(np.bincount(parts.ravel())[1:])
    box, (x, y) = batch["boxes"][1].numpy(), batch["points"][1].numpy().astype(int)
    ys, xs = np.nonzero(part)
    assert np.all(np.abs(box - [xs.min(), ys.min(), xs.max(), ys.max()]) <= 4)  # that part's box, with jitter
    assert part[y, x] and not torch.equal(batch["boxes"][1], cached_box)
    with torch.no_grad():
        target = decode_prompts(objective.prompt_encoder, objective.mask_decoder, batch["embeddings"][1:],
                                batch["boxes"][1:], batch["points"][1:])
    assert torch.allclose(batch["teacher_logits"][1:], target, atol=1e-3)  # the teacher's answer to the new prompts
    assert batch["masks"][0][int(batch["points"][0, 1]), int(batch["points"][0, 0])] > 0  # view 0: on an organ


def test_a_users_folder_of_nifti_dicom_png_and_npz_becomes_training_slices(tmp_path):
    import cv2
    from imis_lite.distill.corpus import DEFAULT_CORPUS
    from imis_lite.distill.teacher_cache import build_cache
    from imis_lite.distill.user_images import read_user_folder

    from imis_lite.intensity import to_uint8

    from .phantoms import AFFINES, CUBOID, SHAPE, write_dicom_series, write_nifti

    folder = tmp_path / "scans"
    (folder / "series").mkdir(parents=True)
    data, truth = write_nifti(folder / "phantom.nii.gz", AFFINES["flipped"])
    write_dicom_series(folder / "series")
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[5:15, 40:55] = (200, 30, 10)
    cv2.imwrite(str(folder / "photo.png"), photo[:, :, ::-1])
    labels = np.zeros((30, 50), np.uint8)
    labels[10:20, 5:25] = 2
    np.savez(folder / "labelled.npz", imgs=np.where(labels > 0, 220, 30).astype(np.uint8), gts=labels)
    (folder / "notes.txt").write_text("not an image")

    images = read_user_folder(folder, slices_per_axis=4)
    by_file: dict[str, list] = {}
    for image in images:
        by_file.setdefault(image.path.name, []).append(image)
    assert sorted(by_file) == ["labelled.npz", "phantom.nii.gz", "photo.png", "series"]
    assert len(by_file["phantom.nii.gz"]) == len(by_file["series"]) == 3 * 4  # 4 slices along each axis
    axial = next(i for i in by_file["phantom.nii.gz"] if i.axis == 2 and CUBOID[2].start <= i.index < CUBOID[2].stop)
    expected = to_uint8(data, "other")[:, :, axial.index].T  # (y, x): what the runtime feeds the encoder
    assert np.array_equal(axial.image(), expected) and axial.image().shape == (SHAPE[1], SHAPE[0])
    assert np.array_equal(by_file["photo.png"][0].image(), photo)
    npz = by_file["labelled.npz"][0]
    assert npz.mask_path is not None and np.array_equal(npz.mask(), labels)
    assert by_file["phantom.nii.gz"][0].mask_path is None

    cache = build_cache(tmp_path / "cache", DEFAULT_CORPUS.resolve(), "litemedsam", views=1, license_classes=(),
                        seed=0, limit=3, user_folders=(folder,), slices_per_axis=4)
    assert cache.meta["license_classes"] == ["user"] and cache.complete == 3
    assert all(key.startswith("user/scans/") for key, _ in cache.meta["items"])
    assert np.abs(cache["embeddings"][:3].astype(np.float32)).sum() > 0


def test_exported_decoder_computes_the_positional_encoding_instead_of_storing_it(teacher, tmp_path):
    import onnx
    import onnxruntime as ort
    from imis_lite.distill.onnx_wrappers import export_decoder, sam_decoder_for_export

    wrapper = sam_decoder_for_export(teacher).eval()
    embedding = torch.randn(1, 256, 64, 64) * 0.1
    with torch.no_grad():
        assert torch.equal(wrapper.image_positional_encoding(embedding), teacher.prompt_encoder.get_dense_pe())
    path = tmp_path / "decoder.onnx"
    export_decoder(wrapper, (256, 64, 64), str(path))
    largest = max(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    assert largest < 256 * 64 * 64  # the (1, 256, 64, 64) encoding would be the file's largest tensor, 4.2 MB
    sparse, dense = torch.randn(2, 3, 256), torch.randn(2, 256, 64, 64) * 0.1
    with torch.no_grad():
        expected, _ = teacher.mask_decoder.predict_masks(embedding, teacher.prompt_encoder.get_dense_pe(), sparse, dense)
    feeds = {"image_embeddings": embedding.numpy(), "sparse_prompt": sparse.numpy(), "dense_prompt": dense.numpy()}
    logits, _ = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(logits - expected.numpy()).max() < 1e-3


def test_a_shipped_students_onnx_reads_back_into_pytorch_with_its_answers():
    import onnxruntime
    from imis_lite.distill.corpus import DEFAULT_CORPUS, read_corpus
    from imis_lite.distill.student_readback import student_from_onnx

    from imis_lite.bundle import load_bundle
    from imis_lite.preprocess import encoder_input

    encoder = load_bundle("effvit-s-hr").verified_path("encoder.onnx")
    student = student_from_onnx(encoder, "effvit-s-hr")
    image = next(i for i in read_corpus(DEFAULT_CORPUS.resolve()) if i.source == "kvasir_seg")
    tensor = encoder_input(image.image(), 256)[0]
    expected = onnxruntime.InferenceSession(str(encoder), providers=["CPUExecutionProvider"]).run(None, {"image": tensor})[0]
    with torch.no_grad():
        got = student(torch.from_numpy(tensor)).numpy()
    assert np.abs(got - expected).max() < 1e-5 * np.abs(expected).max()
    with pytest.raises(ValueError, match="not an export of this student"):
        student_from_onnx(encoder, "effvit-s")  # no refiner: fewer convolutions


def test_a_stage_started_from_a_bundles_onnx_keeps_its_folded_batch_norms(tiny_cache, tmp_path):
    from imis_lite.distill import train
    from imis_lite.distill.student_readback import student_from_onnx

    from imis_lite.bundle import load_bundle

    encoder = load_bundle("effvit-s-hr").verified_path("encoder.onnx")
    out = tmp_path / "from-bundle"
    assert train.main(["--cache", str(tiny_cache.folder), "--batch", "2", "--log-every", "1", "--validation-every", "3",
                       "--out", str(out), "--steps", "2", "--warmup", "1", "--student", "effvit-s-hr",
                       "--init", str(encoder)]) == 0
    start, trained = student_from_onnx(encoder, "effvit-s-hr").state_dict(), torch.load(out / "student.pt")
    statistics = [name for name in start if "running_" in name]
    assert statistics and all(torch.equal(start[name], trained[name]) for name in statistics)  # frozen, not batch stats
    assert not torch.equal(start["stem.0.0.weight"], trained["stem.0.0.weight"])  # the whole network trained
    from imis_lite.distill.model_card import _train_command, training_stages
    config = json.loads((out / "config.json").read_text())
    assert training_stages(out) == [out]  # the bundle is where the chain of runs starts
    assert f"--init {encoder}" in _train_command(config)
    assert any("--out runs/effvit-s-hr-fresh" in line for line in config["init_commands"])  # the bundle's own card
    assert config["frozen_norm"] and train.inherited_frozen_norm(out / "student.pt")  # and a stage after this one
    assert not train.inherited_frozen_norm(tmp_path / "elsewhere" / "student.pt")


def _torchrun(arguments: list[str]) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "imis_lite.distill.train", *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_under_torchrun_follow_one_process_with_the_same_global_batch_and_resume(tiny_cache, tmp_path):
    """gloo on the CPU, from the shipped student's ONNX (batch norms frozen, so the split batch is the same sum):
    the logged global loss of every step agrees with one process's, and a run stopped at step 2 and resumed
    lands on the same losses as the run that never stopped."""
    from imis_lite.distill import train

    from imis_lite.bundle import load_bundle

    encoder = load_bundle("effvit-s-hr").verified_path("encoder.onnx")
    common = ["--cache", str(tiny_cache.folder), "--batch", "4", "--steps", "4", "--warmup", "1", "--log-every", "1",
              "--validation-every", "3", "--student", "effvit-s-hr", "--init", str(encoder), "--prompt-weight", "1.0",
              "--prompt-every", "2", "--checkpoint-every", "1", "--source-power", "1.0", "--threads", "1"]
    single, pair, resumed = tmp_path / "single", tmp_path / "pair", tmp_path / "resumed"
    assert train.main([*common, "--out", str(single)]) == 0
    _torchrun([*common, "--out", str(pair)])
    _torchrun([*common, "--out", str(resumed), "--stop-at", "2"])
    assert not (resumed / "student.pt").exists() and (resumed / "last.pt").is_file()  # stopped, not finished
    _torchrun([*common, "--out", str(resumed)])

    def losses(run):
        return [(r["step"], r["total"], r.get("box")) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]

    expected = losses(single)
    assert [step for step, _, _ in expected] == [1, 2, 3, 4] and expected[0][2] is not None  # a mask term at step 1
    for run in (pair, resumed):
        got = losses(run)
        assert [step for step, _, _ in got] == [1, 2, 3, 4]
        assert np.allclose([t for _, t, _ in got], [t for _, t, _ in expected], rtol=2e-3, atol=1e-4), (got, expected)
    assert json.loads((pair / "config.json").read_text())["world_size"] == 2
    from imis_lite.distill.student_readback import student_from_onnx
    start = student_from_onnx(encoder, "effvit-s-hr").state_dict()
    one, two = torch.load(single / "student.pt"), torch.load(pair / "student.pt")
    moved = sum(float((one[k].float() - start[k].float()).abs().sum()) for k in one)
    apart = sum(float((one[k].float() - two[k].float()).abs().sum()) for k in one)
    assert moved > 0 and apart < 0.05 * moved, (apart, moved)  # Adam's steps agree, up to float summation order


@pytest.mark.parametrize("name", ["compact-xs", "compact-s"])
def test_compact_decoders_cost_a_fraction_of_the_sam_decoder_and_export_as_they_compute(name, teacher, tmp_path):
    import types

    import onnxruntime as ort
    from imis_lite.distill.onnx_wrappers import export_decoder, sam_decoder_for_export
    from imis_lite.distill.student_decoder import build_decoder

    decoder = build_decoder(name).eval()
    assert count_parameters(decoder) * 4 < count_parameters(teacher.mask_decoder)
    wrapper = sam_decoder_for_export(types.SimpleNamespace(mask_decoder=decoder, prompt_encoder=teacher.prompt_encoder)).eval()
    path = tmp_path / "decoder.onnx"
    export_decoder(wrapper, (256, 64, 64), str(path))
    assert path.stat().st_size < 5 * 2**20
    embedding, sparse, dense = torch.randn(1, 256, 64, 64) * 0.1, torch.randn(2, 3, 256), torch.randn(2, 256, 64, 64) * 0.1
    with torch.no_grad():
        position = decoder.position_tokens(wrapper.image_positional_encoding(embedding))
        expected_logits, expected_iou = decoder.predict_all(embedding, position, sparse, dense)
    feeds = {"image_embeddings": embedding.numpy(), "sparse_prompt": sparse.numpy(), "dense_prompt": dense.numpy()}
    logits, iou = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert logits.shape == (2, 4, 256, 256) and iou.shape == (2, 4)
    assert np.abs(logits - expected_logits.numpy()).max() < 1e-3 and np.abs(iou - expected_iou.numpy()).max() < 1e-4


def test_decoder_training_resumes_and_its_export_matches_pytorch(tiny_cache, tmp_path):
    from imis_lite.distill import export_decoder, train_decoder

    run = tmp_path / "run"
    common = ["--cache", str(tiny_cache.folder), "--student-bundle", "effvit-s-hr", "--decoder", "pooled-sam-2", "--out", str(run),
              "--batch", "2", "--validation-every", "3", "--validation-objects", "2", "--checkpoint-every", "1", "--log-every", "1",
              "--validate-every", "100", "--threads", "2"]
    assert train_decoder.main(common + ["--steps", "2"]) == 0
    assert train_decoder.main(common + ["--steps", "3"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps[0] == 0 and steps[-1] == 3 and steps.count(2) == 1
    out = tmp_path / "effvit-s-hr-compact"
    assert export_decoder.main(["--run", str(run), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["decoder"]["architecture"] == "pooled-sam-2" and manifest["point_first"] == "multimask"
    assert manifest["decoder_parity"]["onnxruntime_fp32_logit_max_abs_diff"] < 1e-3


def test_a_pooled_sam_decoder_starts_where_the_bundles_decoder_stands_and_exports_as_it_computes(tmp_path):
    """Built from effvit-s-hr's own decoder, before any training, its box answer on the shipped CT's liver slice
    is the bundle decoder's answer read from pooled tokens (a known answer up to pooling), and its ONNX file
    computes what PyTorch does."""
    import types

    import onnxruntime as ort
    from imis_lite.distill.onnx_wrappers import export_decoder, sam_decoder_for_export
    from imis_lite.distill.reference import shipped_litemedsam
    from imis_lite.distill.student_decoder import build_decoder

    from imis_lite.bundle import load_bundle
    from imis_lite.demo import sample_path
    from imis_lite.io import read_scan
    from imis_lite.job import model_volume
    from imis_lite.metrics import dice
    from imis_lite.predictor import Segmenter

    net, _ = shipped_litemedsam(load_bundle("effvit-s-hr").root)
    pooled = build_decoder("pooled-sam-2", net.mask_decoder).eval()
    segmenter = Segmenter("effvit-s-hr", threads=2)
    scan = read_scan(sample_path("example_ct_sm.nii.gz"))
    segmenter.set_image(model_volume(scan, None, None)[:, :, 15].T)
    box = np.array([[41.0, 25.0, 105.0, 86.0]])  # the README's liver box: x = i, the column of the slice shown
    sparse, dense = segmenter.prompt_encoder.encode(boxes=segmenter._current.geometry.apply_boxes(box))
    feeds = {"image_embeddings": segmenter._current.embedding, "sparse_prompt": sparse, "dense_prompt": dense}
    answers = {}
    for name, decoder in (("bundle", net.mask_decoder), ("pooled", pooled)):
        wrapper = sam_decoder_for_export(types.SimpleNamespace(mask_decoder=decoder, prompt_encoder=net.prompt_encoder)).eval()
        path = tmp_path / f"{name}.onnx"
        export_decoder(wrapper, (256, 64, 64), str(path))
        logits, _ = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
        with torch.no_grad():
            expected, _ = wrapper(*(torch.from_numpy(feeds[k]) for k in ("image_embeddings", "sparse_prompt", "dense_prompt")))
        assert np.abs(logits - expected.numpy()).max() < 1e-3
        answers[name] = logits[0, 0] > 0
    assert answers["bundle"].sum() > 1000
    assert 0.85 < dice(answers["pooled"], answers["bundle"]) < 1.0


def test_a_pooled_sam_decoder_read_at_256_starts_as_the_128_read_out_upsampled_to_nearest(teacher):
    """The third up-sampling starts as nearest-neighbour: each 2x2 block of its logits holds one value of the 128
    read-out, and the masks agree with the bilinear read-out of the same decoder but at edges."""
    from imis_lite.distill.student_decoder import build_decoder

    at_128 = build_decoder("pooled-sam-2", teacher.mask_decoder).eval()
    at_256 = build_decoder("pooled-sam-2-256", teacher.mask_decoder).eval()
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(1, 256, 64, 64, generator=generator) * 0.3
    sparse, dense = teacher.prompt_encoder(points=None, boxes=torch.tensor([[60.0, 70.0, 180.0, 200.0]]), masks=None)
    position = at_128.position_tokens(teacher.prompt_encoder.get_dense_pe())
    with torch.no_grad():
        bilinear, _ = at_128.predict_all(embedding, position, sparse, dense)
        nearest, _ = at_256.predict_all(embedding, position, sparse, dense)
    assert torch.equal(nearest[..., ::2, ::2], nearest[..., 1::2, 1::2])
    assert ((bilinear > 0) == (nearest > 0)).float().mean() > 0.98


def test_model_card_counts_an_image_once_however_many_caches_hold_it():
    from imis_lite.distill.corpus import DEFAULT_CORPUS
    from imis_lite.distill.model_card import source_table

    corpus = str(DEFAULT_CORPUS.resolve())
    plain = {"corpus": corpus, "items": [["images/btcv_imis/ABD_001_100.png", 0], ["images/hc18/000_HC.png", 0]]}
    more_views = {"corpus": corpus, "items": [["images/btcv_imis/ABD_001_100.png", 1], ["images/btcv_imis/ABD_001_100.png", 2]]}
    table = source_table([plain, more_views], [2, 2])
    assert "| permissive | btcv_imis | CT | 1 | 0 |" in table, table
