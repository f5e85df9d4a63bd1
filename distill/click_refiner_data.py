"""What the click refiner trains on: per cached view the shipped student's embedding, per labelled object the
shipped decoder's answers to a box and to one click inside the object (where a first click without a box
starts), so the refiner learns to correct the errors the runtime really makes.

    python -m imis_lite.distill.click_refiner_data --cache runs/cache-v2 --max-views 1159 --bundle effvit-s-hr \\
        --out runs/refiner-data

Training views get ``--jitters`` boxes per object, jittered as users draw them, and as many clicks, drawn deeper
inside more often; held-out views (every 25th image of each source, as ``distill.train``) one tight box and one
click at the object's centre, as the benchmark places them. Writes memory maps: ``embeddings.npy`` (views, C, h,
w) float16, ``logits.npy`` and ``click_logits.npy`` (rows, S, S) float16, ``rows.npy`` (view, label, held out),
``boxes.npy`` (x0 y0 x1 y1) and ``clicks.npy`` (x y), model-frame pixels, and ``meta.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from imis_lite.predictor import Segmenter
from imis_lite.protocol import centre_click

from .prompt_sampling import content_shape, region_prompts
from .teacher_cache import TeacherCache
from .train import split_items
from .train_interactive import list_objects

log = logging.getLogger("imis_lite.distill")

#: how far (pixels of the 256 frame) a training box's corners may lie from the object's bounding box
BOX_JITTER = 6.0
#: every N-th image of each source is held out, as ``distill.train --validation-every`` and ``held_out`` hold out
HELD_OUT_EVERY = 25


def prepare(cache_folder: Path, max_views: int, bundle: str, out: Path, jitters: int, threads: int, seed: int) -> None:
    cache = TeacherCache(cache_folder)
    views = min(cache.complete, max_views or cache.complete)
    train_views, validation_views = split_items(cache, views, HELD_OUT_EVERY)
    train_objects, held_out_objects = list_objects(cache, train_views), list_objects(cache, validation_views)
    objects = np.concatenate([np.c_[train_objects, np.zeros(len(train_objects), np.int64)],
                              np.c_[held_out_objects, np.ones(len(held_out_objects), np.int64)]])
    copies = np.where(objects[:, 2] == 1, 1, jitters)
    rows = np.repeat(objects, copies, axis=0)
    segmenter = Segmenter(bundle, engine="onnxruntime", threads=threads)
    size = cache["images"].shape[-1]
    out.mkdir(parents=True, exist_ok=True)
    embedding_shape = tuple(segmenter.bundle.embedding_shape)
    embeddings = np.lib.format.open_memmap(out / "embeddings.npy", "w+", np.float16, (views, *embedding_shape))
    logits = np.lib.format.open_memmap(out / "logits.npy", "w+", np.float16, (len(rows), size, size))
    click_logits = np.lib.format.open_memmap(out / "click_logits.npy", "w+", np.float16, (len(rows), size, size))
    boxes, clicks = np.zeros((len(rows), 4), np.float32), np.zeros((len(rows), 2), np.float32)
    rng = np.random.default_rng(seed)
    for view in range(views):
        image = cache["images"][view].transpose(1, 2, 0)
        if not image.any() or image.min() == image.max():
            continue
        segmenter.set_image(image)
        embeddings[view] = segmenter.embedding[0]
        valid_shape = content_shape(image.transpose(2, 0, 1))
        for index in np.flatnonzero(rows[:, 0] == view):
            region = cache["masks"][view] == rows[index, 1]
            jitter = 0.0 if rows[index, 2] else BOX_JITTER
            box, point = region_prompts(region, valid_shape, rng, max_jitter=jitter)
            boxes[index] = np.r_[np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]
            clicks[index] = centre_click(region) if rows[index, 2] else point
            logits[index] = segmenter.predict(box=boxes[index])[2][0]
            click_logits[index] = segmenter.predict(points=clicks[index][None], labels=[1])[2][0]
        if view % 100 == 0:
            log.info("view %d of %d", view, views)
    for memory_map in (embeddings, logits, click_logits):
        memory_map.flush()
    np.save(out / "rows.npy", rows)
    np.save(out / "boxes.npy", boxes)
    np.save(out / "clicks.npy", clicks)
    (out / "meta.json").write_text(json.dumps({
        "cache": str(cache_folder), "views": views, "bundle": bundle, "mask_threshold": segmenter.mask_threshold,
        "jitters": jitters, "box_jitter": BOX_JITTER, "seed": seed, "train_rows": int((rows[:, 2] == 0).sum()),
        "held_out_rows": int((rows[:, 2] == 1).sum())}, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="a teacher cache (distill.teacher_cache)")
    parser.add_argument("--max-views", type=int, default=0)
    parser.add_argument("--bundle", default="effvit-s-hr", help="the bundle whose encoder and decoder to run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jitters", type=int, default=2, help="boxes per training object")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    prepare(args.cache, args.max_views, args.bundle, args.out, args.jitters, args.threads, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
