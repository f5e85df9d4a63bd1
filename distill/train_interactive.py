"""Teach the prompt path to correct: simulated click rounds on cached embeddings, image encoder frozen.

    python -m imis_lite.distill.train_interactive --cache runs/cache-litemedsam --out runs/interactive-litemedsam
    python -m imis_lite.distill.train_interactive --cache runs/cache-litemedsam --student-bundle effvit-s-hr \\
        --out runs/interactive-effvit-s-hr

Each step plays one IMIS-style interaction per object: a (jittered) box or one interior click, then rounds of
clicks at the centre of the largest error region (the benchmark's protocol), each given all clicks so far and
the previous round's logits; the graded round is drawn at random. A third kind teaches the mask input to act
as a prior, as 3D propagation uses it: a box plus a distorted copy of the object.
``--train prompt`` trains only the point and mask-input parameters (box answers stay bit-identical);
``click-head`` also the hypernetwork of the decoder's second mask output, which clicks and mask input read;
``decoder`` the whole decoder, its box answers held to the frozen decoder's (``--box-weight``) or, for a
student (``--student-bundle``/``--student-run``, trained on the student's own embeddings of the cached views),
distilled from the teacher's answers on its own embeddings (``--box-target teacher``). ``--init-bundle``
starts from a shipped bundle's decoder and click head; ``--init`` from an earlier run. ``export_interactive``
then gives the bundle its decoder file. Ground truth: the corpus label maps in the cache (never
../shared/data). Seeded and resumable (``last.pt``), on CPU or CUDA. What each option measured:
docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from imis_lite.bundle import load_bundle
from imis_lite.corrections import click_disc, ignores_click, local_update
from imis_lite.metrics import dice
from imis_lite.protocol import next_click

from .prompt_sampling import content_shape, largest_part, random_region, region_prompts
from .reference import shipped_litemedsam
from .teacher_cache import TeacherCache
from .teachers import load_litemedsam
from .train import learning_rate, split_items
from .train import mask_loss as distillation_mask_loss

log = logging.getLogger("imis_lite.distill")

MIN_OBJECT_PIXELS = 16
EPISODES = ("box", "click", "prior")
TRAINED = ("prompt", "click-head", "decoder")
BOX_TARGETS = ("frozen", "teacher", "truth")
CLICK_CHANNEL = 1  # the mask output that ``--train click-head`` teaches to answer clicks and mask input
WARMUP = 20  # steps of linear learning-rate warm-up
SHARED_LR_SCALE = 0.1  # ``--train decoder``: the pretrained layers a box shares, relative to --lr


def prompt_parameters(prompt_encoder) -> list[torch.nn.Parameter]:
    """What clicks and mask input use and a box-only prompt does not."""
    embeddings = prompt_encoder.point_embeddings
    return [embeddings[0].weight, embeddings[1].weight, prompt_encoder.not_a_point_embed.weight,
            *prompt_encoder.mask_downscaling.parameters()]


def click_head(mask_decoder) -> torch.nn.Module:
    return mask_decoder.output_hypernetworks_mlps[CLICK_CHANNEL]


def trainable(net, train: str, trained_click_head: bool = False) -> list[dict]:
    """Parameter groups of what ``--train`` names, each with its share of the learning rate: the pretrained
    layers every prompt shares move ten times slower than the prompt path and the click head, which starts
    as a copy of the box head unless ``net`` comes with one trained (``--init-bundle``)."""
    groups = [{"params": prompt_parameters(net.prompt_encoder), "lr_scale": 1.0}]
    if train != "prompt":
        head = click_head(net.mask_decoder)
        if not trained_click_head:
            head.load_state_dict(net.mask_decoder.output_hypernetworks_mlps[0].state_dict())
        groups[0]["params"] += list(head.parameters())
    if train == "decoder":
        in_head = {id(parameter) for parameter in head.parameters()}
        shared = [parameter for parameter in net.mask_decoder.parameters() if id(parameter) not in in_head]
        groups.append({"params": shared, "lr_scale": SHARED_LR_SCALE})
    return groups


def list_objects(cache: TeacherCache, items: np.ndarray) -> np.ndarray:
    """(view, label) rows for every labelled object of at least MIN_OBJECT_PIXELS in the given views."""
    rows = []
    for view in items:
        labels, counts = np.unique(cache["masks"][view], return_counts=True)
        rows += [(view, label) for label, count in zip(labels, counts) if label and count >= MIN_OBJECT_PIXELS]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def distorted_logits(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logits (+-8) of the object shifted a few pixels and grown or shrunk: a neighbouring slice's answer."""
    shift = rng.integers(-6, 7, 2)
    moved = np.roll(region.astype(np.uint8), tuple(shift), axis=(0, 1))
    radius = int(rng.integers(1, 6))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    moved = cv2.dilate(moved, kernel) if rng.random() < 0.5 else cv2.erode(moved, kernel)
    return np.where(moved > 0, 8.0, -8.0).astype(np.float32)


class Interaction:
    """LiteMedSAM's prompt encoder and mask decoder, prompted the way the runtime prompts them."""

    def __init__(self, net, click_channel: bool = False) -> None:
        self.prompt_encoder, self.mask_decoder = net.prompt_encoder, net.mask_decoder
        self.click_channel = click_channel

    def __call__(self, embedding, boxes, points, labels, mask_input) -> torch.Tensor:
        sparse, dense = self.prompt_encoder(
            points=None if points is None else (points, labels), boxes=boxes, masks=mask_input)
        corrective = self.click_channel and (points is not None or mask_input is not None)
        logits, _ = self.mask_decoder(image_embeddings=embedding, image_pe=self.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=corrective)
        return logits[:, CLICK_CHANNEL - 1:CLICK_CHANNEL] if corrective else logits  # multimask gives channels 1-3


def play(interaction: Interaction, embedding: torch.Tensor, truth: np.ndarray, episode: str, graded_round: int,
         rng: np.random.Generator, local: bool = False) -> tuple[torch.Tensor, np.ndarray | None]:
    """Logits (B, 1, 256, 256) of round ``graded_round`` of one interaction per object, and the weight map
    (B, 256, 256) of where the runtime would take that round's answer (``click_reach``; None on round 0);
    earlier rounds run without gradient and only place clicks. ``local``: as the runtime shows them, each
    round's answer is kept only where it reaches its click (asked once more when it ignores the click) and
    the next click is placed on that mask; otherwise on the decoder's whole answer."""
    batch = len(truth)
    starts = [region_prompts(region, region.shape, rng) for region in truth]
    boxes = torch.from_numpy(np.stack([box for box, _ in starts])) if episode != "click" else None
    clicks = [[(float(p[0]), float(p[1]), 1)] for _, p in starts] if episode == "click" else [[] for _ in range(batch)]
    mask_input = None
    if episode == "prior":
        mask_input = torch.from_numpy(np.stack([distorted_logits(region, rng) for region in truth]))[:, None]
    shown = None
    for round_number in range(graded_round + 1):
        points, labels = click_tensors(clicks) if clicks[0] else (None, None)
        graded = round_number == graded_round
        with torch.set_grad_enabled(graded and torch.is_grad_enabled()):
            logits = interaction(embedding, boxes, points, labels, mask_input)
        if graded:
            reach = click_reach(shown, clicks) if shown is not None and clicks[0] else None
            return logits, reach
        proposed = (logits[:, 0] > 0).numpy()
        if local and shown is not None and clicks[0]:
            logits, proposed = ask_again(interaction, embedding, boxes, clicks, logits, proposed)
            proposed = np.stack([local_update(before, answer, *row[-1])
                                 for before, answer, row in zip(shown, proposed, clicks)])
        shown = proposed
        for row, prediction, region in zip(clicks, shown, truth):
            row.append(corrective_click(prediction, region, row))
        mask_input = logits.detach()
    raise AssertionError("unreachable")


def ask_again(interaction: Interaction, embedding: torch.Tensor, boxes: torch.Tensor | None, rows: list[list],
              logits: torch.Tensor, proposed: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """As the runtime: objects whose answer ignores the last click are asked once more from their own logits."""
    ignored = torch.tensor([ignores_click(answer, *row[-1]) for answer, row in zip(proposed, rows)])
    if ignored.any():
        with torch.no_grad():
            again = interaction(embedding, boxes, *click_tensors(rows), logits.detach())
        logits = torch.where(ignored[:, None, None, None], again, logits.detach())
        proposed = (logits[:, 0] > 0).numpy()
    return logits, proposed


def click_reach(shown: np.ndarray, rows: list[list]) -> np.ndarray:
    """(B, H, W) 1.0 inside the disc around each object's last click that the runtime's ``local_update``
    takes the answer from (``corrections.click_disc``), else 0."""
    return np.stack([click_disc(before, *row[-1]) for before, row in zip(shown, rows)]).astype(np.float32)


def click_tensors(rows: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2) coordinates and (B, K) labels of each object's clicks so far."""
    points = torch.tensor([[c[:2] for c in row] for row in rows], dtype=torch.float32)
    labels = torch.tensor([[c[2] for c in row] for row in rows], dtype=torch.int64)
    return points, labels


def corrective_click(prediction: np.ndarray, region: np.ndarray, row: list) -> tuple[float, float, int]:
    """The protocol's next click; on a perfect mask the last click again (rows of a batch keep one length)."""
    click = next_click(prediction, region)
    if click is None:
        click = row[-1] if row else next_click(np.zeros_like(region), region)
    return click


def jittered_boxes(truth: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """(N, 4) boxes around each object, jittered as users draw them (``region_prompts``)."""
    return torch.from_numpy(np.stack([region_prompts(region, region.shape, rng)[0] for region in truth]))


def box_drift(interaction: Interaction, frozen: Interaction, embedding: torch.Tensor, truth: np.ndarray,
              rng: np.random.Generator) -> torch.Tensor:
    """Mean squared difference of the box-only logits from the frozen decoder's: what keeps a box's answer
    where it was while the layers it shares with the click output learn."""
    boxes = jittered_boxes(truth, rng)
    with torch.no_grad():
        reference = frozen(embedding, boxes, None, None, None)
    return F.mse_loss(interaction(embedding, boxes, None, None, None), reference)


def box_distillation(interaction: Interaction, frozen: Interaction, embedding: torch.Tensor,
                     teacher_embedding: torch.Tensor, truth: np.ndarray, rng: np.random.Generator,
                     boundary_weight: float) -> torch.Tensor:
    """The distillation mask loss (``train.mask_loss``: BCE against the teacher's probabilities, its edge band
    up-weighted, + soft Dice) of the box-only answer from the student's embedding against the teacher's whole
    answer (its own embedding through the frozen decoder): a decoder tuned to a student's embeddings learns to
    draw the teacher's boundary from them, which the frozen decoder, fed a student's coarser embedding, does
    not."""
    boxes = jittered_boxes(truth, rng)
    with torch.no_grad():
        reference = frozen(teacher_embedding, boxes, None, None, None)
    return distillation_mask_loss(interaction(embedding, boxes, None, None, None), reference, boundary_weight).mean()


def box_truth(interaction: Interaction, embedding: torch.Tensor, truth: np.ndarray,
              rng: np.random.Generator) -> torch.Tensor:
    """``mask_loss`` of the box-only answer to a jittered box against the labelled object itself: the teacher
    draws some organs past their edges (bowel and kidney inside a liver's box), and a decoder graded on the
    label map learns the boundary the label draws, not the teacher's."""
    boxes = jittered_boxes(truth, rng)
    return mask_loss(interaction(embedding, boxes, None, None, None)[:, 0], torch.from_numpy(truth.astype(np.float32)))


@torch.no_grad()
def teacher_objects(frozen: Interaction, teacher_embedding: torch.Tensor, images: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, object masks): the largest part of the teacher's answer to a random region of each view, as
    ``train.teacher_object_prompts`` gives the encoder's mask term; views whose answer is empty are dropped.
    For views without a label map (the corpus labels only CT and endoscopy), so the distilled box answers also
    cover what the label maps lack."""
    regions = np.stack([random_region(content_shape(image), rng) for image in images])
    answers = (frozen(teacher_embedding, torch.from_numpy(regions), None, None, None)[:, 0] > 0).numpy()
    parts = [largest_part(answer) for answer in answers]
    kept = np.array([row for row, part in enumerate(parts) if part is not None], dtype=np.int64)
    return kept, np.array([parts[row] for row in kept]).reshape(-1, *answers.shape[1:])


def mask_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice against the ground-truth object, averaged over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none").mean(dim=(1, 2))
    probability = torch.sigmoid(logits)
    dice = 1 - (2 * (probability * truth).sum(dim=(1, 2)) + 1) / (probability.sum(dim=(1, 2)) + truth.sum(dim=(1, 2)) + 1)
    return (bce + dice).mean()


def reach_loss(logits: torch.Tensor, truth: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
    """BCE against the ground truth inside each click's disc (``click_reach``): the part of the answer the
    runtime keeps, so the click's own neighbourhood is answered right."""
    bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    return ((bce * reach).sum(dim=(1, 2)) / reach.sum(dim=(1, 2)).clamp(min=1)).mean()


class Embeddings:
    """Encoder output per cached view: the teacher's, from the cache, or a distilled student's, computed from its
    training run (PyTorch) or from a shipped bundle's fp32 ONNX encoder (what the runtime feeds the decoder)."""

    def __init__(self, cache: TeacherCache, student_run: Path | None, student_bundle: str | None = None) -> None:
        self.cache, self.student, self.encoder = cache, None, None
        if student_run is not None:
            from .student import load_student

            self.student, _ = load_student(student_run)
        elif student_bundle is not None:
            from imis_lite.bundle import load_bundle
            from imis_lite.engines import create_engine

            bundle = load_bundle(student_bundle)
            model = bundle.verified_path(bundle.variant("onnxruntime", "fp32")["encoder"][0])
            self.encoder = create_engine("onnxruntime", model, threads=torch.get_num_threads())

    @torch.no_grad()
    def __call__(self, views: np.ndarray) -> torch.Tensor:
        if self.student is None and self.encoder is None:
            return torch.from_numpy(self.cache["embeddings"][views].astype(np.float32))
        images = self.cache["images"][views].astype(np.float32) / 255.0
        if self.encoder is not None:
            return torch.from_numpy(np.concatenate(
                [self.encoder.run({"image": image[None]})["image_embeddings"] for image in images]))
        return self.student(torch.from_numpy(images)).float()


def _truth(cache: TeacherCache, objects: np.ndarray) -> np.ndarray:
    return np.stack([cache["masks"][view] == label for view, label in objects])


def click_protocol(interaction: Interaction, embedding: torch.Tensor, boxes: torch.Tensor, truth: np.ndarray,
                   clicks: int, local: bool) -> np.ndarray:
    """(objects, clicks + 1) Dice after the box and after each click; ``local``: each answer kept near its
    click and asked once more when it ignores the click (``imis_lite.corrections``, as the runtime shows it),
    the next click placed on that."""
    logits = interaction(embedding, boxes, None, None, None)
    shown = (logits[:, 0] > 0).numpy()
    rows, history = [[] for _ in truth], [[dice(p, t) for p, t in zip(shown, truth)]]
    for _ in range(clicks):
        for row, prediction, region in zip(rows, shown, truth):
            row.append(corrective_click(prediction, region, row))
        logits = interaction(embedding, boxes, *click_tensors(rows), logits)
        proposed = (logits[:, 0] > 0).numpy()
        if local:
            logits, proposed = ask_again(interaction, embedding, boxes, rows, logits, proposed)
            proposed = np.stack([local_update(before, answer, *row[-1])
                                 for before, answer, row in zip(shown, proposed, rows)])
        shown = proposed
        history.append([dice(p, t) for p, t in zip(shown, truth)])
    return np.array(history).T


@torch.no_grad()
def evaluate(interaction: Interaction, embeddings: Embeddings, cache: TeacherCache, objects: np.ndarray,
             clicks: int, seed: int) -> dict[str, list[float]]:
    """Mean Dice after the box and after each click (the benchmark's protocol: the decoder's whole answer, and
    each answer kept near its click as the runtime does), and after a distorted prior."""
    rng = np.random.default_rng(seed)
    curves: dict[bool, list[np.ndarray]] = {False: [], True: []}
    prior = []
    for start in range(0, len(objects), 16):
        chunk = objects[start:start + 16]
        embedding, truth = embeddings(chunk[:, 0]), _truth(cache, chunk)
        boxes = torch.from_numpy(np.stack([region_prompts(r, r.shape, rng, max_jitter=0)[0] for r in truth]))
        for local, curve in curves.items():
            curve.append(click_protocol(interaction, embedding, boxes, truth, clicks, local))
        distorted = torch.from_numpy(np.stack([distorted_logits(r, rng) for r in truth]))[:, None]
        predicted = (interaction(embedding, boxes, None, None, distorted)[:, 0] > 0).numpy()
        prior += [dice(p, t) for p, t in zip(predicted, truth)]
    means = {local: [round(float(v), 4) for v in np.concatenate(curve).mean(axis=0)] for local, curve in curves.items()}
    return {"dsc_per_click": means[False], "dsc_per_click_local": means[True],
            "box_plus_prior": round(float(np.mean(prior)), 4), "objects": int(len(objects))}


def train(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = TeacherCache(args.cache)
    if cache.meta["teacher"] != "litemedsam":
        raise SystemExit("interactive training needs a cache of the litemedsam teacher (its decoder is the one shipped)")
    if args.teacher_objects and args.box_target == "frozen":
        raise SystemExit("--teacher-objects adds boxes to the box term: give --box-target teacher or truth")
    if args.box_target != "frozen" and (args.train != "decoder" or (args.student_run is None and args.student_bundle is None)):
        raise SystemExit(f"--box-target {args.box_target} tunes the whole decoder to a student: "
                         "give --train decoder and --student-bundle or --student-run")
    net, click_channel = shipped_litemedsam(load_bundle(args.init_bundle).root) if args.init_bundle else (load_litemedsam(), 0)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    groups = trainable(net, args.train, trained_click_head=click_channel == CLICK_CHANNEL)
    trained = [parameter for group in groups for parameter in group["params"]]
    for parameter in trained:
        parameter.requires_grad_(True)
    interaction = Interaction(net, click_channel=args.train != "prompt")
    frozen = Interaction(load_litemedsam()) if args.train == "decoder" else None
    embeddings = Embeddings(cache, args.student_run, args.student_bundle)
    views = min(cache.complete, args.max_views or cache.complete)
    train_views, validation_views = split_items(cache, views, args.validation_every)
    train_objects, validation_objects = list_objects(cache, train_views), list_objects(cache, validation_views)
    unlabelled = np.setdiff1d(train_views, train_objects[:, 0]) if args.teacher_objects else np.empty(0, np.int64)
    validation_objects = validation_objects[np.random.default_rng(args.seed).permutation(len(validation_objects))[:args.validation_objects]]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    checkpoint = out / "last.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
        log.info("resumed at step %d", step)
    elif args.init:
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["net"])
        log.info("started from %s", args.init)
    config = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "train_objects": int(len(train_objects)), "validation_objects": int(len(validation_objects)),
              "trained_parameters": int(sum(p.numel() for p in trained)), "cache_views": int(views)}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    if step == 0:
        record = {"step": 0, "validation": evaluate(interaction, embeddings, cache, validation_objects, args.rounds, args.seed)}
        (out / "log.jsonl").open("a").write(json.dumps(record) + "\n")
        log.info("%s", record)
    started = time.time() - elapsed
    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        for group in optimizer.param_groups:
            group["lr"] = group.get("lr_scale", 1.0) * learning_rate(step, args.steps, args.lr, args.warmup)
        episode = str(rng.choice(EPISODES, p=args.episode_mix))
        graded_round = int(rng.integers(1 if episode == "box" else 0, args.rounds + 1))  # a box alone trains nothing
        picked = train_objects[np.sort(rng.choice(len(train_objects), args.batch, replace=False))]
        truth = _truth(cache, picked)
        embedding = embeddings(picked[:, 0])
        logits, reach = play(interaction, embedding, truth, episode, graded_round, rng, local=args.local)
        target = torch.from_numpy(truth.astype(np.float32))
        loss = mask_loss(logits[:, 0], target)
        if args.reach_weight and reach is not None:
            loss = loss + args.reach_weight * reach_loss(logits[:, 0], target, torch.from_numpy(reach))
        if frozen is not None and args.box_target != "frozen":
            if args.box_target == "truth":
                drift = box_truth(interaction, embedding, truth, rng)
            else:
                teacher_embedding = torch.from_numpy(cache["embeddings"][picked[:, 0]].astype(np.float32))
                drift = box_distillation(interaction, frozen, embedding, teacher_embedding, truth, rng, args.boundary_weight)
            if len(unlabelled):
                views = np.sort(rng.choice(unlabelled, min(args.batch, len(unlabelled)), replace=False))
                view_teacher = torch.from_numpy(cache["embeddings"][views].astype(np.float32))
                kept, objects = teacher_objects(frozen, view_teacher, cache["images"][views], rng)
                if len(kept):
                    drift = (drift + box_distillation(interaction, frozen, embeddings(views[kept]), view_teacher[kept],
                                                      objects, rng, args.boundary_weight)) / 2
            loss = loss + args.box_weight * drift
        elif frozen is not None:
            drift = box_drift(interaction, frozen, embedding, truth, rng)
            loss = loss + args.box_weight * drift
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            record = {"step": step, "loss": round(loss.item(), 5), "episode": episode, "round": graded_round,
                      "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(time.time() - started, 1)}
            if frozen is not None:
                record["box_drift" if args.box_target == "frozen" else f"box_{args.box_target}"] = round(drift.item(), 5)
            if step % (args.log_every * 10) == 0 or step == args.steps:
                record["validation"] = evaluate(interaction, embeddings, cache, validation_objects, args.rounds, args.seed)
            (out / "log.jsonl").open("a").write(json.dumps(record) + "\n")
            log.info("%s", record)
        if step % args.checkpoint_every == 0 or step == args.steps:
            state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "elapsed_s": time.time() - started}
            torch.save(state, out / "last.tmp")
            os.replace(out / "last.tmp", checkpoint)
    return checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="a litemedsam teacher cache (distill.teacher_cache)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: last.pt (read by distill.export_interactive), log.jsonl")
    parser.add_argument("--max-views", type=int, help="use at most the first N views of the cache (as distill.train)")
    students = parser.add_mutually_exclusive_group()
    students.add_argument("--student-run", type=Path, help="train on this distilled student's embeddings instead")
    students.add_argument("--student-bundle", help="... or on a shipped student bundle's (name or folder; its fp32 ONNX encoder)")
    parser.add_argument("--train", choices=TRAINED, default="prompt",
                        help="the prompt path only, or also the decoder's click head (mask output 1), or the whole decoder")
    starts = parser.add_mutually_exclusive_group()
    starts.add_argument("--init", type=Path, help="a run's last.pt to start from (a second stage); ignored when resuming")
    starts.add_argument("--init-bundle",
                        help="start from a shipped litemedsam-decoder bundle's prompt encoder and decoder (name or folder), "
                             "its trained click head included; ignored when resuming")
    parser.add_argument("--local", action="store_true",
                        help="place each round's click on the mask the runtime shows (imis_lite.corrections), not the whole answer")
    parser.add_argument("--reach-weight", type=float, default=0.0,
                        help="weight of a BCE term inside the disc around the graded round's last click")
    parser.add_argument("--box-weight", type=float, default=1.0,
                        help="--train decoder: weight of the box-only term (see --box-target)")
    parser.add_argument("--box-target", choices=BOX_TARGETS, default="frozen",
                        help="--train decoder: hold box answers to the frozen decoder's on the same embedding (squared "
                             "logit drift), or, for a student, distil the teacher's answer from its own embedding")
    parser.add_argument("--teacher-objects", action="store_true",
                        help="--box-target teacher: also distil boxes on what the teacher segments in views without a label map")
    parser.add_argument("--boundary-weight", type=float, default=0.0,
                        help="--box-target teacher: up-weight the BCE in a band around the teacher's mask edge (as distill.train)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="clicks after the first prompt")
    parser.add_argument("--episode-mix", type=float, nargs=3, default=(0.5, 0.25, 0.25), metavar=("BOX", "CLICK", "PRIOR"))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--validation-every", type=int, default=25, help="hold out every N-th image (as distill.train)")
    parser.add_argument("--validation-objects", type=int, default=96)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
