"""Train the click refiner (``imis_lite.click_refiner``) on simulated corrective clicks against the corpus label maps.

    python -m imis_lite.distill.train_click_refiner --cache runs/cache-v2 --data runs/refiner-data --out runs/refiner

Each step plays one interaction per object, as the runtime does: the shipped decoder's answer to a jittered box
(``distill.click_refiner_data``), then clicks at the centre of the largest error (``protocol.next_click``); or, for
``--first-click-share`` of the steps, the decoder's answer to one click inside the object, which the refiner
takes as its first round, then corrective clicks; or, for ``--box-alone-share``, the box answer with no click,
which the refiner redraws (the runtime keeps the decoder's box answers: docs/experiments.md says why). Each click
is answered by the refiner from its own previous answer. One round, drawn at random, is graded (BCE + soft Dice
against the label map); earlier rounds run without gradient and only place clicks. Validation replays the
protocol on the held-out rows (tight boxes; the first click at the object's centre). ``--extra CACHE DATA`` adds
another cache with its own ``click_refiner_data`` (the CT cache: many organs a slice, at coarser resolutions):
``--extra-share`` of the steps draw their batch from the extras, the rest from ``--data``, so a large extra set
does not drown the main one; each set's held-out rows are validated on their own. Seeded and resumable
(``last.pt``); it runs on the CPU.
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

from imis_lite.click_refiner import box_map, click_maps
from imis_lite.metrics import dice

from .click_refiner_net import ClickRefinerNet
from .teacher_cache import TeacherCache
from .train import learning_rate
from .train_interactive import WARMUP, corrective_click, mask_loss

log = logging.getLogger("imis_lite.distill")


class RefinerData:
    """The cache's images and label maps beside ``click_refiner_data``'s embeddings, decoder answers, boxes and
    clicks."""

    def __init__(self, cache: Path, data: Path) -> None:
        self.cache = TeacherCache(cache)
        self.meta = json.loads((data / "meta.json").read_text())
        self.embeddings = np.load(data / "embeddings.npy", mmap_mode="r")
        self.logits = np.load(data / "logits.npy", mmap_mode="r")
        self.click_logits = np.load(data / "click_logits.npy", mmap_mode="r")
        self.rows, self.boxes, self.clicks = (np.load(data / f"{name}.npy") for name in ("rows", "boxes", "clicks"))
        self.threshold = float(self.meta["mask_threshold"])

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        views = self.rows[rows, 0]
        return {"image": self.cache["images"][views].astype(np.float32) / 255.0,
                "embedding": self.embeddings[views].astype(np.float32),
                "box_logits": self.logits[rows].astype(np.float32),
                "click_logits": self.click_logits[rows].astype(np.float32), "clicks": self.clicks[rows],
                "truth": np.stack([self.cache["masks"][v] == label for v, label in self.rows[rows, :2]]),
                "boxes": self.boxes[rows]}


def refine(net: ClickRefinerNet, batch: dict[str, np.ndarray], previous: torch.Tensor, clicks: list[list],
           boxes: np.ndarray | None) -> torch.Tensor:
    size = previous.shape[-1]
    maps = np.stack([click_maps([c[:2] for c in row], [c[2] for c in row], size) for row in clicks])
    box = np.stack([box_map(b, size) for b in (boxes if boxes is not None else [None] * len(clicks))])
    return net(torch.from_numpy(batch["image"]), torch.from_numpy(batch["embedding"]), previous,
               torch.from_numpy(maps), torch.from_numpy(box))


def next_clicks(logits: torch.Tensor, truth: np.ndarray, clicks: list[list], threshold: float) -> None:
    """Append each object's next protocol click (``train_interactive.corrective_click``)."""
    shown = (logits[:, 0] > threshold).numpy()
    for row, mask, region in zip(clicks, shown, truth):
        row.append(corrective_click(mask, region, row))


def refine_box(net: ClickRefinerNet, batch: dict[str, np.ndarray]) -> torch.Tensor:
    """The refiner's answer to the decoder's box answer, no click given."""
    return refine(net, batch, torch.from_numpy(batch["box_logits"])[:, None], [[] for _ in batch["truth"]],
                  batch["boxes"])


def play(net: ClickRefinerNet, batch: dict[str, np.ndarray], first_click: bool, rounds: int,
         threshold: float) -> list[torch.Tensor]:
    """Logits after each round 1..rounds (a round = one click); gradients flow through the last one only."""
    if first_click:
        previous = torch.from_numpy(batch["click_logits"])[:, None]
        clicks: list[list] = [[(float(x), float(y), 1)] for x, y in batch["clicks"]]
        boxes = None
    else:
        previous = torch.from_numpy(batch["box_logits"])[:, None]
        clicks, boxes = [[] for _ in batch["truth"]], batch["boxes"]
    answers = []
    for round_number in range(1, rounds + 1):
        if round_number > 1 or not first_click:
            next_clicks(previous, batch["truth"], clicks, threshold)
        with torch.set_grad_enabled(round_number == rounds and torch.is_grad_enabled()):
            previous = refine(net, batch, previous.detach(), clicks, boxes)
        answers.append(previous)
    return answers


@torch.no_grad()
def evaluate(net: ClickRefinerNet, data: RefinerData, rows: np.ndarray, rounds: int,
             threshold: float | None = None) -> dict[str, list[float]]:
    """Mean Dice per round: the decoder's answer to the box, then the refiner's after each corrective click; the
    decoder's answer to a click at the object's centre, then the refiner's to that click and to each corrective
    click after it; and the refiner's answer to the box alone. The refiner's answers are masks above
    ``threshold`` (default: the bundle's, which the decoder's answers always use), and clicks are placed on them."""
    refined_at = data.threshold if threshold is None else threshold
    net.eval()
    box_curve, click_curve, box_refined = [], [], []
    for start in range(0, len(rows), 32):
        batch = data.batch(rows[start:start + 32])
        refined = (refine_box(net, batch)[:, 0] > refined_at).numpy()
        box_refined += [dice(m, t) for m, t in zip(refined, batch["truth"])]
        for first_click, start_logits, curve in ((False, "box_logits", box_curve), (True, "click_logits", click_curve)):
            answers = play(net, batch, first_click, rounds, refined_at)
            shown = [batch[start_logits] > data.threshold] + [(a[:, 0] > refined_at).numpy() for a in answers]
            curve.append([[dice(m, t) for m, t in zip(masks, batch["truth"])] for masks in shown])
    net.train()
    return {"box_then_clicks": [round(float(v), 4) for v in np.concatenate(box_curve, axis=1).mean(axis=1)],
            "first_click_then_clicks": [round(float(v), 4) for v in np.concatenate(click_curve, axis=1).mean(axis=1)],
            "box_refined": round(float(np.mean(box_refined)), 4), "objects": int(len(rows))}


def train(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data, extras = RefinerData(args.cache, args.data), [RefinerData(cache, folder) for cache, folder in args.extra]
    if any(extra.embeddings.shape[1:] != data.embeddings.shape[1:] for extra in extras):
        raise SystemExit("every --extra must hold embeddings of the same bundle as --data")
    train_rows, held_out_rows = np.flatnonzero(data.rows[:, 2] == 0), np.flatnonzero(data.rows[:, 2] == 1)
    training_rows = {id(part): np.flatnonzero(part.rows[:, 2] == 0) for part in (data, *extras)}
    net = ClickRefinerNet(embedding_channels=data.embeddings.shape[1])
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed = 0, 0.0
    checkpoint = args.out / "last.pt"
    if args.init and not checkpoint.is_file():
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["net"])
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
        log.info("resumed at step %d", step)
    config = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "extra": [[str(cache), str(folder)] for cache, folder in args.extra],
              "net": net.config, "parameters": int(sum(p.numel() for p in net.parameters())),
              "train_rows": int(len(train_rows)), "held_out_rows": int(len(held_out_rows)), "data_meta": data.meta,
              "extra_data_meta": [extra.meta for extra in extras]}
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    started = time.time() - elapsed
    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, WARMUP)
        source = data
        if extras and rng.random() < args.extra_share:
            source = extras[int(rng.integers(len(extras)))]
        batch = source.batch(np.sort(rng.choice(training_rows[id(source)], args.batch, replace=False)))
        kind = rng.random()
        first_click = bool(kind < args.first_click_share)
        box_alone = bool(args.first_click_share <= kind < args.first_click_share + args.box_alone_share)
        graded = 0 if box_alone else int(rng.integers(1, args.rounds + 1))
        logits = refine_box(net, batch) if box_alone else play(net, batch, first_click, graded, source.threshold)[-1]
        loss = mask_loss(logits[:, 0], torch.from_numpy(batch["truth"].astype(np.float32)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % args.log_every == 0 or step == args.steps:
            record = {"step": step, "loss": round(loss.item(), 5), "first_click": first_click, "round": graded,
                      "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(time.time() - started, 1)}
            if step % args.validate_every == 0 or step == args.steps:
                record["validation"] = evaluate(net, data, held_out_rows, args.rounds)
                for number, extra in enumerate(extras, 1):
                    record[f"validation_extra{number}"] = evaluate(net, extra, np.flatnonzero(extra.rows[:, 2] == 1), args.rounds)
            with (args.out / "log.jsonl").open("a") as stream:
                stream.write(json.dumps(record) + "\n")
            log.info("%s", record)
        if step % args.checkpoint_every == 0 or step == args.steps:
            state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "elapsed_s": time.time() - started, "config": net.config}
            torch.save(state, checkpoint.with_suffix(".tmp"))
            os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
    return checkpoint


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="the teacher cache click_refiner_data read")
    parser.add_argument("--data", type=Path, required=True, help="folder written by distill.click_refiner_data")
    parser.add_argument("--extra", nargs=2, type=Path, action="append", default=[], metavar=("CACHE", "DATA"),
                        help="another teacher cache and the click_refiner_data folder made from it")
    parser.add_argument("--extra-share", type=float, default=0.5, help="share of steps whose batch comes from the extras")
    parser.add_argument("--out", type=Path, required=True, help="run folder: last.pt (read by export_click_refiner), log.jsonl")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="clicks per interaction")
    parser.add_argument("--first-click-share", type=float, default=0.3,
                        help="share of steps that start from one click inside the object instead of a box")
    parser.add_argument("--box-alone-share", type=float, default=0.0,
                        help="share of steps that grade the refiner's answer to a box with no click")
    parser.add_argument("--init", type=Path, help="start from this run's last.pt (its network only)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--validate-every", type=int, default=100)
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
