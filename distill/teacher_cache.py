"""Run the teacher once per image and view, and keep what training needs on disk.

    python -m imis_lite.distill.teacher_cache --out runs/cache --views 3
    python -m imis_lite.distill.teacher_cache --out runs/cache-small --views 8 --exclude-sources kvasir_seg,btcv_imis
    python -m imis_lite.distill.teacher_cache --out runs/cache-mine --images ~/scans --license-classes none

On 2 CPU cores the teacher is the slow part of distillation (~1 s per view); the student then trains for many
epochs over the cache at its own speed. The cache is a folder of NumPy memory maps, filled in order and
resumable: ``progress.json`` says how many views are complete, and views are seeded by index, so a restarted
run rebuilds exactly the views it had not finished.

Per view: the encoder input (uint8), its label map, the teacher's embedding (float16), a box and a click
(model-input pixels) and the teacher decoder's low-res logits for each (float16).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from .corpus import DEFAULT_CORPUS, CorpusImage, cap_per_source, held_out_keys, read_corpus
from .prompt_sampling import sample_prompts
from .teachers import TEACHERS, Teacher, load_teacher
from .user_images import UserImage, read_user_folder
from .views import make_view

log = logging.getLogger("imis_lite.distill")

ARRAYS = ("images", "masks", "embeddings", "boxes", "points", "teacher_logits")


def _layout(count: int, teacher: Teacher) -> dict[str, tuple[tuple[int, ...], str]]:
    size, channels, grid = teacher.student_input_size, teacher.embedding_channels, teacher.embedding_grid
    return {
        "images": ((count, 3, size, size), "uint8"),
        "masks": ((count, size, size), "uint8"),
        "embeddings": ((count, channels, grid, grid), "float16"),
        "boxes": ((count, 4), "float32"),
        "points": ((count, 2), "float32"),
        "teacher_logits": ((count, 2, 4 * grid, 4 * grid), "float16"),
    }


class TeacherCache:
    """The memory-mapped arrays of a cache folder (read-only unless ``writable``)."""

    def __init__(self, folder: str | Path, writable: bool = False) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        mode = "r+" if writable else "r"
        self.arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode=mode) for name in ARRAYS}

    @property
    def complete(self) -> int:
        return json.loads((self.folder / "progress.json").read_text())["complete"]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def _create(folder: Path, meta: dict, teacher: Teacher) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (shape, dtype) in _layout(meta["count"], teacher).items():
        np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape).flush()
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    (folder / "progress.json").write_text(json.dumps({"complete": 0}))


def _plan(images: list[CorpusImage | UserImage], views: int) -> list[tuple[int, int]]:
    """(image index, view number) pairs, view 0 of every image first: a cache stopped early still covers
    every image once, un-augmented, as the runtime would see it."""
    return [(image, view) for view in range(views) for image in range(len(images))]


def build_cache(out: Path, corpus: Path, teacher_name: str, views: int, license_classes: tuple[str, ...],
                seed: int, flush_every: int = 16, limit: int | None = None, checkpoint: Path | None = None,
                exclude_sources: tuple[str, ...] = (), user_folders: tuple[Path, ...] = (),
                slices_per_axis: int = 8, sources: tuple[str, ...] = (), per_source: int | None = None,
                validation_every: int = 25) -> TeacherCache:
    """Views of the corpus images of ``license_classes`` (none when empty) and of the user's folders.

    The held-out images (every ``validation_every``-th of each source, over the whole corpus of those classes,
    before ``sources`` / ``per_source`` narrow it) are recorded in the cache's meta, so training holds out
    exactly the images the mask threshold is later chosen on, whatever subset this cache holds."""
    teacher = load_teacher(teacher_name, **({"checkpoint": checkpoint} if checkpoint else {}))
    images: list[CorpusImage | UserImage] = []
    corpus_images = read_corpus(corpus, license_classes) if license_classes else []
    held_out = held_out_keys((image.key for image in corpus_images), validation_every)
    corpus_images = [image for image in corpus_images
                     if image.source not in exclude_sources and (not sources or image.source in sources)]
    if per_source:
        corpus_images = cap_per_source(corpus_images, per_source, validation_every)
    images += corpus_images
    for folder in user_folders:
        user = read_user_folder(folder, slices_per_axis)
        held_out |= held_out_keys((image.key for image in user), validation_every)
        images += user
    if not images:
        raise SystemExit("nothing to train on: no corpus license class and no --images folder")
    plan = _plan(images, views)[:limit]
    meta = {
        "teacher": teacher_name, "checkpoint": str(checkpoint) if checkpoint else None,
        "teacher_logits": teacher.has_decoder, "views_per_image": views, "seed": seed, "count": len(plan),
        "license_classes": sorted({image.license_class for image in images}), "corpus": str(corpus),
        "user_folders": [str(Path(folder).resolve()) for folder in user_folders],
        "sources": sorted({image.source for image in images}), "exclude_sources": sorted(exclude_sources),
        "items": [[images[i].key, v] for i, v in plan],
        "held_out": sorted(held_out & {image.key for image in images}), "validation_every": validation_every,
        "per_source": per_source, "only_sources": sorted(sources),
    }
    if not (out / "meta.json").exists():
        _create(out, meta, teacher)
    cache = TeacherCache(out, writable=True)
    if cache.meta["items"] != meta["items"] or cache.meta["teacher"] != teacher_name or \
            cache.meta.get("held_out", meta["held_out"]) != meta["held_out"]:
        raise SystemExit(f"{out} holds a different cache: choose another --out or delete it")
    started, done = time.time(), cache.complete
    for index in range(done, len(plan)):
        image_index, view_number = plan[index]
        rng = np.random.default_rng([seed, index])
        item = images[image_index]
        mix = images[int(rng.integers(len(images)))].image() if view_number and rng.random() < 0.15 else None
        view = make_view(item.image(), item.mask() if item.mask_path else None, teacher.student_input_size,
                         rng if view_number else None, mix)
        box, point = sample_prompts(view.mask, view.valid_shape, rng)
        embedding = teacher.embed(view.image[None].astype(np.float32) / 255.0, [view.valid_shape])
        if teacher.has_decoder:
            cache["teacher_logits"][index] = teacher.decode(embedding, box[None], point[None])[0].astype(np.float16)
        cache["images"][index], cache["masks"][index] = view.image, view.mask
        cache["embeddings"][index] = embedding[0].astype(np.float16)
        cache["boxes"][index], cache["points"][index] = box, point
        if (index + 1) % flush_every == 0 or index + 1 == len(plan):
            for array in cache.arrays.values():
                array.flush()
            (out / "progress.json").write_text(json.dumps({"complete": index + 1}))
            rate = (index + 1 - done) / (time.time() - started)
            log.info("%d/%d views (%.2f views/s)", index + 1, len(plan), rate)
    return TeacherCache(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="litemedsam")
    parser.add_argument("--checkpoint", type=Path, help="local weights of the medsam / imisnet teachers")
    parser.add_argument("--views", type=int, default=3, help="views per image; view 0 is un-augmented")
    parser.add_argument("--license-classes", default="permissive",
                        help="comma-separated corpus manifest classes to train on; 'none' for only --images")
    parser.add_argument("--images", type=Path, action="append", default=[],
                        help="a folder of your own NIfTI / DICOM / PNG / .npz files to add (repeatable)")
    parser.add_argument("--slices-per-axis", type=int, default=8, help="slices taken along each axis of a volume")
    parser.add_argument("--exclude-sources", default="",
                        help="comma-separated corpus sources to leave out (an extra cache that oversamples the small ones)")
    parser.add_argument("--sources", default="", help="comma-separated corpus sources to keep (default: all)")
    parser.add_argument("--per-source", type=int,
                        help="at most N images of each corpus source, evenly spread, its held-out images always kept")
    parser.add_argument("--validation-every", type=int, default=25, help="hold out every N-th image of each source")
    parser.add_argument("--limit", type=int, help="stop after this many views (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    classes = () if args.license_classes == "none" else tuple(filter(None, args.license_classes.split(",")))
    build_cache(args.out, args.corpus.resolve(), args.teacher, args.views, classes,
                args.seed, limit=args.limit, checkpoint=args.checkpoint,
                exclude_sources=tuple(filter(None, args.exclude_sources.split(","))), user_folders=tuple(args.images),
                slices_per_axis=args.slices_per_axis, sources=tuple(filter(None, args.sources.split(","))),
                per_source=args.per_source, validation_every=args.validation_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
