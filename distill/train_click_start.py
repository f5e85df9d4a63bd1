"""Train the click-start ranker (``imis_lite.click_start``) on the corpus label maps.

    python -m imis_lite.distill.train_click_start --set runs/cache-v2 runs/refiner-data-2 \\
        --set runs/cache-ct runs/refiner-data-ct --bundle effvit-s-hr --out runs/click-start

Each row of a ``click_refiner_data`` folder is an object with one click inside it (training rows: a click drawn
deeper inside more often; held-out rows, every 25th image of each source: the object's centre). The bundle's
decoder answers that click and each candidate box (``click_start.candidate_boxes``); every candidate's features
and its Dice against the label map are stored in the run folder (``features.npz``, reused by a rerun). The ranker
learns which candidate is best, not the Dice itself: a softmax over one click's candidates is fitted to a softmax
of their Dice (``TEMPERATURE``). The held-out rows report the Dice of the candidate it picks beside the click's
own answer and the best candidate. Writes ``click_start.npz`` (read by ``export_click_start``) and ``log.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from imis_lite.bundle import Bundle, load_bundle
from imis_lite.click_start import candidate_boxes, candidate_features
from imis_lite.metrics import dice
from imis_lite.predictor import Segmenter

from .prompt_sampling import content_shape
from .train_click_refiner import RefinerData

log = logging.getLogger("imis_lite.distill")

#: softness of the target over a click's candidates: candidates within a few hundredths of Dice of the best
#: share its weight
TEMPERATURE = 0.03


def row_features(segmenter: Segmenter, data: RefinerData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 1 + K, FEATURES) features and (rows, 1 + K) Dice of every candidate of each row's click."""
    features, scores = [], []
    shown = None
    for row in rows:
        view, label, _ = data.rows[row]
        image = data.cache["images"][view]
        if view != shown:
            segmenter.set_image(image.transpose(1, 2, 0))
            shown = view
        x, y = (float(v) for v in data.clicks[row])
        boxes = candidate_boxes(x, y, content_shape(image))
        _, click_scores, click_logits = segmenter.predict(points=[[x, y]], labels=[1])
        _, box_scores, box_logits = segmenter.predict(box=boxes)
        logits = np.concatenate([click_logits, box_logits[:, 0]])
        grey = image.astype(np.float32).mean(0) / 255.0
        features.append(candidate_features(grey, logits, np.r_[click_scores, box_scores[:, 0]], boxes, x, y,
                                           segmenter.mask_threshold))
        truth = data.cache["masks"][view] == label
        scores.append([dice(mask, truth) for mask in logits > segmenter.mask_threshold])
    return np.asarray(features, np.float32), np.asarray(scores, np.float32)


def collect(sets: list[RefinerData], bundle: str, train_rows: int, seed: int, threads: int) -> dict[str, np.ndarray]:
    """Features, Dice, held-out flag and source of up to ``train_rows`` training rows of each set (drawn at
    random) and of all its held-out rows."""
    segmenter = Segmenter(bundle, engine="onnxruntime", threads=threads)
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {"features": [], "dice": [], "held_out": [], "source": []}
    for data in sets:
        training = np.flatnonzero(data.rows[:, 2] == 0)
        training = rng.choice(training, min(train_rows, len(training)), replace=False)
        for held_out, rows in ((False, training), (True, np.flatnonzero(data.rows[:, 2] == 1))):
            rows = np.sort(rows)
            features, scores = row_features(segmenter, data, rows)
            parts["features"].append(features)
            parts["dice"].append(scores)
            parts["held_out"].append(np.full(len(rows), held_out))
            parts["source"].append([data.cache.meta["items"][view][0].split("/")[1] for view in data.rows[rows, 0]])
            log.info("%s: %d %s rows", data.meta["cache"], len(rows), "held-out" if held_out else "training")
    return {key: np.concatenate(value) for key, value in parts.items()}


def decoder_sha256(bundle: Bundle) -> str:
    """The sha256 of the decoder whose answers the ranker learnt to rank: it ranks no other decoder's."""
    return bundle.manifest["files"][bundle.variant("onnxruntime", "fp32")["decoder"][0]]["sha256"]


class Ranker(torch.nn.Module):
    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.first, self.second = torch.nn.Linear(features, hidden), torch.nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(features)))[..., 0]


def picked(ranker: Ranker, features: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The Dice of the candidate the ranker puts first, per row."""
    with torch.no_grad():
        order = ranker(torch.from_numpy(features)).argmax(1).numpy()
    return scores[np.arange(len(scores)), order]


def report(ranker: Ranker, features: np.ndarray, scores: np.ndarray, sources: np.ndarray) -> dict:
    chosen = picked(ranker, features, scores)
    per_source = {source: {"rows": int((sources == source).sum()),
                           "picked": round(float(chosen[sources == source].mean()), 4),
                           "click": round(float(scores[sources == source, 0].mean()), 4)}
                  for source in sorted(set(sources))}
    return {"rows": int(len(scores)), "picked": round(float(chosen.mean()), 4),
            "click": round(float(scores[:, 0].mean()), 4), "best": round(float(scores.max(1).mean()), 4),
            "per_source": per_source}


def train(args: argparse.Namespace) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cached = args.out / "features.npz"
    started = time.time()
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as stored:
            table = {key: stored[key] for key in stored.files}
    else:
        sets = [RefinerData(Path(cache), Path(folder)) for cache, folder in args.set]
        table = collect(sets, args.bundle, args.train_rows, args.seed, args.threads or 2)
        np.savez(cached, **table)
    collected_s = time.time() - started
    training = ~table["held_out"]
    features = table["features"][training]
    mean, scale = features.reshape(-1, features.shape[-1]).mean(0), features.reshape(-1, features.shape[-1]).std(0) + 1e-6
    standard = torch.from_numpy((features - mean) / scale)
    target = torch.softmax(torch.from_numpy(table["dice"][training]) / TEMPERATURE, dim=1)
    ranker = Ranker(features.shape[-1], args.hidden)
    optimizer = torch.optim.Adam(ranker.parameters(), lr=args.lr, weight_decay=1e-4)
    for _ in range(args.steps):
        loss = -(target * torch.log_softmax(ranker(standard), dim=1)).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = table["held_out"]
    bundle = load_bundle(args.bundle)
    record = {
        "sets": [[str(cache), str(folder)] for cache, folder in args.set], "bundle": args.bundle,
        "decoder_sha256": decoder_sha256(bundle), "mask_threshold": bundle.mask_threshold,
        "train_rows_per_set": args.train_rows, "hidden": args.hidden, "steps": args.steps, "lr": args.lr,
        "seed": args.seed, "temperature": TEMPERATURE, "loss": round(loss.item(), 5),
        "hours": round((time.time() - started) / 3600, 3), "collect_hours": round(collected_s / 3600, 3),
        "training": report(ranker, (features - mean) / scale, table["dice"][training], table["source"][training]),
        "held_out": report(ranker, (table["features"][held_out] - mean) / scale, table["dice"][held_out],
                           table["source"][held_out])}
    np.savez(args.out / "click_start.npz", mean=mean.astype(np.float32), scale=scale.astype(np.float32),
             w1=ranker.first.weight.detach().numpy().T.copy(), b1=ranker.first.bias.detach().numpy(),
             w2=ranker.second.weight.detach().numpy().T.copy(), b2=ranker.second.bias.detach().numpy())
    (args.out / "log.json").write_text(json.dumps(record, indent=1))
    log.info("held out: %s", record["held_out"])
    return args.out / "click_start.npz"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", nargs=2, type=Path, action="append", required=True, metavar=("CACHE", "DATA"),
                        help="a teacher cache and the click_refiner_data folder made from it")
    parser.add_argument("--bundle", default="effvit-s-hr", help="the bundle whose decoder answers the candidates")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-rows", type=int, default=1500, help="training rows drawn from each set")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
