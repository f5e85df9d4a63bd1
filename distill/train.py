"""Distil a student encoder from a teacher cache: embedding loss plus masks through the frozen teacher decoder.

    python -m imis_lite.distill.train --cache runs/cache-litemedsam --out runs/effvit-s --student effvit-s
    torchrun --nproc-per-node 8 -m imis_lite.distill.train ...   # several GPUs (DistributedDataParallel)

The same command runs on the CPU (reduced scale: fewer steps) and on CUDA (mixed precision). Training is
seeded and resumable: ``last.pt`` in ``--out`` holds model, optimiser, schedule and step, and a restarted run
continues from it. Each step's views are drawn from ``(seed, step)`` alone, and ``--batch`` is the global batch
that torchrun's processes split between them, so N processes follow the single-process run (exactly so where
batch norms are frozen, as in a stage started from a bundle; trained batch norms see each process's share).
``--source-power`` weights the draw against large sources. ``log.jsonl`` has one line per logged step. A cache
that is still being filled can be trained on: each epoch samples from the views complete at its start.

Loss = normalised embedding MSE + ``--prompt-weight`` x (box mask + 0.5 x click mask), each mask term a
binary cross-entropy against the teacher decoder's probabilities plus a soft Dice against its mask;
``--label-weight`` adds the box answer graded against the label map's object (where the teacher is wrong).
``--fresh-prompts`` draws a new box and click on each labelled view at every mask term (``--teacher-objects``
also on views without a label map); ``--init`` starts a later stage from a run's student or a released
bundle's ``encoder.onnx``, and ``--train refiner`` trains only an added refiner (docs/distillation.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imis_lite.bundle import sha256_of

from .corpus import held_out_keys, source_of_key
from .model_card import cpu_name, from_bundle, reproduce_commands, training_paragraphs
from .prompt_sampling import content_shape, largest_part, random_region, region_prompts, sample_labels
from .student import STUDENTS, build_student, count_gflops, count_parameters
from .student_readback import student_from_onnx
from .teacher_cache import TeacherCache
from .teachers import decode_prompts, load_teacher

log = logging.getLogger("imis_lite.distill")


def split_items(cache: TeacherCache, complete: int, validation_every: int,
                held_out: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation views; validation holds every view of every ``validation_every``-th image
    (or of the ``held_out`` images, so that extra caches of the same corpus hold out the same ones)."""
    if held_out is None:
        held_out = held_out_images(cache, validation_every)
    is_validation = np.array([path in held_out for path, _ in cache.meta["items"][:complete]], dtype=bool)
    return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def held_out_images(cache: TeacherCache, validation_every: int) -> set[str]:
    """The held-out images the cache recorded when it was built (``teacher_cache``), else the per-source rule
    over its own items (caches built before it recorded them)."""
    if "held_out" in cache.meta and cache.meta.get("validation_every") == validation_every:
        return set(cache.meta["held_out"])
    return held_out_keys((path for path, _ in cache.meta["items"]), validation_every)


class CacheSet:
    """One or more caches of the same teacher sampled as one pool (an extra cache oversamples small sources)."""

    def __init__(self, folders: list[Path], validation_every: int, max_views: int | None = None) -> None:
        self.caches = [TeacherCache(folder) for folder in folders]
        self.max_views = max_views
        teachers = {cache.meta["teacher"] for cache in self.caches}
        if len(teachers) > 1:
            raise SystemExit(f"the caches come from different teachers ({', '.join(sorted(teachers))}): train on one")
        self.meta = self.caches[0].meta
        self.held_out = set().union(*(held_out_images(cache, validation_every) for cache in self.caches))
        self.validation_every = validation_every

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(cache, view) pairs of the views complete now: training and validation."""
        training, validation = [], []
        for number, cache in enumerate(self.caches):
            complete = min(cache.complete, self.max_views or cache.complete)
            train_views, validation_views = split_items(cache, complete, self.validation_every, self.held_out)
            training.append(np.stack([np.full_like(train_views, number), train_views], axis=1))
            validation.append(np.stack([np.full_like(validation_views, number), validation_views], axis=1))
        return np.concatenate(training), np.concatenate(validation)

    def source_weights(self, pairs: np.ndarray, power: float) -> np.ndarray | None:
        """Sampling probabilities of ``pairs``: each view weighted by its source's view count to the power
        ``-power`` (0: every view alike, 1: every source alike), so that small sources are not drowned by
        Kvasir and BTCV. None for 0 (plain uniform draws)."""
        if power == 0 or not len(pairs):
            return None
        sources = np.array([source_of_key(self.caches[number].meta["items"][view][0]) for number, view in pairs])
        names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
        weights = counts[inverse].astype(np.float64) ** -power
        return weights / weights.sum()

    def batch(self, pairs: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        parts = [load_batch(self.caches[number], pairs[pairs[:, 0] == number, 1], device)
                 for number in np.unique(pairs[:, 0])]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


def load_batch(cache: TeacherCache, indices: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    indices = np.sort(indices)  # memory maps read faster in order
    batch = {name: torch.from_numpy(np.ascontiguousarray(cache[name][indices])) for name in cache.arrays}
    batch["images"] = batch["images"].float() / 255.0
    batch["embeddings"] = batch["embeddings"].float()
    batch["teacher_logits"] = batch["teacher_logits"].float()
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}


def boundary_band(hard: torch.Tensor, width: int = 5) -> torch.Tensor:
    """1 on pixels within ``width // 2`` of the mask's edge (dilation minus erosion), else 0."""
    dilated = F.max_pool2d(hard, width, stride=1, padding=width // 2)
    eroded = -F.max_pool2d(-hard, width, stride=1, padding=width // 2)
    return dilated - eroded


def mask_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, boundary_weight: float = 0.0) -> torch.Tensor:
    """BCE against the teacher's probabilities + soft Dice against its mask, per prompt channel (B, P).

    ``boundary_weight`` > 0 up-weights the BCE in a band around the teacher's mask edge: boundary distance
    (NSD) is where a student falls short first, and the band is a few percent of the pixels.
    """
    return soft_mask_loss(student_logits, torch.sigmoid(teacher_logits), (teacher_logits > 0).float(), boundary_weight)


def soft_mask_loss(student_logits: torch.Tensor, target: torch.Tensor, hard: torch.Tensor,
                   boundary_weight: float = 0.0) -> torch.Tensor:
    """``mask_loss`` against target probabilities and a hard mask given apart (a label map's object is both)."""
    bce = F.binary_cross_entropy_with_logits(student_logits, target, reduction="none")
    if boundary_weight > 0:
        weights = 1 + boundary_weight * boundary_band(hard)
        bce = (bce * weights).mean(dim=(2, 3)) / weights.mean(dim=(2, 3))
    else:
        bce = bce.mean(dim=(2, 3))
    probability = torch.sigmoid(student_logits)
    dice = 1 - (2 * (probability * hard).sum(dim=(2, 3)) + 1) / (probability.sum(dim=(2, 3)) + hard.sum(dim=(2, 3)) + 1)
    return bce + dice


class Objective(torch.nn.Module):
    """The distillation loss; holds the frozen teacher prompt encoder and decoder."""

    def __init__(self, teacher, embedding_scale: float, prompt_weight: float, boundary_weight: float = 0.0,
                 label_weight: float = 0.0) -> None:
        super().__init__()
        self.prompt_encoder = teacher.prompt_encoder if teacher.has_decoder else None
        self.mask_decoder = teacher.mask_decoder if teacher.has_decoder else None
        self.embedding_scale, self.prompt_weight = embedding_scale, prompt_weight
        self.boundary_weight, self.label_weight = boundary_weight, label_weight

    def forward(self, embedding: torch.Tensor, batch: dict[str, torch.Tensor], with_prompts: bool) -> dict[str, torch.Tensor]:
        terms = {"embedding": F.mse_loss(embedding.float(), batch["embeddings"]) / self.embedding_scale}
        if with_prompts and self.prompt_weight > 0:
            logits = decode_prompts(self.prompt_encoder, self.mask_decoder, embedding.float(), batch["boxes"], batch["points"])
            per_prompt = mask_loss(logits.float(), batch["teacher_logits"], self.boundary_weight).mean(dim=0)
            terms["box"], terms["click"] = per_prompt[0], per_prompt[1]
            prompts = terms["box"] + 0.5 * terms["click"]
            if self.label_weight > 0 and "labelled" in batch and bool(batch["labelled"].any()):
                labelled = batch["labelled"]
                objects = batch["objects"][labelled][:, None]
                terms["label"] = soft_mask_loss(logits[labelled][:, :1].float(), objects, objects, self.boundary_weight).mean()
                prompts = prompts + self.label_weight * terms["label"]
            terms["total"] = terms["embedding"] + self.prompt_weight * prompts
        else:
            terms["total"] = terms["embedding"]
        return terms


@torch.no_grad()
def fresh_prompts(objective: Objective, batch: dict[str, torch.Tensor], rng: np.random.Generator,
                  teacher_objects: bool = False) -> None:
    """A new box and click on a random object of each labelled view, answered by the teacher's frozen decoder
    from its cached embedding: the cache holds one prompt per view, so without this the mask term sees the
    same few thousand prompts again and again. Views without a label map keep their cached prompt, or, with
    ``teacher_objects``, get one on an object the teacher finds in them (see ``teacher_object_prompts``).
    The labelled object of each view is kept as ``objects`` (``labelled`` marks the views that have one), for
    the label term."""
    masks = batch["masks"].cpu().numpy()
    prompts = {}
    objects = np.zeros(masks.shape, np.float32)
    for view, mask in enumerate(masks):
        if labels := sample_labels(mask):
            objects[view] = mask == rng.choice(labels)
            prompts[view] = region_prompts(objects[view] > 0, mask.shape, rng)
    batch["objects"] = torch.from_numpy(objects).to(batch["boxes"].device)
    batch["labelled"] = torch.from_numpy(objects.any(axis=(1, 2))).to(batch["boxes"].device)
    if teacher_objects:
        prompts.update(teacher_object_prompts(objective, batch, [v for v in range(len(masks)) if v not in prompts], rng))
    if not prompts:
        return
    device = batch["boxes"].device
    index = torch.tensor(list(prompts), device=device)
    batch["boxes"][index] = torch.from_numpy(np.stack([box for box, _ in prompts.values()])).to(device)
    batch["points"][index] = torch.from_numpy(np.stack([point for _, point in prompts.values()])).to(device)
    batch["teacher_logits"][index] = decode_prompts(objective.prompt_encoder, objective.mask_decoder,
                                                    batch["embeddings"][index], batch["boxes"][index],
                                                    batch["points"][index]).float()


@torch.no_grad()
def teacher_object_prompts(objective: Objective, batch: dict[str, torch.Tensor], views: list[int],
                           rng: np.random.Generator) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(box, click) on the largest part of the teacher's mask for a random region of each view, for views
    with no label map (the corpus's few ultrasound, fundus and microscopy images have none): a prompt framing
    what the teacher calls an object, as a user's box would, instead of an arbitrary region. A view whose
    answer is empty gets nothing."""
    if not views:
        return {}
    device = batch["boxes"].device
    regions = np.stack([random_region(content_shape(batch["images"][v].cpu().numpy()), rng) for v in views])
    centres = (regions[:, :2] + regions[:, 2:]) / 2
    logits = decode_prompts(objective.prompt_encoder, objective.mask_decoder, batch["embeddings"][views],
                            torch.from_numpy(regions).to(device), torch.from_numpy(centres).to(device))
    prompts = {}
    for view, answer in zip(views, (logits[:, 0] > 0).cpu().numpy()):
        if (part := largest_part(answer)) is not None:
            prompts[view] = region_prompts(part, answer.shape, rng)
    return prompts


def load_init(student: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """A first stage's weights; a student that adds a refiner to that architecture keeps its zero-started one."""
    mine = student.state_dict()
    foreign = [key for key, value in state.items() if key not in mine or mine[key].shape != value.shape]
    foreign += [key for key in mine if key not in state and not key.startswith("refiner.")]
    if foreign:
        raise SystemExit(f"--init does not fit this student ({len(foreign)} weights differ, e.g. {foreign[0]}): "
                         "start from a run of the same architecture")
    student.load_state_dict(state, strict=False)


def select_trained(student: torch.nn.Module, part: str) -> list[torch.nn.Parameter]:
    """The parameters ``--train`` names; the rest are frozen (``refiner``: everything but the refiner)."""
    if part == "refiner" and getattr(student, "refiner", None) is None:
        raise SystemExit("--train refiner needs a student with a refiner (e.g. effvit-s-hr)")
    for name, parameter in student.named_parameters():
        parameter.requires_grad_(part == "all" or name.startswith("refiner."))
    return [parameter for parameter in student.parameters() if parameter.requires_grad]


def set_training_mode(student: torch.nn.Module, part: str, frozen_norm: bool = False) -> None:
    """Training mode for what is trained; frozen parts keep their batch-norm statistics, and so does every part
    of a student read back from ONNX (``frozen_norm``: its batch norms hold the folded identity, not statistics)."""
    student.train()
    if part == "refiner":
        for name, module in student.named_children():
            if name != "refiner":
                module.eval()
    if frozen_norm:
        for module in student.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()


def inherited_frozen_norm(init: Path) -> bool:
    """Whether the run that saved ``init`` kept its batch norms frozen (it started from a bundle's ONNX): a stage
    after it must too, its statistics are still the folded identity."""
    path = init.parent / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return bool(config.get("frozen_norm") or from_bundle(config))


def learning_rate(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``steps``."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _distributed() -> tuple[int, int]:
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def train(args: argparse.Namespace) -> Path:
    if args.teacher_objects and not args.fresh_prompts:
        raise SystemExit("--teacher-objects needs --fresh-prompts (the cached prompts are used as they are otherwise)")
    if args.label_weight and not args.fresh_prompts:
        raise SystemExit("--label-weight needs --fresh-prompts (it grades the box answer on the object each one draws)")
    rank, world = _distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() and not args.cpu else "cpu")
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    caches = CacheSet([args.cache, *args.extra_cache], args.validation_every, args.max_views)
    cache = caches.caches[0]
    if args.prompt_weight > 0 and not cache.meta.get("teacher_logits", True):
        raise SystemExit(f"the {cache.meta['teacher']} cache has no teacher masks: train with --prompt-weight 0")
    options = {"onnx_encoder": None} if cache.meta["teacher"] == "litemedsam" else {"checkpoint": cache.meta["checkpoint"]}
    teacher = load_teacher(cache.meta["teacher"], **options)
    channels = cache["embeddings"].shape[1]
    student = build_student(args.student, out_channels=channels).to(device)
    objective = Objective(teacher, embedding_scale=args.embedding_scale, prompt_weight=args.prompt_weight,
                          boundary_weight=args.boundary_weight, label_weight=args.label_weight).to(device)
    trained = select_trained(student, args.train)
    from_onnx = args.init is not None and args.init.suffix == ".onnx"
    frozen_norm = from_onnx or (args.init is not None and inherited_frozen_norm(args.init))
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=args.weight_decay)
    step, elapsed = 0, 0.0
    checkpoint = out / "last.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d", step)
    elif args.init:
        start = (student_from_onnx(args.init, args.student, channels).state_dict() if from_onnx
                 else torch.load(args.init, map_location=device, weights_only=True))
        load_init(student, start)
        log.info("started from %s", args.init)
    model = student
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and args.amp)
    config = {**vars(args), "cache": str(args.cache), "extra_cache": [str(c) for c in args.extra_cache],
              "init": str(args.init) if args.init else None, "frozen_norm": frozen_norm, "out": str(out),
              "world_size": world, "device": str(device),
              "student_config": STUDENTS[args.student].as_dict(), "teacher": cache.meta["teacher"],
              "out_channels": channels, "params": count_parameters(student), "cpu": cpu_name(),
              "gflops": count_gflops(build_student(args.student, out_channels=channels))}
    if from_onnx:
        card = args.init.parent / "MODEL_CARD.md"
        config.update(init_sha256=sha256_of(args.init), init_commands=reproduce_commands(card),
                      init_training=training_paragraphs(card))
    if rank == 0:
        (out / "config.json").write_text(json.dumps(config, indent=1))
    started = time.time() - elapsed
    train_items, validation_items = caches.split()
    weights = caches.source_weights(train_items, args.source_power)
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} is the global batch: it must divide among the {world} processes")
    while step < min(args.steps, args.stop_at or args.steps):
        if step % args.refresh_every == 0:
            train_items, validation_items = caches.split()
            weights = caches.source_weights(train_items, args.source_power)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        draw = np.random.default_rng([args.seed, step])  # the same global batch on every process, resumed or not
        picked = train_items[draw.choice(len(train_items), size=args.batch, replace=len(train_items) < args.batch, p=weights)]
        batch = caches.batch(picked[rank::world], device)
        rng = np.random.default_rng([args.seed, step, rank, 1])
        set_training_mode(student, args.train, frozen_norm=frozen_norm)
        with autocast:
            embedding = model(batch["images"])
        with_prompts = step % args.prompt_every == 0
        if with_prompts and args.fresh_prompts and objective.mask_decoder is not None:
            fresh_prompts(objective, batch, rng, args.teacher_objects)
        terms = objective(embedding, batch, with_prompts=with_prompts)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            losses = global_mean(terms, world)
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            record = {"step": step, "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(time.time() - started, 1),
                      "views": int(len(train_items)), **losses}
            if step % (args.log_every * 10) == 0 or step == args.steps:
                for number in range(len(caches.caches)):
                    views = validation_items[validation_items[:, 0] == number, 1]
                    if not len(views):
                        continue
                    key = "validation" if number == 0 else f"validation_extra{number}"
                    record[key] = validate(student, objective, caches.caches[number], views, device, args.batch)
            (out / "log.jsonl").open("a").write(json.dumps(record) + "\n")
            log.info("%s", record)
        if rank == 0 and (step % args.checkpoint_every == 0 or step in (args.steps, args.stop_at)):
            state = {"student": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "elapsed_s": time.time() - started, "torch_rng": torch.get_rng_state(), "config": config}
            torch.save(state, out / "last.tmp")
            os.replace(out / "last.tmp", checkpoint)
    if rank == 0 and step == args.steps:
        torch.save(student.state_dict(), out / "student.pt")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return out / "student.pt"


def global_mean(terms: dict[str, torch.Tensor], world: int) -> dict[str, float]:
    """The loss terms averaged over the processes' shares of the global batch: what one process would log."""
    names = sorted(terms)
    values = torch.stack([terms[name].detach().float() for name in names])
    if world > 1:
        torch.distributed.all_reduce(values)
        values = values / world
    return {name: round(float(value), 5) for name, value in zip(names, values)}


@torch.no_grad()
def validate(student, objective, cache: TeacherCache, items: np.ndarray, device: torch.device, batch_size: int) -> dict[str, float]:
    """Mean loss terms and box-mask Dice against the teacher's mask on held-out views (at most 64)."""
    if objective.mask_decoder is None:
        return {}
    student.eval()
    totals: dict[str, float] = {}
    dice_sum, count = 0.0, 0
    for start in range(0, min(len(items), 64), batch_size):
        batch = load_batch(cache, items[start:start + batch_size], device)
        embedding = student(batch["images"])
        for name, value in objective(embedding, batch, with_prompts=True).items():
            totals[name] = totals.get(name, 0.0) + float(value) * len(batch["images"])
        logits = decode_prompts(objective.prompt_encoder, objective.mask_decoder, embedding, batch["boxes"], batch["points"])
        mine, theirs = logits[:, 0] > 0, batch["teacher_logits"][:, 0] > 0
        overlap = (mine & theirs).sum(dim=(1, 2)).float()
        sizes = mine.sum(dim=(1, 2)) + theirs.sum(dim=(1, 2))
        dice_sum += float(torch.where(sizes > 0, 2 * overlap / sizes.clamp(min=1), torch.ones_like(overlap)).sum())
        count += len(batch["images"])
    means = {name: round(value / max(count, 1), 5) for name, value in totals.items()}
    return {**means, "box_dice_vs_teacher": round(dice_sum / max(count, 1), 4)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="folder written by distill.teacher_cache")
    parser.add_argument("--out", type=Path, required=True, help="run folder: last.pt, log.jsonl, student.pt")
    parser.add_argument("--extra-cache", type=Path, action="append", default=[],
                        help="another cache of the same teacher pooled with --cache (e.g. small sources, more views)")
    parser.add_argument("--max-views", type=int, help="use at most the first N views of each cache (a cache stopped early)")
    parser.add_argument("--init", type=Path, help="student.pt to start from (a second stage), or a bundle's encoder.onnx "
                        "(read back; batch-norm statistics then stay frozen); ignored when resuming")
    parser.add_argument("--student", choices=sorted(STUDENTS), default="effvit-s")
    parser.add_argument("--train", choices=("all", "refiner"), default="all",
                        help="refiner: train only a refiner added to an --init student (what extra capacity adds)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--stop-at", type=int,
                        help="checkpoint and stop after this step, the schedule still running to --steps: rerun without it to go on")
    parser.add_argument("--batch", type=int, default=8, help="global batch, split evenly among torchrun's processes")
    parser.add_argument("--source-power", type=float, default=0.0,
                        help="sample views with weight (views of their source)^-P: 0 every view alike, 1 every source alike")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--prompt-weight", type=float, default=0.2)
    parser.add_argument("--boundary-weight", type=float, default=0.0,
                        help="extra BCE weight on a 5-pixel band around the teacher mask's edge (0 = uniform)")
    parser.add_argument("--label-weight", type=float, default=0.0,
                        help="also grade the box answer against the labelled object itself (BCE + soft Dice), "
                             "relative to the teacher's box term; needs --fresh-prompts")
    parser.add_argument("--fresh-prompts", action="store_true",
                        help="a new box and click per labelled view at every mask term, answered by the teacher's decoder")
    parser.add_argument("--teacher-objects", action="store_true",
                        help="with --fresh-prompts: a view with no label map gets its box on the largest part of the "
                             "teacher's mask for a random region, not its one cached random-region prompt")
    parser.add_argument("--prompt-every", type=int, default=4, help="apply the decoder loss every N steps (CPU economy)")
    parser.add_argument("--embedding-scale", type=float, default=0.0115, help="teacher embedding variance (normalises MSE)")
    parser.add_argument("--validation-every", type=int, default=25, help="hold out every N-th image")
    parser.add_argument("--refresh-every", type=int, default=100, help="re-read the cache's progress every N steps")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when CUDA is present")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
