"""Train a mask decoder of our own (``student_decoder``) on a student's embeddings of the cached views.

    python -m imis_lite.distill.train_decoder --cache runs/cache-v2 --max-views 1159 \\
        --student-bundle weights/effvit-s-hr --decoder pooled-sam-2 --out runs/pooled-sam-2

A ``compact`` decoder starts from scratch; a ``pooled-sam`` one from the student bundle's decoder, its
pretrained layers at ``--pretrained-lr-scale`` times the learning rate of the new skip.

The student bundle's prompt encoder is kept as it is (so the bundle's NumPy prompt path stays the same file) and
its own decoder is the box teacher: box answers are distilled from it on the same embedding, on labelled objects
and, for views without a label map, on the largest part of its answer to a random region. Each step also plays
one interaction per object, graded against the corpus label map:
  box     a jittered box, then corrective clicks at the largest error with the previous logits fed back;
  click   one interior click alone: the three candidates are graded by the best of them (SAM's rule) and the
          IoU head learns each candidate's IoU; later rounds as after a box;
  points  one to three foreground and up to four background clicks, no box, no mask;
  prior   a box and a distorted copy of the object as mask input, as 3D propagation gives it;
  first-click  one interior click alone, graded as ``click`` is at its first round (a stage that teaches
          point-first prompts weights it up).
Seeded and resumable (``last.pt``), on CPU or CUDA; ``export_decoder`` writes the bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from imis_lite.bundle import load_bundle
from imis_lite.metrics import dice
from imis_lite.protocol import centre_click

from .reference import shipped_litemedsam
from .student_decoder import DECODERS, CompactMaskDecoder, PooledSamDecoder, build_decoder, spec_record
from .teacher_cache import TeacherCache
from .train import learning_rate, split_items
from .train_interactive import Embeddings, Interaction, _truth, box_distillation, evaluate, list_objects, mask_loss, play, teacher_objects

log = logging.getLogger("imis_lite.distill")

EPISODES = ("box", "click", "points", "prior", "first-click")
MAX_POSITIVE, MAX_NEGATIVE = 3, 4
NEGATIVE_MARGIN = 24  # background clicks fall within this many pixels of the object's box


class CompactInteraction(Interaction):
    """The runtime's choice of output: a single click alone takes the candidate the IoU head rates best, every
    other prompt output 0."""

    def __init__(self, prompt_encoder, mask_decoder: CompactMaskDecoder | PooledSamDecoder) -> None:
        self.prompt_encoder, self.mask_decoder, self.click_channel = prompt_encoder, mask_decoder, False

    def candidates(self, embedding, points, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 256, 256) candidate logits and (B, 3) IoU estimates for a click alone."""
        sparse, dense = self.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        return self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True)

    def __call__(self, embedding, boxes, points, labels, mask_input) -> torch.Tensor:
        if boxes is None and mask_input is None and points is not None and points.shape[1] == 1:
            logits, iou = self.candidates(embedding, points, labels)
            return logits[torch.arange(len(logits)), iou.argmax(dim=1)][:, None]
        sparse, dense = self.prompt_encoder(points=None if points is None else (points, labels), boxes=boxes,
                                            masks=mask_input)
        logits, _ = self.mask_decoder(embedding, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False)
        return logits


class MemoEmbeddings:
    """A student's embeddings, computed once per view and kept in memory as float16 (1168 views: 2.4 GB)."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings, self.memo = embeddings, {}

    def __call__(self, views: np.ndarray) -> torch.Tensor:
        missing = [int(v) for v in views if int(v) not in self.memo]
        if missing:
            for view, embedding in zip(missing, self.embeddings(np.array(missing))):
                self.memo[view] = embedding.half()
        return torch.stack([self.memo[int(v)] for v in views]).float()


def scattered_clicks(truth: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2) and (B, K): one to three clicks inside each object (drawn towards its interior) and the rest,
    up to K, on background near it; K is one count for the batch."""
    count = int(rng.integers(2, MAX_POSITIVE + MAX_NEGATIVE + 1))
    points, labels = [], []
    for region in truth:
        positives = int(rng.integers(1, min(MAX_POSITIVE, count) + 1))
        ys, xs = np.nonzero(region)
        depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1][ys, xs] ** 2
        picks = rng.choice(len(xs), positives, p=depth / depth.sum())
        row = [(xs[p], ys[p], 1) for p in picks]
        height, width = region.shape
        x0, x1 = max(0, xs.min() - NEGATIVE_MARGIN), min(width - 1, xs.max() + NEGATIVE_MARGIN)
        y0, y1 = max(0, ys.min() - NEGATIVE_MARGIN), min(height - 1, ys.max() + NEGATIVE_MARGIN)
        while len(row) < count:
            x, y = int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1))
            row.append((x, y, 0) if not region[y, x] else row[int(rng.integers(positives))])
        points.append([r[:2] for r in row])
        labels.append([r[2] for r in row])
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def candidates_loss(logits: torch.Tensor, iou: torch.Tensor, truth: torch.Tensor, iou_weight: float) -> torch.Tensor:
    """SAM's multimask rule: only the best of the three candidates is graded (a click on a part or on the whole
    may each be right), and the IoU head learns every candidate's true IoU, so the runtime can choose."""
    bce = F.binary_cross_entropy_with_logits(logits, truth[:, None].expand_as(logits), reduction="none").mean(dim=(2, 3))
    probability = torch.sigmoid(logits)
    overlap = (probability * truth[:, None]).sum(dim=(2, 3))
    soft_dice = 1 - (2 * overlap + 1) / (probability.sum(dim=(2, 3)) + truth.sum(dim=(1, 2))[:, None] + 1)
    best = (bce + soft_dice).min(dim=1).values.mean()
    hard = (logits > 0).float()
    intersection = (hard * truth[:, None]).sum(dim=(2, 3))
    union = ((hard + truth[:, None]) > 0).float().sum(dim=(2, 3)).clamp(min=1)
    return best + iou_weight * F.mse_loss(iou, (intersection / union).detach())


@torch.no_grad()
def one_click_dice(interaction: Interaction, embeddings, cache: TeacherCache, objects: np.ndarray) -> float:
    """Mean Dice from one foreground click alone at each object's centre."""
    scores = []
    for start in range(0, len(objects), 16):
        chunk = objects[start:start + 16]
        truth = _truth(cache, chunk)
        points = torch.tensor([[centre_click(region)] for region in truth], dtype=torch.float32)
        logits = interaction(embeddings(chunk[:, 0]), None, points, torch.ones(len(truth), 1, dtype=torch.int64), None)
        scores += [dice(p, t) for p, t in zip((logits[:, 0] > 0).numpy(), truth)]
    return round(float(np.mean(scores)), 4)


def validation(interaction: Interaction, embeddings, cache: TeacherCache, objects: np.ndarray, rounds: int,
               seed: int) -> dict:
    record = evaluate(interaction, embeddings, cache, objects, rounds, seed)
    record["one_click"] = one_click_dice(interaction, embeddings, cache, objects)
    return record


def train(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = TeacherCache(args.cache)
    bundle = load_bundle(args.student_bundle)
    shipped, _ = shipped_litemedsam(bundle.root)
    for parameter in shipped.parameters():
        parameter.requires_grad_(False)
    decoder = build_decoder(args.decoder, shipped.mask_decoder)
    interaction = CompactInteraction(shipped.prompt_encoder, decoder)
    box_teacher = Interaction(shipped)
    embeddings = MemoEmbeddings(Embeddings(cache, None, str(bundle.root)))
    views = min(cache.complete, args.max_views or cache.complete)
    train_views, validation_views = split_items(cache, views, args.validation_every)
    train_objects, validation_objects = list_objects(cache, train_views), list_objects(cache, validation_views)
    unlabelled = np.setdiff1d(train_views, train_objects[:, 0])
    validation_objects = validation_objects[np.random.default_rng(args.seed).permutation(len(validation_objects))[:args.validation_objects]]
    optimizer = torch.optim.AdamW(parameter_groups(decoder, args.pretrained_lr_scale), lr=args.lr, weight_decay=1e-4)
    step, elapsed = 0, 0.0
    checkpoint = out / "last.pt"
    if args.init is not None and not checkpoint.is_file():
        missing, unexpected = decoder.load_state_dict(
            torch.load(args.init / "last.pt", map_location="cpu", weights_only=True)["decoder"], strict=False)
        if unexpected or any(not key.startswith("third_up.") for key in missing):
            raise SystemExit(f"{args.init} holds another decoder: missing {missing}, unexpected {unexpected}")
        log.info("started from %s (new: %s)", args.init, missing)
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        decoder.load_state_dict(state["decoder"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        log.info("resumed at step %d", step)
    config = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "decoder_spec": spec_record(args.decoder), "bundle": bundle.name,
              "train_objects": int(len(train_objects)), "unlabelled_views": int(len(unlabelled)),
              "validation_objects": int(len(validation_objects)),
              "trained_parameters": int(sum(p.numel() for p in decoder.parameters())), "cache_views": int(views)}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    logbook = out / "log.jsonl"
    if step == 0:
        record = {"step": 0, "bundle_decoder": validation(box_teacher, embeddings, cache, validation_objects,
                                                          args.rounds, args.seed),
                  "validation": validation(interaction, embeddings, cache, validation_objects, args.rounds, args.seed)}
        logbook.open("a").write(json.dumps(record) + "\n")
        log.info("%s", record)
    started = time.time() - elapsed
    while step < min(args.steps, args.stop_at or args.steps):
        rng = np.random.default_rng([args.seed, step])
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * learning_rate(step, args.steps, args.lr, args.warmup)
        episode = str(rng.choice(EPISODES, p=args.episode_mix))
        graded_round = int(rng.integers(0, args.rounds + 1)) if episode in ("box", "click") else 0
        picked = train_objects[np.sort(rng.choice(len(train_objects), args.batch, replace=False))]
        truth = _truth(cache, picked)
        target = torch.from_numpy(truth.astype(np.float32))
        embedding = embeddings(picked[:, 0])
        if episode == "first-click" or (episode == "click" and graded_round == 0):
            points = torch.tensor([[centre_click(r)] if rng.random() < 0.3 else [_interior(r, rng)] for r in truth],
                                  dtype=torch.float32)
            logits, iou = interaction.candidates(embedding, points, torch.ones(len(truth), 1, dtype=torch.int64))
            loss = candidates_loss(logits, iou, target, args.iou_weight)
        elif episode == "points":
            points, labels = scattered_clicks(truth, rng)
            loss = mask_loss(interaction(embedding, None, points, labels, None)[:, 0], target)
        else:
            logits, _ = play(interaction, embedding, truth, episode, graded_round, rng)
            loss = mask_loss(logits[:, 0], target)
        distilled = box_distillation(interaction, box_teacher, embedding, embedding, truth, rng, args.boundary_weight)
        if len(unlabelled):
            others = np.sort(rng.choice(unlabelled, min(args.batch, len(unlabelled)), replace=False))
            other_embedding = embeddings(others)
            kept, objects = teacher_objects(box_teacher, other_embedding, cache["images"][others], rng)
            if len(kept):
                distilled = (distilled + box_distillation(interaction, box_teacher, other_embedding[kept],
                                                          other_embedding[kept], objects, rng, args.boundary_weight)) / 2
        loss = loss + args.box_weight * distilled
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0 or step in (args.steps, args.stop_at):
            record = {"step": step, "loss": round(loss.item(), 5), "episode": episode, "round": graded_round,
                      "box_distillation": round(distilled.item(), 5), "lr": optimizer.param_groups[0]["lr"],
                      "elapsed_s": round(time.time() - started, 1)}
            if step % args.validate_every == 0 or step in (args.steps, args.stop_at):
                record["validation"] = validation(interaction, embeddings, cache, validation_objects, args.rounds, args.seed)
            logbook.open("a").write(json.dumps(record) + "\n")
            log.info("%s", record)
        if step % args.checkpoint_every == 0 or step in (args.steps, args.stop_at):
            state = {"decoder": decoder.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "elapsed_s": time.time() - started}
            torch.save(state, out / "last.tmp")
            os.replace(out / "last.tmp", checkpoint)
    return checkpoint


def parameter_groups(decoder: torch.nn.Module, pretrained_scale: float) -> list[dict]:
    """The new layers at the full learning rate; layers copied from a trained decoder at ``pretrained_scale``
    of it, so a few thousand CPU steps teach clicks without washing out what millions of boxes taught."""
    if not isinstance(decoder, PooledSamDecoder):
        return [{"params": list(decoder.parameters()), "scale": 1.0}]
    new = [p for layer in decoder.new_layers() for p in layer.parameters()]
    known = {id(p) for p in new}
    return [{"params": new, "scale": 1.0},
            {"params": [p for p in decoder.parameters() if id(p) not in known], "scale": pretrained_scale}]


def _interior(region: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A click inside the object, drawn with probability rising towards its interior, as users click."""
    ys, xs = np.nonzero(region)
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1][ys, xs] ** 2
    pick = rng.choice(len(xs), p=depth / depth.sum())
    return float(xs[pick]), float(ys[pick])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="a litemedsam teacher cache (distill.teacher_cache)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: last.pt (read by distill.export_decoder), log.jsonl")
    parser.add_argument("--student-bundle", required=True, help="the student whose embeddings, prompt encoder and decoder it learns from")
    parser.add_argument("--decoder", choices=sorted(DECODERS), default="pooled-sam-2")
    parser.add_argument("--pretrained-lr-scale", type=float, default=0.25,
                        help="learning-rate factor of the layers a pooled-sam decoder copies from the bundle's")
    parser.add_argument("--max-views", type=int, help="use at most the first N views of the cache (as distill.train)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5, help="corrective clicks after the first prompt")
    parser.add_argument("--episode-mix", type=float, nargs=len(EPISODES), default=(0.35, 0.3, 0.15, 0.2, 0.0),
                        metavar=EPISODES)
    parser.add_argument("--stop-at", type=int, help="stop after this step, the schedule still that of --steps")
    parser.add_argument("--init", type=Path, help="start from this train_decoder run's decoder (a second stage)")
    parser.add_argument("--box-weight", type=float, default=1.0, help="weight of the box distillation term")
    parser.add_argument("--boundary-weight", type=float, default=4.0, help="up-weight the BCE near the box teacher's edge")
    parser.add_argument("--iou-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--validation-every", type=int, default=25, help="hold out every N-th image (as distill.train)")
    parser.add_argument("--validation-objects", type=int, default=96)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--validate-every", type=int, default=250)
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
